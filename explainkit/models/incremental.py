"""Incremental inference for many masked copies of the same images.

Deletion and insertion curves, occlusion and similar metrics run a conv net on hundreds of copies of
one image that differ from each other in a few pixels. A convolution, pooling or point-wise layer
changes its output only inside the receptive field of the changed pixels, so each copy is computed
from a *parent* (the previous copy, or the sample's first copy) by recomputing, layer by layer, only
the box of positions that can differ; everything else is read from the parent. This is the
incremental inference of Krypton (Nakandala, Kumar and Papakonstantinou, "Incremental and
Approximate Inference for Faster Occlusion-based Deep CNN Explanations", SIGMOD 2019), here exact:
every recomputed value is the same dot product or maximum as in the full pass, so results agree with
a plain forward pass to float rounding (~1e-6).

It applies to the leading chain of a module's ``torch.fx`` graph made of ``Conv2d``, ``MaxPool2d``,
``AvgPool2d`` and point-wise layers (activations, eval-mode ``BatchNorm2d`` and ``Dropout``). The rest
of the graph (flatten, linear head, ...) runs as usual on the assembled activations. Modules that
``torch.fx`` cannot trace, or whose graph starts otherwise, are not eligible: callers fall back to
the plain forward pass. :class:`explainkit.torch_model.TorchModel` uses it in ``predict_masked_many``
and checks it against the plain pass on first use.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["IncrementalForward", "DENSE_FRACTION"]

DENSE_FRACTION = 0.5     # a stage whose common change box covers more of its map than this runs in full
KID_OVERHEAD = 0.1       # bookkeeping per incrementally computed copy, in full passes (measured on mnist-cnn)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


@dataclass
class _Layer:
    node: object
    module: object
    kind: str                       # "conv", "max", "avg" (windows) or "point"
    k: tuple = (1, 1)
    s: tuple = (1, 1)
    p: tuple = (0, 0)
    d: tuple = (1, 1)

    @property
    def pad(self) -> float:
        """The value padding stands for: -inf before a max-pool, else 0."""
        return float("-inf") if self.kind == "max" else 0.0

    def apply(self, region):
        """The layer on a gathered region that already holds its padding (so: no padding here).
        The module's own attributes are read at call time, so changed weights are seen."""
        import torch.nn.functional as F

        m = self.module
        if self.kind == "conv":
            return F.conv2d(region, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
        if self.kind == "max":
            return F.max_pool2d(region, self.k, self.s, 0, self.d)
        if self.kind == "avg":
            return F.avg_pool2d(region, self.k, self.s, 0)
        return m(region)

    def out_size(self, n: int, ax: int) -> int:
        if self.kind == "point":
            return n
        return (n + 2 * self.p[ax] - self.d[ax] * (self.k[ax] - 1) - 1) // self.s[ax] + 1

    def out_range(self, a0, a1, n_out: int, ax: int):
        """Output positions whose window touches input positions a0..a1 (inclusive, arrays)."""
        if self.kind == "point":
            return np.clip(a0, 0, n_out - 1), np.clip(a1, 0, n_out - 1)
        k, s, p, d = self.k[ax], self.s[ax], self.p[ax], self.d[ax]
        o0 = -((-(a0 + p - d * (k - 1))) // s)          # ceil division
        o1 = (a1 + p) // s
        o0, o1 = np.clip(o0, 0, n_out - 1), np.clip(o1, 0, n_out - 1)
        return o0, np.maximum(o0, o1)

    def in_start(self, o0, ax: int):
        return o0 if self.kind == "point" else o0 * self.s[ax] - self.p[ax]

    def in_len(self, b: int, ax: int) -> int:
        return b if self.kind == "point" else (b - 1) * self.s[ax] + self.d[ax] * (self.k[ax] - 1) + 1


def _layer_for(node, module):
    """The incremental description of one module, or None where it is not supported."""
    import torch.nn as nn

    point = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
             nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity)
    t = type(module)
    if t in point or (t in (nn.Dropout, nn.Dropout2d) and not module.training) \
            or (t is nn.BatchNorm2d and not module.training and module.running_mean is not None):
        return _Layer(node, module, "point")
    if t is nn.Conv2d:
        if module.padding_mode != "zeros" or isinstance(module.padding, str) and module.padding != "valid":
            return None
        p = (0, 0) if isinstance(module.padding, str) else _pair(module.padding)
        return _Layer(node, module, "conv", _pair(module.kernel_size), _pair(module.stride), p,
                      _pair(module.dilation))
    if t is nn.MaxPool2d:
        if module.ceil_mode or module.return_indices:
            return None
        return _Layer(node, module, "max", _pair(module.kernel_size), _pair(module.stride or module.kernel_size),
                      _pair(module.padding), _pair(module.dilation))
    if t is nn.AvgPool2d:
        p = _pair(module.padding)
        if module.ceil_mode or module.divisor_override or (any(p) and not module.count_include_pad):
            return None
        return _Layer(node, module, "avg", _pair(module.kernel_size), _pair(module.stride or module.kernel_size), p)
    return None


class _Level:
    """One stage's output for every copy: full maps for the roots, boxes for the others.

    Values live in one ``[entries, C]`` store (plus two pad rows: 0 and -inf). Copy j's value at
    position p is held by its *owner*: the latest copy j' <= j of its chain segment whose box covers
    p, else the segment's root. Box writes are kept sorted by (segment, position, copy), so an owner
    is one ``searchsorted`` away.
    """

    def __init__(self, store, h, w, base, oy, ox, bw, writes=None):
        self.store, self.h, self.w, self.bw = store, h, w, bw
        self.shift = base - oy * bw - ox       # store row of copy j's entry at (y, x): shift + y*bw + x
        if writes is not None:
            wkey, wrow, seg, seg_root, big = writes
            writes = (wkey, wkey // big, wrow, seg, seg_root, big)
        self.writes = writes           # None: every copy holds its whole map (the input level)
        self.pad_zero, self.pad_inf = len(store) - 2, len(store) - 1

    def owners(self, rows, p):
        """The copy holding each queried value: ``rows`` [n,1,1] at map positions ``p`` [n,a,b]."""
        if self.writes is None:
            return np.broadcast_to(rows, p.shape)
        wkey, wcell, wrow, seg, seg_root, big = self.writes
        s = seg[rows]
        cell = s * (self.h * self.w) + p
        if not len(wkey):
            return np.broadcast_to(seg_root[s], p.shape)
        i = np.searchsorted(wkey, cell * big + rows, side="right") - 1
        ic = np.maximum(i, 0)
        return np.where((i >= 0) & (wcell[ic] == cell), wrow[ic], seg_root[s])

    def gather(self, rows, y0, x0, rh: int, rw: int, pad: float):
        """Regions ``[n, C, rh, rw]`` (channels-last memory) of copies ``rows`` from (y0, x0);
        positions outside the map read the pad value."""
        import torch

        y = y0[:, None, None] + np.arange(rh)[None, :, None]
        x = x0[:, None, None] + np.arange(rw)[None, None, :]
        inside = y0.min(initial=0) >= 0 and x0.min(initial=0) >= 0 \
            and y0.max(initial=0) + rh <= self.h and x0.max(initial=0) + rw <= self.w
        yc, xc = (y, x) if inside else (np.clip(y, 0, self.h - 1), np.clip(x, 0, self.w - 1))
        o = self.owners(rows[:, None, None], yc * self.w + xc)
        e = self.shift[o] + yc * self.bw[o] + xc
        if not inside:
            valid = (y >= 0) & (y < self.h) & (x >= 0) & (x < self.w)
            e = np.where(valid, e, self.pad_inf if pad == float("-inf") else self.pad_zero)
        vals = self.store[torch.from_numpy(e.reshape(-1))]
        return vals.view(len(rows), rh, rw, -1).permute(0, 3, 1, 2)

    def full(self, n: int):
        """Every copy's whole map ``[n, C, H, W]``."""
        z = np.zeros(n, np.int64)
        return self.gather(np.arange(n), z, z, self.h, self.w, 0.0)


def _store(parts):
    import torch

    c = int(parts[0].shape[1])
    pads = torch.tensor([[0.0], [float("-inf")]], dtype=parts[0].dtype).expand(2, c)
    return torch.cat([p.permute(0, 2, 3, 1).reshape(-1, c) for p in parts] + [pads])


def _stages(layers):
    """Layers grouped as a window layer (or a leading point layer) plus the point layers after it."""
    stages = []
    for lay in layers:
        if stages and lay.kind == "point":
            stages[-1].append(lay)
        else:
            stages.append([lay])
    return stages


_TRACE_LOCK = threading.Lock()


def _trace(module):
    """``torch.fx.symbolic_trace(module)``, safe while other threads run models.

    While it traces, ``torch.fx`` patches ``torch.nn.Module.__call__`` and ``__getattr__`` for the
    whole process, so a forward pass in another thread (the dashboard computes in the background
    while the notebook explains) would receive proxies and fail with a ``TraceError``. The tracer
    here hands every call from another thread straight to the original method, and one lock keeps
    two traces from restoring each other's patches out of order."""
    import torch.fx as fx

    owner = threading.get_ident()

    class _ThisThreadTracer(fx.Tracer):
        def call_module(self, m, forward, args, kwargs):
            if threading.get_ident() != owner:
                return forward(*args, **kwargs)
            return super().call_module(m, forward, args, kwargs)

        def getattr(self, attr, attr_val, parameter_proxy_cache):
            if threading.get_ident() != owner:
                return attr_val
            return super().getattr(attr, attr_val, parameter_proxy_cache)

    with _TRACE_LOCK:
        tracer = _ThisThreadTracer()
        graph = tracer.trace(module)
    return fx.GraphModule(tracer.root, graph, module.__class__.__name__)


class IncrementalForward:
    """Runs a traced module on many masked copies of images, recomputing only what changed."""

    def __init__(self, gm, placeholder, layers):
        self.gm, self.placeholder, self.layers = gm, placeholder, layers
        self.stages = _stages(layers)

    @classmethod
    def build(cls, module) -> "IncrementalForward | None":
        """The engine for ``module``, or None when its graph does not start with a supported chain."""
        try:
            gm = _trace(module)
        except Exception:  # noqa: BLE001 - any untraceable module simply runs the plain way
            return None
        nodes = list(gm.graph.nodes)
        holders = [n for n in nodes if n.op == "placeholder"]
        if len(holders) != 1:
            return None
        cur, layers = holders[0], []
        for n in nodes[nodes.index(cur) + 1:]:
            if n.op != "call_module" or n.args != (cur,) or n.kwargs:
                break
            layer = _layer_for(n, gm.get_submodule(n.target))
            if layer is None or (layers and len(cur.users) != 1):
                break
            layers.append(layer)
            cur = n
        if not any(lay.kind == "conv" and lay.k != (1, 1) for lay in layers):
            return None                    # nothing to gain without a spatial convolution
        return cls(gm, holders[0], layers)

    # -- planning ------------------------------------------------------------------------------
    @staticmethod
    def plan(x, groups):
        """Parents and change boxes: each copy's parent is the previous copy of its sample or the
        sample's first copy, whichever differs in the smaller box; first copies are roots (parent
        -1), computed in full. ``box`` is [4, J]: rows y0, y1, x0, x1 of the changed pixels."""
        import torch

        n, _, h, w = x.shape
        groups = np.asarray(groups)
        first = np.r_[True, groups[1:] != groups[:-1]]
        root_of = np.maximum.accumulate(np.where(first, np.arange(n), 0))
        prev = np.maximum(np.arange(n) - 1, 0)

        def boxes(ref):
            diff = (x != x[torch.from_numpy(ref)]).any(dim=1)                 # [n, h, w]
            rows, cols = diff.any(dim=2).numpy(), diff.any(dim=1).numpy()
            y0, y1 = rows.argmax(1), h - 1 - rows[:, ::-1].argmax(1)
            x0, x1 = cols.argmax(1), w - 1 - cols[:, ::-1].argmax(1)
            empty = ~rows.any(1)
            y1, x1 = np.where(empty, y0, y1), np.where(empty, x0, x1)
            return np.stack([y0, y1, x0, x1]), (y1 - y0 + 1) * (x1 - x0 + 1)

        b_prev, a_prev = boxes(prev)
        b_root, a_root = boxes(root_of)
        use_prev = a_prev <= a_root
        parent = np.where(use_prev, prev, root_of)
        box = np.where(use_prev[None], b_prev, b_root)
        parent[first] = -1
        return parent, box

    def _propagate(self, box, h: int, w: int):
        """Per stage, the kids' change boxes pushed through it: ``(stage, ho, wo, oy0, oy1, ox0, ox1,
        bh, bw)`` with (bh, bw) the common box size; None where a common box would cover more than
        ``DENSE_FRACTION`` of a stage's map (or there are no kids)."""
        if not box.shape[1]:
            return None
        out = []
        for stage in self.stages:
            lay = stage[0]
            ho, wo = lay.out_size(h, 0), lay.out_size(w, 1)
            oy0, oy1 = lay.out_range(box[0], box[1], ho, 0)
            ox0, ox1 = lay.out_range(box[2], box[3], wo, 1)
            bh, bw = int((oy1 - oy0).max()) + 1, int((ox1 - ox0).max()) + 1
            if bh * bw > DENSE_FRACTION * ho * wo:
                return None
            out.append((stage, ho, wo, oy0, oy1, ox0, ox1, bh, bw))
            box, h, w = np.stack([oy0, oy1, ox0, ox1]), ho, wo
        return out

    def _cost(self, box, h: int, w: int) -> float | None:
        """Work per kid relative to a full pass: the largest share of a stage's input map that the
        kids' common region covers (None where the kids cannot run incrementally)."""
        steps = self._propagate(box, h, w)
        if steps is None:
            return None
        worst = 0.0
        for stage, ho, wo, *_, bh, bw in steps:
            worst = max(worst, stage[0].in_len(bh, 0) * stage[0].in_len(bw, 1) / float(h * w))
            h, w = ho, wo
        return worst

    def choose(self, parent, box, h: int, w: int):
        """Turn the kids with the widest change boxes into roots where that lowers the estimated
        work (roots cost a full pass; every kid costs its region plus bookkeeping). Returns the new
        parents, or None when a plain pass over every copy is cheaper."""
        kids = np.flatnonzero(parent >= 0)
        n = len(parent)
        if not len(kids):
            return None
        side = np.maximum(box[1] - box[0], box[3] - box[2])[kids] + 1
        best, best_cut = 0.8 * n, None                          # the plain pass, with a margin
        for cut in np.unique(np.percentile(side, [50, 75, 90, 95, 99, 100], method="higher")):
            keep = kids[side <= cut]
            f = self._cost(box[:, keep], h, w)
            if f is None:
                continue
            cost = (n - len(keep)) + len(keep) * (f + KID_OVERHEAD)
            if cost < best:
                best, best_cut = cost, cut
        if best_cut is None:
            return None
        parent = parent.copy()
        parent[kids[side > best_cut]] = -1
        return parent

    # -- running -------------------------------------------------------------------------------
    def __call__(self, x, groups):
        """Raw module output for copies ``x`` [J, C, H, W], or None when the plain forward pass is
        cheaper; ``groups`` gives each copy's sample, the copies of a sample contiguous."""
        import torch
        from torch.fx import Interpreter

        x = torch.empty_like(x, memory_format=torch.channels_last).copy_(x)
        parent, box = self.plan(x, groups)
        parent = self.choose(parent, box, int(x.shape[2]), int(x.shape[3]))
        if parent is None:
            return None
        out = self._prefix(x, parent, box)
        if out is None:
            return None
        env = {self.placeholder: x}
        env.update({lay.node: None for lay in self.layers[:-1]})
        env[self.layers[-1].node] = out
        return Interpreter(self.gm).run(x, initial_env=env)

    def _prefix(self, x, parent, box):
        import torch

        n, _, h, w = x.shape
        roots, kids = np.flatnonzero(parent < 0), np.flatnonzero(parent >= 0)
        steps = self._propagate(box[:, kids], h, w)
        if steps is None:
            return None                          # changes spread too far (choose() rules this out)
        chain = np.r_[False, parent[1:] == np.arange(n - 1)]
        seg = np.cumsum(~chain) - 1                                 # chain segment of every copy
        starts = np.flatnonzero(~chain)
        seg_root = np.where(parent[starts] < 0, starts, parent[starts])
        big = n + 1
        level = _Level(_store([x]), h, w, np.arange(n) * h * w, np.zeros(n, np.int64),
                       np.zeros(n, np.int64), np.full(n, w))
        root_vals = x[torch.from_numpy(roots)]
        for stage, ho, wo, oy0, _oy1, ox0, _ox1, bh, bw in steps:
            lay = stage[0]
            sy0, sx0 = np.minimum(oy0, ho - bh), np.minimum(ox0, wo - bw)
            region = level.gather(kids, lay.in_start(sy0, 0), lay.in_start(sx0, 1),
                                  lay.in_len(bh, 0), lay.in_len(bw, 1), lay.pad)
            patch = lay.apply(region)                               # [kids, C', bh, bw]
            root_vals = lay.module(root_vals)                       # [roots, C', ho, wo]
            for point in stage[1:]:
                patch, root_vals = point.module(patch), point.module(root_vals)
            base = np.zeros(n, np.int64)
            base[roots] = np.arange(len(roots)) * ho * wo
            base[kids] = len(roots) * ho * wo + np.arange(len(kids)) * bh * bw
            oy, ox, bws = np.zeros(n, np.int64), np.zeros(n, np.int64), np.full(n, wo)
            oy[kids], ox[kids], bws[kids] = sy0, sx0, bw
            cells = ((sy0[:, None, None] + np.arange(bh)[None, :, None]) * wo
                     + sx0[:, None, None] + np.arange(bw)[None, None, :]).reshape(len(kids), -1)
            wkey = ((seg[kids][:, None] * (ho * wo) + cells) * big + kids[:, None]).reshape(-1)
            order = np.argsort(wkey, kind="stable")
            wrow = np.repeat(kids, bh * bw)[order]
            level = _Level(_store([root_vals, patch]), ho, wo, base, oy, ox, bws,
                           (wkey[order], wrow, seg, seg_root, big))
        return level.full(n).contiguous()          # the rest of the graph may .view() it
