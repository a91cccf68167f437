"""The plugin registry: entry-point discovery, the entries (ok or broken), and loading an implementation.

The declaration types (``ExplainerSpec``, ``Param``, ``Explainer``) live in :mod:`explainkit.plugins.spec`
and are re-exported here.

A plugin distribution registers each explainer under the entry-point group ``explainkit.explainers``;
the entry point names an ``ExplainerSpec`` object in a module that is cheap to import. The spec's
``impl`` ("package.module:Class") is imported only when the explainer runs. The built-in explainers
are found exactly the same way.
"""
from __future__ import annotations

import importlib
import os
import traceback
from dataclasses import dataclass
from typing import Any

from explainkit.errors import ExplainKitError, PluginError, UnknownNameError
from explainkit.plugins.spec import (  # noqa: F401
    _TYPES,
    ENV_DEBUG,
    RESERVED_PARAMS,
    STRIKES,
    Explainer,
    ExplainerSpec,
    Param,
    debug,
    deferred_validation,
)

__all__ = ["Param", "ExplainerSpec", "Explainer", "Registry", "registry", "ENTRY_POINT_GROUP",
           "BUILTIN_DISTRIBUTION"]

ENTRY_POINT_GROUP = "explainkit.explainers"
BUILTIN_DISTRIBUTION = "explainkit-builtins"
ENV_NO_AUTOLOAD = "EXPLAINKIT_DISABLE_PLUGIN_AUTOLOAD"   # "1": load only the built-in distribution
ENV_BLOCK = "EXPLAINKIT_BLOCK_PLUGINS"                    # comma-separated explainer or distribution names


