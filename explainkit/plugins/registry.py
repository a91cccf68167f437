"""The plugin contract: declarations (``ExplainerSpec``, ``Param``), the ``Explainer`` base, and discovery.

A plugin distribution registers each explainer under the entry-point group ``explainkit.explainers``;
the entry point names an ``ExplainerSpec`` object in a module that is cheap to import. The spec's
``impl`` ("package.module:Class") is imported only when the explainer runs. The built-in explainers
are found exactly the same way.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explainkit.enums import Capability, Modality, ResultKind, Task, caller_location
from explainkit.errors import ExplainKitError, ParameterError, PluginError, UnknownNameError

__all__ = ["Param", "ExplainerSpec", "Explainer", "Registry", "registry", "ENTRY_POINT_GROUP",
           "BUILTIN_DISTRIBUTION"]

ENTRY_POINT_GROUP = "explainkit.explainers"
BUILTIN_DISTRIBUTION = "explainkit-builtins"
ENV_NO_AUTOLOAD = "EXPLAINKIT_DISABLE_PLUGIN_AUTOLOAD"   # "1": load only the built-in distribution
ENV_BLOCK = "EXPLAINKIT_BLOCK_PLUGINS"                    # comma-separated explainer or distribution names
ENV_DEBUG = "EXPLAINKIT_DEBUG"                            # "1": keep a plugin's original exception as __cause__
# keyword names explainkit.explain() and Explainer.explain() use themselves
RESERVED_PARAMS = frozenset({"seed", "method", "target", "targets", "model", "samples", "x", "reg"})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "choice": str}
STRIKES = 2      # consecutive raising runs on valid input that mark an explainer broken
_DEFER = [0]     # > 0 while discovery imports declarations: an invalid spec is recorded, not raised


@contextlib.contextmanager
def deferred_validation():
    """While declarations are read, an invalid Param/ExplainerSpec records its problem instead of raising,
    so one bad spec cannot take down the other specs of the same module (each is judged on its own)."""
    _DEFER[0] += 1
    try:
        yield
    finally:
        _DEFER[0] -= 1


def debug() -> bool:
    return os.environ.get(ENV_DEBUG, "").strip() not in ("", "0", "false")


def _fail(obj, error: PluginError) -> None:
    """Raise an invalid declaration's error, or record it on the object while discovery defers."""
    if "(declared at" not in error.problem:
        error = PluginError(f"{error.problem} (declared at {caller_location(('registry.py',))})", error.fix)
    if _DEFER[0]:
        object.__setattr__(obj, "_problem", error)
        return
    raise error


@dataclass(frozen=True)
class Param:
    """One explainer parameter: its type, default, allowed range or choices, and help text."""

    name: str
    type: str
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None

    def __post_init__(self):
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.type not in _TYPES:
            return _fail(self, PluginError(f"Parameter {self.name!r} has unknown type {self.type!r}.",
                                           f"use one of {sorted(_TYPES)}."))
        if self.type == "choice" and not self.choices:
            return _fail(self, PluginError(f"Choice parameter {self.name!r} declares no choices.",
                                           "set choices=(...)."))

    def validate(self, value, owner: str = "explainer"):
        """Coerce (strings from the CLI too) and check the range; raise ParameterError with the fix."""
        where = f"Parameter {self.name!r} of {owner}"
        want = _TYPES[self.type]
        if isinstance(value, str) and self.type != "str" and self.type != "choice":
            try:
                value = {"true": True, "false": False, "1": True, "0": False}[value.lower()] \
                    if self.type == "bool" else want(value)
            except (KeyError, ValueError):
                raise ParameterError(f"{where} must be {self.type}; got {value!r}.", self._fix()) from None
        if self.type == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise ParameterError(f"{where} must be true or false; got {value!r}.", self._fix())
            return bool(value)
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
                    isinstance(value, float) and value.is_integer()):
                raise ParameterError(f"{where} must be an integer; got {value!r}.", self._fix())
            value = int(value)
        elif self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ParameterError(f"{where} must be a number; got {value!r}.", self._fix())
            value = float(value)
            if not np.isfinite(value):
                raise ParameterError(f"{where} must be finite; got {value!r}.", self._fix())
        elif not isinstance(value, str):
            raise ParameterError(f"{where} must be a string; got {value!r}.", self._fix())
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"{where} must be one of {list(self.choices)}; got {value!r}.", self._fix())
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise ParameterError(f"{where} is {value!r}, outside [{self.min}, {self.max}].", self._fix())
        return value

    def _fix(self) -> str:
        rng = f" in [{self.min}, {self.max}]" if self.min is not None or self.max is not None else ""
        ch = f" one of {list(self.choices)}" if self.choices else ""
        return f"pass a {self.type}{rng}{ch} (default {self.default!r}). {self.help}".strip()

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "default": self.default, "help": self.help,
                "min": self.min, "max": self.max, "choices": list(self.choices) if self.choices else None}


