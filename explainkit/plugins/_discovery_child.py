"""The subprocess side of isolated discovery (``explainkit.plugins.discovery``): runs only in the child."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["main", "load"]


def main(eps_json: str, out_path: str) -> None:
    """Runs in the subprocess: load each entry point contained, write {name: {spec|error}} after each."""
    from types import SimpleNamespace

    from explainkit.plugins.registry import load_declaration

    results = {}
    for name, value in json.loads(eps_json):
        ep = SimpleNamespace(name=name, value=value, load=lambda v=value: load(v))
        spec, reason = load_declaration(ep)
        results[name] = {"spec": spec.to_json()} if spec is not None else {"error": reason}
        Path(out_path).write_text(json.dumps(results))


def load(value: str):
    import importlib

    mod, _, attr = value.partition(":")
    obj = importlib.import_module(mod.strip())
    for a in attr.strip().split(".") if attr.strip() else ():
        obj = getattr(obj, a)
    return obj
