// Generation answer view: the answer as clickable tokens; clicking one (or "whole answer") colours the
// prompt's units by their score for it. Red: the unit raises the log-probability, blue: lowers it.
// Colours are scaled to the selected row's largest |score| (shown beside the scale).
const NEG = [33, 102, 172], POS = [178, 24, 43];
const fmt = (v) => (v === null || v === undefined) ? "—" : (v >= 0 ? "+" : "") + Number(v).toPrecision(3);

function bg(v, vmax) {
  const t = Math.max(-1, Math.min(1, (v || 0) / vmax));
  const c = t >= 0 ? POS : NEG;
  return `rgba(${c[0]},${c[1]},${c[2]},${(0.85 * Math.abs(t)).toFixed(3)})`;
}

function el_(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render({ model, el }) {
  el.classList.add("ek-genview");
  function pick(i) { model.set("selected", i); model.save_changes(); }
  function draw() {
    const p = model.get("payload"); const sel = model.get("selected");
    el.replaceChildren();
    el.dataset.ekKey = model.get("key");
    el.dataset.ekSelected = String(sel);
    if (!p || !p.tokens) {
      el.append(el_("div", "ek-muted", (p && p.message) || "Type a prompt and press Generate."));
      el.dataset.ekReady = "1";
      return;
    }
    const ans = el_("div", "ek-answer");
    ans.append(el_("span", "ek-muted", `answer (${p.mode}${p.contrast ? `, contrast ${JSON.stringify(p.contrast)}` : ""}): `));
    p.tokens.forEach((t, i) => {
      const b = el_("button", "ek-answer-token" + (i === sel ? " ek-selected" : ""), t);
      b.type = "button"; b.dataset.ekToken = String(i);
      b.title = `token ${i}: log p = ${fmt(p.token_logprobs[i])}; click to see which prompt units produced it`;
      b.addEventListener("click", () => pick(i));
      ans.append(b);
    });
    const whole = el_("button", "ek-answer-token ek-whole" + (sel === -1 ? " ek-selected" : ""), "whole answer");
    whole.type = "button"; whole.dataset.ekToken = "-1";
    whole.title = "the whole answer's log-probability" + (p.contrast ? " minus the contrast's" : "");
    whole.addEventListener("click", () => pick(-1));
    ans.append(whole);

    const row = sel >= 0 && sel < p.matrix.length ? p.matrix[sel] : p.scores;
    const vmax = Math.max(1e-12, ...row.map((v) => Math.abs(v || 0)));
    const what = sel >= 0 && sel < p.tokens.length ? `token ${JSON.stringify(p.tokens[sel])}` : "the whole answer";
    const head = el_("div", "ek-gen-for", `prompt units, coloured by their score for ${what}:`);
    const prompt = el_("div", "ek-gen-prompt");
    let pos = 0;
    p.spans.forEach(([a, b], u) => {
      if (a > pos) prompt.append(document.createTextNode(p.prompt.slice(pos, a)));
      const s = el_("span", "ek-unit", p.prompt.slice(a, b));
      s.dataset.ekUnit = String(u); s.dataset.ekScore = String(row[u]);
      s.style.background = bg(row[u], vmax);
      s.title = `${p.units[u]}: ${fmt(row[u])} ${p.unit}`;
      prompt.append(s);
      pos = Math.max(pos, b);
    });
    if (pos < p.prompt.length) prompt.append(document.createTextNode(p.prompt.slice(pos)));
    const scale = el_("div", "ek-gen-scale");
    const lo = el_("span", "ek-swatch", fmt(-vmax)); lo.style.background = bg(-vmax, vmax);
    const hi = el_("span", "ek-swatch", fmt(vmax)); hi.style.background = bg(vmax, vmax);
    scale.append(el_("span", "", "scale: "), lo, el_("span", "ek-swatch", "0"), hi, el_("span", "", ` ${p.unit}`));
    el.append(ans, head, prompt, scale, el_("div", "ek-legend", p.legend));
    el.dataset.ekReady = "1";
  }
  for (const t of ["payload", "selected", "key"]) model.on(`change:${t}`, draw);
  draw();
}
export default { render };
