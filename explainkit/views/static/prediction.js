// Prediction panel: class probabilities as bars (predicted class filled, true class bold), or a regression value.
function render({ model, el }) {
  const root = document.createElement("div");
  el.appendChild(root);
  function draw() {
    const d = model.get("data"); root.replaceChildren();
    if (!d || !d.task) { el.dataset.ekReady = "1"; return; }
    if (d.task === "classification") {
      const order = d.probs.map((p, i) => i);
      if (order.length > 12) order.sort((a, b) => d.probs[b] - d.probs[a]).splice(12);
      for (const i of order) {
        const row = document.createElement("div");
        row.className = "ek-pred-row" + (i === d.pred ? " ek-is-pred" : "") + (i === d.true ? " ek-is-true" : "");
        row.dataset.ekClass = String(i);
        const name = document.createElement("span"); name.className = "ek-pred-name";
        name.textContent = d.classes[i] + (i === d.true ? " (true)" : "");
        const track = document.createElement("div"); track.className = "ek-pred-track";
        const fill = document.createElement("div"); fill.className = "ek-pred-fill";
        fill.style.width = `${(100 * d.probs[i]).toFixed(1)}%`; track.appendChild(fill);
        const val = document.createElement("span"); val.className = "ek-pred-val";
        val.textContent = `${(100 * d.probs[i]).toFixed(1)}%`;
        row.append(name, track, val); root.appendChild(row);
      }
    } else {
      const v = document.createElement("div"); v.className = "ek-reg-value";
      v.textContent = `${d.name}: ${Number(d.value).toPrecision(4)}`;
      root.appendChild(v);
      if (d.target !== null && d.target !== undefined) {
        const t = document.createElement("div"); t.className = "ek-muted";
        const err = d.value - d.target;
        t.textContent = `true ${Number(d.target).toPrecision(4)}  (error ${err >= 0 ? "+" : ""}${err.toPrecision(3)})`;
        root.appendChild(t);
      }
    }
    el.dataset.ekIndex = String(d.index);
    el.dataset.ekReady = "1";
  }
  model.on("change:data", draw);
  draw();
}
export default { render };
