"""Integrated gradients through a first affine layer: its input gradient once a sample, not once a step.

When a model's input reaches its output only through one ``Linear`` or ``Conv`` layer L (straight away,
or after ``Flatten``/``Identity``), the gradient at the input is L's transpose (a fixed linear map) applied
to the gradient at L's output. So the backward pass of every step stops at L's output, the steps' gradients
are summed there with the quadrature weights, and L's transpose is applied once per sample: the per-step
input gradient through L (on mnist-cnn the costliest op of a pass) is never computed. The forward pass is
the model's own, on the step inputs exactly as captum forms them.

``CHANNELS_LAST = True`` would put 4-d inputs and L's output in channels-last memory on CPU (max-pooling there
was 5-20x faster, and a one-channel convolution 25x, on mnist-cnn), but its convolutions round differently: on
7 of 100 digits a near-tie then breaks the other way and IG moves by up to 1.25e-3 of its largest score, where
captum against itself at any batch size agrees to 2.4e-7. So it is off: IG keeps captum's numbers.

Whether a model qualifies is probed once per module and input shape, from the forward calls and the
autograd graph of one row; any other model, or any surprise on the way, takes captum's path (``None``).
"""
from __future__ import annotations

import weakref

__all__ = ["affine_attributions", "first_affine"]

_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()    # module -> {input key: plan or None}
CHANNELS_LAST = False   # on CPU, 4-d inputs and L's output in channels-last memory (see above: off)
_MAX_CHAIN = 16         # autograd nodes between the input and L's output (Flatten's view, Linear's reshapes)


class _Plan:
    """What the probe found: the pass-through modules ``prefix`` before the affine ``layer``, and whether the
    rest of the model takes channels-last activations (None: not tried yet)."""

    __slots__ = ("channels_last", "copy", "layer", "prefix")

    def __init__(self, prefix, layer):
        self.prefix, self.layer, self.channels_last, self.copy = tuple(prefix), layer, None, False

    def phi(self, t):
        """The layer's input for the model input ``t`` (linear: Flatten, Identity)."""
        for m in self.prefix:
            t = m(t)
        return t


class _Unsafe(Exception):
    """The layer was not called exactly once in a pass: this model takes captum's path from now on."""


def _hooked(m) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or getattr(m, "_backward_pre_hooks", None) or "forward" in m.__dict__)


def _key(x, extra) -> tuple:
    return tuple(x.shape[1:]), x.dtype, str(x.device), len(extra)


def first_affine(model, x, extra=()):
    """A plan ``(prefix, layer)`` where the model's input reaches its output's gradient only through ``layer`` (a
    plain ``nn.Linear``/``nn.ConvNd``), after the pass-through modules ``prefix``; None where it does not.

    Read once per module, input shape, dtype and device from one row, under frozen parameters."""
    known, key = _PLANS.setdefault(model.module, {}), _key(x, extra)
    if key not in known:
        known[key] = _probe(model, x[:1], [e[:1] for e in extra])
    return known[key]


def _probe(model, x, extra):
    import torch
    from torch import nn
    from torch.nn.modules import module as torch_module

    affine, passing = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d), (nn.Flatten, nn.Identity)
    if any(getattr(torch_module, f"_global_{k}", None) for k in ("forward_hooks", "forward_pre_hooks",
                                                                 "backward_hooks", "backward_pre_hooks")):
        return None
    leaves = [m for m in model.module.modules() if next(m.children(), None) is None]
    calls: list = []        # (module, args, output) of every leaf call, in order (leaves do not nest)
    handles = [m.register_forward_hook(lambda m, args, out: calls.append((m, args, out))) for m in leaves
               if not _hooked(m)]
    z = x.detach().clone().requires_grad_()
    try:
        with torch.enable_grad():
            out = model.forward(z, *extra)
    except Exception:       # noqa: BLE001 - the probe decides nothing; captum's path reports the error
        return None
    finally:
        for h in handles:
            h.remove()
    prefix, src, layer, layer_out = [], z, None, None
    for m, args, o in calls:
        if len(args) != 1 or args[0] is not src:
            return None
        if type(m) in passing:
            prefix.append(m)
            src = o
            continue
        if type(m) in affine:
            layer, layer_out = m, o
        break
    used = [c[0] for c in calls]
    if layer is None or any(used.count(m) != 1 for m in (*prefix, layer)) or not torch.is_tensor(out) \
            or out.grad_fn is None or not torch.is_tensor(layer_out) or layer_out.grad_fn is None:
        return None
    return _Plan(prefix, layer) if _only_through(out.grad_fn, layer_out.grad_fn, z) else None


def _only_through(root, node, z) -> bool:
    """Every autograd path from ``root`` to the leaf ``z`` passes through ``node``: the nodes from ``node``
    down to z's accumulator form a chain, and nothing else in the graph points into it."""
    indegree, stack, seen = {}, [root], {root}
    while stack:
        for nxt, _ in stack.pop().next_functions:
            if nxt is not None:
                indegree[nxt] = indegree.get(nxt, 0) + 1
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
    for _ in range(_MAX_CHAIN):
        nexts = [f for f, _ in node.next_functions if f is not None]
        if len(nexts) != 1 or indegree.get(nexts[0]) != 1:
            return False
        node = nexts[0]
        if getattr(node, "variable", None) is z:
            return True
    return False


