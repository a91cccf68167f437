"""Prefix sharing for many masked copies of a text through an LSTM classifier.

A unidirectional LSTM's state after token t depends only on tokens 0..t, and masked copies of one
sentence share prefixes: among LIME's 1,000 random removals from a 9-token sentence, the 358 distinct
copies hold 840 distinct prefixes among their 3,222 token positions; from a 33-token one, the 956 distinct
copies still share the first 7 to 19 positions. Each copy *branches* where its prefix becomes its own.
Here the shared prefixes run once, one step per position (one-step calls of the module's ``nn.LSTM``
from the parents' states), and each copy then runs on as a sequence of its own from a *start* at or
before its branch, grouped with the copies of the same start. The starts are chosen by a small dynamic
program over positions that weighs shared steps, own steps and a fixed cost per call (``plan_starts``):
about 0.5 of the plain pass's steps on 9 tokens, 0.75 on 33.

Splitting a sequence at any position, and running a step for any number of rows, gives the same bits as
the module's own pass over the copies (oneDNN's LSTM on the CPU: checked on the first use on each model,
and any mismatch switches sharing off for that model for good), so the outputs are identical to the plain
pass. A request whose copies have different lengths takes the plain pass (a packed batch of mixed lengths
gives bits that depend on the batch). Eligible modules: :class:`explainkit.models.architectures.SST2LSTM`
with its forward unchanged (embedding, dropout, a one-layer unidirectional ``nn.LSTM`` over the real
tokens, a linear head on the last state), in eval mode, on the CPU.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

__all__ = ["PrefixLSTM", "trie", "plan_starts", "predict", "MIN_COPIES"]

MIN_COPIES = 16         # distinct masked copies in a request before sharing pays for its bookkeeping
SEQ_ROWS = 256          # rows per sequence call
STEP_COST = 1.2         # a one-step call's row, in steps of a row inside a sequence call
CALL_COST = 120.0       # the fixed cost of a call of the LSTM (about 1 ms), in steps of a row inside a sequence call
MAX_ROWS = 4096         # rows per trie (a multiple of the plain pass's 128, so its passes keep their rows)
CHECK_ROWS = 128        # rows checked against the plain pass on the first use on a model
MAX_COST = 0.85         # estimated cost / the plain pass's above which the plain pass is used

_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # module -> engine, or False
_LOCK = threading.Lock()


def trie(ids: np.ndarray):
    """Per position t, each row's node among the distinct prefixes ``ids[:, :t + 1]`` ([T, N]), and
    how many nodes each level has."""
    n, t_max = ids.shape
    nodes, counts = np.zeros((t_max, n), dtype=np.int64), []
    node, vocab = np.zeros(n, dtype=np.int64), int(ids.max(initial=0)) + 1
    for t in range(t_max):
        _, node = np.unique(node * vocab + ids[:, t], return_inverse=True)
        node = node.reshape(-1)
        nodes[t] = node
        counts.append(int(node.max()) + 1)
    return nodes, counts


def _branch(nodes, counts) -> np.ndarray:
    """Each row's branch depth: the first position where its prefix is its own (the last position if never)."""
    t_max, n = nodes.shape
    b = np.full(n, t_max - 1, dtype=np.int64)
    for t in range(t_max - 1, -1, -1):
        alone = np.bincount(nodes[t], minlength=counts[t])[nodes[t]] == 1
        b[alone] = t
    return b


def plan_starts(nodes, counts):
    """Each row's start (the position from which it runs as a sequence of its own, from the shared state
    of its prefix there) and the estimated cost, in steps of a row inside a sequence call.

    A row can start anywhere up to its branch depth. For starts ``0 = s_0 < s_1 < ... < s_m``, rows
    branching in ``[s_j, s_j+1)`` start at ``s_j``; level ``t`` in that range runs the prefixes of the rows
    that start later (the nodes whose deepest branch is at least ``s_j+1``), one one-step call per level up
    to ``s_m``. The starts minimize (dynamic programming over positions) shared steps x STEP_COST, the
    rows' own steps and CALL_COST per call."""
    t_max, n = nodes.shape
    b = _branch(nodes, counts)
    # deep[t, v]: nodes of level t holding a row that branches at v or deeper
    deep = np.zeros((t_max + 1, t_max + 1))
    for t in range(t_max):
        top = np.zeros(counts[t], dtype=np.int64)
        np.maximum.at(top, nodes[t], b)
        deep[t, :t_max] = np.cumsum(np.bincount(top, minlength=t_max)[::-1])[::-1]
    shared = np.vstack([np.zeros(t_max + 1), np.cumsum(deep, axis=0)])   # shared[t, v] = sum_{t' < t} deep[t', v]
    rows = np.r_[0, np.cumsum(np.bincount(b, minlength=t_max))]         # rows[v]: rows branching before v
    best, nxt = np.zeros(t_max), np.zeros(t_max, dtype=np.int64)
    for s in range(t_max - 1, -1, -1):
        c, k = (t_max - s) * (n - rows[s]) + CALL_COST * (1 + s), t_max      # s the last start
        for s2 in range(s + 1, t_max):
            c2 = CALL_COST + STEP_COST * (shared[s2, s2] - shared[s, s2]) + (t_max - s) * (rows[s2] - rows[s]) \
                + best[s2]
            if c2 < c:
                c, k = c2, s2
        best[s], nxt[s] = c, k
    starts, s = [0], 0
    while nxt[s] < t_max:
        s = int(nxt[s])
        starts.append(s)
    opts = np.asarray(starts)
    return opts[np.searchsorted(opts, b, side="right") - 1], float(best[0])


