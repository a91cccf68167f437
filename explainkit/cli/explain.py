"""``explainkit explain``: one sample (or a language model's answer to one prompt), one method, written as
PNG, HTML or JSON."""
from __future__ import annotations

import json
from pathlib import Path

from explainkit.cli.specs import default_methods, generation_options, parse_params, resolve_data, resolve_model
from explainkit.errors import DataError, InputError, ParameterError

__all__ = ["cli_explain"]

_SUFFIXES = (".png", ".html", ".json")


def cli_explain(args) -> int:
    from explainkit.atomic import atomic_write
    from explainkit.plugins.api import explain
    from explainkit.plugins.registry import registry

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in _SUFFIXES:             # before any work: the model may take seconds to load
        raise DataError(f"Unsupported output type {suffix!r}.", "use an .png, .html or .json file name.")
    model = resolve_model(args.model)
    gen = generation_options(args, model)
    params = parse_params(args.param)
    entry = registry().get(default_methods(model, args.method), model)     # a name or an alias
    params = entry.spec.validate_params(params, model=model)       # strings from the CLI are coerced here
    if getattr(model, "generates", False):
        if args.prompt is None:
            raise ParameterError(f"{model.name!r} is a language model: explain needs the prompt.",
                                 'pass --prompt "What is the capital of France?" (the answer is explained).')
        exp = explain(model, args.prompt, entry.name, target=gen.pop("target", None), seed=args.seed,
                      **gen, **params)
    else:
        if args.text is not None:
            x = args.text
        else:
            data = resolve_data(args.data, model)
            if not 0 <= args.index < len(data):
                raise InputError(f"Index {args.index} is out of range for {len(data)} samples.",
                                 f"pass --index between 0 and {len(data) - 1}.")
            raw, label = data[args.index]
            x = model.prepare(raw, label=label, index=args.index)
        exp = explain(model, x, entry.name, target=args.target, seed=args.seed, **params)
    if suffix == ".png":
        payload = exp.to_png()
    elif suffix == ".html":
        from explainkit.views.render import html_page
        payload = html_page(exp.to_html(), title=f"{exp.method} — {model.name}")
    else:
        payload = json.dumps(exp.to_dict())
    atomic_write(out, payload)
    print(f"{exp!r}")
    if getattr(model, "generates", False):
        print(f"answer ({exp.target_mode}): {exp.answer}")
        print("top units for the whole answer:")
    for unit, score in exp.top_k(5):
        print(f"  {unit:>20}  {score:+.5f}")
    print(f"wrote {out}")
    return 0
