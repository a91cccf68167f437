"""Many masked copies of one prompt through a causal LM, sharing every prefix that two copies have in common.

A copy is the chat-templated prompt with some units deleted, followed by the answer. Two copies that keep the
same tokens up to some position have the same keys and values there, so that part is computed once. The
unique copies are put in depth-first order of their prefix trie (keep masks sorted in descending lexicographic
order: for feature ablation that is "latest first masked unit first"; for Shapley value sampling it puts a
permutation's successive coalitions, which share everything before the unit just added, next to each other).
In that order the previous copy shares the longest prefix with the next one of all copies computed before it,
so keeping only the previous copy's cache reaches the least work the trie allows.

Copies are computed in batches of consecutive copies. All rows of a batch read one source cache: the
previous copy's, or that extended once (one row, one pass) to all of the batch's first copy but its last
position. Row ``r`` reuses the first ``reuse[r]`` positions it shares with the source and computes the rest at
its own positions (``position_ids``), right-padded, under a 4-D mask that hides the source's other positions
from it (causal attention never reads a pad that follows the answer). Where to split the copies into batches
is chosen by dynamic programming for the fewest computed positions, padding included and a forward pass
counted as ``_PASS_TOKENS`` positions of fixed overhead; rows are capped by the activation memory budget.
The language-model head runs on the answer positions only, in float64 after the float32 projection; a row's
input ends at the answer's last-but-one token (the last one predicts nothing that is scored).

The copy that ``lm.token_logprobs`` scored last (every explainer's task scores the whole prompt, which is also
feature ablation's and Shapley sampling's all-kept copy) is not computed again: its answer log-probabilities are
taken as they are, and its cache is the first source (``remember``; forgotten when a weight changes in place).
Scoring runs the fused SDPA attention kernel with the 4-D mask as ``attn_mask`` where the model is loaded eager
(``_fused_attention``: restored afterwards); at one row it is no faster than eager, batched it is.

Packed (tree) passes, the default: consecutive copies go into ONE row, each copy contributing only the tokens it
does not share with the previous copy (its segment: the rest of its prompt and the answer but its last token),
at its own ``position_ids``. A copy's shared prefix may lie in the source cache or in the segments of earlier
copies of the same pass, so a whole stretch of the trie is computed in one pass, every trie node once, without
padding and without "extend" passes. Attention runs per segment (``_tree_attention``, registered with
transformers' ``AttentionInterface``): a segment's queries read exactly its own copy's keys (gathered by column),
causally, so no masked-out column is ever computed (a dense tree mask over the packed row would cost more
attention than the padding it saves). ``EXPLAINKIT_LLM_PACKING=rows`` keeps the padded batches above.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

__all__ = ["score_masked", "plan_batches", "plan_packed", "sequences_of"]

_PASS_TOKENS = 32          # fixed cost of one forward pass, in token positions (measured on a 2-core CPU)
_MAX_TOKENS = 4096         # positions per batch beyond which batching gains nothing
_TREE = "explainkit_tree"  # the attention implementation of packed passes (per-segment attention)
_segments: list = []       # the pass in flight: per segment (start, length, key columns, query-key mask)


def _sequences(enc, keeps):
    """Unique kept-token sequences in trie (depth-first) order, and for every input copy its sequence's index."""
    ids = np.asarray(enc.ids, dtype=np.int64)
    unit_of = np.full(len(ids), -1)
    for u, pos in enumerate(enc.unit_pos):
        unit_of[pos] = u
    in_unit = unit_of >= 0
    kept = np.ones((len(keeps), len(ids)), dtype=bool)
    kept[:, in_unit] = keeps[:, unit_of[in_unit]]
    order = np.lexsort(~kept.T[::-1])               # descending lexicographic: kept (True) sorts first
    seqs, index, where = [], {}, np.empty(len(keeps), dtype=np.int64)
    for m in order:
        s = ids[kept[m]]
        key = s.tobytes()
        if key not in index:
            index[key] = len(seqs)
            seqs.append(s)
        where[m] = index[key]
    return seqs, where


def sequences_of(enc, keeps) -> list:
    """The kept-token sequence of every copy, in the order of ``keeps``."""
    seqs, where = _sequences(enc, np.asarray(keeps, dtype=bool).reshape(len(keeps), -1))
    return [seqs[w] for w in where]


def _lcp(a, b) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


