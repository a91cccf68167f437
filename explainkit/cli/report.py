"""``explainkit report`` and ``explainkit evaluate``."""
from __future__ import annotations

import json
from pathlib import Path

from explainkit.atomic import atomic_write
from explainkit.cli.specs import parse_methods, parse_selection, resolve_data, resolve_model

__all__ = ["cli_report", "cli_evaluate"]


def cli_report(args) -> int:
    """`explainkit report`: write the HTML report, the .npz attributions and the JSON index."""
    from explainkit.reports.report import report

    model = resolve_model(args.model)
    data = resolve_data(args.data, model)
    rep = report(model, data, methods=parse_methods(args.methods), select=parse_selection(args.select),
                 limit=args.limit,
                 seed=args.seed, out=args.out, workers=args.workers, executor=args.executor, address=args.address,
                 cache_dir=args.cache_dir, quality=args.quality)
    c, t = rep.index["counts"], rep.index["timings"]
    print(f"{rep!r}")
    print(f"explanations: {c['explanations']} ({c['computed']} computed, {c['cached']} from cache"
          + (f", {c['corrupt_recomputed']} corrupt entries recomputed" if c["corrupt_recomputed"] else "")
          + f") in {t['total_s']:.1f}s")
    for kind, name in rep.index["files"].items():
        print(f"wrote {kind}: {rep.path.parent / name}")
    return 0


def cli_evaluate(args) -> int:
    """``explainkit evaluate``: print the per-method table and optionally write JSON."""
    from explainkit.trust.quality import evaluate

    model = resolve_model(args.model)
    data = resolve_data(args.data, model)
    methods = [name for name, _ in parse_methods(args.methods)]
    ev = evaluate(model, data, methods, limit=args.limit, seed=args.seed)
    print(f"{model.name}: {ev.n_samples} samples, seed {args.seed}")
    print(ev.table())
    if args.out:
        atomic_write(Path(args.out), json.dumps(ev.to_dict()))
        print(f"wrote {args.out}")
    return 0
