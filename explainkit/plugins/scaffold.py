"""``explainkit plugins new NAME --dir DIR``: scaffold an installable explainer-plugin distribution.

The result is a working plugin (gradient × input, with a test that runs the conformance harness);
``pip install --no-deps --no-build-isolation -e DIR`` makes it appear in ``explainkit plugins list``.
"""
from __future__ import annotations

import re
from pathlib import Path
from string import Template

from explainkit.errors import DataError, PluginError

__all__ = ["scaffold", "names_for"]

TEMPLATE_DIR = Path(__file__).parent / "plugin_template"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# template file -> path in the new distribution (``{package}`` and ``{name}`` are filled in)
_FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "{package}/__init__.py",
    "declarations.py.tmpl": "{package}/declarations.py",
    "explainer.py.tmpl": "{package}/explainer.py",
    "test_plugin.py.tmpl": "tests/test_{name}.py",
}


def names_for(name: str) -> dict:
    """The names derived from an explainer name: distribution, package, class and title."""
    if not isinstance(name, str) or not _NAME.match(name):
        suggestion = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")
        if suggestion and not suggestion[0].isalpha():
            suggestion = "x_" + suggestion
        raise PluginError(f"Plugin name {name!r} is not a snake_case explainer name.",
                          f"use lower-case letters, digits and underscores, starting with a letter "
                          f"(for example {suggestion or 'my_explainer'!r}).")
    from explainkit import __version__

    words = name.split("_")
    return {"name": name, "dist": "explainkit-" + name.replace("_", "-"), "package": f"explainkit_{name}",
            "class_name": "".join(w.capitalize() for w in words if w),
            "title": " ".join(w.capitalize() for w in words if w), "explainkit_version": __version__}


def scaffold(name: str, directory, *, check_clash: bool = True) -> list[Path]:
    """Write the plugin distribution for explainer ``name`` into ``directory``; return the files."""
    values = names_for(name)
    if check_clash:
        from explainkit.plugins.registry import registry

        other = registry().entries.get(name)
        if other is not None:
            raise PluginError(f"An explainer called {name!r} already exists (from {other.distribution}).",
                              "choose another name: two plugins with one name clash and neither is shadowed.")
    root = Path(directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} already exists and is not an empty directory.",
                        "pass --dir with a new or empty directory; scaffold never overwrites files.")
    written = []
    for template, target in _FILES.items():
        text = Template((TEMPLATE_DIR / template).read_text(encoding="utf-8")).substitute(values)
        path = root / target.format(**values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
