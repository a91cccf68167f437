"""Gradient explainers on captum: saliency, input×gradient, integrated gradients, SmoothGrad, Gradient SHAP.

Every explainer makes one captum call per batch on ``model.forward`` with ``model.collate``'s
``(inputs, extra)``. Text models are attributed at the token-embedding layer (captum's Layer variants,
or captum on the embeddings themselves where noise is added) and summed over the embedding dimension.
Only explainkit's public API is used; the model is left exactly as it was found.
"""
from __future__ import annotations

import contextlib
import math
import weakref

import numpy as np

from explainkit import Explainer, Explanation, Modality, Task
from explainkit.errors import MissingDependencyError

from .ig_affine import affine_attributions

__all__ = ["BASELINE_DEFAULT", "BASELINE_ZERO", "Batch", "GradientShap", "InputXGradient", "IntegratedGradients",
           "Saliency", "SmoothGrad", "captum_attr", "guarded"]

BASELINE_DEFAULT, BASELINE_ZERO = "default", "zero"     # the declared choices of the 'baseline' param
BASELINE_NOISE = 0.1        # Gradient SHAP: noisy baseline copies use this fraction of the input range


def captum_attr():
    """Import ``captum.attr`` or explain how to install it."""
    try:
        import captum.attr as ca
    except ImportError:
        raise MissingDependencyError("The gradient explainers need captum, which is not installed.",
                                     "pip install 'captum>=0.7' (or pip install explainkit-builtins).") from None
    return ca


_PARTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()    # module -> (submodules, parameters)


def _parts(module) -> tuple[tuple, tuple]:
    """The module's submodules (not itself: the cache must not hold its key) and parameters, read once per
    module (walking them cost 0.8 ms a call); a wrapped model's layers are fixed, as its weights_hash assumes."""
    got = _PARTS.get(module)
    if got is None:
        got = _PARTS[module] = (tuple(m for m in module.modules() if m is not module), tuple(module.parameters()))
    return got


@contextlib.contextmanager
def guarded(model, seed: int | None = None, *, freeze: bool = False):
    """Run with the module in eval mode and autograd on; restore modes, grad flags and RNG states after.

    With a ``seed``, torch's and numpy's global generators are seeded inside a fork (reproducible, the
    caller's state untouched). ``freeze``: no parameter gradients meanwhile, so a layer method's forward
    records no graph below its layer (same values).
    """
    import torch

    module = model.module
    subs, params = _parts(module)
    modes = (module.training, *[m.training for m in subs])
    flags = [p.requires_grad for p in params]
    dev = model.device
    np_state = np.random.get_state() if seed is not None else None
    try:
        with contextlib.ExitStack() as stack:
            if any(modes):
                module.eval()
            for p in params if freeze else ():
                p.requires_grad_(False)
            stack.enter_context(torch.enable_grad())
            if dev.type == "cuda":      # cuDNN RNNs only backpropagate in training mode
                stack.enter_context(torch.backends.cudnn.flags(enabled=False))
            if seed is not None:
                devices = [dev.index or 0] if dev.type == "cuda" else []
                stack.enter_context(torch.random.fork_rng(devices=devices))
                torch.manual_seed(int(seed))
                np.random.seed(int(seed) % 2**32)
            yield
    finally:
        for m, mode in zip((module, *subs), modes):     # nn.Module.__setattr__ is slow: touch only what changed
            if m.training != mode:
                m.training = mode
        for p, flag in zip(params, flags):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        if np_state is not None:
            np.random.set_state(np_state)