def _blocks(n: int, steps: int, rows: int):
    """(first sample, end sample, first step, end step) per pass: whole samples when ``rows`` holds all
    their steps, else one sample's steps in parts of ``rows``."""
    if rows >= steps:
        k = rows // steps
        return [(i, min(n, i + k), 0, steps) for i in range(0, n, k)]
    return [(i, i + 1, s, min(steps, s + rows)) for i in range(n) for s in range(0, steps, rows)]


def _step_sum(weights, g):
    """``sum_s weights[s] g[i, s]`` per sample i, ``[n, ...]``: one matrix product over g ``[n, k, ...]`` in
    its own memory order (channels-last gradients stay a view)."""
    import torch

    order = sorted(range(2, g.dim()), key=lambda i: -g.stride(i))
    gp = g.permute(0, 1, *order)
    r = torch.einsum("s,nsf->nf", weights, gp.reshape(g.shape[0], g.shape[1], -1)).view(g.shape[0], *gp.shape[2:])
    return r.permute(0, *[1 + order.index(i) for i in range(2, g.dim())])


def affine_attributions(batch, base, n_steps: int, method: str, rows: int):
    """Integrated gradients ``[N,...]`` of ``batch`` from ``base`` as captum's ``IntegratedGradients`` with
    ``method`` gives them, computed through the first affine layer; None where the model does not qualify.
    Runs under ``guarded(..., freeze=True)`` (no parameter gradients) and the caller's model lock. A model
    that cannot take channels-last activations (a ``.view`` on one) raises on the first pass and keeps the
    default layout from then on, as ``TorchModel`` does for its no-grad predictions."""
    import torch
    from captum.attr._utils.approximation_methods import approximation_parameters

    x, extra, model = batch.inputs, tuple(batch.extra), batch.model
    if not x.is_floating_point() or x.shape != base.shape:
        return None
    plan = first_affine(model, x, extra)
    if plan is None:
        return None
    sizes_of, alphas_of = approximation_parameters(method)
    weights = torch.tensor(sizes_of(n_steps), dtype=x.dtype, device=x.device)
    alphas = torch.tensor(alphas_of(n_steps), dtype=x.dtype, device=x.device)
    targets = torch.as_tensor(batch.targets, device=x.device)
    diff = x - base
    total = None
    seen: list = []
    state = {"layout": None}

    def keep(_m, _args, out):       # L's output, kept; a copy goes on where the model overwrites it in place
        seen.append((out, out._version))
        if state["layout"] is not None and out.dim() == 4:
            return out.contiguous(memory_format=state["layout"]) if not plan.copy else \
                torch.empty_like(out, memory_format=state["layout"]).copy_(out)
        return out.clone() if plan.copy else out

    def gradient(n0, n1, a, layout):
        """d picked outputs / d L's output ``[n1-n0, k, ...]`` at the k steps ``a`` of samples n0..n1."""
        k = a.shape[0]
        with torch.no_grad():       # the step inputs, exactly as captum forms them
            xs = (base[n0:n1, None] + a.view(1, k, *[1] * (x.dim() - 1)) * diff[n0:n1, None]).flatten(0, 1)
        if layout is not None and xs.dim() == 4:     # NHWC strides even for one channel (a 25x faster conv)
            xs = torch.empty_like(xs, memory_format=layout).copy_(xs)
        xs = xs.requires_grad_()
        seen.clear()
        state["layout"] = layout
        out = model.forward(xs, *[e[n0:n1].repeat_interleave(k, 0) for e in extra])
        if len(seen) != 1:
            raise _Unsafe
        h, version = seen.pop()
        if h._version != version:   # overwritten in place (an in-place ReLU): copy from the next pass on
            plan.copy = True
            return gradient(n0, n1, a, layout)
        picked = out.gather(1, targets[n0:n1].repeat_interleave(k).unsqueeze(1)).sum()
        g = torch.autograd.grad(picked, h, allow_unused=True)[0]        # L's own backward is not run
        return None if g is None else g.unflatten(0, (n1 - n0, k))

    cl = CHANNELS_LAST and plan.channels_last is not False and x.dim() == 4 and x.device.type == "cpu"
    handle = plan.layer.register_forward_hook(keep)
    try:
        for n0, n1, s0, s1 in _blocks(x.shape[0], int(n_steps), max(1, int(rows))):
            a = alphas[s0:s1]
            try:
                g = gradient(n0, n1, a, torch.channels_last if cl else None)
            except RuntimeError:
                if not cl or plan.channels_last is not None:
                    raise
                plan.channels_last, cl = False, False       # e.g. a .view() on an activation: default layout
                g = gradient(n0, n1, a, None)
            if cl:
                plan.channels_last = True
            if g is not None:
                part = _step_sum(weights[s0:s1], g)
                total = part.new_zeros((x.shape[0],) + part.shape[1:]) if total is None else total
                total[n0:n1] += part
    except _Unsafe:                 # a structure that depends on the data: captum's path from now on
        _PLANS[model.module][_key(x, extra)] = None
        return None
    finally:
        handle.remove()
        seen.clear()
    u = diff.detach().requires_grad_()
    with torch.enable_grad():
        lin = plan.layer(plan.phi(u))     # affine: its input gradient is the transpose, whatever u is
        gx, = torch.autograd.grad(lin, u, torch.zeros_like(lin) if total is None else total)
    return diff * gx
