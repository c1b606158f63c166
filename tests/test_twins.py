"""Twin neurons (kktsolver.twins) and the rounding helpers they rest on."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from kktsolver.network import ReLUNetwork, compensated_cumsum
from kktsolver.patterns import balanced_neurons
from kktsolver.twins import activation_operator, refine_with_twins, twin_network


def _network(rng, n=40, lo=0.3, hi=0.31, scale=1e4):
    t = rng.uniform(lo, hi, n)
    w = rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 2.0, n) * scale
    return ReLUNetwork(rng.normal(size=n) * scale, w[:, None], -w * t)


def test_activation_operator_matches_the_dense_matrix():
    rng = np.random.default_rng(0)
    net = _network(rng)
    net = ReLUNetwork(np.r_[net.v, 3.0], np.vstack([net.W, [[0.0]]]), np.r_[net.b, 2.5])  # flat too
    x = np.sort(rng.uniform(0.29, 0.32, 60))
    dense = np.maximum(x[:, None] * net.W[:, 0][None, :] + net.b[None, :], 0.0)
    G = activation_operator(net, x)
    c, r = rng.normal(size=net.n), rng.normal(size=x.size)
    scale = np.abs(dense).sum()
    assert np.max(np.abs(G.matvec(c) - dense @ c)) <= 1e-12 * scale
    assert np.max(np.abs(G.rmatvec(r) - dense.T @ r)) <= 1e-12 * scale


def test_twins_are_balanced_and_add_exactly_their_coefficient():
    rng = np.random.default_rng(1)
    net = _network(rng, n=10).balanced()
    delta = rng.normal(size=10) * 1e-6
    delta[3] = 0.0
    tw = twin_network(net, delta)
    assert tw.n == 19 and tw.is_balanced(1e-12)
    x = np.linspace(0.29, 0.32, 50)[:, None]
    added = np.maximum(x * net.W[:, 0] + net.b, 0.0) @ delta
    # the twins' function equals sum_j delta_j relu(w_j x + b_j) up to their own rounding
    np.testing.assert_allclose(tw(x) - net(x), added, atol=1e-12 * np.abs(net.v).sum())


def test_refinement_reaches_targets_that_rounding_misses():
    """On a max-margin network with cancelling neurons (two clusters of width 1e-3, objective
    3.6e8), margins off by 1e-8 .. 1e-7 (what float64 rounding does at objective ~1e10) are
    brought within 1e-9 of targets that a network with the same kinks attains, evaluated
    exactly (ReLUNetwork.accurate_margins is exact, tests/test_network.py); kinks stay."""
    from kktsolver.data import clustered_1d
    from kktsolver.patterns import SortedSample
    from kktsolver.scale import solve_global_large

    ds = clustered_1d(300, 0.2, 1e-3, seed=5)
    net = solve_global_large(ds, progress=False).network
    s = SortedSample.from_dataset(ds)
    x, y = s.x, s.y
    exact = lambda nw: nw.accurate_margins(x[:, None], y)  # noqa: E731
    base = exact(net)
    rows = np.flatnonzero(base <= 1 + 1e-6)
    # targets some network with these kinks attains: magnitudes off by ~1e-9 relative, which
    # moves these margins by ~1e-8 .. 1e-7
    rng = np.random.default_rng(2)
    truth = twin_network(net, net.v * rng.normal(size=net.n) * 1e-9)
    target = exact(truth)[rows]
    assert np.max(np.abs(base[rows] - target)) > 1e-8
    out, marg = refine_with_twins(net, x, y, rows, target, exact)
    err0 = np.max(np.abs(base[rows] - target))
    assert np.max(np.abs(marg[rows] - target)) <= min(1e-9, 1e-2 * err0)
    # every twin's kink is its partner's up to rounding (1e-15 relative)
    t_net, t_tw = -net.b / net.W[:, 0], -out.b[net.n :] / out.W[net.n :, 0]
    nearest = np.min(np.abs(t_tw[:, None] - t_net[None, :]), axis=1)
    assert out.n > net.n and np.all(nearest <= 1e-15)


def test_kink_matching_misses_the_kink_by_less_than_product_matching():
    """Both searches see the same candidates; "kinks" minimises |b / w - beta / alpha| exactly
    (checked in rational arithmetic), so its miss can only be smaller."""
    rng = np.random.default_rng(3)
    t = rng.uniform(0.3, 0.7, 50)
    d = rng.uniform(1e6, 1e9, 50)
    U = np.column_stack([d, -d * t]).astype(np.longdouble)
    s = np.ones(50)

    def miss(w, b):
        return [
            abs(Fraction(bi) / Fraction(wi) - Fraction(*(u[1] / u[0]).as_integer_ratio()))
            for wi, bi, u in zip(w, b, U, strict=True)
        ]

    _, wp, bp = balanced_neurons(U, s, candidates=64, match="products")
    _, wk, bk = balanced_neurons(U, s, candidates=64, match="kinks")
    mp, mk = miss(wp, bp), miss(wk, bk)
    assert all(k <= p for k, p in zip(mk, mp, strict=True))
    assert sum(mk) < 0.2 * sum(mp)
    with pytest.raises(ValueError, match="match"):
        balanced_neurons(U, s, match="nearest")


def test_compensated_cumsum_is_within_an_ulp_of_the_exact_prefix_sums():
    """1e10 followed by 3000 terms each below half an ulp of it: the plain cumulative sum drops
    every term (error 3000 x 4e-10), the compensated one stays within an ulp (exact rationals)."""
    rng = np.random.default_rng(4)
    a = np.r_[1e10, rng.uniform(2e-10, 5e-10, 3000)].astype(np.longdouble)
    a[1::3] *= -0.5  # some cancellation too
    exact, tot = [], Fraction(0)
    for v in a:
        tot += Fraction(*v.as_integer_ratio())
        exact.append(tot)
    c, plain = compensated_cumsum(a), np.cumsum(a)

    def err(arr):
        return np.array(
            [
                float(abs(Fraction(*v.as_integer_ratio()) - e))
                for v, e in zip(arr, exact, strict=True)
            ]
        )

    assert np.all(err(c) <= np.spacing(np.abs(c)).astype(float))
    assert err(plain).max() > 100 * err(c).max()  # not vacuous
