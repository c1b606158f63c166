"""Tests of kktsolver.banded_ipm: the O(m) interior-point solver of the all-gaps chain program."""

from __future__ import annotations

import numpy as np
import pytest

from kktsolver.banded_ipm import banded_chain_master, banded_chain_master_info
from kktsolver.data import noisy_constant_1d
from kktsolver.errors import InputError
from kktsolver.patterns import SortedSample
from kktsolver.scale import chain_master

TOL = 1e-8


def _sample(x, y) -> SortedSample:
    x = np.asarray(x, dtype=float)
    o = np.argsort(x)
    return SortedSample(x[o], np.asarray(y, dtype=float)[o], o)


def _cvxpy_chain(s: SortedSample) -> tuple[float, np.ndarray]:
    """Independent model of the relaxed all-gaps chain program in its natural (unscaled) units.

    f is piecewise linear: on interval j = (x_j, x_{j+1}) two right-facing kinks (signs +1, -1)
    with values alpha = <u, x~_j> <= 0 <= beta = <u, x~_{j+1}>; the slope of f left of interval j's
    kinks is (F_{j+1} - F_j - sum s beta) / D_j, right of them (F_{j+1} - F_j - sum s alpha) / D_j,
    and slopes are continuous at every interior point. Cost sum ||u_k||, u_k = (beta - alpha,
    alpha x_R - beta x_L) / D_j. Returns (optimal value, margin multipliers lambda).
    """
    import cvxpy as cp

    x, y = s.x, s.y
    m = x.size
    D = np.diff(x)
    F = cp.Variable(m)
    al = cp.Variable((m - 1, 2))
    be = cp.Variable((m - 1, 2))
    sgn = np.array([1.0, -1.0])
    left = [(F[j + 1] - F[j] - be[j] @ sgn) / D[j] for j in range(m - 1)]
    right = [(F[j + 1] - F[j] - al[j] @ sgn) / D[j] for j in range(m - 1)]
    cons = [right[j] == left[j + 1] for j in range(m - 2)]
    margins = cp.multiply(y, F) >= 1
    cons += [margins, al <= 0, be >= 0]
    cost = 0
    for j in range(m - 1):
        for i in range(2):
            u = cp.hstack([be[j, i] - al[j, i], al[j, i] * x[j + 1] - be[j, i] * x[j]]) / D[j]
            cost += cp.norm(u)
    prob = cp.Problem(cp.Minimize(cost), cons)
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal"
    return float(prob.value), np.asarray(margins.dual_value, dtype=float)


def _r_function(s: SortedSample, lam: np.ndarray) -> np.ndarray:
    """R(x_j) = sum_{i > j} lambda_i y_i (x_i - x_j) (MATH.md section 4 / docs/scale.md)."""
    x, y = s.x, s.y
    return np.array(
        [np.sum(lam[j + 1 :] * y[j + 1 :] * (x[j + 1 :] - x[j])) for j in range(x.size)]
    )


@pytest.mark.parametrize(("m", "p", "seed"), [(12, 0.3, 0), (20, 0.2, 3), (25, 0.4, 5)])
def test_agrees_with_independent_cvxpy_model(m, p, seed):
    s = SortedSample.from_dataset(noisy_constant_1d(m, p, seed=seed))
    sol = banded_chain_master(s, tol=TOL)
    value, lam = _cvxpy_chain(s)
    assert sol.status == "Solved"
    assert sol.objective == pytest.approx(value, rel=1e-6)
    # the margin multipliers of the same program (unique here: compare them relative to their max)
    assert np.max(np.abs(sol.lam - lam)) <= 1e-4 * np.max(lam)


def test_strong_duality_and_r_values_are_the_r_function_of_lambda():
    """objective = sum lambda (MATH.md: 1/2||theta||^2 = sum lambda; the chain objective is the
    minimal sum ||u_k||), and R = (0, continuity multipliers, 0) is the R-function of lambda."""
    s = SortedSample.from_dataset(noisy_constant_1d(200, 0.1, seed=2))
    sol, info = banded_chain_master_info(s, tol=TOL)
    assert sol.status == "Solved"
    assert abs(sol.objective - sol.lam.sum()) <= 10 * TOL * sol.objective
    R = _r_function(s, sol.lam)
    assert np.max(np.abs(sol.R - R)) <= 1e-5 * max(1.0, np.max(np.abs(R)))
    assert info.relative_gap <= TOL and info.primal_residual <= TOL and info.dual_residual <= TOL


