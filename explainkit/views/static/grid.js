// Sample browser: one page of tiles (images drawn on small canvases from uint8 data) or rows (text, tabular).
function decode(b64) {
  const s = atob(b64); const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function drawThumb(canvas, item) {
  const { h, w, c } = item; const px = decode(item.thumb);
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d"); const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const r = c === 1 ? px[i] : px[i * c], g = c === 1 ? px[i] : px[i * c + 1], b = c === 1 ? px[i] : px[i * c + 2];
    img.data[4 * i] = r; img.data[4 * i + 1] = g; img.data[4 * i + 2] = b; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function verdict(item) {
  const span = document.createElement("span");
  if (item.correct === true) { span.className = "ek-right"; span.textContent = "✓"; span.title = "correct"; }
  else if (item.correct === false) { span.className = "ek-wrong"; span.textContent = "✗"; span.title = "misclassified"; }
  return span;
}

function confBar(conf) {
  const bar = document.createElement("div"); bar.className = "ek-conf-bar";
  const fill = document.createElement("div"); fill.style.width = `${Math.round((conf || 0) * 100)}%`;
  bar.appendChild(fill); return bar;
}

// a what-if copy (explainkit.views.whatif): marked "edited" (badge first in `where`), its original's index, the edit
function markEdited(node, where, it) {
  if (it.edited == null) return;
  node.classList.add("ek-edited"); node.dataset.ekParent = String(it.edited);
  const badge = document.createElement("span"); badge.className = "ek-edited-badge"; badge.textContent = "edited";
  badge.title = `edited copy of #${it.edited}: ${it.note}`; where.prepend(badge);
}

function render({ model, el }) {
  el.classList.add("ek-grid-view");
  const root = document.createElement("div");
  el.appendChild(root);

  function select(index) {
    model.set("selected", index);
    model.save_changes();
  }

  function draw() {
    const items = model.get("items"); const modality = model.get("modality"); const sel = model.get("selected");
    root.replaceChildren();
    if (!items.length) {
      const e = document.createElement("div"); e.className = "ek-empty"; e.textContent = "No samples match the filters.";
      root.appendChild(e);
    } else if (modality === "image") {
      root.className = "ek-grid-tiles";
      for (const it of items) {
        const tile = document.createElement("div");
        tile.className = "ek-sample" + (it.index === sel ? " ek-selected" : "");
        tile.dataset.ekIndex = String(it.index);
        tile.title = `#${it.index}: true ${it.label}, predicted ${it.pred}` + (it.conf != null ? ` (${(it.conf * 100).toFixed(1)}%)` : "");
        const cv = document.createElement("canvas"); drawThumb(cv, it); tile.appendChild(cv);
        const meta = document.createElement("div"); meta.className = "ek-meta";
        const idx = document.createElement("span"); idx.className = "ek-idx"; idx.textContent = `#${it.index}`;
        const lab = document.createElement("span"); lab.textContent = `${it.label}→${it.pred}`;
        meta.append(idx, lab, verdict(it)); tile.appendChild(meta); markEdited(tile, idx, it);
        if (it.conf != null) tile.appendChild(confBar(it.conf));
        tile.addEventListener("click", () => select(it.index));
        root.appendChild(tile);
      }
    } else {
      root.className = "ek-grid-rows";
      const head = document.createElement("div"); head.className = "ek-row ek-row-head";
      for (const t of ["#", modality === "text" ? "text" : "features", "true", "predicted", "conf."]) {
        const c = document.createElement("span"); c.textContent = t; head.appendChild(c);
      }
      root.appendChild(head);
      for (const it of items) {
        const row = document.createElement("div");
        row.className = "ek-sample ek-row" + (it.index === sel ? " ek-selected" : "");
        row.dataset.ekIndex = String(it.index);
        const idx = document.createElement("span"); idx.className = "ek-idx"; idx.textContent = `#${it.index}`;
        const txt = document.createElement("span"); txt.className = "ek-text"; txt.textContent = it.text; txt.title = it.text;
        const lab = document.createElement("span"); lab.textContent = it.label;
        const pred = document.createElement("span"); pred.append(document.createTextNode(it.pred + " "), verdict(it));
        const conf = document.createElement("span");
        conf.textContent = it.conf != null ? `${(it.conf * 100).toFixed(1)}%` : "";
        row.append(idx, txt, lab, pred, conf); markEdited(row, txt, it);
        row.addEventListener("click", () => select(it.index));
        root.appendChild(row);
      }
    }
    el.dataset.ekCount = String(items.length);
    el.dataset.ekSelected = String(sel);
    el.dataset.ekReady = "1";
  }

  model.on("change:items", draw);
  model.on("change:selected", draw);
  draw();
}

export default { render };
