"""``explainkit run`` (the main job on the embedded defaults), ``train`` and ``models list``."""
from __future__ import annotations

from pathlib import Path

from explainkit.cli.tables import table
from explainkit.models import families
from explainkit.models.zoo import (
    _loadable_sample_names,
    _sample_names,
    evaluate_samples,
    sample_models,
    sample_models_dir,
    train,
)

__all__ = ["cli_run", "cli_train", "cli_models"]


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


def write_run_report(args, rows: list[dict]) -> None:
    """After evaluation, ``explainkit run`` explains a few held-out samples of every sample model with its
    applicable built-in explainers and writes one self-contained HTML report per model to ``args.out``."""
    from explainkit.plugins.api import explainers
    from explainkit.reports.report import report

    out = Path(args.out)
    written = []
    for r in rows:
        model, data = r["model"], r["data"]
        names = {s.name for s in explainers(model)}
        methods = [m for m in _DEMO_METHODS if m in names][:3]
        rep = report(model, data, methods=methods, select="all", limit=8, seed=0,
                     out=out / f"{r['name']}.html", progress=False)
        written.append((r["name"], ",".join(methods), str(rep.path)))
    print(table([list(w) for w in written], ["model", "methods", "report"]))
    print("open the reports in a browser: they are self-contained (no network). Dashboard: explainkit app")


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
    skipped = sorted(set(_sample_names()) - set(_loadable_sample_names()))
    if skipped:
        print(f"skipped (optional dependencies missing, pip install 'explainkit[minilm]'): {', '.join(skipped)}")
    if not getattr(args, "quick", False):
        write_run_report(args, rows)
    return 0 if all(t[5] in ("ok", "below floor (known)") for t in results) else 1