class Batch:
    """One collated batch: the attributed ``inputs``, the ``extra`` forward args, targets and the samples."""

    def __init__(self, model, samples, targets):
        self.model = model
        self.samples = list(samples)
        self.targets = [int(t) for t in targets]
        self.inputs, self.extra = model.collate(self.samples)
        self.text = model.modality is Modality.TEXT

    def grad_inputs(self):
        """A view of ``inputs`` that requires grad (so captum need not switch it on and warn)."""
        return self.inputs.detach().requires_grad_()

    @property
    def forward_args(self):
        """``extra`` as captum's ``additional_forward_args`` (None when empty)."""
        return tuple(self.extra) if self.extra else None

    def baselines(self, choice: str = BASELINE_DEFAULT):
        """Baseline inputs ``[N,...]``: the model's default 'absent' input, or zeros (token id 0 for text)."""
        import torch

        if choice == BASELINE_ZERO:
            return torch.zeros_like(self.inputs)
        if self.text:       # all padding tokens; the original mask stays in ``extra``
            return torch.full_like(self.inputs, int(self.model.tokenizer.pad_id))
        return torch.stack([torch.as_tensor(self.model.baseline_tensor(s)) for s in self.samples]).to(
            device=self.inputs.device, dtype=self.inputs.dtype)

    def outputs(self, inputs, extra=None) -> np.ndarray:
        """The raw target outputs ``f(inputs)[i, target_i]`` (logits, or values for regression)."""
        import torch

        with torch.no_grad():
            return self.at_targets(self.model.forward(inputs, *(self.extra if extra is None else extra)))

    def at_targets(self, out) -> np.ndarray:
        """``out[i, target_i]`` of raw outputs ``[N,K]``, as float64."""
        import torch

        idx = torch.as_tensor(self.targets, device=out.device).unsqueeze(1)
        return out.gather(1, idx)[:, 0].detach().cpu().double().numpy()

    def outputs_of_both(self, inputs, baselines) -> tuple[np.ndarray, np.ndarray]:
        """``outputs(inputs)`` and ``outputs(baselines)`` from one stacked forward pass (one pass, not two)."""
        import torch

        if tuple(baselines.shape) != tuple(inputs.shape):
            return self.outputs(inputs), self.outputs(baselines)
        n = inputs.shape[0]
        with torch.no_grad():
            out = self.model.forward(torch.cat([inputs, baselines]), *[torch.cat([e, e]) for e in self.extra])
        return self.at_targets(out[:n]), self.at_targets(out[n:])

    def embeddings(self):
        """The token embeddings ``[N,T,D]`` of a text batch (no grad)."""
        import torch

        with torch.no_grad():
            return self.model.embedding_layer(self.inputs).detach()

    def value_range(self, x) -> float:
        """max - min of ``x`` over the real units of the batch (padding excluded); 1.0 if constant."""
        if self.text:
            x = x[self.extra[0].bool()]
        r = float(x.max() - x.min()) if x.numel() else 0.0
        return r if r > 0 and math.isfinite(r) else 1.0

    def unit_scores(self, a, s):
        """One sample's attribution ``[...]`` as per-unit scores: summed over embedding dims or channels."""
        if self.text:
            return a[: s.n_units].sum(axis=-1)       # drop padded positions; per token, over the embedding
        return a.sum(axis=0) if s.modality is Modality.IMAGE else a

    def draw_errors(self, draws, n: int) -> list | None:
        """Standard errors of the mean over ``n`` draws, per unit: ``draws`` is ``[N*n, ...]`` (sample-major,
        captum's repeat_interleave), each draw reduced to unit scores first; None with a single draw."""
        if n < 2:
            return None
        arr = draws.detach().cpu().double().numpy()
        arr = arr.reshape((len(self.samples), n) + arr.shape[1:])
        out = []
        for s, per in zip(self.samples, arr):
            units = np.stack([self.unit_scores(a, s) for a in per])
            out.append(units.std(axis=0, ddof=1) / math.sqrt(n))
        return out

    def explanations(self, attr, *, base_values=None, extras=None, errors=None) -> list:
        """Per-sample results from batch attributions ``[N,...]`` (text: ``[N,T,D]``)."""
        arr = attr.detach().cpu().double().numpy()
        out = []
        for i, s in enumerate(self.samples):
            a = arr[i]
            scores = self.unit_scores(a, s)
            if self.text:
                a = a[: s.n_units]
            exp = Explanation.from_sample(s, scores, attributions=a, errors=None if errors is None else errors[i],
                                          base_value=None if base_values is None else base_values[i])
            if extras is not None:
                exp.extras.update(extras[i])
            out.append(exp)
        return out


