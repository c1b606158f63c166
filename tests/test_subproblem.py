"""Tests of the convex subproblem (C_B): independent dense formulation, duality identities, hand
optima."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from kktsolver.data import Dataset, noisy_constant_1d
from kktsolver.errors import InputError
from kktsolver.patterns import (
    Block,
    SortedSample,
    all_blocks,
    block_margin_matrix,
    cone_constraints,
    rho,
)
from kktsolver.subproblem import ConvexSubproblem, cone_rows, margins_of, solve_subproblem

TIGHT = {"tol_gap_rel": 1e-10, "tol_gap_abs": 1e-10, "tol_feas": 1e-10}


def sample_of(x, y) -> SortedSample:
    return SortedSample.from_dataset(Dataset(np.asarray(x, float), np.asarray(y)))


def dense_optimum(sample: SortedSample, blocks: list[Block]) -> float:
    """(C_B) written independently: every pattern inequality for every point (O(m K) rows), ECOS.

    Block k with active set A_k: <u_k, x~_i> >= 0 for i in A_k and <= 0 for i outside; a pinned
    block additionally has <u_k, x~_p> = 0 on its kink point p. Margins are summed explicitly.
    Returns +inf if infeasible.
    """
    m, x, y = sample.m, sample.x, sample.y
    xt = np.column_stack([x, np.ones(m)])
    U = cp.Variable((len(blocks), 2))
    cons = []
    out = 0
    for k, blk in enumerate(blocks):
        if blk.direction == "all":
            act = np.ones(m, bool)
        elif blk.direction == "right":
            act = np.arange(m) >= blk.gap
        else:
            act = np.arange(m) < blk.gap
        z = xt @ U[k]
        cons += [z[np.flatnonzero(act)] >= 0]
        if (~act).any():
            cons += [z[np.flatnonzero(~act)] <= 0]
        if blk.pinned:
            p = blk.gap - 1 if blk.direction == "right" else blk.gap
            cons += [z[p] == 0]
        out = out + blk.sign * cp.multiply(act.astype(float), z)
    cons += [cp.multiply(y, out) >= 1]
    prob = cp.Problem(cp.Minimize(cp.sum(cp.norm(U, 2, axis=1))), cons)
    prob.solve(solver="ECOS", abstol=1e-10, reltol=1e-10, feastol=1e-10)
    if prob.status in ("infeasible", "infeasible_inaccurate"):
        return float("inf")
    assert prob.status == "optimal", prob.status
    return float(prob.value)


# --------------------------------------------------------------------------- geometry helpers


def test_cone_rows_match_patterns_cone_constraints():
    s = SortedSample.from_dataset(noisy_constant_1d(6, 0.3, seed=3))
    blocks = all_blocks(s.m, pinned=True)
    G1, R2, pinned = cone_rows(blocks, s)
    for k, blk in enumerate(blocks):
        G, E = cone_constraints(blk, s)
        assert pinned[k] == blk.pinned
        np.testing.assert_array_equal(G[0], G1[k])
        if blk.pinned:
            np.testing.assert_array_equal(E[0], R2[k])
        else:
            np.testing.assert_array_equal(G[1], R2[k])


def test_margins_of_matches_explicit_margin_matrix():
    s = SortedSample.from_dataset(noisy_constant_1d(9, 0.3, seed=4))
    blocks = all_blocks(s.m, pinned=True)
    U = np.random.default_rng(0).standard_normal((len(blocks), 2))
    M = block_margin_matrix(blocks, s)
    np.testing.assert_allclose(margins_of(blocks, s, U), M @ U.ravel(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- hand-derived optima


@pytest.mark.parametrize("formulation", ["sparse", "cvxpy"])
def test_all_positive_labels_hand_optimum(formulation):
    """All labels +1, 0 <= x_1 < ... : optimum 1/sqrt(1 + x_1^2).

    Lower bound: the margin at x_1 is at most sum_k ||u_k|| ||x~_1|| (Cauchy-Schwarz), so
    sum ||u_k|| >= 1/||x~_1||; the single all-active neuron u = x~_1 / ||x~_1||^2 attains it, and it
    is feasible because <u, x~_i> = (x_1 x_i + 1)/(1 + x_1^2) >= 1 for x_i >= x_1 >= 0.
    """
    x = np.array([0.7, 0.3, 0.9, 0.45])
    s = sample_of(x, np.ones(4))
    r = ConvexSubproblem(s, all_blocks(4), formulation).solve(
        **(TIGHT if formulation == "sparse" else {})
    )
    assert r.status == "optimal"
    assert r.objective == pytest.approx(1 / np.sqrt(1 + 0.3**2), rel=1e-7)
    # the only positive multiplier sits on the smallest x
    assert r.multipliers[0] == pytest.approx(r.objective, rel=1e-6)
    assert np.all(r.multipliers[1:] < 1e-6)


def test_three_point_v_hand_optimum(three_point_v):
    """x = (0.1, 0.5, 0.9), y = (+1, -1, +1): optimum 27 / sqrt(5).

    Derivation. The symmetric candidate: positive neurons with kink on 0.5 facing right and left
    with slope changes c_R, c_L (cost sqrt(1 + 0.25) each per unit slope) plus one negative
    all-active neuron -(a x + b). Margins: 0.5 a + b >= 1 at x = 0.5, 0.4 c_R - (0.9 a + b) >= 1,
    0.4 c_L - (0.1 a + b) >= 1. Eliminating c_R, c_L at equality gives the cost
    k (2 + a + 2 b) + ||(a, b)||, k = sqrt(1.25)/0.4, on the half-plane a + 2 b >= 2, whose
    minimiser is the point of the line a + 2 b = 2 closest to the origin, (a, b) = (0.4, 0.8): cost
    4 k + 2/sqrt(5) = 5 sqrt(5) + 2/sqrt(5) = 27/sqrt(5). Global optimality: the multipliers
    lambda = (k, 27/sqrt(5) - 2k, k) have sum 27/sqrt(5), and the solver's dual check (rho <= 1)
    and the dense formulation confirm it independently below.
    """
    s = SortedSample.from_dataset(three_point_v)
    r = ConvexSubproblem(s, all_blocks(3)).solve(**TIGHT)
    assert r.objective == pytest.approx(27 / np.sqrt(5), rel=1e-8)
    k = np.sqrt(1.25) / 0.4
    np.testing.assert_allclose(r.multipliers, [k, 27 / np.sqrt(5) - 2 * k, k], rtol=1e-6)
    assert dense_optimum(s, all_blocks(3)) == pytest.approx(27 / np.sqrt(5), rel=1e-7)


# --------------------------------------------------------------------------- duality and agreement


def _random_blocks(m, rng, n, pinned):
    pool = all_blocks(m, pinned=pinned)
    idx = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[i] for i in idx]


@pytest.mark.parametrize("seed", range(4))
def test_identities_and_dual_feasibility(seed):
    """At the optimum: sum ||u_k|| = sum lambda = 1/2||theta||^2; rho_k(lambda) <= 1 for every block
    in B, with s_k <u_k, g_k(lambda)> = ||u_k|| on nonzero blocks (u_k attains the dual norm);
    lambda_i > 0 only on margins equal to 1."""
    ds = noisy_constant_1d(25, 0.25, seed=seed)
    s = SortedSample.from_dataset(ds)
    blocks = all_blocks(s.m, pinned=(seed % 2 == 1))
    # rhs=None scales the margins to an O(1) optimum: Clarabel then reaches 1e-10 (m = 25)
    r = ConvexSubproblem(s, blocks, rhs=None).solve(**TIGHT)
    assert r.status == "optimal"
    lam = r.multipliers
    assert np.all(lam >= 0)
    assert r.objective == pytest.approx(lam.sum(), rel=1e-8)
    assert r.network().objective() == pytest.approx(r.objective, rel=1e-12)
    assert rho(blocks, s, lam).max() <= 1 + 1e-6
    g = np.array(
        [blk.sign * (lam * s.y)[blk.active(s.m)] @ s.xt[blk.active(s.m)] for blk in blocks]
    )
    norms = np.linalg.norm(r.U, axis=1)
    big = norms > 1e-6 * norms.max()
    np.testing.assert_allclose(
        np.einsum("kj,kj->k", r.U, g)[big], norms[big], atol=1e-6 * r.objective
    )
    marg = margins_of(blocks, s, r.U)
    assert marg.min() >= 1 - 1e-5  # interior-point feasibility is relative to ||x||
    assert np.all(lam[marg > 1 + 1e-4] <= 1e-6 * lam.max())


@pytest.mark.parametrize("seed", range(5))
def test_formulations_agree_with_dense_on_random_block_sets(seed):
    rng = np.random.default_rng(100 + seed)
    m = int(rng.integers(3, 9))
    s = SortedSample.from_dataset(noisy_constant_1d(m, 0.3, seed=seed))
    blocks = _random_blocks(m, rng, int(rng.integers(4, 4 * m)), pinned=True)
    ref = dense_optimum(s, blocks)
    got = [
        ConvexSubproblem(s, blocks, "sparse", margins="prefix").solve(**TIGHT),
        ConvexSubproblem(s, blocks, "sparse", margins="direct").solve(**TIGHT),
        ConvexSubproblem(s, blocks, "cvxpy").solve("CLARABEL"),
        ConvexSubproblem(s, blocks, "cvxpy").solve(
            "ECOS", abstol=1e-10, reltol=1e-10, feastol=1e-10
        ),
    ]
    for r in got:
        if np.isinf(ref):
            assert r.status == "infeasible", (r.formulation, r.solver)
            assert np.isinf(r.objective) and np.isnan(r.U).all()
        else:
            assert r.status == "optimal"
            assert r.objective == pytest.approx(ref, rel=1e-6)
            assert r.dual_objective == pytest.approx(ref, rel=1e-6)


def test_pinned_blocks_stay_on_their_ray():
    s = SortedSample.from_dataset(noisy_constant_1d(7, 0.3, seed=11))
    blocks = [blk for blk in all_blocks(7, pinned=True) if blk.pinned or blk.direction == "all"]
    r = ConvexSubproblem(s, blocks).solve(**TIGHT)
    assert r.status == "optimal"
    G1, R2, pinned = cone_rows(blocks, s)
    scale = np.linalg.norm(r.U, axis=1).max()
    assert np.all(np.abs(np.einsum("kj,kj->k", R2, r.U)[pinned]) <= 1e-9 * scale)
    assert r.objective == pytest.approx(dense_optimum(s, blocks), rel=1e-6)


def test_rhs_scaling_is_undone():
    s = SortedSample.from_dataset(noisy_constant_1d(12, 0.3, seed=2))
    B = all_blocks(12)
    a = ConvexSubproblem(s, B).solve(**TIGHT)
    b = ConvexSubproblem(s, B, rhs=1.0).solve(**TIGHT)
    assert b.objective == pytest.approx(a.objective, rel=1e-8)
    assert b.dual_objective == pytest.approx(a.dual_objective, rel=1e-8)


# ------------------------------------------------------------------ infeasible sets, input errors


@pytest.mark.parametrize("formulation", ["sparse", "cvxpy"])
def test_infeasible_block_sets_report_status(formulation):
    s = sample_of([0.1, 0.4, 0.8], [1, 1, 1])
    cases = [
        [Block("all", 0, -1), Block("right", 1, -1)],  # only negative neurons, positive labels
        [Block("right", 2, 1)],  # point 0 is never active
        [],
    ]
    for blocks in cases:
        r = solve_subproblem(s, blocks, formulation=formulation)
        assert r.status == "infeasible"
        assert r.objective == float("inf")
        assert r.to_dict()["objective"] is None


def test_input_errors():
    s = sample_of([0.1, 0.4, 0.8], [1, -1, 1])
    with pytest.raises(InputError, match="formulation"):
        ConvexSubproblem(s, all_blocks(3), "dense")
    with pytest.raises(InputError, match=r"blocks\[0\]"):
        ConvexSubproblem(s, [Block("right", 5, 1)])
    with pytest.raises(InputError, match="Clarabel directly"):
        ConvexSubproblem(s, all_blocks(3)).solve("ECOS")
    with pytest.raises(InputError, match="not installed"):
        ConvexSubproblem(s, all_blocks(3), "cvxpy").solve("NO_SUCH_SOLVER")
    with pytest.raises(InputError, match="Clarabel setting"):
        ConvexSubproblem(s, all_blocks(3)).solve(no_such_option=1)


def test_single_point_and_to_dict():
    s = sample_of([0.5], [-1])
    r = ConvexSubproblem(s, all_blocks(1)).solve(**TIGHT)
    # one point: lower bound 1/||x~|| by Cauchy-Schwarz, attained by the negative all-active neuron
    assert r.objective == pytest.approx(1 / np.hypot(0.5, 1), rel=1e-8)
    d = r.to_dict()
    assert d["status"] == "optimal" and len(d["multipliers"]) == 1 and len(d["U"]) == 2