class PrefixLSTM:
    """Runs an eligible LSTM classifier on many token rows, sharing the steps of common prefixes."""

    def __init__(self, module):
        self.module = module
        self.checked = False

    @classmethod
    def build(cls, module) -> "PrefixLSTM | None":
        """The engine for ``module``, or None when it is not an unchanged SST2LSTM with a plain LSTM."""
        import torch

        from explainkit.models.architectures import SST2LSTM

        if not isinstance(module, SST2LSTM) or type(module).forward is not SST2LSTM.forward:
            return None
        lstm = module.lstm
        if (type(lstm) is not torch.nn.LSTM or lstm.num_layers != 1 or lstm.bidirectional or not lstm.batch_first
                or not lstm.bias or lstm.proj_size or type(module.fc) is not torch.nn.Linear):
            return None
        return cls(module)

    def __call__(self, ids, nodes, start):
        """Raw outputs ``[N, K]`` of the module for token rows ``ids`` [N, T] (all of length T).

        Shared prefixes run one step per level (one-step calls of the module's ``nn.LSTM`` from the
        parents' states); each row then runs from its ``start`` to the end as a sequence, grouped with
        the rows of the same start, from the state of its prefix there. Splitting a sequence this way
        gives the same bits as the module's own pass."""
        import torch

        m = self.module
        lstm, hidden = m.lstm, int(m.lstm.hidden_size)
        t_max, n = nodes.shape
        dtype = lstm.weight_hh_l0.dtype
        zero = torch.zeros((1, 1, hidden), dtype=dtype)
        states, prev = [], None                           # per level: (h, c) of the needed nodes
        index = []                                        # per level: node id -> row in states
        need_levels = int(start.max(initial=0))
        reads = set(int(v) for v in np.unique(start))
        for t in range(need_levels):
            sel = start > t
            used = np.unique(nodes[t][sel])
            pos = np.full(int(nodes[t].max()) + 1, -1, dtype=np.int64)
            pos[used] = np.arange(len(used))
            rep = np.flatnonzero(sel)[np.unique(nodes[t][sel], return_index=True)[1]]   # a row per node
            x = m.dropout(m.embedding(torch.from_numpy(np.ascontiguousarray(ids[rep, t]))))[:, None]
            if prev is None:
                h0 = (zero.expand(1, len(used), hidden).contiguous(),) * 2
            else:
                at = torch.from_numpy(index[-1][nodes[t - 1][rep]])
                h0 = (prev[0][:, at], prev[1][:, at])
            _, prev = lstm(x, h0)
            states.append(prev if t + 1 in reads else None)        # kept only where a start reads them
            index.append(pos)
        final = torch.empty((n, hidden), dtype=dtype)
        for s in np.unique(start):
            rows = np.flatnonzero(start == s)
            for a in range(0, len(rows), SEQ_ROWS):
                r = rows[a:a + SEQ_ROWS]
                x = m.dropout(m.embedding(torch.from_numpy(np.ascontiguousarray(ids[r, s:]))))
                if s == 0:
                    h0 = (zero.expand(1, len(r), hidden).contiguous(),) * 2
                else:
                    at = torch.from_numpy(index[s - 1][nodes[s - 1][r]])
                    h0 = (states[s - 1][0][:, at], states[s - 1][1][:, at])
                _, (h, _) = lstm(x, h0)
                final[torch.from_numpy(r)] = h[0]
        return m.fc(m.dropout(final))


def _engine(module):
    with _LOCK:
        engine = _ENGINES.get(module)
        if engine is None:
            engine = _ENGINES[module] = PrefixLSTM.build(module) or False
    return engine or None


def predict(model, ids, mask, logits: bool, plain):
    """Outputs (as ``model.predict_tensor``) for token rows ``ids`` with padding ``mask``, through the
    prefix trie where the module is eligible and the trie saves work, else ``plain()`` (``plain(rows)``:
    the plain pass on those rows). The first use on a model also runs the plain pass on the first
    CHECK_ROWS rows and keeps the engine only if the two agree bit for bit."""
    import torch

    from explainkit.concurrency import MODEL_LOCK

    module = model.module
    if len(ids) < MIN_COPIES or module.training or model.device.type != "cpu":
        return plain()
    engine = _engine(module)
    if engine is None:
        return plain()
    lengths = mask.sum(dim=1).clamp(min=1).numpy()
    if lengths.min() != lengths.max():     # mixed lengths: the packed pass's bits depend on the batch
        return plain()
    ids = ids[:, :int(lengths[0])].numpy()
    outs, first = [], None                 # first: whether the engine computed the first rows
    for a in range(0, len(ids), MAX_ROWS):
        part = ids[a:a + MAX_ROWS]
        nodes, counts = trie(part)
        start, cost = plan_starts(nodes, counts) if len(part) >= MIN_COPIES else (None, float("inf"))
        if cost > MAX_COST * part.size:
            outs.append(plain(slice(a, a + MAX_ROWS)))
        else:
            with MODEL_LOCK, torch.no_grad():
                outs.append(model._output(model._logits(engine(part, nodes, start)), logits))
        first = cost <= MAX_COST * part.size if first is None else first
    out = np.concatenate(outs) if len(outs) > 1 else outs[0]
    if first and not engine.checked:       # the first use: the plain pass on the first rows, bit for bit
        ref = plain(slice(0, CHECK_ROWS))
        if ref.shape != out[:CHECK_ROWS].shape or not np.array_equal(ref, out[:CHECK_ROWS]):
            with _LOCK:
                _ENGINES[module] = False
            return plain()
        engine.checked = True
    return out
