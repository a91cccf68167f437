"""The declaration side of the plugin contract: ``Param``, ``ExplainerSpec`` and the ``Explainer`` base.

A plugin's declaration module builds ``ExplainerSpec`` objects (cheap: no algorithm is imported); the
registry (:mod:`explainkit.plugins.registry`) finds them through entry points.
"""
from __future__ import annotations

import contextlib
import importlib
import keyword
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explainkit.enums import Capability, Modality, ResultKind, Task, caller_location
from explainkit.errors import ParameterError, PluginError, UnknownNameError

__all__ = ["Param", "ExplainerSpec", "Explainer", "RESERVED_PARAMS", "deferred_validation", "debug", "ENV_DEBUG"]

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


def _applies_to(value):
    """Normalise ``Param.applies_to``: None, a sorted tuple of modalities, or a ``"module:function"`` string."""
    if value is None or isinstance(value, str) and ":" in value:
        return value
    if callable(value) and not isinstance(value, (str, Modality)):
        ref = f"{getattr(value, '__module__', '')}:{getattr(value, '__qualname__', '')}"
        if "<" in ref or ref.startswith(":") or ref.endswith(":"):
            raise ValueError("a predicate must be a module-level function (the discovery cache stores it as "
                             "'module:function'); a lambda or nested function cannot be found again")
        return ref
    items = (value,) if isinstance(value, (str, Modality)) else tuple(value)
    if not items:
        raise ValueError("an empty tuple of modalities applies to no model")
    return tuple(sorted({Modality.parse(m) for m in items}, key=lambda m: m.value))


def _is_default(p: "Param", value) -> bool:
    try:
        return p.validate(value) == p.default
    except ParameterError:
        return False


