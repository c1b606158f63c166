"""Tests of KKT enumeration and sampling: an independent brute force over block subsets, symmetries, CLI.

The brute force below shares no code with kktsolver.enumeration: its own cvxpy model of (C_B) for every
block subset, its own canonical / uniqueness tests and its own comparison of functions.
"""

from __future__ import annotations

import itertools
import json

import cvxpy as cp
import numpy as np
import pytest

from kktsolver.certify import certify
from kktsolver.data import Dataset, save_dataset
from kktsolver.enumeration import (
    EnumTolerances,
    FunctionRegistry,
    enumerate_kkt,
    extreme_kkt,
    sample_kkt,
)
from kktsolver.errors import InputError
from kktsolver.network import ReLUNetwork
from kktsolver.patterns import Block, all_blocks

KKT = ("kkt", "kkt_undecided", "local_min", "global_min")
LAYOUTS = {"regular": [0.1, 0.35, 0.6, 0.85], "irregular": [0.05, 0.2, 0.55, 0.9]}


# --------------------------------------------------------------------------- independent brute force


class BruteForce:
    """Every block subset B (|B| <= m) of all free and pinned blocks, solved by one DPP cvxpy model.

    Restrictions, each a necessary condition for a vertex KKT point with blocks exactly B:
    |B| <= m (a vertex of {r >= 0 : M r >= 1} has at most m nonzeros) and every point i has a block of
    sign y_i strictly active at i (otherwise y_i N(x_i) <= 0). Nothing else is pruned.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        order = np.argsort(x)
        self.x, self.y = np.asarray(x, float)[order], np.asarray(y, float)[order]
        m = self.m = len(x)
        self.xt = np.column_stack([self.x, np.ones(m)])
        self.blocks = all_blocks(m, pinned=m >= 2)
        K = len(self.blocks)
        self.U = cp.Variable((K, 2))
        self.mask = cp.Parameter(K, nonneg=True)
        A = np.zeros((m, K, 2))
        cons = []
        self.cone_rows = []  # (row, kind) with kind "ge" (>= 0) or "eq" (= 0, the pinned kink)
        for k, b in enumerate(self.blocks):
            act = self.active(b)
            A[act, k] = b.sign * self.y[act, None] * self.xt[act]
            if b.direction == "all":
                rows = [(self.xt[0], "ge"), (self.xt[m - 1], "ge")]
            elif b.direction == "right":
                rows = [(self.xt[b.gap], "ge"), (-self.xt[b.gap - 1], "eq" if b.pinned else "ge")]
            else:
                rows = [(self.xt[b.gap - 1], "ge"), (-self.xt[b.gap], "eq" if b.pinned else "ge")]
            self.cone_rows.append(rows)
            for r, kind in rows:
                cons.append(self.U[k] @ r == 0 if kind == "eq" else self.U[k] @ r >= 0)
        self.margin = cp.hstack([cp.sum(cp.multiply(A[i], self.U)) for i in range(m)])
        self.margin_con = self.margin >= 1
        cons += [self.margin_con, cp.multiply(1 - self.mask, self.U[:, 0]) == 0]
        cons += [cp.multiply(1 - self.mask, self.U[:, 1]) == 0]
        self.prob = cp.Problem(cp.Minimize(cp.sum(cp.norm(self.U, 2, axis=1))), cons)
        self.A = A

    def active(self, b: Block) -> np.ndarray:
        idx = np.arange(self.m)
        if b.direction == "right":
            return idx >= b.gap
        if b.direction == "left":
            return idx < b.gap
        return idx >= 0

    def subsets(self):
        m, K = self.m, len(self.blocks)
        own = [self.active(b) & (self.y == b.sign) for b in self.blocks]
        for size in range(1, m + 1):
            for S in itertools.combinations(range(K), size):
                if np.logical_or.reduce([own[k] for k in S]).all():
                    yield S

    def vertex_network(self, S) -> ReLUNetwork | None:
        """The network of the unique optimum of (C_B) if all blocks are nonzero and strictly in their cones."""
        z = np.zeros(len(self.blocks))
        z[list(S)] = 1.0
        self.mask.value = z
        self.prob.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
        if self.prob.status != "optimal":
            return None
        U = self.U.value[list(S)]
        norms = np.linalg.norm(U, axis=1)
        if np.any(norms <= 1e-7 * norms.sum()):
            return None
        for k, u in zip(S, U, strict=True):  # strictly inside the cone, apart from the pinned equality
            for r, kind in self.cone_rows[k]:
                if kind == "ge" and u @ r <= 1e-7 * np.linalg.norm(u) * np.linalg.norm(r):
                    return None
        lam = np.asarray(self.margin_con.dual_value)
        margins = np.asarray(self.margin.value)
        tight = margins <= 1 + 1e-6
        E = U / norms[:, None]
        M = np.einsum("ikj,kj->ik", self.A[tight][:, list(S)], E)
        if M.shape[0] < M.shape[1] or np.linalg.svd(M, compute_uv=False)[-1] <= 1e-8 * np.abs(M).max():
            return None  # an optimal face of dimension >= 1: its vertices have fewer blocks
        del lam
        v = np.array([self.blocks[k].sign for k in S]) * np.sqrt(norms)
        wb = U / np.sqrt(norms)[:, None]
        return ReLUNetwork(v, wb[:, 0], wb[:, 1])

    def classes(self, dataset: Dataset) -> list[tuple[float, ReLUNetwork, str]]:
        out: list[tuple[float, ReLUNetwork, str]] = []
        for S in self.subsets():
            net = self.vertex_network(S)
            if net is None:
                continue
            mm = float(np.min(net.margins(dataset.X, dataset.y)))
            if mm < 1:
                net = net.scaled(1 / np.sqrt(mm))
            cert = certify(net, dataset)
            if cert.verdict not in KKT:
                continue
            if not any(same_class(net, o) for _, o, _ in out):
                out.append((net.objective(), net, cert.verdict))
        return out


def same_function(a: ReLUNetwork, b: ReLUNetwork, rtol: float = 1e-4) -> bool:
    """Equal on R: equal at every kink of either network, at the data range ends and far out on both sides."""
    t = np.concatenate([-a.b / np.where(a.W[:, 0] == 0, np.inf, a.W[:, 0]), -b.b / np.where(b.W[:, 0] == 0, np.inf, b.W[:, 0])])
    t = t[np.isfinite(t)]
    lo, hi = (t.min(), t.max()) if t.size else (0.0, 1.0)
    pts = np.concatenate([t, [lo - 1.0, lo - 2.0, hi + 1.0, hi + 2.0, 0.0]])
    fa, fb = a(pts), b(pts)
    return bool(np.all(np.abs(fa - fb) <= rtol * (1 + np.abs(fa).max())))


def same_class(a: ReLUNetwork, b: ReLUNetwork) -> bool:
    return same_function(a, b) and abs(a.objective() - b.objective()) <= 1e-6 * a.objective()


def assert_same_classes(found, reference) -> None:
    """Both directions of inclusion, classes compared by function on R and objective."""
    nets = [c.network for c in found]
    for obj, net, _ in reference:
        assert any(same_class(net, n) for n in nets), f"enumeration missed the class with objective {obj}"
    for c in found:
        assert any(same_class(c.network, n) for _, n, _ in reference), (
            f"enumeration reported a class (objective {c.objective}) the brute force does not have"
        )
    assert len(found) == len(reference)


def dataset(x, y) -> Dataset:
    return Dataset(np.array(x, float), np.array(y), {"support": [0.0, 1.0]})


# --------------------------------------------------------------------------- exact enumeration vs brute force

GRID = [
    (layout, labels)
    for m in (1, 2, 3)
    for layout in LAYOUTS
    for labels in itertools.product((1, -1), repeat=m)
]


@pytest.mark.parametrize("layout,labels", GRID)
def test_enumeration_matches_brute_force_small(layout, labels):
    ds = dataset(LAYOUTS[layout][: len(labels)], labels)
    res = enumerate_kkt(ds, progress=False).collect()
    assert res.complete and res.stopped == "exhausted"
    assert_same_classes(res.classes, BruteForce(ds.x, ds.y).classes(ds))


# m = 4: 16 label patterns x 2 layouts is ~90k subsets per layout for the brute force (about 5 minutes);
# the global sign flip y -> -y maps KKT classes onto KKT classes (N -> -N, same objective; tested
# below), so the brute force runs on the patterns with y_0 = +1 that are not all equal, in both layouts.
M4 = [(layout, (1,) + rest) for layout in LAYOUTS for rest in [(-1, 1, -1), (1, -1, 1), (-1, -1, 1)]]


@pytest.mark.slow
@pytest.mark.parametrize("layout,labels", M4)
def test_enumeration_matches_brute_force_m4(layout, labels):
    ds = dataset(LAYOUTS[layout], labels)
    res = enumerate_kkt(ds, progress=False).collect()
    assert res.complete
    assert_same_classes(res.classes, BruteForce(ds.x, ds.y).classes(ds))