def plan_batches(seqs, n_answer: int, max_rows, max_batch: int = 64, start: int = 0, lcp0: int = 0):
    """Batches ``(start, stop, extend, reuse)`` over ``seqs`` in order, the split chosen by dynamic programming
    to compute the fewest positions (padding and a pass's fixed cost counted). Row ``r`` of ``start:stop``
    reuses the first ``reuse[r]`` positions of the source cache and computes the rest. The source is the
    previous copy's cache (``seqs[start - 1]``), or with ``extend`` that extended to ``seqs[start]`` but its
    last position. ``max_rows(width)`` caps the rows of a batch whose rows compute ``width`` positions.
    The first ``start`` copies are known already; ``lcp0`` positions of ``seqs[0]`` are in the source cache
    before the first batch. A row's input is its own positions and the answer but its last token."""
    n, n_answer = len(seqs), n_answer - 1
    lcp = [lcp0] + [_lcp(seqs[k - 1], seqs[k]) for k in range(1, n)]
    lens = [len(s) for s in seqs]
    best, choice = [float("inf")] * (n + 1), [None] * (n + 1)
    best[start] = 0.0
    for i in range(start, n):
        last = lens[i] - 1
        for extend in (False, True):
            fixed = (last - min(lcp[i], last) + _PASS_TOKENS) if extend else 0
            run, width = (last if extend else lcp[i]), 0
            for j in range(i, min(n, i + max_batch)):
                if j > i:
                    run = min(run, lcp[j])
                width = max(width, lens[j] + n_answer - min(run, lens[j] - 1))
                rows = j - i + 1
                if rows > 1 and (rows > max_rows(width + last // 4) or rows * width > _MAX_TOKENS):
                    break
                cost = best[i] + fixed + rows * width + _PASS_TOKENS
                if cost < best[j + 1]:
                    best[j + 1], choice[j + 1] = cost, (i, extend)
    plans, j = [], n
    while j > start:
        i, extend = choice[j]
        run, last, reuse = (lens[i] - 1 if extend else lcp[i]), lens[i] - 1, []
        for r in range(i, j):
            if r > i:
                run = min(run, lcp[r])
            reuse.append(min(run, lens[r] - 1, last if extend else lens[r] - 1))
        plans.append((i, j, extend, reuse))
        j = i
    return plans[::-1]


def _weights_version(lm) -> tuple:
    """Changes whenever a parameter is modified in place (an optimiser step, ``load_state_dict``)."""
    return id(lm.module), sum(p._version for p in lm.module.parameters())


def remember(lm, ids, answer, logprobs, cache) -> None:
    """Keep the cache of ``ids`` (and the answer's log-probs) that ``lm.token_logprobs`` just computed."""
    layers = getattr(cache, "layers", None)
    lm._scored = None if not layers else (list(ids), list(answer), _weights_version(lm), logprobs,
                                          [(ly.keys[:, :, :len(ids)], ly.values[:, :, :len(ids)]) for ly in layers])


def _known_prefix(lm, seq, answer):
    """``(cache, logprobs)`` of the sequence ``lm.token_logprobs`` scored last, if that is ``seq``: its
    per-layer (keys, values) ``[1, H, T, D]``, and its answer log-probs if ``answer`` is the same too."""
    got = getattr(lm, "_scored", None)
    if got is None or got[0] != [int(i) for i in seq] or got[2] != _weights_version(lm):
        return None, None
    return got[4], (got[3] if got[1] == [int(a) for a in answer] else None)


@contextlib.contextmanager
def _fused_attention(lm):
    """While masked copies are scored: the fused SDPA kernel instead of eager attention (no attention weights
    are needed; the same numbers within float32 rounding), restored afterwards, under the model lock so that
    nothing reads attention weights meanwhile. ``EXPLAINKIT_LLM_SCORING_ATTENTION=eager`` keeps eager."""
    from explainkit.concurrency import MODEL_LOCK
    cfg = lm.module.config
    with MODEL_LOCK:
        was = getattr(cfg, "_attn_implementation", None)
        if was == "eager" and os.environ.get("EXPLAINKIT_LLM_SCORING_ATTENTION", "sdpa") == "sdpa":
            cfg._attn_implementation = "sdpa"
        try:
            yield
        finally:
            cfg._attn_implementation = was


def _batch_inputs(torch, seqs, i, reuse, ans, pad):
    """Right-padded ids ``[B, W]``, their positions, and the float mask ``[B, 1, W, P + W]`` that shows row
    ``r`` its own first ``reuse[r]`` cached positions (of ``P``) and, causally, its own new positions."""
    rows, cached = len(reuse), max(reuse)
    tails = [np.concatenate([seqs[i + r][reuse[r]:], ans]) for r in range(rows)]
    width = max(len(t) for t in tails)
    x = np.full((rows, width), pad, dtype=np.int64)
    for r, t in enumerate(tails):
        x[r, :len(t)] = t
    reuse_t = torch.tensor(reuse)
    pos = reuse_t[:, None] + torch.arange(width)[None]
    if cached == 0:
        return x, tails, pos, None
    seen = torch.arange(cached)[None] < reuse_t[:, None]                         # [B, P]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    visible = torch.cat([seen[:, None].expand(-1, width, -1), causal[None].expand(rows, -1, -1)], dim=-1)
    mask = torch.zeros(visible.shape, dtype=torch.float32).masked_fill_(~visible, torch.finfo(torch.float32).min)
    return x, tails, pos, mask[:, None]


def plan_packed(seqs, n_answer: int, max_tokens: int, max_copies: int = 10 ** 9, start: int = 0, lcp0: int = 0):
    """Packed passes ``(start, stop, reuse)`` over ``seqs`` in order: consecutive copies while their segments
    (a copy's tokens after the ``reuse[r]`` it shares with the previous copy, and the answer but its last token)
    total at most ``max_tokens`` (a single copy may exceed it) and at most ``max_copies`` copies."""
    lcp = [lcp0] + [_lcp(seqs[k - 1], seqs[k]) for k in range(1, len(seqs))]
    reuse = [min(lcp[k], len(seqs[k]) - 1) for k in range(len(seqs))]
    plans, i = [], start
    while i < len(seqs):
        j, total = i, 0
        while j < len(seqs) and j - i < max_copies:
            width = len(seqs[j]) - reuse[j] + n_answer - 1
            if j > i and total + width > max_tokens:
                break
            total, j = total + width, j + 1
        plans.append((i, j, reuse[i:j]))
        i = j
    return plans


def _tree_attention(module, query, key, value, attention_mask=None, dropout=0.0, scaling=None, **_):
    """Attention of a packed pass, segment by segment (``_segments``): each segment's queries ``[1, H, s, D]``
    read only the key columns of its own copy (its shared prefix wherever it lies, then itself, causally)."""
    import torch
    gqa = key.shape[1] != query.shape[1]
    outs = [torch.nn.functional.scaled_dot_product_attention(
        query[:, :, o:o + n], key.index_select(2, cols), value.index_select(2, cols), attn_mask=mask,
        is_causal=mask is None, scale=scaling, enable_gqa=gqa) for o, n, cols, mask in _segments]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def _tree_passes(lm):
    """While packed passes run: the model's attention is :func:`_tree_attention` (restored afterwards, under
    the model lock, which also guards ``_segments``)."""
    from transformers import AttentionInterface

    from explainkit.concurrency import MODEL_LOCK
    if _TREE not in AttentionInterface._global_mapping:
        AttentionInterface.register(_TREE, _tree_attention)
    cfg = lm.module.config
    with MODEL_LOCK:
        was = getattr(cfg, "_attn_implementation", None)
        cfg._attn_implementation = _TREE
        try:
            yield
        finally:
            cfg._attn_implementation = was
            _segments.clear()


def _score_tree(lm, seqs, out, prev, plans, ans):
    """Packed passes (see the module docstring); ``prev``: per layer (keys, values) of the previous copy."""
    from transformers import DynamicCache
    torch = lm.torch
    base, kw = lm.module.base_model, lm._cache_kw()
    head = lm.module.get_output_embeddings()
    n_ans = len(ans)
    from tqdm.auto import tqdm
    bar = tqdm(plans, desc=f"{lm.name}: {len(seqs)} masked copies", unit="pass", leave=False,
               disable=None if len(plans) > 2 else True)          # a terminal only (None: off when not a tty)
    for i, j, reuse in bar:
        cached = prev[0][0].shape[2] if prev else 0
        cols_prev, toks, pos, answer_at, off = np.arange(cached), [], [], [], 0
        _segments.clear()
        for r in range(i, j):
            seg = np.concatenate([seqs[r][reuse[r - i]:], ans[:-1]])
            cols = np.concatenate([cols_prev[:reuse[r - i]], cached + off + np.arange(len(seg))])
            own = reuse[r - i] + np.arange(len(seg))
            mask = None if reuse[r - i] == 0 else torch.from_numpy(np.arange(len(cols))[None] <= own[:, None])
            _segments.append((off, len(seg), torch.from_numpy(cols), mask))
            toks.append(seg)
            pos.append(own)
            answer_at.append(off + len(seg) - n_ans + np.arange(n_ans))
            cols_prev, off = cols[:len(seqs[r])], off + len(seg)
        cache = DynamicCache()
        for li, (k, v) in enumerate(prev or []):
            cache.update(k, v, li)
        hidden = base(input_ids=torch.from_numpy(np.concatenate(toks))[None],
                      position_ids=torch.from_numpy(np.concatenate(pos))[None], **{kw: cache},
                      use_cache=True).last_hidden_state[0]
        lp = torch.log_softmax(head(hidden[torch.from_numpy(np.concatenate(answer_at))]).double(), dim=-1)
        out[i:j] = lp.gather(1, torch.from_numpy(np.tile(ans, j - i)).view(-1, 1)).view(j - i, n_ans).numpy()
        keep = torch.from_numpy(cols_prev)               # the last copy's prompt, as the next pass's source
        prev = [(layer.keys.index_select(2, keep), layer.values.index_select(2, keep)) for layer in cache.layers]


def score_masked(lm, enc, keeps, answer, batch_size=None) -> np.ndarray:
    """Token log-probabilities ``[M, A]`` of ``answer`` after the prompt with units deleted where
    ``keeps[m, u]`` is False (see the module docstring for how the work is shared). A copy that
    ``lm.token_logprobs`` has just scored (the whole prompt, as every explainer's task does) is not scored
    again, and its cache is the first source."""
    from transformers import DynamicCache
    torch = lm.torch
    keeps = np.asarray(keeps, dtype=bool).reshape(len(keeps), -1)
    n_ans = len(answer)
    if len(keeps) == 0:
        return np.zeros((0, n_ans))
    seqs, where = _sequences(enc, keeps)
    out = np.zeros((len(seqs), n_ans))
    prev, known = _known_prefix(lm, seqs[0], answer)   # per layer (keys, values) [1, H, T, D] of seqs[0]
    start, lcp0 = (1, 0) if known is not None else (0, len(seqs[0]) if prev else 0)
    if known is not None:
        out[0] = known
    cap = batch_size or 10 ** 9
    ans = np.asarray(answer, dtype=np.int64)
    if os.environ.get("EXPLAINKIT_LLM_PACKING", "tree") == "tree":
        longest = max(len(q) for q in seqs) + n_ans
        plans = plan_packed(seqs, n_ans, min(_MAX_TOKENS, lm.batch_rows(longest) * longest), cap, start, lcp0)
        with _tree_passes(lm), torch.inference_mode():
            _score_tree(lm, seqs, out, prev, plans, ans)
        return out[where]
    plans = plan_batches(seqs, n_ans, lambda length: min(cap, lm.batch_rows(length)), start=start, lcp0=lcp0)
    base, kw = lm.module.base_model, lm._cache_kw()
    head = lm.module.get_output_embeddings()
    pad = min(lm.eos_ids) if lm.eos_ids else 0
    from tqdm.auto import tqdm
    bar = tqdm(plans, desc=f"{lm.name}: {len(seqs)} masked copies", unit="batch", leave=False,
               disable=None if len(plans) > 2 else True)          # a terminal only (None: off when not a tty)
    with _fused_attention(lm), torch.inference_mode():
        for i, j, extend, reuse in bar:
            rows, cached = j - i, max(reuse)
            x, tails, pos, mask = _batch_inputs(torch, seqs, i, reuse, ans[:-1], pad)
            if extend:                       # the source: the previous copy's cache grown to seqs[i][:-1]
                first = min(_lcp(seqs[i - 1], seqs[i]) if i else lcp0, cached)
                src = DynamicCache()
                for li, (k, v) in enumerate(prev if first else []):
                    src.update(k[:, :, :first], v[:, :, :first], li)
                base(input_ids=torch.from_numpy(seqs[i][first:cached][None]), **{kw: src}, use_cache=True)
                prev = [(layer.keys, layer.values) for layer in src.layers]
            cache = DynamicCache()
            if cached:
                for li, (k, v) in enumerate(prev):
                    cache.update(k[:, :, :cached].expand(rows, -1, -1, -1),
                                 v[:, :, :cached].expand(rows, -1, -1, -1), li)
            hidden = base(input_ids=torch.from_numpy(x), attention_mask=mask, position_ids=pos, **{kw: cache},
                          use_cache=True).last_hidden_state
            r_idx = np.repeat(np.arange(rows), n_ans)
            c_idx = np.concatenate([np.arange(len(t) - n_ans, len(t)) for t in tails])
            h = hidden[torch.from_numpy(r_idx), torch.from_numpy(c_idx)]
            lp = torch.log_softmax(head(h).double(), dim=-1)
            lp = lp.gather(1, torch.from_numpy(np.tile(ans, rows)).view(-1, 1)).view(rows, n_ans)
            out[i:j] = lp.numpy()
            keep, own = reuse[-1], len(seqs[j - 1]) - reuse[-1]     # the last row's own prefix, contiguous
            prev = [(torch.cat([layer.keys[-1:, :, :keep], layer.keys[-1:, :, cached:cached + own]], dim=2),
                     torch.cat([layer.values[-1:, :, :keep], layer.values[-1:, :, cached:cached + own]], dim=2))
                    for layer in cache.layers]
    return out[where]
