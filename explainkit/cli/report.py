"""``explainkit report`` and ``explainkit evaluate``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from explainkit.atomic import atomic_write
from explainkit.cli.specs import (
    default_methods,
    generation_options,
    parse_method_params,
    parse_methods,
    parse_selection,
    read_prompts,
    resolve_data,
    resolve_model,
)
from explainkit.errors import DataError

__all__ = ["cli_report", "cli_evaluate", "FAILURES_RC"]

FAILURES_RC = 3       # everything was written, but some entries failed (0 with --allow-failures)


def _failures_rc(failures: dict, allow: bool) -> int:
    n = sum(len(f) for f in failures.values())
    if not n:
        return 0
    for method, f in failures.items():
        first = next(iter(f.items()))
        print(f"explainkit: {method} failed on {len(f)} sample(s), e.g. #{first[0]}: {first[1]}", file=sys.stderr)
    if allow:
        return 0
    print(f"explainkit: {n} entries failed (exit {FAILURES_RC}); re-run to retry only those, or pass "
          "--allow-failures to exit 0.", file=sys.stderr)
    return FAILURES_RC


def _audit_options(args) -> dict:
    """--audit, --slices FILE (JSON {name: spec}), --dependence FEATURE[,COLOUR_BY], --min-count."""
    slices = None
    if getattr(args, "slices", None):
        try:
            slices = json.loads(Path(args.slices).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"No slices file at {args.slices}.", "check the path (the dashboard's "
                            "dash.audit.save('slices.json') writes one).") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{args.slices} is not a JSON file of slices ({type(e).__name__}: {e}).",
                            'write {"name": {"class": "..."}, ...}, e.g. with dash.audit.save().') from None
    dep = getattr(args, "dependence", None)
    if dep:
        parts = [p.strip() for p in dep.split(",")]
        dep = parts[0] if len(parts) == 1 else tuple(parts)
    return {"audit": getattr(args, "audit", "selection"), "slices": slices, "dependence": dep or None,
            "min_count": getattr(args, "min_count", 2)}


def _print_written(rep) -> None:
    for kind, name in rep.index["files"].items():
        print(f"wrote {kind}: {rep.path.parent / name}")


def cli_report(args) -> int:
    """`explainkit report`: write the HTML report, the .npz attributions and the JSON index."""
    from explainkit.reports.report import report
    from explainkit.reports.result import check_writable

    check_writable(args.out)                 # before any work: an unwritable --out is one clear error
    model = resolve_model(args.model)
    gen = generation_options(args, model)
    methods = parse_method_params(getattr(args, "param", []), parse_methods(default_methods(model, args.methods)),
                                  model)
    if getattr(model, "generates", False):
        return _generation_report(args, model, methods, gen)
    data = resolve_data(args.data, model)
    select = parse_selection(args.select, n=len(data))
    rep = report(model, data, methods=methods, select=select, limit=args.limit,
                 seed=args.seed, out=args.out, workers=args.workers, executor=args.executor, address=args.address,
                 cache_dir=args.cache_dir, quality=args.quality, **_audit_options(args))
    c, t = rep.index["counts"], rep.index["timings"]
    print(f"{rep!r}")
    print(f"explanations: {c['explanations']} ({c['computed']} computed, {c['cached']} from cache"
          + (f", {c['corrupt_recomputed']} corrupt entries recomputed" if c["corrupt_recomputed"] else "")
          + (f", {c['failed']} failed" if c.get("failed") else "")
          + f") in {t['total_s']:.1f}s")
    _print_written(rep)
    return _failures_rc(rep.index.get("failures") or {}, getattr(args, "allow_failures", False))


def _generation_report(args, model, methods, gen) -> int:
    """`explainkit report` on a language model: one section per prompt of --prompts FILE."""
    from explainkit.reports.report import report

    prompts = read_prompts(args.prompts)
    rep = report(model, prompts=prompts, methods=methods, seed=args.seed, out=args.out, **gen)
    print(f"{rep!r}")
    for p in rep.index["prompts"]:
        print(f"  {p['prompt'][:60]!r} -> {p['answer'][:60]!r}")
    print(f"explanations: {rep.index['counts']['explanations']} in {rep.index['timings']['total_s']:.1f}s")
    _print_written(rep)
    return 0


def _generation_evaluate(args, model, runs, gen) -> int:
    """`explainkit evaluate` on a language model: deletion/insertion AUC vs random and agreement, per method."""
    from tqdm.auto import tqdm

    from explainkit.trust.generation import evaluate

    prompts = read_prompts(args.prompts)[: args.limit if args.limit and args.limit > 0 else None]
    with tqdm(total=len(prompts) * len(runs), unit="expl", desc="evaluating", leave=False) as bar:
        ev = evaluate(model, prompts, [name for name, _ in runs], seed=args.seed, n_random=args.n_random,
                      params={name: p for name, p in runs}, on_step=lambda *_: bar.update(1), **gen)
    print(f"{model.name}: {len(prompts)} prompt(s), seed {args.seed}, {args.n_random} random orders")
    print("AUC: mean answer log-probability (nats) along the curve; deletion lower than random and insertion "
          "higher than random is better.")
    print(ev.table())
    for prompt, answer, a in zip(ev.prompts, ev.answers, ev.agreements):
        rho = "" if a is None else "  agreement ρ " + ", ".join(
            f"{a.labels[i]}~{a.labels[j]} {a.matrix[i, j]:+.2f}" for i in range(len(a.labels))
            for j in range(i + 1, len(a.labels)))
        print(f"  {prompt[:50]!r} -> {answer[:40]!r}{rho}")
    if args.out:
        atomic_write(Path(args.out), json.dumps(ev.to_dict()))
        print(f"wrote {args.out}")
    return 0


def cli_evaluate(args) -> int:
    """``explainkit evaluate``: print the per-method table and optionally write JSON."""
    from explainkit.reports.result import check_writable
    from explainkit.trust.quality import evaluate

    if args.out:
        check_writable(args.out, suffix=None)
    model = resolve_model(args.model)
    gen = generation_options(args, model)
    runs = parse_method_params(getattr(args, "param", []), parse_methods(default_methods(model, args.methods)),
                               model)
    if getattr(model, "generates", False):
        return _generation_evaluate(args, model, runs, gen)
    data = resolve_data(args.data, model)
    ev = evaluate(model, data, [name for name, _ in runs], limit=args.limit, seed=args.seed,
                  params={name: p for name, p in runs})
    print(f"{model.name}: {ev.n_samples} samples, seed {args.seed}")
    print(ev.table())
    if args.out:
        atomic_write(Path(args.out), json.dumps({**ev.to_dict(), "failures": ev.failures}))
        print(f"wrote {args.out}")
    return _failures_rc(ev.failures, getattr(args, "allow_failures", False))