def test_kkt_residuals_of_the_returned_solution():
    """Recompute the program's constraints from the returned unscaled fields."""
    s = SortedSample.from_dataset(noisy_constant_1d(300, 0.2, seed=1))
    sol = banded_chain_master(s, tol=TOL)
    x, y, F = s.x, s.y, sol.F
    D = np.diff(x)
    sgn = np.array([1.0, -1.0])
    al, be = sol.alpha.reshape(-1, 2) @ sgn, sol.beta.reshape(-1, 2) @ sgn
    left = (np.diff(F) - be) / D
    right = (np.diff(F) - al) / D
    jump = right[:-1] - left[1:]
    slope_scale = np.max(np.abs(np.diff(F) / D))
    assert np.max(np.abs(jump)) <= 1e-6 * slope_scale
    assert np.min(y * F) >= 1 - 1e-7
    assert np.all(sol.alpha <= 0) and np.all(sol.beta >= 0) and np.all(sol.lam >= 0)
    # complementary slackness of the margins: lambda_j (y_j F_j - 1) small against sum lambda
    assert np.sum(sol.lam * (y * F - 1)) <= 1e-6 * sol.lam.sum()


def test_agrees_with_clarabel_chain_master():
    s = SortedSample.from_dataset(noisy_constant_1d(300, 0.1, seed=0))
    ours = banded_chain_master(s, tol=TOL)
    ref = chain_master(s, np.arange(s.m), np.arange(1, s.m), 1e-10, scaling="dual")
    assert ours.objective == pytest.approx(ref.objective, rel=1e-8)
    assert np.max(np.abs(ours.R - ref.R)) <= 1e-5
    assert np.max(np.abs(ours.lam - ref.lam)) <= 1e-6 * ref.lam.max()


def test_hand_computed_v_shape():
    """x = (-1, 0, 1), labels (+, -, +): f(-1) >= 1, f(0) <= -1, f(1) >= 1 needs slope <= -2 on
    [-1, 0] and >= 2 on [0, 1], a total slope change >= 4, and a kink at t costs |c| sqrt(1 + t^2)
    >= |c|: optimum 4, attained by one kink at t = 0 (the relaxed program's free linear part does
    not help: it has no slope change)."""
    s = _sample([-1.0, 0.0, 1.0], [1, -1, 1])
    sol = banded_chain_master(s, tol=TOL)
    assert sol.status == "Solved"
    assert sol.objective == pytest.approx(4.0, rel=1e-7)
    assert sol.lam.sum() == pytest.approx(4.0, rel=1e-7)


def test_all_labels_plus_one_relaxed_optimum_is_zero():
    """All labels +1 with 0 <= x_1 < ...: min (P) = 1 / sqrt(1 + x_1^2) (one all-active neuron,
    u = (x_1, 1) / (1 + x_1^2)), but the RELAXED chain program has a free linear part L0 (left-
    facing neurons are right-facing ones plus a linear function, docs/scale.md) and f = 1 needs
    no kink: its optimum is 0, which is why scale falls back to the exact master there."""
    x = np.array([0.2, 0.35, 0.6, 0.9, 1.3])
    s = _sample(x, np.ones(5))
    sol = banded_chain_master(s, tol=TOL)
    assert sol.status == "Solved"
    assert 1.0 / np.sqrt(1.0 + x[0] ** 2) > 0.98  # what (P) costs
    assert sol.objective <= 1e-7
    assert np.min(sol.F) >= 1 - 1e-7
    # the linear part carries f: L0 evaluated at the points gives the margins
    assert np.all(sol.L0[0] * x + sol.L0[1] >= 1 - 1e-6)


def test_adversarial_tiny_gap_between_opposite_labels():
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 1, 40))
    x = np.concatenate([x, x[::8] + 1e-6])
    y = np.concatenate([np.ones(40), -np.ones(5)])
    s = _sample(x, y)
    ours = banded_chain_master(s, tol=TOL)
    ref = chain_master(s, np.arange(s.m), np.arange(1, s.m), 1e-10, scaling="dual")
    assert ours.status == "Solved"
    assert ours.objective == pytest.approx(ref.objective, rel=1e-7)


