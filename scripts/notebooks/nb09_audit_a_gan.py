"""Notebook 09: audit a GAN (the mnist-gan sample: generated digits, the held-out floor, its discriminator)."""

CELLS = [
    ("md", """# Audit a GAN: the mnist-gan sample

`mnist-gan` is a small class-conditional DCGAN (trained as an AC-GAN) on MNIST digits 0-7999. Its checkpoint
holds both networks. The model you load is the **discriminator**, wrapped as a 2-class image classifier
("fake", "real"). Its probability of "real" is the discriminator's own `sigmoid(d)`. The generator draws digits
through `explainkit.models.gan.generate`. In this notebook: draw digits, measure the held-out floor, explain the
discriminator's "real" logit on a real and a generated digit, then open the dashboard over both."""),
    ("code", """import matplotlib.pyplot as plt
import numpy as np

import explainkit as ek
from explainkit.models import gan

model = ek.load_sample("mnist-gan")
print(model)
print("classes:", model.classes, "| recorded metrics:", {k: model.config["metrics"][k] for k in
      ("confident_fraction", "d_p_real_on_real", "d_p_real_on_generated")})"""),
    ("md", """## Generated digits

`generate(model, n, seed)` is deterministic per seed. By default it draws every class in turn (0, 1, ..., 9,
0, ...). `classes=` asks for particular digits. No digit is filtered or rejected."""),
    ("code", """digits = gan.generate(model, 30, seed=0)
fig, axes = plt.subplots(3, 10, figsize=(10, 3.2), layout="constrained")
for ax, img in zip(axes.ravel(), digits):
    ax.imshow(img, cmap="gray")
    ax.axis("off")
plt.show()
sevens = gan.generate(model, 8, seed=5, classes=7)
print("asked for 7s; mnist-cnn reads:", ek.load_sample("mnist-cnn").predict(list(sevens)).argmax(axis=1))"""),
    ("md", """## The held-out floor

The shipped `mnist-cnn` judges 1,000 generated digits (seed 0, 100 of each class). The floor asks that it
assign a class with probability >= 0.9 to at least 70% of them."""),
    ("code", """cnn = ek.load_sample("mnist-cnn")
floor = gan.confident_fraction(model, cnn)
print(f"confident fraction: {floor['confident_fraction']:.3f} (floor 0.70)")
print("confident digits per class:", floor["confident_per_class"])
assert floor["confident_fraction"] >= 0.70"""),
    ("md", """## What does the discriminator look at?

We explain the "real" logit (target 1) on a held-out real digit and on a generated one. The gradient method is
integrated gradients; the perturbation method is occlusion. The data is `sample_data("mnist-gan")`: 100 real
held-out digits labelled "real", then 100 digits from this generator labelled "fake"."""),
    ("code", """data = ek.datasets.sample_data("mnist-gan")
print(data, "| labels:", np.bincount(data.labels))
REAL = model.classes.index("real")
real_raw, fake_raw = data.raws[0], data.raws[150]
exps = {}
for kind, raw in (("real", real_raw), ("generated", fake_raw)):
    exps[kind, "integrated_gradients"] = ek.explain(model, raw, "integrated_gradients", target=REAL, n_steps=64)
    exps[kind, "occlusion"] = ek.explain(model, raw, "occlusion", target=REAL, window=4)
p = model.predict([real_raw, fake_raw])[:, REAL]
print(f"P(real) from the discriminator: real digit {p[0]:.3f}, generated digit {p[1]:.3f}")
fig, axes = plt.subplots(2, 3, figsize=(9, 6), layout="constrained")
for row, (kind, raw) in enumerate((("real", real_raw), ("generated", fake_raw))):
    axes[row, 0].imshow(raw, cmap="gray")
    axes[row, 0].set_title(f"{kind} digit")
    for col, method in enumerate(("integrated_gradients", "occlusion"), start=1):
        s = np.asarray(exps[kind, method].scores)
        m = np.abs(s).max() or 1.0
        axes[row, col].imshow(s, cmap="RdBu_r", vmin=-m, vmax=m)
        axes[row, col].set_title(method)
for ax in axes.ravel():
    ax.axis("off")
plt.show()
for e in exps.values():
    assert e.scores.shape == (28, 28) and np.isfinite(e.scores).all() and np.abs(e.scores).max() > 0"""),
    ("md", """Integrated gradients is complete: the "real" attributions sum to `(d(x) - d(baseline)) / 2`. That is
half the change in the discriminator's logit."""),
    ("code", """ig = exps["generated", "integrated_gradients"]
print("sum of IG scores:", round(float(ig.scores.sum()), 4))
acc = float((model.predict(list(data.raws)).argmax(axis=1) == data.labels).mean())
print(f"the discriminator's accuracy on real + generated: {acc:.3f}")"""),
    ("md", """## The dashboard over real and generated digits

The grid shows the real digits, then the generated ones. Filter by true class "fake" to browse only the
generator's digits. Sort by loss to find the fakes that fool the discriminator most."""),
    ("code", """dash = ek.Dashboard(model, data)
dash"""),
    ("code", """assert dash.wait(60)
dash.page(5)                 # page 6 of 24 tiles: generated digits
print([(it["index"], it["label"], it["pred"]) for it in dash.b.grid.items[:4]])
print("ALL CELLS DONE")"""),
]