def output_space(model) -> str:
    """What the raw outputs are: 'logit' (classification) or 'value' (regression)."""
    return "logit" if model.task is Task.CLASSIFICATION else "value"


class EmbeddingForward:
    """``f(emb, ids, *extra)``: the model's output with the token-embedding layer's output replaced by ``emb``.

    Lets captum methods that perturb their inputs (noise, random baselines) work on text, where the
    token ids themselves cannot be perturbed.
    """

    def __init__(self, model):
        self.model = model
        self.layer = model.embedding_layer

    def __call__(self, emb, ids, *extra):
        handle = self.layer.register_forward_hook(lambda _module, _inputs, _output: emb)
        try:
            return self.model.forward(ids, *extra)
        finally:
            handle.remove()


class EndPoints:
    """``model.forward`` keeping its no-grad outputs: captum's LayerIntegratedGradients runs the model on the
    inputs and on the baselines without grad to read the layer there; those outputs are f(x) and f(baseline),
    so completeness costs no extra forward pass (it was 5-10% of IG on a short text)."""

    def __init__(self, forward):
        self.forward = forward
        self.seen: list = []

    def __call__(self, *args):
        import torch

        out = self.forward(*args)
        if not torch.is_grad_enabled():
            self.seen.append(out.detach())
        return out

    def end_points(self, batch) -> tuple:
        """(f(x), f(baseline)) at the targets; (None, None) unless there were two no-grad calls of the batch's size."""
        n = len(batch.samples)
        if len(self.seen) != 2 or any(o.dim() != 2 or o.shape[0] != n for o in self.seen):
            return None, None
        return batch.at_targets(self.seen[0]), batch.at_targets(self.seen[1])


class _GradientExplainer(Explainer):
    """Shared driver: guard the model, collate once, make one captum call, split per sample."""

    seeded = freeze = False     # freeze: no parameter gradients (an input-gradient method never needs them)

    def explain(self, model, samples, targets, *, seed: int = 0, **params):
        ca = captum_attr()
        with guarded(model, seed if self.seeded else None, freeze=self.freeze):
            batch = Batch(model, samples, targets)
            return self._attribute(ca, batch, seed=seed, **params)

    def _attribute(self, ca, batch, **params):
        raise NotImplementedError


class Saliency(_GradientExplainer):
    """Gradient of the target output with respect to the input (absolute by default)."""

    def _attribute(self, ca, batch, *, seed=0, abs=True):  # 'abs' is the declared name
        model = batch.model
        if batch.text:
            method = ca.LayerGradientXActivation(model.forward, model.embedding_layer, multiply_by_inputs=False)
            attr = method.attribute(batch.inputs, target=batch.targets, additional_forward_args=batch.forward_args)
            attr = attr.abs() if abs else attr
        else:
            attr = ca.Saliency(model.forward).attribute(batch.grad_inputs(), target=batch.targets, abs=abs,
                                                        additional_forward_args=batch.forward_args)
        return batch.explanations(attr)


class InputXGradient(_GradientExplainer):
    """Input times the gradient of the target output (token embeddings for text)."""

    def _attribute(self, ca, batch, *, seed=0):
        model = batch.model
        if batch.text:
            method = ca.LayerGradientXActivation(model.forward, model.embedding_layer, multiply_by_inputs=True)
        else:
            method = ca.InputXGradient(model.forward)
        x = batch.inputs if batch.text else batch.grad_inputs()
        attr = method.attribute(x, target=batch.targets, additional_forward_args=batch.forward_args)
        return batch.explanations(attr)


AUTO_ROWS = 64     # inputs per forward pass when internal_batch_size is 0 (at most)
AUTO_MEMORY = 1 << 30    # ... and at most as many as keep one pass's activations and gradients under 1 GiB
_ROW_BYTES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # module -> {input shape: bytes per row}