def test_iteration_limit_is_reported_honestly():
    s = SortedSample.from_dataset(noisy_constant_1d(100, 0.1, seed=0))
    sol, info = banded_chain_master_info(s, tol=TOL, max_iter=3)
    assert sol.status == "MaxIterations"
    assert max(info.primal_residual, info.dual_residual, info.relative_gap) > TOL
    assert all(np.all(np.isfinite(v)) for v in (sol.F, sol.U, sol.lam, sol.R))


def test_bad_input_raises_input_error():
    good = _sample([0.0, 0.5, 1.0], [1, -1, 1])
    with pytest.raises(InputError, match="SortedSample"):
        banded_chain_master({"x": [0, 1, 2]})
    with pytest.raises(InputError, match="at least 3"):
        banded_chain_master(_sample([0.0, 1.0], [1, -1]))
    with pytest.raises(InputError, match=r"sample.y\[1\]"):
        banded_chain_master(
            SortedSample(np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.0, 1.0]), np.arange(3))
        )
    with pytest.raises(InputError, match="strictly increasing"):
        banded_chain_master(
            SortedSample(np.array([0.0, 0.5, 0.5]), np.array([1.0, -1.0, 1.0]), np.arange(3))
        )
    with pytest.raises(InputError, match="not finite"):
        banded_chain_master(SortedSample(np.array([0.0, np.nan, 1.0]), np.ones(3), np.arange(3)))
    with pytest.raises(InputError, match="tol"):
        banded_chain_master(good, tol=0.0)
    with pytest.raises(InputError, match="max_iter"):
        banded_chain_master(good, max_iter=0)


@pytest.mark.parametrize("use_lu", [False, True])
def test_newton_system_matches_a_dense_solve(use_lu):
    """Both reductions of the Newton system (Cholesky of the Schur complement in y; banded LU of
    the (F, y) system) against numpy's dense solve of the full KKT matrix, assembled column by
    column from the program's own operators, at a random interior scaling."""
    from kktsolver import banded_ipm as B

    rng = np.random.default_rng(1)
    s = SortedSample.from_dataset(noisy_constant_1d(12, 0.3, seed=0))
    P = B.build_chain_program(s)
    n, K = P.n, P.K
    nx, ny, nl = n + 3 * K, n - 2, n + 2 * K

    def splitx(v):
        return v[:n], v[n:].reshape(3, K)

    def splitz(v):
        return v[:nl], v[nl:].reshape(3, K)

    def joinz(vl, vq):
        return np.concatenate([vl, vq.ravel()])

    def dense(f, nin):
        return np.array([f(np.eye(nin)[i]) for i in range(nin)]).T

    A = dense(lambda v: B._A(P, *splitx(v)), nx)
    G = dense(lambda v: joinz(*B._G(P, *splitx(v))), nx)

    def soc(k):
        v = rng.standard_normal((3, k))
        v[0] = np.hypot(v[1], v[2]) + rng.random(k)
        return v

    sc, _ = B._soc_nt(soc(K), soc(K))
    sl, zl = rng.random(nl) + 0.1, rng.random(nl) + 0.1
    nt = B._Newton(P, sl / zl, sc, use_lu)
    W2 = dense(lambda v: joinz(sl / zl * v[:nl], sc.apply(v[nl:].reshape(3, K), 2)), nl + 3 * K)
    nzz = nl + 3 * K
    kkt = np.block(
        [
            [np.zeros((nx, nx)), A.T, G.T],
            [A, np.zeros((ny, ny)), np.zeros((ny, nzz))],
            [G, np.zeros((nzz, ny)), -W2],
        ]
    )
    r = rng.standard_normal(kkt.shape[0])
    ref = np.linalg.solve(kkt, r)
    dx, dy, dz = nt.solve(splitx(r[:nx]), r[nx : nx + ny], splitz(r[nx + ny :]), 0)
    ours = np.concatenate([dx[0], dx[1].ravel(), dy, joinz(*dz)])
    assert np.max(np.abs(ours - ref)) <= 1e-10 * np.max(np.abs(ref))


