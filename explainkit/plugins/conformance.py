"""Conformance harness for explainer plugins (compare scikit-learn's ``check_estimator``).

Use it in a plugin's own pytest::

    from explainkit.testing import check_explainer

    def test_conforms():
        check_explainer("my_explainer", quick=True).raise_on_failure()

or from the shell: ``explainkit plugins check my_explainer --quick``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from explainkit.enums import Modality, ResultKind
from explainkit.errors import (
    ExplainKitError,
    NotApplicableError,
    ParameterError,
    PluginError,
)
from explainkit.plugins.check_inputs import applies_to_rows, model_pool, model_state, raw_inputs
from explainkit.plugins.conformance_generation import cheap_generation, output_problem, prime, same_generation
from explainkit.plugins.registry import ExplainerSpec, Registry
from explainkit.plugins.registry import registry as default_registry

__all__ = ["check_explainer", "CheckReport", "CheckRow", "Status", "empty_registry", "registry_with"]

CHEAP_N = 16           # ceiling for budget parameters (n_steps, n_samples, ...) during the check
IMPORT_LIMIT_S = 0.5   # a declaration's own import time (explainkit's declaration API preloaded) must stay under it
COMPLETENESS_RTOL = 0.05   # additive: |sum(scores) + base_value - f(x)| <= RTOL * max(|f(x) - base_value|, 1)
_BUDGET_PREFIXES = ("n_", "num_")


class Status(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    WARN = "warn"      # worth knowing, not a failure (e.g. a stochastic method that ignores its seed)

    def __str__(self) -> str:
        return self.value


class Check(str, Enum):
    DECLARATION = "declaration"
    IMPORT = "import"
    OUTPUT = "output"
    DETERMINISM = "determinism"
    SEED_SENSITIVITY = "seed sensitivity"
    MODEL_UNCHANGED = "model unchanged"
    PARAMS = "parameter validation"
    NOT_APPLICABLE = "not applicable"
    ROUND_TRIP = "to_dict/from_dict"
    DECLARATION_IMPORT = "declaration import"
    COMPLETENESS = "completeness"
    HTML = "to_html"
    APPLIES_TO = "applies_to"        # Param.applies_to rules evaluate (no raising predicate) on every model

    def __str__(self) -> str:
        return self.value


@dataclass
class CheckRow:
    check: Check
    model: str
    status: Status
    detail: str = ""


@dataclass
class CheckReport:
    """The rows of one harness run; ``ok`` is True when no row failed."""

    name: str
    rows: list = field(default_factory=list)
    seconds: float = 0.0

    def add(self, check, model, status, detail="") -> CheckRow:
        row = CheckRow(check, model, status, detail)
        self.rows.append(row)
        return row

    @property
    def failures(self) -> list:
        return [r for r in self.rows if r.status is Status.FAIL]

    @property
    def ok(self) -> bool:
        return not self.failures

    def __repr__(self) -> str:
        counts = {s: sum(r.status is s for r in self.rows) for s in Status}
        return (f"<CheckReport {self.name} {'ok' if self.ok else 'FAILED'} "
                + " ".join(f"{s.value}={n}" for s, n in counts.items() if n) + ">")

    def __str__(self) -> str:
        head = ("check", "model", "status", "detail")
        cells = [head] + [(str(r.check), r.model, r.status.value.upper(), r.detail) for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(3)]
        lines = ["  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3] for c in cells]
        lines.insert(1, "  ".join("-" * w for w in widths) + "  ------")
        verdict = "OK" if self.ok else f"FAILED ({len(self.failures)} failing check(s))"
        lines.append(f"{self.name}: {verdict} in {self.seconds:.1f} s")
        return "\n".join(lines)

    def raise_on_failure(self) -> "CheckReport":
        """Raise AssertionError listing every failing check (for pytest); return self otherwise."""
        if self.failures:
            listing = "\n".join(f"  - {r.check} on {r.model}: {r.detail}" for r in self.failures)
            raise AssertionError(f"explainer {self.name!r} failed {len(self.failures)} conformance "
                                 f"check(s):\n{listing}\n\n{self}")
        return self


# -- pytest helpers ---------------------------------------------------------------------------------
def empty_registry() -> Registry:
    """A registry that discovers nothing (npe2-style fixture): register only what a test needs."""
    return Registry(autoload=False)


def registry_with(*specs: ExplainerSpec, distribution: str = "local", version: str = "0") -> Registry:
    """An empty registry with exactly these declarations registered."""
    reg = empty_registry()
    for spec in specs:
        reg.register(spec, distribution=spec.distribution or distribution, version=spec.version or version)
    return reg


# -- the harness ----------------------------------------------------------------------------------
def check_explainer(name_or_spec, *, registry: Registry | None = None, models=None, quick: bool = False,
                    params: dict | None = None) -> CheckReport:
    """Run the conformance checks on one explainer and return the report (never raises for a failure).

    ``models``: sample-model names, model adapters, or ``(model, raw_inputs)`` pairs; default: every
    shipped sample model plus a black-box (predict-only) copy of the tabular classifier. ``quick``:
    one applicable model per modality. ``params`` override the cheap parameters chosen for the check.
    """
    t0 = time.perf_counter()
    name = name_or_spec.name if isinstance(name_or_spec, ExplainerSpec) else str(name_or_spec)
    report = CheckReport(name)
    try:
        reg, spec = _private_registry(name_or_spec, registry)
    except PluginError as e:             # broken plugin: a failed check; an unknown name raises
        report.add(Check.DECLARATION, "-", Status.FAIL, str(e))
        report.seconds = time.perf_counter() - t0
        return report
    report.add(Check.DECLARATION, "-", Status.PASS,
               f"{spec.distribution} {spec.version}; {len(spec.params)} param(s); result={spec.result.value}")
    _check_declaration_import(report, spec)
    try:
        reg.implementation(name)
        report.add(Check.IMPORT, "-", Status.PASS, spec.impl)
    except ExplainKitError as e:
        report.add(Check.IMPORT, "-", Status.FAIL, str(e))
        report.seconds = time.perf_counter() - t0
        return report
    pool = model_pool(models, generation=spec.result is ResultKind.GENERATION)   # + the sample LM
    applicable = [(m, x) for m, x in pool if spec.applies_to(m)]
    if quick:
        seen, chosen = set(), []
        for m, x in applicable:
            if m.modality not in seen:
                seen.add(m.modality)
                chosen.append((m, x))
        applicable = chosen
    cheap = {**cheap_generation(spec, _cheap_params(spec)), **(params or {})}
    if not applicable:
        report.add(Check.OUTPUT, "-", Status.FAIL if pool else Status.SKIP,
                   "applies to none of the models checked" if pool else "no models to check (none shipped?)")
    for model, raws in applicable:
        _check_model(report, reg, spec, model, raws, cheap)
        if spec.additive:
            _check_completeness(report, reg, spec, model, raws, cheap)
    if applicable:
        _check_params(report, reg, spec, *applicable[0], cheap)
    for label, status, detail in applies_to_rows(spec, pool):
        report.add(Check.APPLIES_TO, label, Status(status), detail)
    _check_not_applicable(report, reg, spec, pool)
    report.seconds = time.perf_counter() - t0
    return report


def _private_registry(name_or_spec, reg):
    """A registry holding only this explainer, so failures never mark the caller's entry broken."""
    if isinstance(name_or_spec, ExplainerSpec):
        spec = name_or_spec
        if spec.distribution is None:
            spec = dataclasses.replace(spec, distribution="local", version="0")
    else:
        spec = (reg or default_registry()).get(str(name_or_spec)).spec
    return registry_with(spec), spec


