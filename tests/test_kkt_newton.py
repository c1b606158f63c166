"""Tests of kktsolver.kkt_newton: the Newton point satisfies the KKT conditions of MATH.md
sections 2-3, checked by direct evaluation (network values, R from its definition), not by the
chain equations the module solves."""

import numpy as np
import pytest

from kktsolver.data import noisy_constant_1d
from kktsolver.kkt_newton import WorkBudget, chain_kkt_newton
from kktsolver.network import PiecewiseLinear
from kktsolver.patterns import SortedSample
from kktsolver.scale import _r_values, solve_global_large


def _newton_inputs(m, p, seed):
    """(sample, scale-path result, arguments of chain_kkt_newton) from the result's multipliers."""
    ds = noisy_constant_1d(m, p, seed=seed)
    sample = SortedSample.from_dataset(ds)
    res = solve_global_large(ds)
    lam = res.multipliers[sample.order]
    support = np.flatnonzero(lam > 1e-9 * lam.max())
    pl = res.network.piecewise_linear()
    # the kink form reproduces the network (checked against direct evaluation)
    assert np.allclose(pl(sample.x), res.network(sample.x[:, None]).ravel(), rtol=1e-9, atol=1e-6)
    args = (
        sample.x,
        sample.y,
        support,
        _r_values(sample, lam)[support],
        pl.kinks,
        pl.slope_changes,
        pl.slope(sample.x[support]),
    )
    return sample, res, args


def _newton_point(m, p, seed):
    sample, res, args = _newton_inputs(m, p, seed)
    return sample, res, chain_kkt_newton(*args)


def test_piecewise_from_kinks_matches_relu_sum():
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(-1, 2, 7))
    d = rng.normal(size=7)
    L0 = np.array([0.3, -0.2])
    x = np.linspace(-2, 3, 101)
    pl = PiecewiseLinear.from_kinks(t, d, L0)
    f, slope = pl(x), pl.slope(x)
    direct = L0[0] * x + L0[1] + np.maximum(x[:, None] - t[None, :], 0.0) @ d
    assert np.allclose(f, direct, atol=1e-12)
    assert np.allclose(pl.slope_changes, d, atol=1e-14)
    h = 1e-7
    fd = (pl(x + h) - f) / h
    ok = np.min(np.abs(x[:, None] - t[None, :]), axis=1) > 1e-5
    assert np.allclose(slope[ok], fd[ok], atol=1e-5)


@pytest.mark.parametrize("m, p, seed", [(300, 0.1, 0), (600, 0.4, 1)])
def test_newton_point_is_a_kkt_point(m, p, seed):
    sample, res, point = _newton_point(m, p, seed)
    assert point is not None and point.converged, point and point.message
    x, y = sample.x, sample.y
    # lambda from R: R(t) = sum_{x_i > t} lambda_i y_i (x_i - t) is linear between support points,
    # lambda_j y_j its slope jump; R = 0 outside the support
    xa = x[point.support]
    slope = np.diff(point.R) / np.diff(xa)
    lam = y[point.support] * (np.r_[slope, 0.0] - np.r_[0.0, slope])
    assert lam.min() >= -1e-9 * lam.max()
    # R recomputed from its definition with these lambda agrees with the Newton R
    R_def = np.array([np.sum(lam * y[point.support] * np.maximum(xa - a, 0.0)) for a in xa])
    assert np.allclose(R_def, point.R, atol=1e-8)
    # primal: margins >= 1 everywhere, = 1 on the support (complementary slackness)
    f = point.function(x)
    assert np.min(y * f) >= 1 - 1e-7
    assert np.max(np.abs(y[point.support] * f[point.support] - 1)) <= 1e-7
    # the local evaluation (support values + slopes) is the same function, exact on the support
    fl = point.local_values(x, y)
    assert np.array_equal(fl[point.support], y[point.support])
    assert np.max(np.abs(fl - f)) <= 1e-7
    # dual feasibility and tangency: |R(t)| <= w(t) on a fine grid, = w at every kink with the
    # kink's sign (R evaluated by interpolation between support points: it is linear there)
    grid = np.linspace(xa[0], xa[-1], 20001)
    Rg = np.interp(grid, xa, point.R)
    assert np.max(np.abs(Rg) / np.hypot(1, grid)) <= 1 + 1e-9
    Rk = np.interp(point.t.astype(float), xa, point.R)  # t is long double
    assert np.allclose(np.sign(point.d) * Rk, np.hypot(1, point.t), atol=1e-9)
    # strong duality: primal cost sum |d_k| w(t_k) = sum lambda = the scale path's optimum
    cost = float(np.sum(np.abs(point.d) * np.hypot(1, point.t)))
    assert cost == pytest.approx(lam.sum(), rel=1e-9)
    assert cost == pytest.approx(res.objective, rel=1e-8)


def test_work_budget_is_deterministic_and_respected():
    # the stage's cap is counted work (iterations x unknowns), so repeated runs agree exactly
    # whatever the machine load, and no iteration starts once the budget is spent
    _, _, args = _newton_inputs(300, 0.2, 3)
    runs = []
    for _ in range(2):
        work = WorkBudget(float("inf"))
        runs.append((chain_kkt_newton(*args, work=work), work.used))
    (p1, u1), (p2, u2) = runs
    assert p1 is not None and p1.converged and u1 > 0
    assert u1 == u2 and np.array_equal(p1.t, p2.t) and np.array_equal(p1.d, p2.d)
    # a spent budget: no Newton iteration at all, so no point
    none = WorkBudget(0.0)
    assert chain_kkt_newton(*args, work=none) is None and none.used == 0