def test_small_p_regime_switches_to_the_robust_factorisation():
    """p = 0.01: long runs of +1 make margins inactive with s/z up to 1e20; the Cholesky of the
    Schur complement then loses accuracy, the solver must notice and still reach tol (the value is
    compared with Clarabel's on the same program)."""
    s = SortedSample.from_dataset(noisy_constant_1d(3000, 0.01, seed=2))
    ours = banded_chain_master(s, tol=TOL)
    ref = chain_master(s, np.arange(s.m), np.arange(1, s.m), 1e-10, scaling="dual")
    assert ours.status == "Solved"
    assert ours.objective == pytest.approx(ref.objective, rel=1e-6)
    assert abs(ours.objective - ours.lam.sum()) <= 10 * TOL * ours.objective


def test_solve_global_large_with_the_banded_master():
    """solver="BANDED" swaps the all-gaps program's solver; the certified optimum must be the
    one Clarabel's path certifies (two independent solves, each with its own certificate)."""
    from kktsolver.data import noisy_constant_1d
    from kktsolver.scale import solve_global_large, solve_global_large_diagnostics

    ds = noisy_constant_1d(1000, 0.1, seed=2)
    # method="full": the LP path, whose program is solved at tol.full_solver by the solver chosen
    a, diag = solve_global_large_diagnostics(ds, solver="BANDED", method="full", progress=False)
    assert diag.master[0] == "full:banded:Solved"
    b = solve_global_large(ds, solver="CLARABEL", method="full", progress=False)
    for r in (a, b):
        assert r.status == "optimal" and r.relative_gap <= 1e-8 and r.min_margin >= 1.0
    # each objective is within its gap of min (P), and each bound below it
    assert a.lower_bound <= b.objective * (1 + 1e-12) and b.lower_bound <= a.objective * (1 + 1e-12)
    assert a.objective == pytest.approx(b.objective, rel=2e-8)


# --------------------------------------------------------------------------- session 6: the
# rewritten per-iteration kernels (operators, NT scaling, step lengths, chunking)


def _soc_interior(rng, k, margin=1e-3):
    v = rng.standard_normal((3, k))
    v[0] = np.hypot(v[1], v[2]) * (1.0 + margin * rng.random(k)) + 1e-12
    return v


def test_operator_transposes_and_apply_match_dense_matrices():
    """<A x, y> = <x, A'y> and <G x, z> = <x, G'z> for random vectors (the in-place rewrites of
    _AT / _GT must stay the transposes), and _Newton._apply (used by the refinement) equals the
    KKT matrix [[0, A', G'], [A, 0, 0], [G, 0, -W^2]] assembled from the operators, W^2 built as
    a dense matrix from the NT formula W = beta [[w0, w1'], [w1, I + w1 w1' / (1 + w0)]]."""
    from kktsolver import banded_ipm as B

    rng = np.random.default_rng(4)
    P = B.build_chain_program(SortedSample.from_dataset(noisy_constant_1d(15, 0.3, seed=1)))
    n, K = P.n, P.K
    F, k = rng.standard_normal(n), rng.standard_normal((3, K))
    yv, zl, zq = (
        rng.standard_normal(n - 2),
        rng.standard_normal(n + 2 * K),
        rng.standard_normal((3, K)),
    )
    aF, ak = B._AT(P, yv)
    assert B._A(P, F, k) @ yv == pytest.approx(F @ aF + np.sum(k * ak), rel=1e-12)
    assert np.all(ak[2] == 0.0)
    gl, gq = B._G(P, F, k)
    gF, gk = B._GT(P, zl, zq)
    assert gl @ zl + np.sum(gq * zq) == pytest.approx(F @ gF + np.sum(k * gk), rel=1e-12)

    s, z = _soc_interior(rng, K), _soc_interior(rng, K)
    sc, lam = B._soc_nt(s, z)
    # dense NT scaling per kink, from its definition (Vandenberghe, section 4)
    W = np.empty((K, 3, 3))
    for i in range(K):
        J = np.diag([1.0, -1.0, -1.0])
        ds, dz = s[:, i] @ J @ s[:, i], z[:, i] @ J @ z[:, i]
        sb, zb = s[:, i] / np.sqrt(ds), z[:, i] / np.sqrt(dz)
        gam = np.sqrt((1 + sb @ zb) / 2)
        w = (sb + J @ zb) / (2 * gam)
        w1 = w[1:]
        Wi = np.empty((3, 3))
        Wi[0, 0], Wi[0, 1:], Wi[1:, 0] = w[0], w1, w1
        Wi[1:, 1:] = np.eye(2) + np.outer(w1, w1) / (1 + w[0])
        W[i] = (ds / dz) ** 0.25 * Wi
        assert W[i] @ z[:, i] == pytest.approx(lam[:, i], rel=1e-9, abs=1e-12)
        assert np.linalg.solve(W[i], s[:, i]) == pytest.approx(lam[:, i], rel=1e-9, abs=1e-12)
    wl2 = rng.random(n + 2 * K) + 0.5
    nt = B._Newton(P, wl2, sc)
    dx, dy = (F, k), yv
    dz = (zl, zq)
    (rF, rk), ry, (rl, rq) = nt._apply(dx, dy, dz)
    W2z = np.einsum("kij,kjl,lk->ik", W, W, zq)
    assert rF == pytest.approx(gF + aF, rel=1e-12, abs=1e-12)
    assert rk == pytest.approx(gk + ak, rel=1e-12, abs=1e-12)
    assert ry == pytest.approx(B._A(P, F, k), rel=1e-12, abs=1e-12)
    assert rl == pytest.approx(gl - wl2 * zl, rel=1e-12, abs=1e-12)
    assert rq == pytest.approx(gq - W2z, rel=1e-9, abs=1e-9 * np.max(np.abs(W2z)))


