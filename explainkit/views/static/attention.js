// Attention view: a token-to-token matrix on one canvas (cheap for 128+ tokens), per layer and head, head mean,
// all heads of a layer, or the rollout. Hovering a token (or a row) colors the tokens it attends to.
function decodeF32(b64) {
  const s = atob(b64); const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return new Float32Array(out.buffer);
}

function render({ model, el }) {
  el.classList.add("ek-att-view");
  const info = document.createElement("div"); info.className = "ek-tip";
  const wrap = document.createElement("div"); wrap.className = "ek-att";
  const left = document.createElement("div"); const toks = document.createElement("div"); toks.className = "ek-att-tokens";
  wrap.append(left, toks); el.append(info, wrap);
  let cache = { key: null, m: null };

  function matrixFor(layer, head) {
    const [L, H, T] = model.get("shape");
    if (cache.key !== model.get("matrices")) cache = { key: model.get("matrices"), m: model.get("matrices") ? decodeF32(model.get("matrices")) : null };
    const m = cache.m; const out = new Float32Array(T * T);
    if (!m) return out;
    if (model.get("rollout")) return decodeF32(model.get("rolled"));
    const base = (l, h) => ((l * H + h) * T * T);
    if (head === "mean") {
      for (let h = 0; h < H; h++) { const o = base(layer, h); for (let k = 0; k < T * T; k++) out[k] += m[o + k] / H; }
    } else { const o = base(layer, Number(head)); for (let k = 0; k < T * T; k++) out[k] = m[o + k]; }
    return out;
  }

  function paint(cv, mat, T, cell, hoverRow) {
    cv.width = T * cell; cv.height = T * cell;
    const ctx = cv.getContext("2d"); const img = ctx.createImageData(T, T);
    let mx = 1e-12; for (const v of mat) mx = Math.max(mx, v);
    for (let k = 0; k < T * T; k++) {
      const t = Math.min(1, mat[k] / mx); const row = Math.floor(k / T); const dim = hoverRow >= 0 && row !== hoverRow ? 0.45 : 1;
      img.data[4 * k] = 255 - t * (255 - 8) * dim; img.data[4 * k + 1] = 255 - t * (255 - 69) * dim;
      img.data[4 * k + 2] = 255 - t * (255 - 148) * dim; img.data[4 * k + 3] = 255;
    }
    const small = document.createElement("canvas"); small.width = T; small.height = T;
    small.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false; ctx.drawImage(small, 0, 0, T * cell, T * cell);
  }

  let hover = -1; let shown = null; let canvases = []; let spans = [];
  function describe() {
    const [L, H, T] = model.get("shape"); const tokens = model.get("tokens");
    const layer = Math.min(model.get("layer"), L - 1); const head = model.get("head");
    const what = model.get("rollout") ? "rollout over all layers" : (head === "all" ? `layer ${layer}, all ${H} heads` : `layer ${layer}, head ${head}`);
    info.textContent = `${what} · ${T} tokens · rows attend to columns` + (hover >= 0 ? ` · hovering “${tokens[hover]}”` : "");
  }
  // repaint canvases and token colors in place (no DOM rebuild: hovering must not replace the hovered node)
  function highlight() {
    const [L, H, T] = model.get("shape"); const tokens = model.get("tokens");
    for (const [cv, mat, cell] of canvases) paint(cv, mat, T, cell, hover);
    let rowMax = 1e-12; if (hover >= 0) for (let j = 0; j < T; j++) rowMax = Math.max(rowMax, shown[hover * T + j]);
    spans.forEach((s, i) => {
      s.classList.toggle("ek-src", i === hover);
      const a = hover >= 0 ? shown[hover * T + i] / rowMax : 0;
      s.style.background = hover >= 0 ? `rgba(8,69,148,${(0.85 * a).toFixed(3)})` : "";
      s.style.color = a > 0.6 ? "#fff" : "";
      s.title = hover >= 0 ? `attention from “${tokens[hover]}”: ${shown[hover * T + i].toFixed(4)}` : "hover to see what this token attends to";
    });
    describe();
  }
  function draw() {
    const [L, H, T] = model.get("shape"); const tokens = model.get("tokens");
    left.replaceChildren(); toks.replaceChildren(); canvases = []; spans = [];
    if (!T) { info.textContent = "Select a sample to see its attention."; el.dataset.ekReady = "1"; return; }
    const layer = Math.min(model.get("layer"), L - 1); const head = model.get("head"); const roll = model.get("rollout");
    if (head === "all" && !roll) {
      const grid = document.createElement("div"); grid.className = "ek-att-heads";
      grid.style.gridTemplateColumns = `repeat(${Math.min(H, 4)}, auto)`;
      const cell = Math.max(1, Math.floor(170 / T));
      for (let h = 0; h < H; h++) {
        const cv = document.createElement("canvas"); cv.title = `head ${h}`; cv.dataset.ekHead = String(h);
        canvases.push([cv, matrixFor(layer, String(h)), cell]); grid.appendChild(cv);
      }
      left.appendChild(grid); shown = matrixFor(layer, "mean");
    } else {
      const cell = Math.max(2, Math.floor(400 / T));
      const cv = document.createElement("canvas"); cv.className = "ek-att-matrix";
      shown = matrixFor(layer, roll ? "mean" : head);
      canvases.push([cv, shown, cell]);
      cv.addEventListener("mousemove", (ev) => {
        const r = cv.getBoundingClientRect();
        const i = Math.floor((ev.clientY - r.top) / r.height * T), j = Math.floor((ev.clientX - r.left) / r.width * T);
        if (i >= 0 && i < T && j >= 0 && j < T) info.textContent = `“${tokens[i]}” → “${tokens[j]}”: ${shown[i * T + j].toFixed(4)}`;
      });
      left.appendChild(cv);
    }
    tokens.forEach((tok, i) => {
      const s = document.createElement("span"); s.className = "ek-att-token";
      s.textContent = tok; s.dataset.ekToken = String(i);
      s.addEventListener("mouseenter", () => {
        if (hover === i) return;
        hover = i; model.set("hovered", i); model.save_changes(); highlight();
      });
      spans.push(s); toks.appendChild(s); toks.appendChild(document.createTextNode(" "));
    });
    highlight();
    el.dataset.ekKey = model.get("key"); el.dataset.ekLayer = String(layer); el.dataset.ekHead = head;
    el.dataset.ekRollout = roll ? "1" : "0"; el.dataset.ekReady = "1";
  }
  for (const t of ["matrices", "layer", "head", "rollout", "key"]) model.on(`change:${t}`, () => { if (t === "matrices") hover = -1; draw(); });
  draw();
}
export default { render };