def _run(reg, spec, model, samples, seed, values):
    from explainkit.plugins.runner import run_explainer

    entry = reg.entries[spec.name]
    if not entry.ok:                   # a previous model's failure must not hide this model's result
        entry.status, entry.reason = "ok", ""
    entry.failures = 0
    return run_explainer(spec.name, model, samples, seed=seed, reg=reg, **values)


def _check_model(report, reg, spec, model, raws, cheap):
    label = model.name
    try:
        samples = [model.prepare(r, index=i) for i, r in enumerate(raws)]
    except ExplainKitError as e:
        report.add(Check.OUTPUT, label, Status.SKIP, f"could not prepare inputs: {e}")
        return
    prime(model)                       # hooks transformers installs on first use are not the explainer's
    before = model_state(model)
    try:
        first = _run(reg, spec, model, samples, 0, cheap)
    except ExplainKitError as e:
        report.add(Check.OUTPUT, label, Status.FAIL, str(e))
        return
    problem = _output_problem(first, samples, spec)
    report.add(Check.OUTPUT, label, Status.FAIL if problem else Status.PASS,
               problem or f"{len(first)} x scores {tuple(first[0].scores.shape)}, finite, kind={spec.result.value}")
    after = model_state(model)
    if before is None:
        report.add(Check.MODEL_UNCHANGED, label, Status.SKIP, "black-box model: no module state")
    else:
        changed = [k for k in before if before[k] != after[k]]
        status = Status.FAIL if set(changed) - {"grads"} else Status.WARN if changed else Status.PASS
        report.add(Check.MODEL_UNCHANGED, label, status,
                   f"changed: {', '.join(changed)}" if changed else "weights, train/eval flag, hooks, requires_grad")
    try:
        again = _run(reg, spec, model, samples, 0, cheap)
        same = _same(first, again)
        report.add(Check.DETERMINISM, label, Status.PASS if same else Status.FAIL,
                   "same seed, identical results" if same else "same seed (0) gave different results")
        if spec.stochastic:
            other = _run(reg, spec, model, samples, 1, cheap)
            differs = not _same(first, other)
            report.add(Check.SEED_SENSITIVITY, label, Status.PASS if differs else Status.WARN,
                       "seed 1 differs from seed 0" if differs else
                       "declared stochastic, but seeds 0 and 1 gave identical results")
    except ExplainKitError as e:
        report.add(Check.DETERMINISM, label, Status.FAIL, str(e))
    _check_serialisation(report, first[0], label)