def test_soc_step_lands_on_the_cone_boundary():
    """_soc_step's alpha: lam + alpha d has a block on the boundary of SOC_3 (det ~ 0, smallest
    eigenvalue lam0 - |lam1| ~ 0) and lam + 0.999 alpha d is interior in every block; a direction
    inside the cone gives inf. Checked against the eigenvalues lam0 +- |lam1| directly."""
    from kktsolver import banded_ipm as B

    rng = np.random.default_rng(5)
    for _ in range(20):
        K = 50
        lam = _soc_interior(rng, K, margin=1.0)
        d = rng.standard_normal((3, K)) * 10.0 ** rng.uniform(-3, 3)
        a = B._soc_step(lam, d)
        v = lam + a * d
        eig_min = v[0] - np.hypot(v[1], v[2])
        assert np.min(eig_min) == pytest.approx(0.0, abs=1e-9 * np.max(np.abs(v)))
        v = lam + 0.999 * a * d
        assert np.all(v[0] - np.hypot(v[1], v[2]) > 0)
    inside = _soc_interior(rng, 30)
    assert B._soc_step(_soc_interior(rng, 30), inside) == np.inf
    assert B._lin_step(np.ones(3), np.array([1.0, -0.5, -0.25])) == pytest.approx(2.0)
    assert B._lin_step(np.ones(3), np.ones(3)) == np.inf


def test_the_result_does_not_depend_on_the_chunking(monkeypatch):
    """The per-kink work runs in slices of at most CHUNK kinks (balanced). Every kink's
    arithmetic is the same whatever the slicing, so a tiny CHUNK (many unequal-looking slices,
    a remainder) must reproduce the default run bit for bit."""
    from kktsolver import banded_ipm as B

    s = SortedSample.from_dataset(noisy_constant_1d(300, 0.1, seed=4))
    ref = banded_chain_master(s, tol=TOL)
    monkeypatch.setattr(B, "CHUNK", 37)
    K = 2 * (s.m - 1)
    sl = B._chunks(K)
    assert sl[0].start == 0 and sl[-1].stop == K
    assert all(a.stop == b.start for a, b in zip(sl[:-1], sl[1:], strict=True))
    assert max(q.stop - q.start for q in sl) <= 37
    small = banded_chain_master(s, tol=TOL)
    assert small.iterations == ref.iterations and small.status == ref.status
    for name in ("F", "alpha", "beta", "lam", "R"):
        assert np.array_equal(getattr(small, name), getattr(ref, name)), name