def activation_bytes(model, x) -> int:
    """Bytes one input row costs a forward + backward pass: every leaf module's output, twice (value and
    gradient), measured once per model and input shape by a no-grad pass on one row."""
    import torch

    known = _ROW_BYTES.setdefault(model.module, {})
    key = tuple(x.shape[1:])
    if key not in known:
        total = [0]

        def hook(_m, _i, out):
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if torch.is_tensor(t):
                    total[0] += t.numel() * t.element_size()

        leaves = [m for m in model.module.modules() if not list(m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        try:
            with torch.no_grad():
                model.forward(x[:1])
        finally:
            for h in handles:
                h.remove()
        known[key] = 2 * max(total[0], x[:1].numel() * x.element_size())
    return known[key]


def auto_rows(model, x, n: int) -> int:
    """Rows per pass for internal_batch_size=0: AUTO_ROWS, fewer where the activations would pass AUTO_MEMORY
    (a multiple of the batch size ``n``, at least ``n``)."""
    rows = AUTO_ROWS
    if x.dim() == 4 and x.is_floating_point():          # images: the activations scale with the pixels
        rows = min(rows, max(1, AUTO_MEMORY // activation_bytes(model, x)))
    return max(n, rows // n * n)


class IntegratedGradients(_GradientExplainer):
    """Path integral of gradients from a baseline; attributions sum to f(x) - f(baseline)."""

    freeze = True

    def _attribute(self, ca, batch, *, seed=0, n_steps=50, integration="gausslegendre", internal_batch_size=0,
                   baseline=BASELINE_DEFAULT):
        model, n, base = batch.model, len(batch.samples), batch.baselines(baseline)
        ends = EndPoints(model.forward)         # text: captum's no-grad passes on x and the baseline give f there
        # the declared parameter counts steps per pass, captum rows (steps x samples); 0: about AUTO_ROWS rows
        rows = internal_batch_size * n if internal_batch_size else auto_rows(model, batch.inputs, n)
        attr = None if batch.text else affine_attributions(batch, base, n_steps, integration, rows)
        if attr is None:            # no first Linear/Conv layer to transpose once a sample (ig_affine): captum
            ig = ca.LayerIntegratedGradients(ends, model.embedding_layer) if batch.text else \
                ca.IntegratedGradients(model.forward)
            attr = ig.attribute(batch.inputs, baselines=base, target=batch.targets, internal_batch_size=rows,
                                additional_forward_args=batch.forward_args, n_steps=n_steps, method=integration)
        fx, fb = ends.end_points(batch)         # captum's convergence delta, from f(x) and f(baseline)
        if fx is None:                          # images, tabular: one stacked no-grad pass of 2N rows
            fx, fb = batch.outputs_of_both(batch.inputs, base)
        total = attr.detach().reshape(attr.shape[0], -1).sum(dim=1).cpu().double().numpy()
        delta = total - (fx - fb)
        extras = [{"output": float(x), "baseline_output": float(b), "output_delta": float(x - b),
                   "convergence_delta": float(d), "output_space": output_space(model)}
                  for x, b, d in zip(fx, fb, delta)]
        return batch.explanations(attr, base_values=fb, extras=extras)


def _recording(method) -> list:
    """Record the per-draw attributions that a NoiseTunnel gets from ``method`` (its one inner call).

    NoiseTunnel calls ``method.attribute.__wrapped__(method, ...)`` (captum's undecorated method), so the
    recorder is set as that attribute on this instance only."""
    seen = []
    inner = type(method).attribute
    inner = getattr(inner, "__wrapped__", inner)

    def attribute(*args, **kwargs):
        return record(method, *args, **kwargs)

    def record(self, *args, **kwargs):
        out = inner(self, *args, **kwargs)
        seen.append((out[0] if isinstance(out, tuple) else out).detach())
        return out

    attribute.__wrapped__ = record
    method.attribute = attribute
    return seen


class SmoothGrad(_GradientExplainer):
    """Saliency averaged over noisy copies of the input (captum NoiseTunnel); noise relative to the input range."""

    seeded = True

    def _attribute(self, ca, batch, *, seed=0, n_samples=25, stdevs=0.15, nt_type="smoothgrad"):
        model = batch.model
        if batch.text:
            x, fwd, args = batch.embeddings(), EmbeddingForward(model), (batch.inputs, *batch.extra)
        else:
            x, fwd, args = batch.inputs, model.forward, batch.forward_args
        sigma = float(stdevs) * batch.value_range(x)
        saliency = ca.Saliency(fwd)
        draws = _recording(saliency)
        tunnel = ca.NoiseTunnel(saliency)
        attr = tunnel.attribute(x, nt_type=nt_type, nt_samples=n_samples, stdevs=sigma, target=batch.targets,
                                additional_forward_args=args)
        d = draws[0]
        if nt_type == "smoothgrad_sq":          # the mean of squares: errors of the squared draws
            d = d * d
        elif nt_type == "vargrad":              # a variance: errors of the squared deviations from the mean
            k = d.shape[0] // len(batch.samples)
            dev = d - d.reshape((len(batch.samples), k) + tuple(d.shape[1:])).mean(dim=1).repeat_interleave(k, 0)
            d = dev * dev * (k / max(k - 1, 1))
        extras = [{"noise_stdev": sigma}] * len(batch.samples)
        return batch.explanations(attr, extras=extras, errors=batch.draw_errors(d, int(n_samples)))


class GradientShap(_GradientExplainer):
    """Expected gradients over random baselines (the default baseline plus noisy copies) and path points."""

    seeded = True

    def _attribute(self, ca, batch, *, seed=0, n_samples=50, stdevs=0.0, n_baselines=10):
        import torch

        model = batch.model
        if batch.text:
            x, fwd, args = batch.embeddings(), EmbeddingForward(model), (batch.inputs, *batch.extra)
            with torch.no_grad():                    # padding-token embeddings at every position [1,T,D]
                base = model.embedding_layer(batch.baselines(BASELINE_DEFAULT)[:1]).detach()
        else:
            x, fwd, args = batch.inputs, model.forward, batch.forward_args
            base = batch.baselines(BASELINE_DEFAULT)[:1]
        scale = batch.value_range(x)
        noise = torch.randn((n_baselines - 1,) + tuple(base.shape[1:]), dtype=base.dtype, device=base.device)
        dist = torch.cat([base, base + BASELINE_NOISE * scale * noise], dim=0)
        # captum's GradientShap is NoiseTunnel(InputBaselineXGradient) drawing baselines from the distribution;
        # built here the same way (same random draws, same result) so that every draw is recorded
        from captum.attr._core.gradient_shap import InputBaselineXGradient

        inner = InputBaselineXGradient(fwd, True)
        draws = _recording(inner)
        attr = ca.NoiseTunnel(inner).attribute(x, nt_type="smoothgrad", nt_samples=n_samples,
                                               stdevs=float(stdevs) * scale, draw_baseline_from_distrib=True,
                                               baselines=dist, target=batch.targets, additional_forward_args=args)
        # E_b[f(b)] (the waterfall's base value) costs n_baselines forward passes: 20% of the run on a photo,
        # 10% on a 28-token text; their views draw a map or highlights, no waterfall, so both leave it out
        photo = not batch.text and x.ndim == 4 and min(x.shape[-2:]) > 64
        base_values = None if photo or batch.text else self._expected_baseline_output(batch, fwd, dist)
        extras = [{"output_space": output_space(model), "n_baselines": int(n_baselines)}] * len(batch.samples)
        return batch.explanations(attr, base_values=base_values, extras=extras,
                                  errors=batch.draw_errors(draws[0], int(n_samples)))

    @staticmethod
    def _expected_baseline_output(batch, fwd, dist) -> np.ndarray:
        """E_b[f(b)] for each sample's target, over the baseline distribution (with the sample's mask)."""
        import torch

        n, b = len(batch.samples), dist.shape[0]
        with torch.no_grad():
            if batch.text:
                ids = batch.inputs.repeat_interleave(b, dim=0)
                extra = [e.repeat_interleave(b, dim=0) for e in batch.extra]
                out = fwd(dist.repeat(n, 1, 1), ids, *extra)                     # [N*B, K]
            else:
                out = fwd(dist).unsqueeze(0).expand(n, -1, -1).reshape(n * b, -1)
        out = out.reshape(n, b, -1).mean(dim=1)
        idx = torch.as_tensor(batch.targets, device=out.device).unsqueeze(1)
        return out.gather(1, idx)[:, 0].cpu().double().numpy()