@dataclass
class Entry:
    """A discovered explainer: its spec (if it loaded), origin, and status."""

    name: str
    spec: ExplainerSpec | None
    distribution: str
    version: str
    status: str = "ok"           # "ok" | "broken"
    reason: str = ""
    _impl: Any = None
    failures: int = 0            # consecutive runs that raised on valid input

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Registry:
    """Explainers by name, discovered from entry points (plus any registered directly)."""

    def __init__(self, autoload: bool = True, entry_points=None):
        self.entries: dict[str, Entry] = {}
        self.problems: list[Entry] = []      # broken entries that have no usable name slot
        if autoload:
            self.discover(entry_points)

    # -- discovery --------------------------------------------------------------------------------
    def discover(self, entry_points=None) -> None:
        """Read every declaration in the entry-point group; never import an implementation.

        Third-party declarations are imported in a short-lived subprocess (with a timeout) and their specs
        cached on disk (``explainkit.plugins.discovery``), so a declaration that exits, hangs or raises
        cannot take the host down. The built-in distribution is imported in-process, contained.
        Entry points passed in explicitly (tests) are loaded in-process, contained the same way.
        """
        from importlib.metadata import entry_points as _eps

        explicit = entry_points is not None
        eps = list(entry_points) if explicit else list(_eps(group=ENTRY_POINT_GROUP))
        third_party_off = os.environ.get(ENV_NO_AUTOLOAD, "").strip() not in ("", "0", "false")
        blocked = {b.strip() for b in os.environ.get(ENV_BLOCK, "").split(",") if b.strip()}
        # built-ins first: on a name clash the built-in keeps the name and the other is reported
        eps.sort(key=lambda ep: (_dist_name(ep) != BUILTIN_DISTRIBUTION, _dist_name(ep), ep.name))
        eps = [ep for ep in eps if not (third_party_off and _dist_name(ep) != BUILTIN_DISTRIBUTION)
               and ep.name not in blocked and _dist_name(ep) not in blocked]
        isolated = {}
        if not explicit:
            from explainkit.plugins import discovery

            by_dist: dict = {}
            for ep in eps:
                if _dist_name(ep) != BUILTIN_DISTRIBUTION:
                    by_dist.setdefault((_dist_name(ep), _dist_version(ep)), []).append(ep)
            for (dist, version), group in by_dist.items():
                isolated.update({(dist, k): v for k, v in discovery.read_specs(dist, version, group).items()})
        for ep in eps:
            dist, version = _dist_name(ep), _dist_version(ep)
            if (dist, ep.name) in isolated:
                result = isolated[(dist, ep.name)]
                if "error" in result:
                    self._add_broken(ep.name, dist, version, result["error"])
                    continue
                try:
                    spec = ExplainerSpec.from_json(result["spec"])
                except Exception as e:  # noqa: BLE001 - a stale or odd cache entry is a broken plugin
                    self._add_broken(ep.name, dist, version, _reason(e))
                    continue
            else:
                spec, reason = load_declaration(ep)
                if spec is None:
                    self._add_broken(ep.name, dist, version, reason)
                    continue
            self.register(spec, distribution=dist, version=version)

    def register(self, spec: ExplainerSpec, distribution: str = "local", version: str = "0") -> Entry:
        """Register one declaration (also used by tests and notebooks for in-process plugins)."""
        import dataclasses

        spec = dataclasses.replace(spec, distribution=distribution, version=version)
        if spec.name in self.entries:
            other = self.entries[spec.name]
            reason = (f"name clash: {spec.name!r} is also provided by {other.distribution} {other.version}; "
                      f"this one from {distribution} is not loaded. Fix: rename one of them, or block one with "
                      f"{ENV_BLOCK}.")
            entry = Entry(spec.name, spec, distribution, version, "broken", reason)
            self.problems.append(entry)
            if other.ok:
                other.reason = f"name clash: also declared by {distribution} {version} (ignored)"
            return entry
        entry = Entry(spec.name, spec, distribution, version)
        self.entries[spec.name] = entry
        return entry

    def _add_broken(self, name, dist, version, reason):
        entry = Entry(name, None, dist, version, "broken", reason)
        if name in self.entries:
            self.problems.append(entry)
        else:
            self.entries[name] = entry

    # -- queries ------------------------------------------------------------------------------------
    def all(self) -> list[Entry]:
        return sorted(list(self.entries.values()) + self.problems, key=lambda e: (e.name, e.distribution))

    def specs(self) -> list[ExplainerSpec]:
        return [e.spec for e in self.entries.values() if e.ok]

    def get(self, name: str, model=None) -> Entry:
        """The entry for ``name``: an explainer's own name, or one of its ``aliases``.

        The exact name wins when its explainer applies to ``model`` (or no model is given); otherwise the
        one applicable explainer that declares ``name`` as an alias. Two such explainers are an ambiguity
        (one error naming both). Without a model, an alias that no explainer owns as its name resolves
        when exactly one explainer declares it."""
        entry = self.entries.get(name)
        exact_fits = entry is not None and entry.spec is not None and (model is None or entry.spec.applies_to(model))
        if not exact_fits:
            hits = [e for e in self.entries.values() if e.spec is not None and name in e.spec.aliases
                    and (model is None or e.spec.applies_to(model))]
            if model is None and entry is not None:
                hits = []
            hits = [e for e in hits if e.ok] or hits          # a working explainer before a broken one
            if len(hits) > 1:
                names = sorted(e.name for e in hits)
                where = f"for {getattr(model, 'name', 'this model')!r}" if model is not None else "without a model"
                raise UnknownNameError(f"Explainer name {name!r} is ambiguous {where}: it is an alias of "
                                       f"{', '.join(names)}.", f"use the explainer's own name: {' or '.join(names)}"
                                       + ("" if model is not None else ", or pass the model") + ".")
            if hits:
                entry = hits[0]
        if entry is None:
            specs = self.applicable(model) if model is not None else self.specs()
            raise UnknownNameError(f"Unknown explainer {name!r}.",
                                   f"use one of: {', '.join(listing(specs))}" + (" (those applicable to this model)."
                                                                                 if model is not None else "."))
        if not entry.ok:
            raise PluginError(f"Explainer {entry.name!r} from {entry.distribution} is broken: {entry.reason}",
                              "fix or reinstall the plugin, or choose another explainer.")
        return entry

    def resolve(self, name: str, model=None) -> str:
        """The canonical name that ``name`` (a name or an alias) stands for with this model."""
        return self.get(name, model).name

    def applicable(self, model) -> list[ExplainerSpec]:
        """The explainers whose declarations fit this model (no plugin code runs)."""
        return sorted((s for s in self.specs() if s.applies_to(model)), key=lambda s: s.name)

    def implementation(self, name: str) -> Explainer:
        """Import and instantiate the implementation on first use; a failure marks it broken."""
        entry = self.get(name)
        if entry._impl is None:
            try:
                mod, _, attr = entry.spec.impl.partition(":")
                klass = getattr(importlib.import_module(mod), attr)
                impl = klass()
                if not callable(getattr(impl, "explain", None)):
                    raise PluginError(f"{entry.spec.impl} has no explain() method.", "subclass explainkit.Explainer.")
                impl.spec = entry.spec
            except ExplainKitError as e:
                if isinstance(e, PluginError):
                    self.mark_broken(name, _reason(e))
                raise
            except KeyboardInterrupt:
                raise
            except (Exception, SystemExit) as e:  # noqa: BLE001
                self.mark_broken(name, _reason(e))
                err = PluginError(f"Explainer {name!r} ({entry.distribution}) failed to import: {_reason(e)}",
                                  "fix the plugin's installation; other explainers are unaffected.")
                if debug():
                    raise err from e
                raise err from None
            entry._impl = impl
        return entry._impl

    def strike(self, name: str, reason: str) -> bool:
        """Count a run that raised on valid input; the STRIKES-th in a row marks it broken (True then).
        One raise may be an input the plugin cannot handle; raising again and again is the plugin's fault."""
        entry = self.entries.get(name)
        if entry is None:
            return False
        entry.failures += 1
        entry.reason = reason
        if entry.failures >= STRIKES:
            self.mark_broken(name, f"{reason} ({entry.failures} runs in a row)")
            return True
        return False

    def succeeded(self, name: str) -> None:
        entry = self.entries.get(name)
        if entry is not None and entry.ok:
            entry.failures, entry.reason = 0, ""

    def mark_broken(self, name: str, reason: str) -> None:
        entry = self.entries.get(name)
        if entry is not None:
            entry.status, entry.reason, entry._impl = "broken", reason, None

    def __repr__(self) -> str:
        ok = sum(e.ok for e in self.entries.values())
        return f"<Registry explainers={ok} broken={len(self.all()) - ok}>"