def _entry_point_value(spec) -> str | None:
    from importlib.metadata import entry_points

    from explainkit.plugins.registry import ENTRY_POINT_GROUP

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == spec.name and (spec.distribution in (None, "local")
                                     or getattr(ep.dist, "name", None) == spec.distribution):
            return ep.value
    return None


def _check_declaration_import(report, spec) -> None:
    """Import the declaration module in a fresh subprocess: its time and the heavy stacks it pulls in."""
    from explainkit.plugins.discovery import import_profile

    value = _entry_point_value(spec)
    if value is None:
        report.add(Check.DECLARATION_IMPORT, "-", Status.SKIP, "no installed entry point for this spec")
        return
    prof = import_profile(value)
    if "error" in prof:
        report.add(Check.DECLARATION_IMPORT, "-", Status.FAIL, f"{value}: {prof['error']}")
        return
    secs, heavy = prof["seconds"], prof["heavy"]
    problems = []
    if heavy:
        problems.append(f"imports {', '.join(heavy)} (declarations must not import heavy stacks: import them "
                        "in the impl module, which loads only when the explainer runs)")
    if secs > IMPORT_LIMIT_S:
        problems.append(f"took {secs:.2f} s, over the {IMPORT_LIMIT_S:g} s limit (do no work at import)")
    report.add(Check.DECLARATION_IMPORT, "-", Status.FAIL if problems else Status.PASS,
               "; ".join(problems) if problems else f"{value}: {secs * 1000:.0f} ms, no heavy imports "
               f"(limit {IMPORT_LIMIT_S:g} s)")


