"""``explainkit app``: the dashboard as a standalone Voila app on 127.0.0.1."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from explainkit.cli.specs import SAMPLE_PREFIX, check_specs

__all__ = ["cli_app"]


def cli_app(args) -> int:
    """``explainkit app``: a non-default --ip can only come from the command line, so it counts as explicit."""
    from explainkit.views.app import serve

    model, data = check_specs(args.model, args.data)
    compare = None
    if getattr(args, "compare_model", None):
        compare, _ = check_specs(args.compare_model, data)
        _check_pair(model, compare)            # before the server starts: the same error the app would show
    return serve(model, data, ip=args.ip, port=args.port, open_browser=not args.no_browser,
                 allow_remote=True, max_kernels=args.max_kernels, cull_idle_timeout=args.cull_idle_timeout,
                 compare=compare)


def _declared(spec: str):
    """What a model's config.json declares (no torch import): enough to check a pair of models."""
    from explainkit.enums import Modality, Task
    from explainkit.models import zoo

    if spec.startswith(SAMPLE_PREFIX):
        spec = next(r["path"] for r in zoo.sample_models() if r["name"] == spec[len(SAMPLE_PREFIX):])
    cfg = json.loads((Path(spec) / "config.json").read_text(encoding="utf-8"))
    return SimpleNamespace(name=cfg.get("name", Path(spec).name), modality=Modality(cfg["modality"]),
                           task=Task(cfg["task"]), classes=cfg.get("classes"), feature_names=cfg.get("feature_names"),
                           generates=cfg.get("loader") == "causal_lm")


def _check_pair(model: str, compare: str) -> None:
    from explainkit.views.pair import check_pair
    try:
        pair = [_declared(model), _declared(compare)]
    except (OSError, KeyError, ValueError):
        return                                 # an unusual config: the app's kernel reports what is wrong
    check_pair(pair)