def listing(specs) -> list[str]:
    """'name' or 'name (alias: a, b)' per spec, sorted: how errors and listings show the names to use."""
    return [s.name + (f" (alias: {', '.join(s.aliases)})" if s.aliases else "")
            for s in sorted(specs, key=lambda s: s.name)]


_default: Registry | None = None


def registry(refresh: bool = False) -> Registry:
    """The process-wide registry, discovered on first use."""
    global _default
    if _default is None or refresh:
        _default = Registry()
    return _default


def load_declaration(ep) -> "tuple[ExplainerSpec | None, str]":
    """Load one entry point's spec in this process, contained: (spec, "") or (None, reason)."""
    try:
        with deferred_validation():
            spec = ep.load()
        if not isinstance(spec, ExplainerSpec):
            raise PluginError(f"entry point {ep.value!r} is a {type(spec).__name__}, not an ExplainerSpec.",
                              "point the entry point at an ExplainerSpec object.")
        if spec.problem is not None:
            raise spec.problem
        if spec.name != ep.name:
            raise PluginError(f"entry point name {ep.name!r} differs from the spec name {spec.name!r}.",
                              "use the explainer's name as the entry-point name.")
    except KeyboardInterrupt:
        raise
    except SystemExit as e:
        return None, (f"the declaration module called sys.exit({e.code!r}) while being imported "
                      f"{_where(e)}. Fix: a declaration module must only define ExplainerSpec objects.")
    except BaseException as e:  # noqa: BLE001 - any failure of a plugin is contained
        return None, _reason(e)
    return spec, ""


def _dist_name(ep) -> str:
    d = getattr(ep, "dist", None)
    return getattr(d, "name", None) or "unknown"


def _dist_version(ep) -> str:
    d = getattr(ep, "dist", None)
    return getattr(d, "version", None) or "0"


_OWN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))    # explainkit/
_STDLIB = os.path.dirname(os.__file__)


def _where(e: BaseException) -> str:
    """'(at /path/file.py:12)': the innermost traceback frame in the plugin's own code (not explainkit's,
    not the standard library's), else the innermost frame."""
    tb = traceback.extract_tb(e.__traceback__)
    if not tb:
        return ""
    own = [f for f in tb if not (f.filename.startswith(_OWN) or f.filename.startswith(_STDLIB)
                                 or f.filename.startswith("<"))]
    f = (own or tb)[-1]
    return f"(at {f.filename}:{f.lineno})"


def _reason(e: BaseException) -> str:
    if isinstance(e, ExplainKitError):
        return str(e)
    where = _where(e)
    return f"{type(e).__name__}: {str(e)[:300]}{' ' + where if where else ''}"

