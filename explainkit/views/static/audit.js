// The audit panel: confusion matrix (click a cell) or residual plot (drag a box) that filters the sample
// list, the slices' metrics (click a row), and signed global importance with its progress.
const NS = "http://www.w3.org/2000/svg";
function h(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
function s(tag, attrs) { const e = document.createElementNS(NS, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; }
const fmt = (v, d = 3) => (v == null ? "–" : Number(v).toFixed(d));

function confusion(model, box) {
  const c = model.get("confusion"); const cell = model.get("cell");
  const total = c.counts.flat().reduce((a, b) => a + b, 0) || 1;
  box.appendChild(h("h4", null, "Confusion over the whole data (rows: true, columns: predicted). Click a cell to list its samples."));
  const t = h("table", "ek-audit-confusion"); const head = h("tr"); head.appendChild(h("th", null, "true \\ pred"));
  c.classes.forEach((n) => { const th = h("th", null, n); th.title = n; head.appendChild(th); });
  t.appendChild(head);
  c.counts.forEach((row, i) => {
    const tr = h("tr"); const th = h("th", null, c.classes[i]); th.title = c.classes[i]; tr.appendChild(th);
    row.forEach((v, j) => {
      const ci = c.index ? c.index[i] : i, cj = c.index ? c.index[j] : j;     // class indices of the model
      const td = h("td", "ek-audit-cell" + (cell.length && cell[0] === ci && cell[1] === cj ? " ek-on" : ""), String(v));
      td.dataset.ekCell = `${ci},${cj}`;
      td.title = `true ${c.classes[i]}, predicted ${c.classes[j]}: ${v}`;
      const a = Math.min(1, (v / total) * 4);
      td.style.background = v ? (i === j ? `rgba(67,147,195,${a})` : `rgba(178,24,43,${Math.max(a, 0.15)})`) : "";
      td.addEventListener("click", () => { model.set("cell", [ci, cj]); model.save_changes(); });
      tr.appendChild(td);
    });
    t.appendChild(tr);
  });
  box.appendChild(t);
}

function residuals(model, box) {
  const r = model.get("residuals"); const W = 360, H = 240, P = 34;
  box.appendChild(h("h4", null, `Residual = prediction − true ${r.unit}. Drag a box to list its samples.`));
  const lo = (a) => Math.min(...a), hi = (a) => Math.max(...a);
  const x0 = lo(r.x), x1 = hi(r.x), ym = Math.max(Math.abs(lo(r.y)), Math.abs(hi(r.y))) || 1;
  const X = (v) => P + ((v - x0) / ((x1 - x0) || 1)) * (W - P - 6), Y = (v) => H / 2 - (v / ym) * (H / 2 - 14);
  const svg = s("svg", { width: W, height: H, class: "ek-audit-residuals" });
  svg.appendChild(s("line", { x1: P, x2: W - 6, y1: Y(0), y2: Y(0), stroke: "#777" }));
  r.x.forEach((v, k) => svg.appendChild(s("circle", { cx: X(v), cy: Y(r.y[k]), r: 2.2, fill: "#542788", "fill-opacity": 0.6 })));
  const lab = (x, y, t, a = "start") => { const e = s("text", { x, y, "text-anchor": a }); e.textContent = t; svg.appendChild(e); };
  lab(P, 10, `+${ym.toPrecision(3)} (overestimates)`); lab(P, H - 2, `−${ym.toPrecision(3)} (underestimates)`);
  lab(W - 6, Y(0) - 3, `prediction ${x0.toPrecision(3)}–${x1.toPrecision(3)}`, "end");
  const rect = s("rect", { fill: "rgba(84,39,136,0.12)", stroke: "#542788", width: 0, height: 0 }); svg.appendChild(rect);
  const g = model.get("region");
  if (g.length === 4 && model.get("filter")) {            // the active box stays drawn after the redraw
    const [ax, bx] = [X(Math.min(g[0], g[1])), X(Math.max(g[0], g[1]))], [ay, by] = [Y(Math.max(g[2], g[3])), Y(Math.min(g[2], g[3]))];
    rect.setAttribute("x", ax); rect.setAttribute("y", ay); rect.setAttribute("width", bx - ax); rect.setAttribute("height", by - ay);
  }
  let start = null;
  const pt = (ev) => { const b = svg.getBoundingClientRect(); return [ev.clientX - b.left, ev.clientY - b.top]; };
  svg.addEventListener("mousedown", (ev) => { start = pt(ev); });
  svg.addEventListener("mousemove", (ev) => {
    if (!start) return; const [x, y] = pt(ev);
    rect.setAttribute("x", Math.min(x, start[0])); rect.setAttribute("y", Math.min(y, start[1]));
    rect.setAttribute("width", Math.abs(x - start[0])); rect.setAttribute("height", Math.abs(y - start[1]));
  });
  svg.addEventListener("mouseup", (ev) => {
    if (!start) return; const [x, y] = pt(ev); const a = start; start = null;
    const ix = (px) => x0 + ((px - P) / (W - P - 6)) * (x1 - x0), iy = (py) => ((H / 2 - py) / (H / 2 - 14)) * ym;
    model.set("region", [ix(a[0]), ix(x), iy(a[1]), iy(y)]); model.save_changes();
  });
  box.appendChild(svg);
}

function slices(model, box) {
  const rows = model.get("slices"); if (!rows.length) return;
  const reg = rows[0].mae !== undefined;
  box.appendChild(h("h4", null, "Slices (click one to list it; save the current filter with a name above)"));
  const t = h("table", "ek-audit-slices"); const head = h("tr");
  for (const c of ["slice", "samples", reg ? "mean |error|" : "accuracy", reg ? "bias" : "mean conf."]) head.appendChild(h("th", null, c));
  t.appendChild(head);
  for (const r of rows) {
    const tr = h("tr", "ek-audit-slice"); tr.dataset.ekSlice = r.name;
    const name = h("td", null, r.name + (r.saved ? " ★" : "")); name.title = r.saved ? "saved slice" : "default slice";
    tr.append(name, h("td", null, String(r.n)), h("td", null, fmt(reg ? r.mae : r.accuracy, reg ? 2 : 3)),
      h("td", null, fmt(reg ? r.bias : r.mean_confidence, reg ? 2 : 3)));
    tr.addEventListener("click", () => model.send({ event: "slice", name: r.name }));
    t.appendChild(tr);
  }
  box.appendChild(t);
}

const viridis = (t) => {                    // 5-stop viridis, low (purple) -> high (yellow)
  const c = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.max(0, Math.min(1, t)) * 4, i = Math.min(3, Math.floor(x)), f = x - i;
  return `rgb(${c[i].map((v, k) => Math.round(v + f * (c[i + 1][k] - v))).join(",")})`;
};

function legend(svg, x, y, lo, hi) {          // a low->high colour bar
  for (let k = 0; k < 20; k++) svg.appendChild(s("rect", { x: x + k * 4, y, width: 4, height: 8, fill: viridis(k / 19) }));
  const a = s("text", { x: x - 2, y: y + 8, "text-anchor": "end" }); a.textContent = lo; svg.appendChild(a);
  const b = s("text", { x: x + 82, y: y + 8 }); b.textContent = hi; svg.appendChild(b);
}

function beeswarm(im, box) {
  const b = im.beeswarm; if (!b || !b.rows.length) return;
  const W = 380, R = 18, L = 130, T = 16; const all = b.rows.flatMap((r) => r.s);
  const m = Math.max(...all.map(Math.abs), 1e-12), z = L + (W - L) / 2, half = (W - L) / 2 - 4;
  const svg = s("svg", { width: W, height: b.rows.length * R + T + 14, class: "ek-audit-beeswarm" });
  svg.dataset.ekDots = String(b.rows.length * b.n);
  svg.appendChild(s("line", { x1: z, x2: z, y1: T, y2: b.rows.length * R + T, stroke: "#777" }));
  legend(svg, W - 150, 2, "low", "high value");
  let seed = 1; const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5;   // fixed jitter
  b.rows.forEach((r, k) => {
    const y = T + k * R + R / 2;
    const t = s("text", { x: L - 4, y: y + 3, "text-anchor": "end" }); t.textContent = r.name.length > 20 ? r.name.slice(0, 19) + "…" : r.name; svg.appendChild(t);
    r.s.forEach((v, i) => {
      const d = s("circle", { cx: z + (v / m) * half, cy: y + rnd() * (R - 6), r: 2.2, fill: viridis(r.c[i]), class: "ek-audit-dot" });
      d.dataset.ekFeature = r.name; svg.appendChild(d);
    });
  });
  const ax = s("text", { x: z, y: b.rows.length * R + T + 12, "text-anchor": "middle" });
  ax.textContent = `attribution per sample (±${m.toPrecision(3)}; right: ${im.sense[0]})`; svg.appendChild(ax);
  const wrap = h("div"); wrap.append(h("h4", null, "Beeswarm: one dot per explained sample; colour = the feature's value"), svg); box.appendChild(wrap);
}

function dependence(im, box) {
  const d = im.dependence; if (!d || !d.x.length) return;
  const W = 340, H = 220, P = 40; const xs = d.x.filter(Number.isFinite);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), ym = Math.max(...d.y.map(Math.abs), 1e-12);
  const X = (v) => P + ((v - x0) / ((x1 - x0) || 1)) * (W - P - 8), Y = (v) => 34 + (1 - (v + ym) / (2 * ym)) * (H - 56);
  const svg = s("svg", { width: W, height: H, class: "ek-audit-dependence" });
  svg.dataset.ekDots = String(d.x.length); svg.dataset.ekFeature = d.feature; svg.dataset.ekColour = d.colour || "";
  svg.appendChild(s("line", { x1: P, x2: W - 8, y1: Y(0), y2: Y(0), stroke: "#777" }));
  d.x.forEach((v, i) => svg.appendChild(s("circle", { cx: X(Number.isFinite(v) ? v : x0), cy: Y(d.y[i]), r: 2.6, class: "ek-audit-dep-dot",
    fill: d.cs ? viridis(d.cs[i]) : "#542788", "fill-opacity": 0.8 })));
  const lab = (x, y, t, a = "start") => { const e = s("text", { x, y, "text-anchor": a }); e.textContent = t; svg.appendChild(e); };
  lab(P, 12, `attribution of ${d.feature} (±${ym.toPrecision(3)})`);
  lab(W - 8, H - 4, `${d.feature} value ${x0.toPrecision(3)}–${x1.toPrecision(3)}`, "end");
  if (d.colour) legend(svg, P + 28, 18, "low", `high ${d.colour}`.slice(0, 28));
  const wrap = h("div"); wrap.append(h("h4", null, `Dependence: ${d.feature}` + (d.colour ? `, coloured by ${d.colour} (low→high)` : "")), svg); box.appendChild(wrap);
}

function importance(model, box, el) {
  const im = model.get("importance");
  el.dataset.ekDone = String(im.done || 0); el.dataset.ekTotal = String(im.total || 0); el.dataset.ekStamp = String(im.stamp || 0);
  if (!im.method) { box.appendChild(h("div", "ek-muted", "Global importance: press the button to explain a batch; explanations you open are counted too.")); return; }
  const head = `Signed global importance, ${im.method}: ${im.n || 0} explanation${im.n === 1 ? "" : "s"}` + (im.total ? ` (batch ${im.done}/${im.total})` : "");
  box.appendChild(h("h4", null, head));
  const plural = (k, w) => `${k} ${w}${k === 1 ? "" : "s"}`;
  if (im.target) box.appendChild(h("div", "ek-muted", `${im.sense[0] === "for it" ? "toward" : "on"} ${im.target} ` +
    `(${plural(im.n_target, "sample")} explained for it). Red: ${im.sense[0]}; blue: ${im.sense[1]}.`));
  if (im.map) {
    const { h: H, w: Wd, v } = im.map; const m = Math.max(...v.map(Math.abs)) || 1; const cv = document.createElement("canvas");
    cv.width = Wd; cv.height = H; cv.style.width = `${Wd * 4}px`; cv.style.imageRendering = "pixelated";
    const ctx = cv.getContext("2d"); const img = ctx.createImageData(Wd, H);
    v.forEach((x, i) => { const t = x / m; img.data[4 * i] = t > 0 ? 255 : Math.round(255 * (1 + t)); img.data[4 * i + 1] = Math.round(255 * (1 - Math.abs(t))); img.data[4 * i + 2] = t < 0 ? 255 : Math.round(255 * (1 - t)); img.data[4 * i + 3] = 255; });
    cv.className = "ek-audit-map"; cv.dataset.ekClass = im.map_class || "";
    ctx.putImageData(img, 0, 0); box.appendChild(cv);
    box.appendChild(h("div", "ek-muted", `mean map of ${im.map_class} (${im.map.n} sample${im.map.n === 1 ? "" : "s"}), scale ±${m.toPrecision(3)}`));
    return;
  }
  const rows = im.rows || []; const W = 340, R = 16, L = 150; const m = Math.max(...rows.map((r) => Math.abs(r.value)), 1e-12);
  const svg = s("svg", { width: W, height: rows.length * R + 4, class: "ek-audit-bars" });
  const z = L + (W - L) / 2, half = (W - L) / 2 - 4;
  svg.appendChild(s("line", { x1: z, x2: z, y1: 0, y2: rows.length * R + 4, stroke: "#777" }));
  rows.forEach((r, k) => {
    const w = Math.max(1, (Math.abs(r.value) / m) * half); const y = k * R + 2;
    const t = s("text", { x: L - 4, y: y + 11, "text-anchor": "end" }); t.textContent = r.name.length > 24 ? r.name.slice(0, 23) + "…" : r.name;
    const tip = s("title", {}); tip.textContent = `${r.name}: ${r.value.toPrecision(4)}`; t.appendChild(tip);
    svg.appendChild(t);
    const bar = s("rect", { x: r.value >= 0 ? z : z - w, y, width: w, height: R - 4, fill: r.value >= 0 ? "#b2182b" : "#2166ac", class: "ek-audit-bar" });
    bar.dataset.ekName = r.name; svg.appendChild(bar);
  });
  box.appendChild(svg);
  if (im.min_count) box.appendChild(h("div", "ek-muted ek-audit-words-note", `words seen at least ${im.min_count} times (${im.rare} rarer left out)`));
  const plots = h("div", "ek-audit-plots"); beeswarm(im, plots); dependence(im, plots);
  if (plots.childNodes.length) box.appendChild(plots);
}

function render({ model, el }) {
  el.classList.add("ek-audit-view");
  function draw() {
    el.replaceChildren();
    const filt = h("div", "ek-audit-filter"); const f = model.get("filter");
    filt.textContent = f ? `Sample list filtered to: ${f} (${model.get("count")} samples)` : "Sample list: not filtered by the audit.";
    if (f) { const b = h("button", "ek-audit-clear", "clear"); b.addEventListener("click", () => model.send({ event: "clear" })); filt.appendChild(b); }
    el.appendChild(filt);
    const left = h("div", "ek-audit-box");
    if (Object.keys(model.get("confusion")).length) confusion(model, left);
    else if (Object.keys(model.get("residuals")).length) residuals(model, left);
    else left.appendChild(h("div", "ek-muted", "No labels: no confusion matrix or residuals."));
    const mid = h("div", "ek-audit-box"); slices(model, mid);
    const right = h("div", "ek-audit-box ek-audit-importance"); importance(model, right, el);
    el.append(left, mid, right);
    el.dataset.ekFilter = f; el.dataset.ekCount = String(model.get("count"));
    el.dataset.ekReady = "1";
  }
  for (const t of ["confusion", "residuals", "cell", "region", "filter", "count", "slices", "importance"]) model.on(`change:${t}`, draw);
  draw();
}

export default { render };
