"""Prefix sharing for masked copies through the LSTM (explainkit/models/prefix_sharing.py): same bits, less work."""
import numpy as np
import pytest
from sklearn.utils import check_random_state

import explainkit as ek
from explainkit.data import datasets
from explainkit.models import prefix_sharing as ps


@pytest.fixture(scope="module")
def lstm():
    return ek.load_sample("sst2-lstm")


def lime_keep(d: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """LIME's text perturbations (random removals of 1..d tokens), as keep masks."""
    rs = check_random_state(seed)
    keep = np.ones((n, d), bool)
    for i, size in enumerate(rs.randint(1, d + 1, n - 1), start=1):
        keep[i, rs.permutation(d)[:size]] = False
    return keep


def plain(model, fn):
    """``fn()`` with the prefix engine switched off for ``model`` (restored afterwards)."""
    saved = ps._ENGINES.get(model.module)
    ps._ENGINES[model.module] = False
    try:
        return fn()
    finally:
        if saved is None:
            ps._ENGINES.pop(model.module, None)
        else:
            ps._ENGINES[model.module] = saved


@pytest.mark.parametrize("index", [9, 0])
def test_masked_copies_bit_identical_to_the_plain_pass(lstm, index):
    s = lstm.prepare(datasets.sample_data("sst2-lstm")[index][0])
    keep = lime_keep(s.n_units, 600)
    shared = lstm.predict_masked(s, keep, batch_size=4096)
    engine = ps._ENGINES.get(lstm.module)
    assert isinstance(engine, ps.PrefixLSTM) and engine.checked      # it ran, and passed its own check
    ref = plain(lstm, lambda: lstm.predict_masked(s, keep, batch_size=4096))
    assert shared.shape == (len(keep), 2)
    np.testing.assert_array_equal(shared, ref)
    logits = lstm.predict_masked_many([s], [keep[:300]], logits=True)[0]
    np.testing.assert_array_equal(logits, plain(lstm, lambda: lstm.predict_masked_many([s], [keep[:300]],
                                                                                         logits=True)[0]))


def test_the_plan_shares_work_and_starts_no_row_past_its_branch(lstm):
    s = lstm.prepare(datasets.sample_data("sst2-lstm")[9][0])
    ids = np.where(lime_keep(s.n_units), np.asarray(s.tensor)[None], 0)
    ids = np.unique(ids, axis=0)
    nodes, counts = ps.trie(ids)
    assert counts[-1] == len(ids) and counts[0] == 2          # distinct rows; position 0 kept or padded
    start, cost = ps.plan_starts(nodes, counts)
    branch = ps._branch(nodes, counts)
    assert (start <= branch).all() and start.min() == 0
    # every row branching at b shares its prefix with another row up to b - 1
    for t in range(1, ids.shape[1]):
        below = branch >= t
        assert (np.bincount(nodes[t - 1], minlength=counts[t - 1])[nodes[t - 1][below]] >= 2).all()
    assert cost < 0.85 * ids.size                            # LIME's copies of 33 tokens: about 0.75


def test_lime_on_the_lstm_keeps_its_numbers(lstm):
    s = lstm.prepare(datasets.sample_data("sst2-lstm")[9][0])
    e = ek.explain(lstm, s, "lime", n_samples=500, seed=3)
    ref = plain(lstm, lambda: ek.explain(lstm, s, "lime", n_samples=500, seed=3))
    np.testing.assert_allclose(e.scores, ref.scores, rtol=0, atol=1e-12)
    assert np.count_nonzero(e.scores) == 10


def test_mixed_lengths_and_other_models_take_the_plain_pass(lstm):
    data = datasets.sample_data("sst2-lstm")
    ss = [lstm.prepare(data[i][0]) for i in range(4)]
    assert len({x.n_units for x in ss}) > 1
    keeps = [np.random.default_rng(i).random((40, x.n_units)) < 0.6 for i, x in enumerate(ss)]
    outs = lstm.predict_masked_many(ss, keeps)
    for o, r in zip(outs, plain(lstm, lambda: lstm.predict_masked_many(ss, keeps))):
        np.testing.assert_array_equal(o, r)
    tr = ek.load_sample("sst2-transformer")
    s = tr.prepare(ek.datasets.sample_data("sst2-transformer")[9][0])
    tr.predict_masked(s, lime_keep(s.n_units, 64))
    assert ps._ENGINES.get(tr.module) is False and ps.PrefixLSTM.build(tr.module) is None


def test_a_mismatch_switches_the_engine_off_for_good(lstm, monkeypatch):
    s = lstm.prepare(datasets.sample_data("sst2-lstm")[0][0])
    keep = lime_keep(s.n_units, 1000, seed=1)
    ref = plain(lstm, lambda: lstm.predict_masked(s, keep))
    engine, calls = ps.PrefixLSTM.build(lstm.module), []
    real = engine.__class__.__call__
    monkeypatch.setattr(engine.__class__, "__call__", lambda self, *a: calls.append(1) or real(self, *a) * 1.0001)
    monkeypatch.setitem(ps._ENGINES, lstm.module, engine)
    np.testing.assert_array_equal(lstm.predict_masked(s, keep), ref)      # the plain result, not the bad one
    assert calls and ps._ENGINES[lstm.module] is False                    # the engine ran, and is off now
    lstm.predict_masked(s, keep)
    assert len(calls) == 1
    monkeypatch.undo()
    ps._ENGINES.pop(lstm.module, None)


def test_large_requests_share_in_bounded_slices(lstm, monkeypatch):
    """Tries of at most MAX_ROWS rows (a multiple of the plain pass's 128): same bits, bounded memory."""
    s = lstm.prepare(datasets.sample_data("sst2-lstm")[0][0])
    keep = lime_keep(s.n_units, 2000, seed=2)
    ref = plain(lstm, lambda: lstm.predict_masked(s, keep, batch_size=4096))
    monkeypatch.setattr(ps, "MAX_ROWS", 256)
    tries, real = [], ps.trie
    monkeypatch.setattr(ps, "trie", lambda ids: tries.append(len(ids)) or real(ids))
    np.testing.assert_array_equal(lstm.predict_masked(s, keep, batch_size=4096), ref)
    assert max(tries) == 256 and sum(tries) == len(np.unique(keep, axis=0))
