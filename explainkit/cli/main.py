"""The ``explainkit`` command line. Argument parsing is cheap here; each command's work is imported late."""
from __future__ import annotations

import argparse
import importlib
import sys

from explainkit.errors import ExplainKitError

# command -> "module:function" run with the parsed args; returns an exit code
_RUNNERS = {
    "run": "explainkit.cli.models:cli_run",
    "train": "explainkit.cli.models:cli_train",
    "models": "explainkit.cli.models:cli_models",
    "explain": "explainkit.cli.explain:cli_explain",
    "plugins": "explainkit.cli.plugins:cli_plugins",
    "report": "explainkit.cli.report:cli_report",
    "evaluate": "explainkit.cli.report:cli_evaluate",
    "app": "explainkit.cli.app:cli_app",
}


def _model_arg(p):
    p.add_argument("--model", default="sample:mnist-cnn",
                   help="sample:NAME (see 'explainkit models list') or a checkpoint directory")


def _containment_args(p):
    p.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="explainer parameter, e.g. occlusion.window=4 (repeatable)")
    p.add_argument("--allow-failures", action="store_true",
                   help="exit 0 even if some entries failed (default: exit 3 after writing everything)")


def _generation_args(p, prompts: bool):
    """The language-model options; on a classifier, each one given is one clear error."""
    if prompts:
        p.add_argument("--prompts", default=None, metavar="FILE",
                       help="language models: a text file, one prompt per line (blank lines skipped)")
    p.add_argument("--units", default=None, help="language models: tokens | words (default) | sentences")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="language models: most answer tokens generated (default 16)")
    p.add_argument("--target-text", default=None, metavar="TEXT",
                   help="language models: explain this answer (forced) instead of the greedy one")
    p.add_argument("--contrast", default=None, metavar="TEXT",
                   help="language models: explain log p(answer) - log p(TEXT)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="explainkit", description="Interpret neural networks: explain, audit, report.")
    ap.add_argument("--version", action="version", version=f"explainkit {_version()}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="main job on the embedded defaults: load the sample models, evaluate, explain")
    p.add_argument("--quick", action="store_true", help="evaluate only (no report)")
    p.add_argument("--out", default="explainkit-demo", help="output directory for the demo report")

    p = sub.add_parser("train", help="train a model family and save a checkpoint")
    p.add_argument("family", help="family name (see 'explainkit models list')")
    p.add_argument("--data-dir", default=None, help="directory with the data (MNIST IDX files, SST-2 TSVs)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("models", help="list model families and sample models")
    p.add_argument("action", nargs="?", default="list", choices=["list"])

    p = sub.add_parser("explain", help="explain one sample and write PNG, HTML or JSON")
    _model_arg(p)
    p.add_argument("--data", default="sample", help="'sample' (shipped data) or a data file/directory")
    p.add_argument("--index", type=int, default=0, help="sample index in the data")
    p.add_argument("--text", default=None, help="explain this text instead of a data sample")
    p.add_argument("--prompt", default=None, help="language models: the prompt whose answer is explained")
    p.add_argument("--method", default=None,
                   help="explainer name or alias (default: integrated_gradients; feature_ablation for language "
                        "models)")
    p.add_argument("--target", type=int, default=None, help="class index (default: the prediction)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="explainer parameter")
    p.add_argument("--out", required=True, help="output file: .png, .html or .json")
    _generation_args(p, prompts=False)

    p = sub.add_parser("plugins", help="list, check or scaffold explainer plugins")
    ps = p.add_subparsers(dest="action", metavar="ACTION")
    ps.add_parser("list", help="all discovered explainers, ok or broken")
    c = ps.add_parser("check", help="run the conformance harness on an explainer")
    c.add_argument("name")
    c.add_argument("--quick", action="store_true", help="check on one sample model per modality")
    n = ps.add_parser("new", help="scaffold a plugin distribution")
    n.add_argument("name")
    n.add_argument("--dir", required=True)

    p = sub.add_parser("report", help="write a self-contained HTML audit report")
    _model_arg(p)
    p.add_argument("--data", default="sample")
    p.add_argument("--methods", default=None,
                   help="a,b:key=value (default: integrated_gradients; feature_ablation for language models)")
    p.add_argument("--select", default="all", help="all | misclassified | low-confidence | 1,5,9 | 0-99")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="report.html")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--executor", default="local", choices=["local", "dask"])
    p.add_argument("--address", default=None, help="dask scheduler address tcp://HOST:PORT")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--quality", action="store_true",
                   help="add trust metrics per method and sample (always on for language models)")
    p.add_argument("--audit", default="selection", choices=["selection", "data"],
                   help="dataset-level section over the selected samples (default) or every row of --data")
    p.add_argument("--slices", default=None, metavar="FILE",
                   help="named slices as JSON {name: spec} (the dashboard's audit panel saves this file)")
    p.add_argument("--dependence", default=None, metavar="FEATURE[,COLOUR_BY]",
                   help="tabular: the dependence plot's feature, optionally coloured by a second one")
    p.add_argument("--min-count", type=int, default=2, metavar="N",
                   help="text: a word's mean signed score is listed when it occurs at least N times")
    _containment_args(p)
    _generation_args(p, prompts=True)

    p = sub.add_parser("evaluate", help="trust metrics (deletion/insertion AUC, sanity, stability, agreement)")
    _model_arg(p)
    p.add_argument("--data", default="sample")
    p.add_argument("--methods", default=None,
                   help="a,b:key=value (default: integrated_gradients; feature_ablation for language models)")
    p.add_argument("--limit", type=int, default=20, help="most samples (or prompts) evaluated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file to write")
    _containment_args(p)
    _generation_args(p, prompts=True)
    p.add_argument("--n-random", type=int, default=8, metavar="N",
                   help="language models: random unit orders the deletion/insertion curves are compared with")

    p = sub.add_parser("app", help="serve the dashboard as a standalone app (Voila) on 127.0.0.1")
    _model_arg(p)
    p.add_argument("--compare-model", default=None, metavar="MODEL",
                   help="a second model (sample:NAME or a checkpoint directory) shown side by side with --model")
    p.add_argument("--data", default="sample")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--ip", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("--max-kernels", type=int, default=4, metavar="N",
                   help="most kernels (one per open page, ~300 MB each) at once; beyond it a page is refused "
                        "(default 4)")
    p.add_argument("--cull-idle-timeout", type=int, default=600, metavar="SECONDS",
                   help="shut down a kernel whose page is closed after this many idle seconds (default 600; 0: "
                        "never)")
    return ap


def _version() -> str:
    from explainkit import __version__
    return __version__


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help()
        return 0
    if args.command == "plugins" and not getattr(args, "action", None):
        args.action = "list"
    mod, fn = _RUNNERS[args.command].split(":")
    try:
        return int(getattr(importlib.import_module(mod), fn)(args) or 0)
    except ExplainKitError as e:
        print(f"explainkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("explainkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