@dataclass(frozen=True)
class ExplainerSpec:
    """An explainer's declaration: readable without importing its algorithm or heavy dependencies."""

    name: str
    title: str
    description: str
    impl: str
    modalities: frozenset = frozenset(Modality)
    tasks: frozenset = frozenset(Task)
    requires: frozenset = frozenset({Capability.PREDICT})
    params: tuple = ()
    result: ResultKind = ResultKind.ATTRIBUTION
    reference: str = ""
    stochastic: bool = False
    view: str | None = None          # "module:Class" of a custom dashboard view for a new result kind
    distribution: str | None = field(default=None, compare=False)
    version: str | None = field(default=None, compare=False)
    # True: sum(scores) + base_value == f(x) for the target output (completeness); checked by check_explainer
    additive: bool = False

    def __post_init__(self):
        try:
            self._validate()
        except PluginError as e:
            _fail(self, e)

    @property
    def problem(self) -> "PluginError | None":
        """The declaration's error, when it was built while discovery deferred validation."""
        return getattr(self, "_problem", None)

    def _validate(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise PluginError(f"Explainer name {self.name!r} is not snake_case.",
                              "use lower-case letters, digits and underscores, starting with a letter.")
        if not isinstance(self.impl, str) or ":" not in self.impl:
            raise PluginError(f"Explainer {self.name!r}: impl {self.impl!r} is not 'package.module:Class'.",
                              "point impl at the implementation class as 'package.module:Class'.")
        try:
            object.__setattr__(self, "modalities", frozenset(Modality.parse(m) for m in self.modalities))
            object.__setattr__(self, "tasks", frozenset(Task.parse(t) for t in self.tasks))
            object.__setattr__(self, "requires", frozenset(Capability.parse(c) for c in self.requires))
            object.__setattr__(self, "result", ResultKind.parse(self.result))
        except UnknownNameError as e:
            raise PluginError(f"Explainer {self.name!r} declares {e.problem}", e.fix) from None
        if not self.modalities or not self.tasks:
            raise PluginError(f"Explainer {self.name!r} declares no modality or no task.",
                              "set modalities=... and tasks=....")
        params = tuple(self.params)
        if not all(isinstance(p, Param) for p in params):
            raise PluginError(f"Explainer {self.name!r}: params must be Param objects.", "use explainkit.Param(...).")
        for p in params:
            if getattr(p, "_problem", None) is not None:
                raise PluginError(f"Explainer {self.name!r}: {p._problem.problem}", p._problem.fix)
        names = [p.name for p in params]
        clash = sorted(set(names) & RESERVED_PARAMS)
        if len(set(names)) != len(names) or clash:
            raise PluginError(f"Explainer {self.name!r}: duplicate or reserved parameter name in {names}.",
                              f"give each parameter a unique name, none of {sorted(RESERVED_PARAMS)} "
                              "(explainkit passes those itself).")
        for p in params:
            try:
                p.validate(p.default, self.name)
            except ParameterError as e:
                raise PluginError(f"Explainer {self.name!r}: the default of {p.name!r} is invalid: {e.problem}",
                                  "make the default satisfy the declared type and range.") from None
        object.__setattr__(self, "params", params)

    def __repr__(self) -> str:
        return f"<ExplainerSpec {self.name} {sorted(m.value for m in self.modalities)}>"

    @property
    def summary(self) -> str:
        """The description's first sentence (UI help)."""
        return self.description.split(". ")[0].rstrip(".") + "."

    def why_not(self, model) -> str | None:
        """None if this explainer applies to the model, else the reason (set logic on declarations)."""
        if model.modality not in self.modalities:
            return (f"{self.name} supports {', '.join(sorted(m.value for m in self.modalities))} models; "
                    f"this model is {model.modality.value}.")
        if model.task not in self.tasks:
            return (f"{self.name} supports {', '.join(sorted(t.value for t in self.tasks))}; "
                    f"this model does {model.task.value}.")
        missing = self.requires - set(model.capabilities)
        if missing:
            return (f"{self.name} requires {', '.join(sorted(c.value for c in missing))}, which this model "
                    f"({type(model).__name__}) does not provide.")
        return None

    def applies_to(self, model) -> bool:
        return self.why_not(model) is None

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def validate_params(self, params: dict) -> dict:
        """Full parameter dict: defaults filled in, values coerced and range-checked."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ParameterError(f"{self.name} has no parameter(s) {unknown}.",
                                 f"valid parameters: {sorted(known) or 'none'}.")
        return {n: p.validate(params.get(n, p.default), self.name) for n, p in known.items()}

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "description": self.description,
                "reference": self.reference, "modalities": sorted(m.value for m in self.modalities),
                "tasks": sorted(t.value for t in self.tasks), "requires": sorted(c.value for c in self.requires),
                "params": [p.to_dict() for p in self.params], "result": self.result.value,
                "stochastic": self.stochastic, "additive": self.additive, "distribution": self.distribution,
                "version": self.version}

    def to_json(self) -> dict:
        """Everything needed to rebuild the declaration (the discovery cache)."""
        return {"name": self.name, "title": self.title, "description": self.description, "impl": self.impl,
                "modalities": sorted(m.value for m in self.modalities),
                "tasks": sorted(t.value for t in self.tasks), "requires": sorted(c.value for c in self.requires),
                "params": [p.to_dict() for p in self.params], "result": self.result.value,
                "reference": self.reference, "stochastic": self.stochastic, "view": self.view,
                "additive": self.additive}

    @classmethod
    def from_json(cls, d: dict) -> "ExplainerSpec":
        d = dict(d)
        d["params"] = tuple(Param(**p) for p in d.get("params", ()))
        return cls(**d)


class Explainer:
    """Base class of explainer implementations.

    Subclasses implement ``explain(self, model, samples, targets, *, seed, **params)``, where the
    keyword parameters are exactly the declared ``Param`` names (already validated), ``samples`` is a
    list of :class:`~explainkit.Sample` and ``targets`` a list of ints (one per sample; 0 for
    regression). Return one :class:`~explainkit.Explanation` per sample, built with
    ``Explanation.from_sample(sample, scores, ...)``; explainkit fills in the rest.
    """

    spec: ExplainerSpec | None = None

    def explain(self, model, samples, targets, *, seed: int = 0, **params):
        raise NotImplementedError


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
        entry = self.entries.get(name)
        if entry is None:
            names = [s.name for s in (self.applicable(model) if model is not None else self.specs())]
            raise UnknownNameError(f"Unknown explainer {name!r}.",
                                   f"use one of: {', '.join(sorted(names))}" + (" (those applicable to this model)."
                                                                                if model is not None else "."))
        if not entry.ok:
            raise PluginError(f"Explainer {name!r} from {entry.distribution} is broken: {entry.reason}",
                              "fix or reinstall the plugin, or choose another explainer.")
        return entry

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

