"""The jinja2 environment of every static HTML view (autoescaped; invisible characters made visible).

Split from :mod:`explainkit.views.render`, which re-exports :func:`template` and :func:`visible_markup`.
"""
from __future__ import annotations

from pathlib import Path

from explainkit.errors import MissingDependencyError
from explainkit.visible import visible

__all__ = ["TEMPLATES", "template", "visible_markup"]

TEMPLATES = Path(__file__).resolve().parent / "templates"

_ENVS: dict = {}


def _env(extra: tuple = ()):
    """The jinja2 environment over ``extra`` folders, then this layer's ``views/templates`` (autoescaped)."""
    env = _ENVS.get(extra)
    if env is None:
        try:
            import jinja2
        except ImportError:
            raise MissingDependencyError("HTML rendering needs jinja2.", "pip install jinja2") from None
        env = _ENVS[extra] = jinja2.Environment(
            loader=jinja2.FileSystemLoader([*extra, str(TEMPLATES)]),
            autoescape=jinja2.select_autoescape(["html"], default_for_string=True, default=True),
            trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined, finalize=visible_markup)
    return env


def visible_markup(value):
    """Jinja ``finalize``: a plain string is shown with its invisible characters made visible
    (:mod:`explainkit.visible`); Markup that explainkit built itself passes unchanged."""
    from markupsafe import Markup

    return value if isinstance(value, Markup) else visible(value)


def template(name: str, search=()):
    """A template by name from the ``search`` folders (a higher layer's own templates), then
    ``explainkit/views/templates`` (the shared head, style and explanation fragment); autoescaped."""
    return _env(tuple(str(s) for s in search)).get_template(name)
