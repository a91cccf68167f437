"""Kernel SHAP's cheap paths give the numbers of the plain ones: the Cholesky inverse (and its pseudo-inverse
fallback), a stratum's random stream however it is cut, the complement half of the power-game recursion."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

pytest.importorskip("shap")
from explainkit_builtins import kernel_estimator, kernel_surrogate  # noqa: E402


def test_spd_inverse_matches_pinv_and_falls_back_when_singular():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 12))
    a = x.T @ x
    np.testing.assert_allclose(kernel_surrogate.spd_inverse(a), np.linalg.pinv(a, hermitian=True), rtol=1e-10,
                               atol=1e-14)
    x[:, 3] = x[:, 5]                                  # two equal columns: rank 11, the pseudo-inverse
    a = x.T @ x
    np.testing.assert_allclose(kernel_surrogate.spd_inverse(a), np.linalg.pinv(a, hermitian=True), rtol=1e-8,
                               atol=1e-12)


def test_stratum_stream_is_the_same_however_it_is_drawn():
    m, k = 30, 7                                       # C(30, 7) pairs: the random stream, not the shuffled list
    kernel_estimator._STREAMS.clear()
    nested = kernel_estimator._Stratum(m, k, seed=3)
    for n in (5, 40, 41, 300):
        part = nested.first(n).copy()
    kernel_estimator._STREAMS.clear()                  # drawn again from the seed, in one go
    direct = kernel_estimator._Stratum(m, k, seed=3).first(300)
    np.testing.assert_array_equal(part, direct)
    assert (direct.sum(axis=1) == k).all() and len({r.tobytes() for r in direct}) == 300
    again = kernel_estimator._Stratum(m, k, seed=3)    # the next request reuses the kept stream: same pairs
    np.testing.assert_array_equal(again.first(20), direct[:20])
    assert again.first(20).base is not None and not again.first(20).flags.writeable
    listed = kernel_estimator._Stratum(10, 3, seed=3)  # a listed stratum's cached shuffle: every pair once
    assert len({r.tobytes() for r in listed.first(10 ** 6)}) == math.comb(10, 3)


@pytest.mark.parametrize("m", [2, 7, 11])
def test_power_shapley_against_the_formula(m):
    b = np.random.default_rng(m).standard_normal(m)
    b /= np.abs(b).sum()
    z = np.asarray(list(itertools.product((0, 1), repeat=m)), dtype=np.float64)
    size = z.sum(axis=1).astype(int)
    w = np.array([math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) for k in range(m)])
    got = kernel_surrogate.power_shapley(b, (3, 7))
    for r, d in enumerate((3, 7)):
        v = ((2 * z - 1) @ b) ** d
        want = [np.sum(w[size[o]] * (v[o + (1 << (m - 1 - i))] - v[o]))
                for i, o in enumerate(np.nonzero(z[:, i] == 0)[0] for i in range(m))]
        np.testing.assert_allclose(got[r], want, rtol=1e-9, atol=1e-13)
