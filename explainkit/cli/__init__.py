"""The ``explainkit`` console script: the only layer that parses argv, resolves ``sample:NAME`` and
data-path specs, and prints tables. Each command's work is imported late."""
from explainkit.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