@dataclass(frozen=True)
class Param:
    """One explainer parameter: its type, default, allowed range or choices, and help text.

    ``applies_to`` (optional) says which models the parameter means something for: a tuple of modalities
    (``("image",)``), checked by set logic on the declaration alone; or a predicate ``f(model) -> bool``,
    given as a module-level function or its ``"module:function"`` name (imported when first needed), called
    each time a form or a parameter check is built for a model. A predicate that raises or returns a
    non-bool is a PluginError naming the explainer and the parameter. Forms show, and ``explain``/``--param``
    accept, only the parameters that apply; the implementation still receives every declared parameter
    (those that do not apply at their default)."""

    name: str
    type: str
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    applies_to: Any = None

    def __post_init__(self):
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        try:
            object.__setattr__(self, "applies_to", _applies_to(self.applies_to))
        except (ValueError, TypeError, UnknownNameError) as e:
            why = e.problem if isinstance(e, UnknownNameError) else str(e)
            return _fail(self, PluginError(f"Parameter {self.name!r}: invalid applies_to {self.applies_to!r}: {why}.",
                                           "pass a tuple of modalities, e.g. applies_to=('image',), or a "
                                           "module-level function model -> bool."))
        if not isinstance(self.name, str) or not self.name.isidentifier() or not self.name.isascii() \
                or self.name.startswith("_") or keyword.iskeyword(self.name):
            return _fail(self, PluginError(f"Parameter name {self.name!r} is not a plain Python identifier.",
                                           "name it in ASCII letters, digits and underscores, starting with a "
                                           "letter (it becomes a keyword argument, a form field and a CLI key)."))
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

    def applies(self, model, owner: str = "explainer") -> bool:
        """Whether this parameter applies to ``model`` (see the class doc); a failing predicate is a PluginError."""
        rule = self.applies_to
        if rule is None:
            return True
        if isinstance(rule, tuple):
            return model.modality in rule
        try:
            fn = self.__dict__.get("_fn")
            if fn is None:
                module, _, attr = rule.partition(":")
                fn = importlib.import_module(module)
                for part in attr.split("."):
                    fn = getattr(fn, part)
                object.__setattr__(self, "_fn", fn)
            verdict = fn(model)
        except Exception as e:  # noqa: BLE001 - a plugin's predicate failing is the plugin's error, not a crash
            raise PluginError(f"Explainer {owner!r}: the applies_to predicate {rule} of parameter {self.name!r} "
                              f"raised {type(e).__name__}: {e} (model {getattr(model, 'name', '?')!r}).",
                              "fix the predicate: it must return True or False for any model.") from None
        if not isinstance(verdict, (bool, np.bool_)):
            raise PluginError(f"Explainer {owner!r}: the applies_to predicate {rule} of parameter {self.name!r} "
                              f"returned {verdict!r}, not True or False.", "return a bool from the predicate.")
        return bool(verdict)

    def why_not(self, model, owner: str = "explainer") -> str | None:
        """None if the parameter applies to ``model``, else the reason, naming the model's modality."""
        if self.applies(model, owner):
            return None
        rule = self.applies_to
        where = (f"it applies to {', '.join(m.value for m in rule)} models only" if isinstance(rule, tuple)
                 else f"its rule {rule} excludes this model")
        return (f"Parameter {self.name!r} of {owner} does not apply to {getattr(model, 'name', 'this model')!r}, "
                f"a {model.modality.value} model: {where}.")

    def _fix(self) -> str:
        rng = f" in [{self.min}, {self.max}]" if self.min is not None or self.max is not None else ""
        ch = f" one of {list(self.choices)}" if self.choices else ""
        return f"pass a {self.type}{rng}{ch} (default {self.default!r}). {self.help}".strip()

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "default": self.default, "help": self.help,
                "min": self.min, "max": self.max, "choices": list(self.choices) if self.choices else None,
                "applies_to": [m.value for m in self.applies_to] if isinstance(self.applies_to, tuple)
                else self.applies_to}


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
    # other names this explainer is found under, for the models it applies to (Registry.get resolves them)
    aliases: tuple = ()

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
            if isinstance(p.applies_to, tuple) and not set(p.applies_to) & set(self.modalities):
                raise PluginError(f"Explainer {self.name!r}: parameter {p.name!r} applies to "
                                  f"{[m.value for m in p.applies_to]}, none of the explainer's modalities.",
                                  "list modalities the explainer supports in applies_to, or drop the parameter.")
            try:
                p.validate(p.default, self.name)
            except ParameterError as e:
                raise PluginError(f"Explainer {self.name!r}: the default of {p.name!r} is invalid: {e.problem}",
                                  "make the default satisfy the declared type and range.") from None
        object.__setattr__(self, "params", params)
        aliases = (self.aliases,) if isinstance(self.aliases, str) else tuple(self.aliases)
        bad = [a for a in aliases if not isinstance(a, str) or not _NAME.match(a)]
        if bad or self.name in aliases or len(set(aliases)) != len(aliases):
            raise PluginError(f"Explainer {self.name!r}: invalid aliases {list(aliases)}.",
                              "give distinct snake_case names, none equal to the explainer's own name.")
        object.__setattr__(self, "aliases", aliases)

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
        if (self.result is ResultKind.GENERATION) != bool(getattr(model, "generates", False)):
            return (f"{self.name} explains language models' answers; this model is a classifier or regressor."
                    if self.result is ResultKind.GENERATION else
                    f"{self.name} explains classifiers and regressors; this model is a language model.")
        missing = self.requires - set(model.capabilities)
        if missing:
            return (f"{self.name} requires {', '.join(sorted(c.value for c in missing))}, which this model "
                    f"({type(model).__name__}) does not provide.")
        return None

    def applies_to(self, model) -> bool:
        return self.why_not(model) is None

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def params_for(self, model) -> tuple:
        """The declared parameters that apply to ``model`` (``Param.applies_to``), in declaration order."""
        return tuple(p for p in self.params if p.applies(model, self.name))

    def validate_params(self, params: dict, model=None) -> dict:
        """Full parameter dict: defaults filled in, values coerced and range-checked. With ``model``, a
        parameter passed that does not apply to it is one ParameterError naming it and the model's modality
        (the returned dict still holds every declared parameter: those that do not apply at their default)."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        fits = None if model is None else {p.name for p in self.params_for(model)}
        if unknown:
            raise ParameterError(f"{self.name} has no parameter(s) {unknown}.",
                                 f"valid parameters: {sorted(known if fits is None else fits) or 'none'}.")
        # a parameter that does not apply is refused when set; at its default it is the same as left out (the
        # full dicts that explainkit passes around internally, e.g. for trust re-runs, hold every default)
        wrong = [n for n in params if fits is not None and n not in fits and not _is_default(known[n], params[n])]
        if wrong:
            raise ParameterError(known[wrong[0]].why_not(model, self.name) or wrong[0],
                                 f"leave {', '.join(repr(n) for n in wrong)} out; the parameters for this model "
                                 f"are: {', '.join(sorted(fits)) or 'none'}.")
        return {n: p.validate(params.get(n, p.default), self.name) for n, p in known.items()}

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "description": self.description,
                "reference": self.reference, "modalities": sorted(m.value for m in self.modalities),
                "tasks": sorted(t.value for t in self.tasks), "requires": sorted(c.value for c in self.requires),
                "params": [p.to_dict() for p in self.params], "result": self.result.value,
                "stochastic": self.stochastic, "additive": self.additive, "aliases": list(self.aliases),
                "distribution": self.distribution, "version": self.version}

    def to_json(self) -> dict:
        """Everything needed to rebuild the declaration (the discovery cache)."""
        return {"name": self.name, "title": self.title, "description": self.description, "impl": self.impl,
                "modalities": sorted(m.value for m in self.modalities),
                "tasks": sorted(t.value for t in self.tasks), "requires": sorted(c.value for c in self.requires),
                "params": [p.to_dict() for p in self.params], "result": self.result.value,
                "reference": self.reference, "stochastic": self.stochastic, "view": self.view,
                "additive": self.additive, "aliases": list(self.aliases)}

    @classmethod
    def from_json(cls, d: dict) -> "ExplainerSpec":
        d = dict(d)
        d["params"] = tuple(Param(**p) for p in d.get("params", ()))
        d["aliases"] = tuple(d.get("aliases") or ())
        return cls(**d)


class Explainer:
    """Base class of explainer implementations.

    Subclasses implement ``explain(self, model, samples, targets, *, seed, **params)``, where the
    keyword parameters are exactly the declared ``Param`` names (already validated), ``samples`` is a
    list of :class:`~explainkit.Sample` and ``targets`` a sequence of ints (one per sample; 0 for
    regression; a predicted target is worked out on first read, from the plugin's own unmasked copy
    where its masked pass has one). Return one :class:`~explainkit.Explanation` per sample, built with
    ``Explanation.from_sample(sample, scores, ...)``; explainkit fills in the rest.
    """

    spec: ExplainerSpec | None = None

    def explain(self, model, samples, targets, *, seed: int = 0, **params):
        raise NotImplementedError
