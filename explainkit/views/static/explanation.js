// Explanation view: image overlay on a canvas, token highlights over the original text, or feature bars / waterfall.
// Colors: signed = diverging blue (negative) / red (positive), symmetric around 0; positive = reds; absolute = heat.
function decodeBytes(b64) {
  const s = atob(b64); const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
const decodeF32 = (b64) => new Float32Array(decodeBytes(b64).buffer);
const NEG = [33, 102, 172], POS = [178, 24, 43];
const HEAT = [[255, 255, 204], [254, 178, 76], [240, 59, 32], [128, 0, 38]];

function scaleOf(scores, vmax) {
  if (vmax > 0) return vmax;
  const a = Array.from(scores, (v) => Math.abs(v || 0)).sort((x, y) => x - y);
  if (!a.length) return 1;
  const q = a[Math.min(a.length - 1, Math.floor(0.99 * (a.length - 1)))];
  return q > 0 ? q : (a[a.length - 1] || 1);
}

// value in [-1, 1] (signed) or [0, 1] -> [r, g, b, strength 0..1]
function colorOf(s, vmax, mode) {
  let t = (s || 0) / vmax;
  if (mode === "positive") t = Math.max(t, 0);
  if (mode === "absolute") {
    t = Math.min(Math.abs(t), 1);
    const x = t * (HEAT.length - 1), i = Math.min(Math.floor(x), HEAT.length - 2), f = x - i;
    const c = HEAT[i].map((v, k) => v + f * (HEAT[i + 1][k] - v));
    return [c[0], c[1], c[2], t];
  }
  t = Math.max(-1, Math.min(1, t));
  const c = t >= 0 ? POS : NEG;
  return [c[0], c[1], c[2], Math.abs(t)];
}

const fmtv = (v) => (v === null || v === undefined) ? "—" : Number(v).toPrecision(4).replace(/\.?0+$/, "");
const fmt = (v) => (v === null || v === undefined) ? "—" : (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4 ? v.toFixed(4) : v.toExponential(2));

function colorbar(vmax, mode) {
  const wrap = document.createElement("div"); wrap.className = "ek-colorbar";
  const cv = document.createElement("canvas"); cv.width = 180; cv.height = 1;
  const ctx = cv.getContext("2d"); const img = ctx.createImageData(180, 1);
  const lo = mode === "signed" ? -vmax : 0;
  for (let x = 0; x < 180; x++) {
    const v = lo + (vmax - lo) * x / 179; const [r, g, b, a] = colorOf(v, vmax, mode);
    img.data[4 * x] = 255 + a * (r - 255); img.data[4 * x + 1] = 255 + a * (g - 255);
    img.data[4 * x + 2] = 255 + a * (b - 255); img.data[4 * x + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  const l = document.createElement("span"); l.textContent = fmt(lo);
  const r = document.createElement("span"); r.textContent = fmt(vmax);
  wrap.append(l, cv, r);
  return wrap;
}

// the colour key: what red and blue mean for this target, and the unit (from the payload's legend)
function legendKey(p, mode) {
  const L = p.legend || {}; const key = document.createElement("div"); key.className = "ek-legend-key";
  key.dataset.ekUnit = L.unit || "score"; key.dataset.ekSpace = L.space || "score";
  key.title = (L.text && L.text[mode]) || "";
  const sw = (rgb, words) => {
    const b = document.createElement("span"); b.className = "ek-swatch"; b.style.background = `rgb(${rgb})`;
    const t = document.createElement("span"); t.textContent = words; key.append(b, t);
  };
  const unsigned = !L.negative || mode === "absolute";
  if (unsigned) sw(HEAT[2].join(","), L.negative ? "magnitude |score|, direction not shown" : (L.positive || "score"));
  else { sw(POS.join(","), L.positive); if (mode === "signed") sw(NEG.join(","), L.negative); else sw("230,230,230", "(against: not shown)"); }
  const u = document.createElement("span"); u.className = "ek-unit"; u.textContent = `· unit: ${L.unit || "score"}`;
  key.appendChild(u);
  return key;
}

function drawImage(root, p, opacity, mode, vmaxIn, tip) {
  const { h, w } = p; const px = decodeBytes(p.image); const s = decodeF32(p.scores); const c = p.c || 1;
  const vmax = scaleOf(s, vmaxIn);
  const small = document.createElement("canvas"); small.width = w; small.height = h;
  const sctx = small.getContext("2d"); const img = sctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const [r, gg, b, a0] = colorOf(s[i], vmax, mode); const a = a0 * opacity; const rgb = [r, gg, b];
    for (let k = 0; k < 3; k++) {          // the photo in colour (c = 3), or a grey input (c = 1)
      const g = px[c * i + (c === 3 ? k : 0)] * 0.85; img.data[4 * i + k] = g + a * (rgb[k] - g);
    }
    img.data[4 * i + 3] = 255;
  }
  sctx.putImageData(img, 0, 0);
  const scale = Math.max(1, Math.floor(280 / Math.max(h, w)));
  const cv = document.createElement("canvas"); cv.width = w * scale; cv.height = h * scale;
  const ctx = cv.getContext("2d"); ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, w * scale, h * scale);
  cv.addEventListener("mousemove", (ev) => {
    const rect = cv.getBoundingClientRect();
    const c = Math.floor((ev.clientX - rect.left) / rect.width * w), r = Math.floor((ev.clientY - rect.top) / rect.height * h);
    if (r >= 0 && r < h && c >= 0 && c < w) tip.textContent = `pixel (${r}, ${c}): ${fmt(s[r * w + c])}`;
  });
  root.append(cv, colorbar(vmax, mode), legendKey(p, mode));
}

function drawText(root, p, opacity, mode, vmaxIn, tip) {
  const vmax = scaleOf(p.scores, vmaxIn);
  const box = document.createElement("div"); box.className = "ek-tokens";
  let pos = 0; const text = p.text;
  p.tokens.forEach((tok, i) => {
    const [a, b] = p.offsets[i] || [pos, pos];
    if (a > pos) box.appendChild(document.createTextNode(text.slice(pos, a)));
    const span = document.createElement("span"); span.className = "ek-token";
    span.textContent = text.slice(a, b) || tok; span.dataset.ekToken = String(i);
    const s = p.scores[i]; const [r, g, bb, k] = colorOf(s, vmax, mode); const al = (0.08 + 0.8 * k) * Math.max(opacity, 0.15);
    span.style.background = k > 0.02 ? `rgba(${r},${g},${bb},${al.toFixed(3)})` : "transparent";
    if (al > 0.55 && k > 0.02) span.style.color = "#fff";
    span.title = `${tok}: ${fmt(s)}`;
    span.addEventListener("mouseenter", () => { tip.textContent = `token ${i} “${tok}”: ${fmt(s)}`; });
    box.appendChild(span); pos = Math.max(pos, b);
  });
  if (pos < text.length) box.appendChild(document.createTextNode(text.slice(pos)));
  root.append(box, colorbar(vmax, mode), legendKey(p, mode));
}

function featRow(name, value, lo, hi, a, b, color, label) {
  const row = document.createElement("div"); row.className = "ek-feat";
  const n = document.createElement("span"); n.className = "ek-feat-name"; n.title = name;
  n.textContent = name; if (value !== undefined) { const sm = document.createElement("small"); sm.textContent = ` = ${fmtv(value)}`; n.appendChild(sm); }
  const track = document.createElement("div"); track.className = "ek-feat-track";
  const pct = (v) => `${(100 * (v - lo) / ((hi - lo) || 1)).toFixed(2)}%`;
  if (lo < 0 && hi > 0) { const ax = document.createElement("div"); ax.className = "ek-feat-axis"; ax.style.left = pct(0); track.appendChild(ax); }
  const bar = document.createElement("div"); bar.className = "ek-feat-bar";
  bar.style.left = pct(Math.min(a, b)); bar.style.width = `calc(${pct(Math.max(a, b))} - ${pct(Math.min(a, b))})`;
  bar.style.minWidth = "1px"; bar.style.background = color; track.appendChild(bar);
  const v = document.createElement("span"); v.className = "ek-feat-val"; v.textContent = label;
  row.append(n, track, v); return row;
}

function drawTabular(root, p, opacity, mode, vmaxIn, shared) {
  const n = p.scores.length;
  // a compared map follows the comparison's shared row order (the same feature on the same row in every map)
  let order = (shared && shared.length === n) ? Array.from(shared)
    : Array.from({ length: n }, (_, i) => i).sort((i, j) => Math.abs(p.scores[j]) - Math.abs(p.scores[i]));
  const top = order.slice(0, 20), rest = order.slice(20);
  const restSum = rest.reduce((acc, i) => acc + p.scores[i], 0);
  const col = (s) => { const [r, g, b] = colorOf(s >= 0 ? 1 : -1, 1, mode === "absolute" ? "absolute" : "signed"); return `rgb(${r},${g},${b})`; };
  if (p.base_value !== null && p.base_value !== undefined && mode === "signed") {
    // waterfall from the base value to the model output
    let cum = p.base_value; const steps = [];
    for (const i of top) { steps.push([i, cum, cum + p.scores[i]]); cum += p.scores[i]; }
    if (rest.length) { steps.push([-1, cum, cum + restSum]); cum += restSum; }
    const all = steps.flatMap((s) => [s[1], s[2]]).concat([p.base_value]);
    let lo = Math.min(...all), hi = Math.max(...all); const pad = 0.05 * ((hi - lo) || 1); lo -= pad; hi += pad;
    const B = (p.legend && p.legend.baseline) || { name: "base value", end_name: "f(x)" };
    const unit = (p.legend && p.legend.unit) || "score";
    root.appendChild(legendKey(p, mode));
    const head = document.createElement("div"); head.className = "ek-waterfall-end ek-baseline";
    head.textContent = `${B.name} = ${fmt(p.base_value)}`; head.title = B.text || ""; root.appendChild(head);
    for (const [i, a, b] of steps) {
      const s = b - a;
      root.appendChild(featRow(i < 0 ? `${rest.length} other features` : p.names[i], i < 0 ? undefined : p.values[i],
        lo, hi, a, b, col(s), (s >= 0 ? "+" : "") + fmt(s)));
    }
    const end = document.createElement("div"); end.className = "ek-waterfall-end";
    let endText = `${B.end_name} = ${fmt(cum)}  (${unit})`;
    if (B.r2 !== null && B.r2 !== undefined) endText += `  ·  surrogate R² ${B.r2.toFixed(2)}`;
    if (B.output !== null && B.output !== undefined && !B.adds_up) endText += `  ·  the model: ${fmt(B.output)}`;
    end.textContent = endText; end.title = B.text || ""; root.appendChild(end);
    return;
  }
  const val = (i) => mode === "absolute" ? Math.abs(p.scores[i]) : (mode === "positive" ? Math.max(p.scores[i], 0) : p.scores[i]);
  const m = vmaxIn > 0 ? vmaxIn : Math.max(1e-12, ...top.map((i) => Math.abs(p.scores[i])));
  const lo = mode === "signed" ? -m : 0;
  root.appendChild(legendKey(p, mode));
  for (const i of top) root.appendChild(featRow(p.names[i], p.values[i], lo, m, 0, Math.max(lo, Math.min(m, val(i))), col(p.scores[i]), fmt(p.scores[i])));
  if (rest.length) {
    const more = document.createElement("div"); more.className = "ek-waterfall-end";
    more.textContent = `${rest.length} other features, total ${fmt(restSum)}`; root.appendChild(more);
  }
}

function render({ model, el }) {
  el.classList.add("ek-exp");
  const title = document.createElement("div"); title.className = "ek-exp-title";
  const body = document.createElement("div");
  const tip = document.createElement("div"); tip.className = "ek-tip";
  el.append(title, body, tip);
  function draw() {
    const p = model.get("payload"); const mode = model.get("mode"); const op = model.get("opacity"); const vmax = model.get("vmax");
    body.replaceChildren(); tip.textContent = "";
    if (!p || !p.modality) {
      title.textContent = (p && p.message) || "Select a sample to explain it.";
    } else {
      title.replaceChildren();
      const b = document.createElement("b"); b.textContent = p.method;
      title.append(b, document.createTextNode(`  target ${p.target}  ·  prediction ${p.prediction}  ·  ${mode}`));
      if (p.modality === "image") drawImage(body, p, op, mode, vmax, tip);
      else if (p.modality === "text") drawText(body, p, op, mode, vmax, tip);
      else drawTabular(body, p, op, mode, vmax, model.get("order"));
    }
    el.dataset.ekKey = model.get("key");
    el.dataset.ekMode = mode;
    el.dataset.ekModality = (p && p.modality) || "";
    el.dataset.ekReady = "1";
  }
  for (const t of ["payload", "mode", "opacity", "vmax", "key", "order"]) model.on(`change:${t}`, draw);
  // anywidget applies _dom_classes only when the view is created: later add_class/remove_class calls (the
  // "previous sample / parameters" marks while a job runs) are mirrored here
  let classes = [];
  const syncClasses = () => {
    const now = model.get("_dom_classes") || [];
    classes.filter((c) => !now.includes(c)).forEach((c) => el.classList.remove(c));
    now.forEach((c) => el.classList.add(c)); classes = now;
  };
  model.on("change:_dom_classes", syncClasses);
  syncClasses();
  draw();
}
export default { render };
