// What-if brush: the selected image at full resolution (scaled up, pixelated). Paint a region with the brush,
// then "Erase & re-run" sends the painted mask to Python (explainkit.views.whatif), which adds the edited copy.
function decode(b64) {
  const s = atob(b64); const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function encode(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
  return btoa(s);
}

function button(text, cls, title) {
  const b = document.createElement("button"); b.type = "button"; b.textContent = text; b.title = title;
  b.className = `ek-whatif-btn ${cls}`; return b;
}

function render({ model, el }) {
  el.classList.add("ek-whatif-brush-view");
  const canvas = document.createElement("canvas"); canvas.className = "ek-whatif-canvas";
  const side = document.createElement("div"); side.className = "ek-whatif-side";
  const size = document.createElement("input"); size.type = "range"; size.min = "1"; size.className = "ek-whatif-size";
  const sizeLabel = document.createElement("span"); sizeLabel.className = "ek-whatif-size-label";
  const clear = button("Clear", "ek-whatif-clear", "forget the painted region");
  const erase = button("Erase & re-run", "ek-whatif-erase", "a copy with the painted region erased (black), predicted and explained");
  side.append(sizeLabel, size, clear, erase);
  el.append(canvas, side);
  let img = null; let mask = null; let px = null; let painting = false;

  function draw() {
    if (!img) return;
    const ctx = canvas.getContext("2d"); const out = ctx.createImageData(img.w, img.h);
    let painted = 0;
    for (let i = 0; i < img.h * img.w; i++) {
      const c = img.c;
      let r = c === 1 ? px[i] : px[i * c], g = c === 1 ? px[i] : px[i * c + 1], b = c === 1 ? px[i] : px[i * c + 2];
      if (mask[i]) { painted++; r = 0.45 * r + 140; g = 0.45 * g; b = 0.45 * b; }
      out.data[4 * i] = r; out.data[4 * i + 1] = g; out.data[4 * i + 2] = b; out.data[4 * i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
    el.dataset.ekPainted = String(painted);
    erase.disabled = painted === 0;
  }

  function load() {
    const im = model.get("image");
    if (!im || !im.data) { el.dataset.ekReady = "1"; return; }
    img = im; px = decode(im.data); mask = new Uint8Array(im.h * im.w);
    canvas.width = im.w; canvas.height = im.h;
    const scale = Math.max(1, Math.floor(224 / Math.max(im.w, im.h)));
    canvas.style.width = `${im.w * scale}px`; canvas.style.height = `${im.h * scale}px`;
    size.max = String(Math.max(2, Math.round(Math.max(im.w, im.h) / 4)));
    brush();
    el.dataset.ekIndex = String(im.index);
    draw();
    el.dataset.ekReady = "1";
  }

  function brush() {
    size.value = String(model.get("brush"));
    sizeLabel.textContent = `brush ${model.get("brush")} px`;
  }

  function paint(ev) {
    const box = canvas.getBoundingClientRect();
    const x = (ev.clientX - box.left) * img.w / box.width, y = (ev.clientY - box.top) * img.h / box.height;
    const r = model.get("brush");
    for (let yy = Math.max(0, Math.floor(y - r)); yy <= Math.min(img.h - 1, Math.ceil(y + r)); yy++) {
      for (let xx = Math.max(0, Math.floor(x - r)); xx <= Math.min(img.w - 1, Math.ceil(x + r)); xx++) {
        if ((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= r * r) mask[yy * img.w + xx] = 1;
      }
    }
    draw();
  }

  canvas.addEventListener("pointerdown", (ev) => { if (!img) return; painting = true; canvas.setPointerCapture(ev.pointerId); paint(ev); });
  canvas.addEventListener("pointermove", (ev) => { if (painting) paint(ev); });
  canvas.addEventListener("pointerup", () => { painting = false; });
  canvas.addEventListener("pointercancel", () => { painting = false; });
  size.addEventListener("input", () => { model.set("brush", Number(size.value)); model.save_changes(); brush(); });
  clear.addEventListener("click", () => { if (mask) { mask.fill(0); draw(); } });
  erase.addEventListener("click", () => {
    if (!img || !mask.some((v) => v)) return;
    model.send({ event: "erase", index: img.index, mask: encode(mask) });
  });
  model.on("change:image", load);
  model.on("change:brush", brush);
  load();
}

export default { render };
