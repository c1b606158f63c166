"""Tests of the structured 1-D certifier (kktsolver.certify_large) against the dense certifier.

Independent references: the dense system of kktsolver.certify (_build_system, _residual,
kink_pairs), patterns.rho over all blocks, brute-force box least squares, and verdict rules.
"""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest

from kktsolver import certify_large as cl
from kktsolver.data import Dataset, noisy_constant_1d
from kktsolver.network import ReLUNetwork
from kktsolver.patterns import SortedSample, all_blocks, block_directions, rho

cm = importlib.import_module("kktsolver.certify")  # the module (the package exports the function)
LD = np.longdouble


def random_case(seed: int, m: int = 50, n: int = 20):
    """Random 1-D data and network; 6 neurons get their kink exactly on a data point and one
    pair of neurons a kink 1e-9 (relative) off a point, so there are kink pairs of both signs of
    z_ij; 2 neurons are tiny (below tol.zero_neuron) with kinks on data points."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.random(m))
    y = np.where(rng.random(m) < 0.5, -1, 1)
    v = rng.standard_normal(n)
    w = rng.standard_normal(n)
    b = rng.standard_normal(n) * 0.5
    on = rng.choice(m, size=9, replace=False)
    for j in range(6):
        b[j] = -w[j] * x[on[j]]
    b[6] = -w[6] * x[on[6]] * (1 + 1e-9)
    for j in (7, 8):  # tiny neurons, kink on a point
        v[j], w[j] = 1e-12 * v[j], 1e-12 * w[j]
        b[j] = -w[j] * x[on[j]]
    return Dataset(x, y), ReLUNetwork(v, w[:, None], b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_operator_and_adjoint_match_the_dense_system(seed):
    """apply / adjoint / column norms of the prefix-sum operator against the dense sparse
    system of certify._build_system on the same active set and kink pairs (live neurons)."""
    ds, net = random_case(seed)
    tol = cm.CertTolerances()
    st = cl.structure_1d(net, ds, tol)
    sup = cm.kkt_support(net, ds, tol)
    s = st.sample
    # kink pairs: the dense rule on live neurons, plus the tiny neurons' (structured rule)
    sp = {(int(s.order[i]), int(j)) for i, j in st.pairs}
    dp = {(int(i), int(j)) for i, j in sup.pairs}
    assert dp <= sp
    assert {(i, j) for i, j in sp if sup.live[j]} == dp
    assert {j for _, j in sp - dp} == {7, 8}
    assert len(dp) >= 6  # the kinks placed on points are found
    # the operator, every point active: compare on a structure whose active set is all points
    act = np.arange(ds.m)
    st_all = cl.Structure1D(
        **{
            **st.__dict__,
            "active": act,
            "pairs": st.pairs[sup.live[st.pairs[:, 1]]],
            "pair_pos": st.pair_pos[sup.live[st.pairs[:, 1]]],
        }
    )
    op = cl.StationarityOperator(st_all)
    dense_act = s.order[act]  # dataset indices in the structured column order
    pairs_d = np.column_stack([s.order[st_all.pairs[:, 0]], st_all.pairs[:, 1]])
    sys_ = cm._build_system(net, sup.Xt, ds.y.astype(float), sup.Z, np.sort(dense_act), pairs_d)
    col = np.searchsorted(np.sort(dense_act), dense_act)  # structured column k -> dense column
    rng = np.random.default_rng(seed + 10)
    lam = rng.random(ds.m) * 10 ** rng.uniform(0, 6, ds.m)
    mu = rng.random(op.nmu) * lam[op.pos_of[st_all.pairs[op.pair_idx, 0]]]
    lam_d = np.zeros(ds.m)
    lam_d[col] = lam
    want = sys_.A_ld @ lam_d.astype(LD) + sys_.M_ld @ mu.astype(LD)
    got = op.apply(lam, mu)
    assert np.max(np.abs(got - want)) <= 1e-15 * float(np.max(np.abs(want)))
    r = rng.standard_normal(3 * net.n)
    gl, gm = op.adjoint(r)
    want_l = np.asarray(sys_.A_ld.T @ r.astype(LD), dtype=float)[col]
    want_m = np.asarray(sys_.M_ld.T @ r.astype(LD), dtype=float)
    np.testing.assert_allclose(gl, want_l, rtol=1e-10, atol=1e-10 * np.abs(want_l).max())
    np.testing.assert_allclose(gm, want_m, rtol=1e-10, atol=1e-12)
    cn, mn = op.column_norms()
    dense_cn = np.sqrt(np.asarray(sys_.A_ld.multiply(sys_.A_ld).sum(axis=0), dtype=float)).ravel()
    np.testing.assert_allclose(cn, dense_cn[col], rtol=1e-9)
    np.testing.assert_allclose(
        mn,
        np.sqrt(np.asarray(sys_.M_ld.multiply(sys_.M_ld).sum(axis=0), float)).ravel(),
        rtol=1e-12,
    )
    # adjoint identity <A z, r> = <z, A^T r> on the float path
    assert float(op.apply(lam, mu, float) @ r) == pytest.approx(float(lam @ gl + mu @ gm), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_box_least_squares_is_the_best_face(seed):
    """_box_ls against a brute-force grid-free reference: the minimum over every face (fixed
    values 0 / ub, the rest by unconstrained least squares) in float, feasible ones only; and it
    never does worse than a dense random sample of the box."""
    rng = np.random.default_rng(seed)
    k = 3
    A = rng.standard_normal((2, k))
    rhs = rng.standard_normal(2) * 3
    ub = rng.random(k) * 2
    got = cl._box_ls(A, rhs.astype(LD), ub)
    assert np.all(got >= 0) and np.all(got <= ub)
    f = np.linalg.norm(rhs - A @ got)
    pts = rng.random((20000, k)) * ub
    assert f <= np.linalg.norm(rhs[None, :] - pts @ A.T, axis=1).min() + 1e-12


def _dense_and_structured(m, p, seed):
    from kktsolver.scale import solve_global_large

    ds = noisy_constant_1d(m, p, seed=seed)
    res = solve_global_large(ds)
    tol = cm.CertTolerances()
    dense = cm.certify(res.network, ds)
    structured = cl.certify_structured(res.network, ds, res.network.n, tol)
    return ds, res, dense, structured


@pytest.fixture(scope="module")
def case_800():
    return _dense_and_structured(800, 0.2, 1)


@pytest.fixture(scope="module")
def case_2000():
    return _dense_and_structured(2000, 0.1, 0)


@pytest.mark.parametrize("case", ["case_800", "case_2000"])
def test_structured_agrees_with_dense_on_solver_networks(case, request):
    """Same verdict (global_min) as the dense path, both residuals within tolerance, and the
    structured path's residual re-evaluated by the DENSE system (certify._residual, long double)
    from the reported multipliers; its lower bound recomputed with patterns.rho over all blocks."""
    ds, res, dense, st = request.getfixturevalue(case)
    tol = st.tolerances
    assert dense.verdict == "global_min"
    assert st.verdict == "global_min"
    assert any("structured" in n for n in st.notes)
    assert st.stationarity_residual <= tol.stationarity
    assert dense.stationarity_residual <= tol.stationarity
    # independent evaluation of the reported multipliers on the dense system
    sup = cm.kkt_support(res.network, ds, tol)
    pairs = np.array([(i, j) for i, j, _ in st.mu], dtype=np.int64).reshape(-1, 2)
    sys_ = cm._build_system(res.network, sup.Xt, ds.y.astype(float), sup.Z, sup.active, pairs)
    assert np.all(st.multipliers >= 0)
    assert np.all(st.multipliers[np.setdiff1d(np.arange(ds.m), sup.active)] == 0)
    mu = np.array([v for _, _, v in st.mu])
    assert np.all(mu >= 0) and np.all(mu <= st.multipliers[pairs[:, 0]] * (1 + 1e-15))
    lam_s = st.multipliers[sup.active] / sys_.c
    r = cm._residual(sys_, lam_s, mu / sys_.cmu)
    assert float(np.linalg.norm(r)) == pytest.approx(st.stationarity_residual, rel=1e-3, abs=1e-11)
    # lower bounds: both valid (<= objective), and agree to the gap tolerance
    obj = res.network.objective()
    assert st.lower_bound <= obj and dense.lower_bound <= obj
    assert abs(st.lower_bound - dense.lower_bound) / obj <= tol.gap
    assert st.relative_gap <= tol.gap
    # the KKT multipliers' own bound through patterns.rho (all 2(2m-1) blocks): a valid bound
    s = SortedSample.from_dataset(ds)
    blocks = all_blocks(ds.m)
    lam_sorted = s.sort(st.multipliers)
    mr = float(rho(blocks, s, lam_sorted, block_directions(blocks, s)).max())
    assert lam_sorted.sum() / max(1.0, mr) <= obj * (1 + 1e-9)
    # Euler identity 1/2||theta||^2 = sum lambda (MATH.md section 2) up to the residual
    assert st.euler_residual <= 1e-5


def test_perturbed_network_is_not_global_min(case_800):
    """One neuron's v scaled by 1.01 (the largest one): its ~1e7-sized contributions no longer
    cancel, the network is infeasible (checked against the dense margins)."""
    ds, res, _, _ = case_800
    net = res.network
    j = int(np.argmax(np.abs(net.v)))
    v = net.v.copy()
    v[j] *= 1.01
    bad = ReLUNetwork(v, net.W, net.b)
    c = cl.certify_structured(bad, ds, bad.n, cm.CertTolerances())
    assert c.verdict == "infeasible"
    dense_margin = float(bad.accurate_margins(ds.X, ds.y.astype(float)).min())
    assert c.min_margin == pytest.approx(dense_margin, rel=1e-6)


def test_unbalanced_neuron_is_not_global_min(case_800):
    """(v_j, w_j, b_j) -> (v_j / 1.01, 1.01 w_j, 1.01 b_j) for the largest neuron: the same
    function (same margins, still feasible with active points), but unbalanced, so not KKT
    (MATH.md section 2: |v_j| = ||(w_j, b_j)|| at every KKT point) and a larger objective. The
    structured path cannot prove not_kkt: undecided, with the residual above tolerance."""
    ds, res, _, _ = case_800
    net = res.network
    j = int(np.argmax(np.abs(net.v)))
    v, W, b = net.v.copy(), net.W.copy(), net.b.copy()
    v[j] /= 1.01
    W[j] *= 1.01
    b[j] *= 1.01
    bad = ReLUNetwork(v, W, b)
    c = cl.certify_structured(bad, ds, bad.n, cm.CertTolerances())
    assert c.min_margin >= 1 - 1e-7  # feasible: the function did not change
    assert c.verdict == "undecided"
    assert c.stationarity_residual > c.tolerances.stationarity
    assert any("cannot" in n and "not_kkt" in n for n in c.notes)
    # the objective grew by (v_j^2 (1/1.01^2 - 1) + ||(w_j, b_j)||^2 (1.01^2 - 1)) / 2 > 0
    grow = 0.5 * (net.v[j] ** 2 * (1 / 1.01**2 - 1) + net.neuron_norms()[j] ** 2 * (1.01**2 - 1))
    assert c.objective == pytest.approx(net.objective() + grow, rel=1e-12)
    assert c.relative_gap >= grow / c.objective * 0.99


def test_scaled_up_network_is_feasible_but_not_global(case_800):
    """theta -> 1.001 theta multiplies margins by 1.001^2 (2-homogeneity): feasible, inactive
    everywhere (no active point), objective above the optimum by 0.2 %: never global_min."""
    ds, res, _, _ = case_800
    c = cl.certify_structured(res.network.scaled(1.001), ds, res.network.n, cm.CertTolerances())
    assert c.min_margin == pytest.approx(res.min_margin * 1.001**2, rel=1e-9)
    assert c.verdict == "undecided"
    assert c.near_global is False


def test_infeasible_input_is_infeasible(case_800):
    """0.99 theta has min margin 0.99^2 < 1 - feasibility."""
    ds, res, _, _ = case_800
    c = cl.certify_structured(res.network.scaled(0.99), ds, res.network.n, cm.CertTolerances())
    assert c.verdict == "infeasible"
    assert c.min_margin == pytest.approx(res.min_margin * 0.99**2, rel=1e-9)


def test_dispatch_by_size(monkeypatch, case_800):
    """certify takes the structured path only above STRUCTURED_MIN_ENTRIES (and never with
    exact=True or d > 1)."""
    ds, res, dense, _ = case_800
    assert not any("structured" in n for n in dense.notes)  # m * n below the constant
    assert ds.m * res.network.n <= cm.STRUCTURED_MIN_ENTRIES
    monkeypatch.setattr(cm, "STRUCTURED_MIN_ENTRIES", 0)
    c = cm.certify(res.network, ds)
    assert any("structured" in n for n in c.notes)
    assert c.verdict == "global_min"


def test_structured_rejects_d2():
    ds = Dataset(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([1, -1]))
    net = ReLUNetwork(np.ones(2), np.ones((2, 2)), np.zeros(2))
    with pytest.raises(cm.InputError):
        cl.certify_structured(net, ds, 2, cm.CertTolerances())


def test_positive_ranges_match_float_signs():
    """lo <= i < hi iff the float64 z_ij > 0, including kinks exactly on points and w = 0."""
    rng = np.random.default_rng(5)
    x = np.sort(rng.random(40))
    w = np.r_[rng.standard_normal(10), 0.0, 0.0]
    b = np.r_[-w[:5] * x[rng.choice(40, 5)], rng.standard_normal(5), 0.3, -0.3]
    lo, hi = cl._positive_ranges(x, w, b)
    Z = x[:, None] * w[None, :] + b[None, :]
    for j, i in itertools.product(range(w.size), range(x.size)):
        assert (lo[j] <= i < hi[j]) == (Z[i, j] > 0)
