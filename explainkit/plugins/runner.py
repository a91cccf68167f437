"""Running an explainer: validate, resolve targets, call the plugin, check and stamp its output.

A plugin's crash or bad output becomes one PluginError and marks it broken; nothing else is affected.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from explainkit.concurrency import MODEL_LOCK
from explainkit.enums import Modality, ResultKind, Task
from explainkit.errors import ExplainKitError, NotApplicableError, ParameterError, PluginError, ValueRangeError
from explainkit.models.observe import Watch, watch

if TYPE_CHECKING:  # pragma: no cover
    from explainkit.plugins.registry import Registry

__all__ = ["run_explainer", "resolve_targets"]

EXTREME = 1e6      # |value| of a model-ready float input beyond which NaN/Inf output is blamed on the input


def resolve_targets(model, samples, target, probabilities) -> list[int]:
    """Targets per sample: given (int or list), else the predicted class (0 for regression)."""
    n = len(samples)
    if model.task is Task.REGRESSION:
        model.check_target(target)
        return [0] * n
    if target is None:
        return [int(np.argmax(p)) for p in probabilities]
    targets = [target] * n if np.isscalar(target) else list(target)
    if len(targets) != n:
        from explainkit.errors import TargetError
        raise TargetError(f"{len(targets)} targets given for {n} samples.", "pass one target, or one per sample.")
    model.check_target(targets)
    return [int(t) for t in targets]


class _Targets(Sequence):
    """The targets a plugin gets: a sequence of ints, each made on first read from its prediction."""

    def __init__(self, preds: "_Predictions"):
        self._preds = preds

    def __len__(self) -> int:
        return len(self._preds.samples)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        return int(np.argmax(self._preds.row(i % n)))

    def __repr__(self) -> str:
        return repr(list(self))


class _Predictions:
    """The samples' predictions, each made when first needed: from its unmasked copy in the plugin's own
    masked pass where it ran one (kept by ``seen``, an :class:`explainkit.models.observe.Watch`), else by
    one ``model.predict`` pass over all the samples not seen so far, kept in the same place. A predicted
    target is read from them; a given target (or regression's 0) is checked at once and needs none."""

    def __init__(self, model, samples, target, name: str):
        self.model, self.samples, self.name = model, samples, name
        self.seen = Watch(model, samples)
        self.seconds = 0.0
        self.error: BaseException | None = None       # a failed prediction pass: raised again, not rerun
        self._targets = None
        if model.task is Task.REGRESSION or target is not None:
            self._targets = resolve_targets(model, samples, target, None)

    def targets(self):
        return self._targets if self._targets is not None else _Targets(self)

    def row(self, i: int):
        """Sample i's probabilities (or value), checked finite."""
        rows = self.seen.outputs
        if rows[i] is None:
            self._predict_missing()
        _check_input(self.samples[i], rows[i], self.name)
        return rows[i]

    def probabilities(self):
        return np.stack([np.asarray(self.row(i)) for i in range(len(self.samples))])

    def resolved(self) -> list[int]:
        if self._targets is None:
            self._targets = resolve_targets(self.model, self.samples, None, self.probabilities())
        return self._targets

    def _predict_missing(self) -> None:
        if self.error is not None:
            raise self.error
        rows = self.seen.outputs
        missing = [j for j, r in enumerate(rows) if r is None]
        t0 = time.perf_counter()
        try:
            fresh = self.model.predict([self.samples[j] for j in missing])
        except BaseException as e:
            self.error = e
            raise
        finally:
            self.seconds += time.perf_counter() - t0
        for j, p in zip(missing, fresh):
            rows[j] = p


def run_explainer(name: str, model, samples: Sequence, target=None, *, seed: int = 0,
                  reg: "Registry | None" = None, **params):
    """Validate, run and stamp one explainer on a batch of samples; contain plugin failures."""
    from explainkit import __version__
    from explainkit.plugins.explanation import Explanations
    from explainkit.plugins.registry import _reason, debug, registry

    reg = reg or registry()
    entry = reg.get(name, model)
    name = entry.name          # an alias ("feature_ablation" on a language model) runs the explainer it names
    spec = entry.spec
    why = spec.why_not(model)
    if why:
        raise NotApplicableError(f"{name} does not apply to model {model.name!r}: {why}",
                                 "choose one of: " + ", ".join(s.name for s in reg.applicable(model)) + ".")
    if getattr(model, "generates", False):        # a language model: prompts, units, answers
        from explainkit.plugins.generation import run_generation
        return run_generation(name, model, samples, target, seed=seed, reg=reg, entry=entry, params=params)
    values = spec.validate_params(params, model=model)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ParameterError(f"seed must be an integer; got {seed!r}.", "pass seed=0 (or any int).")
    samples = [model.prepare(s) for s in samples]
    impl = reg.implementation(name)
    with MODEL_LOCK:                     # hooks on a shared module: one computation at a time
        for s in samples:
            _check_input(s, None, name)
        preds = _Predictions(model, samples, target, name)
        t1 = time.perf_counter()
        try:
            with watch(preds.seen):
                out = impl.explain(model, samples, preds.targets(), seed=int(seed), **values)
        except ExplainKitError:
            raise
        except (Exception, SystemExit) as e:  # noqa: BLE001 - a plugin's crash (even sys.exit) is one clear error
            preds.probabilities()     # the model's own failure (or an input it predicts NaN for) is not the plugin's
            reason = _reason(e) if not isinstance(e, SystemExit) else f"called sys.exit({e.code!r})"
            now_broken = reg.strike(name, f"raised while explaining: {reason}")
            err = PluginError(f"Explainer {name!r} ({entry.distribution} {entry.version}) failed: {reason}"
                              + (" It is now marked broken for this session." if now_broken else ""),
                              "report it to the plugin's author; other explainers still work"
                              + ("" if debug() else " (set EXPLAINKIT_DEBUG=1 to keep the full traceback)")
                              + ".")
            if debug():
                raise err from e
            raise err from None
        probs = preds.probabilities()      # the plugin's own unmasked rows where it ran them, else one pass
        targets = preds.resolved()
        t_pred = preds.seconds
        elapsed = time.perf_counter() - t1 - t_pred
    for i, (e, s) in enumerate(zip(out, samples) if isinstance(out, (list, tuple)) else ()):
        scores = getattr(e, "scores", None)
        if isinstance(scores, np.ndarray) and scores.dtype.kind in "fc" and not np.isfinite(scores).all():
            big = _magnitude(s)
            if big > EXTREME:
                raise ValueRangeError(
                    f"Sample #{s.index if s.index is not None else i}: {name} returned NaN/Inf scores because "
                    f"the input has extreme values (largest |value| of the model-ready input: {big:.3g}).",
                    "pass values in the range the model was trained on (standardise or clip the input).")
    problem = _check_output(out, samples, spec)
    if problem:
        reg.mark_broken(name, f"returned invalid output: {problem}")
        raise PluginError(f"Explainer {name!r} ({entry.distribution}) returned invalid output: {problem}",
                          "fix the plugin to return one Explanation per sample with scores per unit.")
    reg.succeeded(name)
    versions = {"explainkit": __version__, "plugin": entry.distribution, "plugin_version": entry.version}
    try:
        import torch
        versions["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    result = Explanations()
    for exp, s, t, p in zip(out, samples, targets, probs):
        exp.method = name
        exp.params = dict(values)
        exp.seed = int(seed)
        exp.task = model.task
        exp.classes = model.classes
        exp.target = int(t) if model.task is Task.CLASSIFICATION else None
        exp.target_name = model.classes[t] if model.task is Task.CLASSIFICATION else model.target_name
        if model.task is Task.CLASSIFICATION:
            exp.probabilities = np.asarray(p, dtype=np.float64)
            exp.prediction = int(np.argmax(p))
        else:
            exp.prediction = float(p)
        exp.timings = {"explain_s": elapsed / len(samples), "batch_s": elapsed, "predict_s": t_pred,
                       **exp.timings}
        exp.versions = {**versions, **exp.versions}
        exp.model_name = model.name
        exp.model_hash = model.weights_hash()
        if exp.label is None:
            exp.label = s.label
    result.extend(out)
    return result


def _as_array(t):
    if t is None:
        return None
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    try:
        return np.asarray(t)
    except Exception:  # noqa: BLE001 - an exotic input: no numeric view
        return None


def _magnitude(sample) -> float:
    """Largest |value| of a sample's float model-ready input (inf if any is NaN/Inf; 0 for token ids)."""
    arr = _as_array(sample.tensor)
    if arr is None or arr.dtype.kind not in "fc" or arr.size == 0:
        return 0.0
    if not np.isfinite(arr).all():
        return float("inf")
    return float(np.abs(arr).max())


def _check_input(sample, prob, name) -> None:
    """An input that is NaN/Inf once prepared (checked before any plugin code runs, ``prob`` None), or that
    the model itself predicts NaN/Inf for, is the input's fault: an InputError about that sample."""
    arr = _as_array(sample.tensor)
    bad_input = arr is not None and arr.dtype.kind in "fc" and not np.isfinite(arr).all()
    p = np.asarray(0.0 if prob is None else prob, dtype=np.float64)
    if bad_input or not np.isfinite(p).all():
        where = f"Sample #{sample.index}" if sample.index is not None else "The sample"
        what = ("contains NaN or Inf once prepared for the model (a value outside float32 range?)" if bad_input
                else "makes the model predict NaN or Inf")
        raise ValueRangeError(f"{where} {what}; no {name} explanation was made.",
                              "pass finite values in the range the model was trained on.")


def _check_output(out, samples, spec) -> str | None:
    from explainkit.plugins.explanation import AttentionExplanation, Explanation

    if not isinstance(out, (list, tuple)):
        return f"expected a list of Explanation, got {type(out).__name__}"
    if len(out) != len(samples):
        return f"{len(out)} results for {len(samples)} samples"
    for e, s in zip(out, samples):
        if not isinstance(e, Explanation):
            return f"an item is a {type(e).__name__}, not an Explanation"
        want = s.image.shape[:2] if s.modality is Modality.IMAGE else (s.n_units,)
        if tuple(e.scores.shape) != tuple(want):
            return f"scores of shape {tuple(e.scores.shape)}; expected {tuple(want)} for this sample"
        if not np.isfinite(e.scores).all():
            return "scores contain NaN or Inf"
        if spec.result is ResultKind.ATTENTION:
            if not isinstance(e, AttentionExplanation) or e.matrices is None or e.matrices.ndim != 4:
                return "an attention result needs matrices of shape [layers, heads, T, T]"
    return None