def _target_output(model, sample, target, space) -> float:
    """f(x) for the target, computed by the harness: raw outputs ('logit'/'value') or predictions."""
    if space in ("logit", "value"):
        import torch

        inputs, extra = model.collate([sample])
        with torch.no_grad():
            out = model.forward(inputs, *extra)
        return float(out[0, target if out.shape[1] > 1 else 0])
    y = np.asarray(model.predict_masked(sample, np.ones((1, sample.n_units))), dtype=np.float64)
    return float(y[0, target] if y.ndim == 2 else y[0])


def _check_completeness(report, reg, spec, model, raws, cheap) -> None:
    """additive=True: sum(scores) + base_value must equal f(x) for the target, within COMPLETENESS_RTOL."""
    label = model.name
    try:
        samples = [model.prepare(r, index=i) for i, r in enumerate(raws)]
        out = _run(reg, spec, model, samples, 0, cheap)
    except ExplainKitError as e:
        report.add(Check.COMPLETENESS, label, Status.FAIL, str(e))
        return
    worst = None
    for e, s in zip(out, samples):
        if e.base_value is None:
            report.add(Check.COMPLETENESS, label, Status.FAIL,
                       "declared additive but returned no base_value (set base_value=f(baseline))")
            return
        space = (e.extras or {}).get("output_space", "prediction")
        if space in ("logit", "value") and getattr(model, "module", None) is None:
            space = "prediction"
        t = int(e.target or 0)
        try:
            fx = _target_output(model, s, t, space)
        except Exception as err:  # noqa: BLE001 - a model without raw outputs
            report.add(Check.COMPLETENESS, label, Status.SKIP, f"could not compute f(x): {err}")
            return
        base = float(np.asarray(e.base_value, dtype=np.float64).reshape(-1)[0])
        units = (e.extras or {}).get("unit_scores")       # per segment, when pixels share their segment's score
        total = float(np.asarray(units if units is not None else e.scores, dtype=np.float64).sum())
        err = abs(total + base - fx) / max(abs(fx - base), 1.0)
        if worst is None or err > worst[0]:
            worst = (err, total, fx - base, space)
    err, total, delta, space = worst
    ok = err <= COMPLETENESS_RTOL
    report.add(Check.COMPLETENESS, label, Status.PASS if ok else Status.FAIL,
               f"sum(scores)={total:.4g} vs f(x)-base_value={delta:.4g} ({space}): relative error {err:.3g} "
               f"{'<=' if ok else '>'} {COMPLETENESS_RTOL:g}")


def _output_problem(out, samples, spec) -> str | None:
    from explainkit.plugins.explanation import AttentionExplanation

    if spec.result is ResultKind.GENERATION:
        return output_problem(out, samples)
    if len(out) != len(samples):
        return f"{len(out)} results for {len(samples)} samples"
    for e, s in zip(out, samples):
        if e.kind is not spec.result:
            return f"result kind {e.kind.value}, but the spec declares {spec.result.value}"
        if spec.result is ResultKind.ATTENTION and not isinstance(e, AttentionExplanation):
            return "an attention explainer must return AttentionExplanation objects"
        want = s.image.shape[:2] if s.modality is Modality.IMAGE else (s.n_units,)
        if tuple(e.scores.shape) != tuple(want) or not np.isfinite(e.scores).all():
            return f"scores {tuple(e.scores.shape)} (expected {tuple(want)}) or not finite"
        if e.sample_index != s.index:
            return f"sample_index {e.sample_index} for sample {s.index}: build results with Explanation.from_sample"
    return None


def _same(a, b) -> bool:
    for x, y in zip(a, b):
        if not np.array_equal(x.scores, y.scores):
            return False
        mx, my = getattr(x, "matrices", None), getattr(y, "matrices", None)
        if mx is not None and not np.array_equal(mx, my) or not same_generation(x, y):
            return False
    return len(a) == len(b)


