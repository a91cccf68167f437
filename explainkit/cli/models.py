"""``explainkit run`` (the main job on the embedded defaults), ``train`` and ``models list``."""
from __future__ import annotations

from pathlib import Path

from explainkit.cli.tables import table
from explainkit.models import families
from explainkit.models.zoo import evaluate_samples, sample_models, sample_models_dir, train

__all__ = ["cli_run", "cli_train", "cli_models", "write_run_report", "left_out_lines"]


def cli_train(args) -> int:
    """``explainkit train FAMILY --out DIR``."""
    train(args.family, data_dir=args.data_dir, out=args.out, epochs=args.epochs, seed=args.seed)
    print(f"saved checkpoint to {args.out}")
    return 0


def cli_models(args) -> int:
    """``explainkit models list``: the families and the sample models with their metrics."""
    rows = [[f.name, f.modality.value, f.task.value, f"{f.metric} >= {f.floor}", f.description]
            for f in families.all_families() if f.available()]
    print(table(rows, ["family", "modality", "task", "floor", "description"]))
    print()
    rows = [[s["name"], s["family"], ", ".join(f"{k}={v}" for k, v in s["metrics"].items()), s["path"]]
            for s in sample_models()]
    print(table(rows, ["sample model", "family", "held-out metrics (at training)", "path"]) if rows
          else f"no sample models in {sample_models_dir()}")
    return 0


_DEMO_METHODS = ("integrated_gradients", "gradcam", "occlusion", "attention_rollout", "kernel_shap")
_DEMO_LIMIT = 8
# photo models (inputs over 64x64, e.g. ImageNet at 224x224): at their defaults IG runs 50 gradient passes
# and kernel_shap ~500 forwards per photo (~30 s each for EfficientNet-Lite0 on a 2-core machine), so the
# demo shows Grad-CAM (one pass) and a coarse occlusion (32-px windows: 49 forwards) on three photos.
_PHOTO_METHODS = (("gradcam", {}), ("occlusion", {"window": 32, "stride": 32}))
_PHOTO_LIMIT = 3


def _is_photo_model(model) -> bool:
    from explainkit.data.photos import is_large
    from explainkit.enums import Modality

    shape = getattr(model, "input_shape", None)
    return model.modality is Modality.IMAGE and bool(shape) and len(shape) >= 2 and is_large(*shape[-2:])


def _demo_methods(model) -> tuple[list, int]:
    """The demo's (methods, limit) for a model: a short, cheap set for photo models."""
    from explainkit.plugins.api import explainers

    names = {s.name for s in explainers(model)}
    if _is_photo_model(model):
        return [(m, p) for m, p in _PHOTO_METHODS if m in names], _PHOTO_LIMIT
    return [m for m in _DEMO_METHODS if m in names][:3], _DEMO_LIMIT


def _label(method) -> str:
    name, params = method if isinstance(method, tuple) else (method, {})
    return name + "".join(f":{k}={v}" for k, v in params.items())


def write_run_report(args, rows: list[dict]) -> None:
    """After evaluation, ``explainkit run`` explains a few held-out samples of every sample model with its
    applicable built-in explainers and writes one self-contained HTML report per model to ``args.out``."""
    import time

    from explainkit.reports.report import report

    out = Path(args.out)
    written = []
    for r in rows:
        model, data = r["model"], r["data"]
        methods, limit = _demo_methods(model)
        start = time.perf_counter()
        rep = report(model, data, methods=methods, select="all", limit=limit, seed=0,
                     out=out / f"{r['name']}.html", progress=False)
        written.append([r["name"], min(limit, len(data)), ",".join(_label(m) for m in methods), str(rep.path),
                        f"{time.perf_counter() - start:.1f}s"])
        print(f"  report {len(written)}/{len(rows)}: {r['name']} ({written[-1][-1]})", flush=True)
    print(table(written, ["model", "n", "methods", "report", "time"]))
    print("open the reports in a browser: they are self-contained (no network). Dashboard: explainkit app")


def left_out_lines() -> list[str]:
    """Why each shipped sample that ``run`` does not evaluate is left out: a language model, or an optional
    family whose packages are missing (with the install command)."""
    from explainkit.models import zoo
    from explainkit.models.checkpoint import read_config

    lines = []
    for name in sorted(set(zoo._sample_names()) - set(zoo._loadable_sample_names())):
        cfg = read_config(zoo.sample_models_dir() / name)
        fam = families._FAMILIES.get(cfg.get("family"))
        if fam is not None and not fam.available():
            lines.append(f"skipped: {name} (optional dependencies missing: {fam.install.rstrip('.')})")
        elif cfg.get("loader") == "causal_lm":
            lines.append(f"not evaluated: {name} is a language model (no held-out classifier metric applies); "
                         f"explain one answer with: explainkit explain --model sample:{name} --prompt "
                         "'The capital of France is' --out answer.html")
    return lines


def cli_run(args) -> int:
    """``explainkit run``: evaluate every sample model on the shipped held-out data, then the report hook."""
    rows = evaluate_samples()
    if not rows:
        print(f"no sample models in {sample_models_dir()}")
        return 1
    results, notes = [], []
    for r in rows:
        m = r["metric"]
        val = r["metrics"].get(m)
        ok = "ok" if val is not None and r["floor"] is not None and val >= r["floor"] else "BELOW FLOOR"
        known = getattr(families._FAMILIES.get(r["model"].config.get("family")), "below_floor", None)
        if ok != "ok" and known:
            ok, notes = "below floor (known)", notes + [f"{r['name']}: {known}"]
        results.append([r["name"], r["data"].name, r["metrics"]["n"], f"{m}={val:.4f}", f">= {r['floor']}", ok,
                      f"{r['seconds']:.1f}s"])
    print(table(results, ["model", "held-out data", "n", "metric", "floor", "", "time"]))
    for note in notes:
        print(f"known: {note}")
    for line in left_out_lines():
        print(line)
    if not getattr(args, "quick", False):
        write_run_report(args, rows)
    return 0 if all(t[5] in ("ok", "below floor (known)") for t in results) else 1