def _check_serialisation(report, exp, label):
    from explainkit.plugins.explanation import Explanation

    try:
        d = json.loads(json.dumps(exp.to_dict()))
        back = Explanation.from_dict(d)
        same = (type(back) is type(exp) and np.array_equal(back.scores, exp.scores)
                and back.method == exp.method and back.target == exp.target and back.kind is exp.kind
                and back.params == exp.params and same_generation(back, exp))
        report.add(Check.ROUND_TRIP, label, Status.PASS if same else Status.FAIL,
                   "JSON round trip preserves scores and provenance" if same else
                   "from_dict(to_dict()) differs: keep extras JSON-compatible")
    except Exception as e:  # noqa: BLE001 - a plugin's extras may not serialise
        report.add(Check.ROUND_TRIP, label, Status.FAIL, f"{type(e).__name__}: {e}")
    try:
        html = exp.to_html()
        good = isinstance(html, str) and len(html) > 0
        report.add(Check.HTML, label, Status.PASS if good else Status.FAIL,
                   f"{len(html)} characters" if good else "to_html() returned nothing")
    except Exception as e:  # noqa: BLE001
        report.add(Check.HTML, label, Status.FAIL, f"{type(e).__name__}: {e}")


def _check_params(report, reg, spec, model, raws, cheap):
    samples = [model.prepare(raws[0], index=0)]
    bad = [("no_such_parameter", 1)]
    for p in spec.params:
        bad += [(p.name, v) for v in _bad_values(p)]
    missed = []
    for pname, value in bad:
        values = {**cheap, pname: value}
        try:
            _run(reg, spec, model, samples, 0, values)
            missed.append(f"{pname}={value!r}")
        except ParameterError:
            pass
        except ExplainKitError as e:
            missed.append(f"{pname}={value!r} raised {type(e).__name__}, not ParameterError")
    report.add(Check.PARAMS, model.name, Status.FAIL if missed else Status.PASS,
               f"accepted: {'; '.join(missed)}" if missed else f"{len(bad)} bad value(s) rejected with ParameterError")


def _bad_values(p) -> list:
    """Wrong-type and out-of-range values for one declared parameter."""
    out = {"int": [1.5, "many"], "float": ["much", float("nan")], "bool": ["maybe"],
           "str": [42], "choice": ["__not_a_choice__", 3]}[p.type]
    if p.min is not None:
        out.append(p.min - 1)
    if p.max is not None:
        out.append(p.max + 1)
    return out


def _check_not_applicable(report, reg, spec, pool):
    others = [m for m, _ in pool if not spec.applies_to(m)]
    if not others:
        report.add(Check.NOT_APPLICABLE, "-", Status.SKIP, "applies to every model checked")
        return
    model = others[0]
    raw = raw_inputs(model, 1)[0]
    try:
        _run(reg, spec, model, [model.prepare(raw, index=0)], 0, _cheap_params(spec))
        report.add(Check.NOT_APPLICABLE, model.name, Status.FAIL, "ran on a model it declares unsupported")
    except NotApplicableError as e:
        report.add(Check.NOT_APPLICABLE, model.name, Status.PASS, e.problem)
    except ExplainKitError as e:
        report.add(Check.NOT_APPLICABLE, model.name, Status.FAIL, f"{type(e).__name__}, not NotApplicableError: {e}")


def _cheap_params(spec) -> dict:
    """Small budgets for the check: int parameters named n_*/num_* are capped at CHEAP_N, within range."""
    out = {}
    for p in spec.params:
        if p.type == "int" and p.name.startswith(_BUDGET_PREFIXES):
            v = CHEAP_N if p.default <= 0 else min(p.default, CHEAP_N)
            if p.min is not None:
                v = max(v, int(np.ceil(p.min)))
            if p.max is not None:
                v = min(v, int(p.max))
            out[p.name] = v
    return out
