"""Structured 1-D certifier: the path :func:`kktsolver.certify.certify` takes for large 1-D data.
Margins, kink pairs, stationarity operator and lower bound by prefix sums, never an m x n array.
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import lsq_linear
from scipy.sparse.linalg import LinearOperator, lsqr

from .certify import Certificate, CertTolerances, r_dual_lp
from .data import Dataset
from .errors import InputError, SolverError
from .network import ReLUNetwork, compensated_cumsum
from .patterns import SortedSample

__all__ = [
    "PolishInfo",
    "StationarityOperator",
    "Structure1D",
    "best_mu",
    "certify_structured",
    "polish",
    "structure_1d",
]

_LD = np.longdouble
#: weight of the rows that hold a lambda fixed at 0 during a least-squares step, relative to the
#: residual its own column would cause (the R-value variables move every lambda)
PENALTY = 1e3
#: cutting-plane rounds of the R-value dual LP start (scale.dual_lp; the dense path uses 8). At
#: m = 1e5 (seed setting, seed 0) 3 rounds gave the same multipliers' residual (2.58e-7) and the
#: same gap (2.42e-7) as 8, in 27 s instead of 50 s of certify time. If the gap is then above
#: tol.gap, the 8-round LP is run for the bound.
DUAL_ROUNDS = 3


# --------------------------------------------------------------------------- structure


@dataclass(frozen=True, eq=False)
class Structure1D:
    """Everything the 1-D certificate needs about (network, dataset), in O(n + m) memory.

    Points are in sorted order (``sample``). Neuron j is positive exactly on the sorted points
    ``lo[j] <= i < hi[j]`` (decided on the float64 z_ij = x_i w_j + b_j, like the dense path:
    z is monotone in x, so the set is a range). ``pairs`` (P, 2) are the kink pairs (sorted point
    index, neuron) of :func:`kktsolver.certify.kink_pairs`, ``pair_pos`` their float64 z_ij > 0.
    ``margins`` y_i N(x_i) (extended precision), ``active`` the sorted indices with margin
    <= 1 + tol.active, ``live`` the nonzero neurons.
    """

    sample: SortedSample
    v: np.ndarray
    w: np.ndarray
    b: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    pairs: np.ndarray
    pair_pos: np.ndarray
    margins: np.ndarray
    active: np.ndarray
    live: np.ndarray
    norm_theta: float

    @property
    def n(self) -> int:
        return int(self.v.size)


def _z(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 z = x w + b, rounded exactly as ``ReLUNetwork.preactivations`` rounds it in 1-D."""
    return x * w + b


def _positive_ranges(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) with float64 z_ij > 0 iff lo_j <= i < hi_j (x sorted increasingly).

    fl(fl(x w) + b) is monotone in x, so the positive set is a suffix (w > 0), a prefix (w < 0),
    everything or nothing (w = 0). The boundary starts at the real kink t = -b / w
    (searchsorted) and is corrected by stepping on the float predicate itself.
    """
    m, n = x.size, w.size
    lo, hi = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    flat = w == 0
    hi[flat & (b > 0)] = m
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(flat, 0.0, -b / np.where(flat, 1.0, w))
    for sgn in (1, -1):
        idx = np.flatnonzero(np.sign(w) == sgn)
        if not idx.size:
            continue
        wj, bj = w[idx], b[idx]
        g = np.searchsorted(x, t[idx])
        # boundary g: first index whose point is on the "positive" side (w > 0) / not (w < 0)
        for _ in range(64):

            def pos(i, wj=wj, bj=bj):
                return _z(x[np.clip(i, 0, m - 1)], wj, bj) > 0

            # w > 0: want z(g - 1) <= 0 < z(g); w < 0: want z(g - 1) > 0 >= z(g)
            left_bad = (g > 0) & (pos(g - 1) if sgn > 0 else ~pos(g - 1))
            right_bad = (g < m) & (~pos(g) if sgn > 0 else pos(g))
            if not (left_bad.any() or right_bad.any()):
                break
            g = g - left_bad + right_bad
        else:  # pragma: no cover - the float predicate is monotone, so this cannot happen
            raise SolverError("activation boundaries did not converge")
        if sgn > 0:
            lo[idx], hi[idx] = g, m
        else:
            lo[idx], hi[idx] = 0, g
    return lo, hi


def _kink_pairs_1d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, live: np.ndarray, kink_tol: float
) -> np.ndarray:
    """Kink pairs (sorted point i, neuron j) by the rule of :func:`kktsolver.certify.kink_pairs`.

    |z_ij| <= kink_tol ||(w_j, b_j)|| ||x~_i|| needs |x_i - t_j| <= kink_tol ||(w_j, b_j)||
    max ||x~|| / |w_j| (z_ij = w_j (x_i - t_j)), so only a window of points around each kink is
    tested (searchsorted), with the same float64 test as the dense rule. Sorted by (i, j).
    """
    xn = np.linalg.norm(np.column_stack([x, np.ones_like(x)]), axis=1)
    nw = np.sqrt(w * w + b * b)
    out_i, out_j = [], []
    slope = live & (w != 0)
    js = np.flatnonzero(slope)
    if js.size:
        t = -b[js] / w[js]
        delta = 1.5 * kink_tol * nw[js] * float(xn.max()) / np.abs(w[js]) + 1e-12 * (1 + np.abs(t))
        a = np.searchsorted(x, t - delta, side="left")
        e = np.searchsorted(x, t + delta, side="right")
        cnt = np.maximum(e - a, 0)
        jj = np.repeat(js, cnt)
        start = np.repeat(a, cnt)
        ii = start + np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        hit = np.abs(_z(x[ii], w[jj], b[jj])) <= kink_tol * xn[ii] * nw[jj]
        out_i.append(ii[hit])
        out_j.append(jj[hit])
    for j in np.flatnonzero(live & (w == 0)):  # flat neurons: z = b_j at every point
        ii = np.flatnonzero(np.abs(_z(x, 0.0, b[j])) <= kink_tol * xn * nw[j])
        out_i.append(ii)
        out_j.append(np.full(ii.size, j))
    if not out_i:
        return np.zeros((0, 2), dtype=np.int64)
    pi, pj = np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64)
    order = np.lexsort((pj, pi))
    return np.column_stack([pi[order], pj[order]])


def structure_1d(network: ReLUNetwork, dataset: Dataset, tol: CertTolerances) -> Structure1D:
    """The rules of :func:`kktsolver.certify.kkt_support` applied in O((m + n) log m).

    Margins by :func:`kktsolver.scale.network_margins_extended` (extended precision, exact
    activation sets); live neurons and active points as in the dense path. Kink pairs: the same
    relative rule |z_ij| <= tol.kink ||(w_j, b_j)|| ||x~_i||, but for EVERY neuron with
    (w_j, b_j) != 0, not only the live ones. A neuron below tol.zero_neuron is still part of
    theta and its rows are in the residual; the rule is relative to its own norm, so its kink is
    located as precisely as any other. This matters for the twin neurons of
    :func:`kktsolver.scale.solve_global_large` (size ~1e-4 against ||theta|| ~4e5 at m = 1e5):
    a twin shares its main neuron's kink, e.g. exactly on a data point 2e-9 from an
    opposite-label point with lambda ~1.4e9, and without the pair its (w, b) rows alone left a
    relative residual of 0.8. Every pair only adds a mu in [0, lambda_i], whose ends are the
    two strict memberships, so the set of admissible multipliers only grows by the Clarke
    subgradient the tolerance grants every other neuron.
    """
    from .scale import network_margins_extended

    sample = SortedSample.from_dataset(dataset)
    x = sample.x
    v, w, b = network.v.astype(float), network.W[:, 0].astype(float), network.b.astype(float)
    margins = network_margins_extended(network, sample)
    norm_theta = float(np.linalg.norm(network.theta))
    sizes = np.sqrt(v**2 + network.neuron_norms() ** 2)
    live = sizes > tol.zero_neuron * norm_theta
    active = np.flatnonzero(margins <= 1.0 + tol.active)
    lo, hi = _positive_ranges(x, w, b)
    # kinks of every neuron with (w_j, b_j) != 0, also those below tol.zero_neuron (see the
    # function's docstring)
    pairs = _kink_pairs_1d(x, w, b, (w != 0) | (b != 0), tol.kink)
    pair_pos = _z(x[pairs[:, 0]], w[pairs[:, 1]], b[pairs[:, 1]]) > 0
    return Structure1D(sample, v, w, b, lo, hi, pairs, pair_pos, margins, active, live, norm_theta)


# --------------------------------------------------------------------------- operator


def _scatter(idx: np.ndarray, vals: np.ndarray, n: int) -> np.ndarray:
    """out[k] = sum of vals where idx == k, in the dtype of vals (bincount is float64 only)."""
    if vals.dtype == np.float64:
        return np.bincount(idx, weights=vals, minlength=n)
    out = np.zeros(n, dtype=vals.dtype)
    np.add.at(out, idx, vals)
    return out


class StationarityOperator:
    """(lambda, mu) -> sum_i lambda_i h_i(mu) of MATH.md section 2 through prefix sums.

    Unknowns: lambda on the active points (``st.active``, sorted order), mu on the kink pairs
    whose point is active (``pair_idx`` into ``st.pairs``); pairs on inactive points have
    lambda_i = 0, hence mu = 0. Rows as in the dense system: v_j (j = 0..n-1), then (w_j, b_j).
    With a_i = lambda_i y_i and C[g] = sum_{i < g} a_i x~_i (prefix sums) and S_j = C[hi_j] -
    C[lo_j] (the positive set of neuron j):

        row v_j        = <(w_j, b_j), S_j>                         ( = sum_i a_i relu(z_ij) )
        rows (w_j, b_j) = v_j (S_j - sum_{pairs (i, j), z_ij > 0} a_i x~_i
                              + sum_{pairs (i, j)} mu_ij y_i x~_i).

    :meth:`apply` is O(m + n + P) (long double for residuals, float64 for corrections),
    :meth:`adjoint` likewise via a difference array over the ranges.
    """

    def __init__(self, st: Structure1D):
        self.st = st
        s = st.sample
        self.m, self.n = s.m, st.n
        pos_of = np.full(s.m, -1, dtype=np.int64)
        pos_of[st.active] = np.arange(st.active.size)
        self.pos_of = pos_of
        pc = pos_of[st.pairs[:, 0]] if st.pairs.size else np.zeros(0, dtype=np.int64)
        self.pair_idx = np.flatnonzero(pc >= 0)  # pairs that carry a mu
        self.na, self.nmu = int(st.active.size), int(self.pair_idx.size)
        self.theta_ld = np.concatenate([st.v, np.column_stack([st.w, st.b]).ravel()]).astype(_LD)

    # -- forward
    def apply(self, lam: np.ndarray, mu: np.ndarray, dtype=_LD) -> np.ndarray:
        """sum_i lambda_i h_i(mu), shape (3 n,), in ``dtype`` (long double: residuals)."""
        st, s = self.st, self.st.sample
        a = np.zeros(self.m, dtype=dtype)
        a[st.active] = np.asarray(lam, dtype=dtype) * s.y[st.active]
        x = s.x.astype(dtype)
        terms = np.column_stack([a * x, a])
        cs = compensated_cumsum(terms, axis=0) if dtype == _LD else np.cumsum(terms, axis=0)
        C = np.vstack([np.zeros((1, 2), dtype=dtype), cs])
        S = C[st.hi] - C[st.lo]
        vrow = st.w.astype(dtype) * S[:, 0] + st.b.astype(dtype) * S[:, 1]
        if st.pairs.size:
            pi, pj = st.pairs[:, 0], st.pairs[:, 1]
            on = st.pair_pos
            dx = -a[pi[on]] * x[pi[on]]
            d1 = -a[pi[on]]
            jj = pj[on]
            if self.nmu:
                q = self.pair_idx
                mv = np.asarray(mu, dtype=dtype) * s.y[pi[q]]
                dx = np.concatenate([dx, mv * x[pi[q]]])
                d1 = np.concatenate([d1, mv])
                jj = np.concatenate([jj, pj[q]])
            S[:, 0] += _scatter(jj, dx, self.n)
            S[:, 1] += _scatter(jj, d1, self.n)
        wb = st.v.astype(dtype)[:, None] * S
        return np.concatenate([vrow, wb.ravel()])

    def residual(self, lam: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """Relative residual (theta - sum lambda_i h_i(mu)) / ||theta||, long double, as float64."""
        r = self.theta_ld - self.apply(lam, mu, _LD)
        return np.asarray(r / _LD(self.st.norm_theta), dtype=float)

    def _spread(self, q: np.ndarray) -> np.ndarray:
        """Difference array of per-neuron values over their positive ranges: (m,), whose
        cumulative sum at i is sum_{j: lo_j <= i < hi_j} q_j."""
        st = self.st
        d = np.bincount(st.lo, weights=q, minlength=self.m + 1)
        d -= np.bincount(st.hi, weights=q, minlength=self.m + 1)
        return d[: self.m]

    # -- adjoint
    def adjoint(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A_lam^T r, A_mu^T r) in float64."""
        st, s = self.st, self.st.sample
        n = self.n
        r = np.asarray(r, dtype=float)
        rv, rw, rb = r[:n], r[n::2], r[n + 1 :: 2]
        alpha = rv * st.w + st.v * rw
        beta = rv * st.b + st.v * rb
        c1 = np.cumsum(self._spread(alpha))
        c0 = np.cumsum(self._spread(beta))
        x, y = s.x, s.y
        out = y * (c1 * x + c0)
        mu_out = np.zeros(self.nmu)
        if st.pairs.size:
            pi, pj = st.pairs[:, 0], st.pairs[:, 1]
            g = y[pi] * st.v[pj] * (rw[pj] * x[pi] + rb[pj])  # y_i v_j <r_(w,b)j, x~_i>
            out -= np.bincount(pi[st.pair_pos], weights=g[st.pair_pos], minlength=self.m)
            mu_out = g[self.pair_idx]
        return out[st.active], mu_out

    def column_norms(self) -> tuple[np.ndarray, np.ndarray]:
        """||h_i|| of every lambda column and ||y_i v_j x~_i|| of every mu column, O(m + n + P).

        ||h_i||^2 = sum_{j: z_ij > 0} (z_ij^2 + v_j^2 ||x~_i||^2 [not a pair]): a quadratic in x_i
        whose coefficients are accumulated over the ranges like :meth:`adjoint`.
        """
        st, s = self.st, self.st.sample
        v2 = st.v**2
        q = np.column_stack([st.w**2 + v2, 2 * st.w * st.b, st.b**2 + v2])
        c = [np.cumsum(self._spread(q[:, k])) for k in range(3)]
        x = s.x
        sq = c[0] * x * x + c[1] * x + c[2]
        mu_norm = np.zeros(self.nmu)
        if st.pairs.size:
            pi, pj = st.pairs[:, 0], st.pairs[:, 1]
            cn2 = v2[pj] * (x[pi] ** 2 + 1.0)
            sq -= np.bincount(pi[st.pair_pos], weights=cn2[st.pair_pos], minlength=self.m)
            mu_norm = np.sqrt(cn2[self.pair_idx])
        return np.sqrt(np.maximum(sq, 0.0))[st.active], mu_norm


def best_mu(op: StationarityOperator, lam: np.ndarray) -> np.ndarray:
    """Given lambda, the mu minimising the residual within 0 <= mu_ij <= lambda_i, exactly.

    mu only enters the (w_j, b_j) rows of its own neuron, so the problem splits by neuron: one
    pair gives the clipped 1-D least-squares value, several pairs a small bounded least squares
    (BVLS). The residual with mu = 0 is evaluated in long double (it is the cancelling part).
    """
    st = op.st
    if not op.nmu:
        return np.zeros(0)
    r0 = op.theta_ld - op.apply(lam, np.zeros(op.nmu), _LD)
    n = op.n
    q = op.pair_idx
    pi, pj = st.pairs[q, 0], st.pairs[q, 1]
    x, y = st.sample.x, st.sample.y
    colw = y[pi] * st.v[pj] * x[pi]  # column entries in rows w_j and b_j
    colb = y[pi] * st.v[pj]
    rw = np.asarray(r0[n + 2 * pj], dtype=float)
    rb = np.asarray(r0[n + 2 * pj + 1], dtype=float)
    hi = np.asarray(lam, dtype=float)[op.pos_of[pi]]
    nn = colw**2 + colb**2
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(nn > 0, (colw * rw + colb * rb) / nn, 0.0)
    mu = np.clip(mu, 0.0, hi)
    counts = np.bincount(pj, minlength=n)
    for j in np.flatnonzero(counts > 1):
        k = np.flatnonzero(pj == j)
        A = np.vstack([colw[k], colb[k]])
        mu[k] = _box_ls(A, np.array([r0[n + 2 * j], r0[n + 2 * j + 1]], dtype=_LD), hi[k])
    return mu


def _box_ls(A: np.ndarray, rhs: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """argmin ||rhs - A mu|| over 0 <= mu <= ub for a 2 x k system (the pairs of one neuron).

    The columns y_i v_j x~_i of close points are nearly parallel (cond ~1e7 at m = 1e5) and the
    right-hand side is a cancelling long-double residual, where BVLS stopped at a wrong vertex
    (relative residual 0.038 instead of 3e-10). For k <= 4 every face of the box is tried
    (each mu at 0, at its bound or free, the free ones by least squares) and the best feasible
    one by its long-double residual is kept; larger k use BVLS.
    """
    kk = A.shape[1]
    ub = np.maximum(np.asarray(ub, dtype=float), 0.0)
    if kk > 4:
        res = lsq_linear(
            A, np.asarray(rhs, dtype=float), bounds=(0.0, np.maximum(ub, 1e-300)), method="bvls"
        )
        return np.clip(res.x, 0.0, ub)
    A_ld = A.astype(_LD)
    best, best_r = np.zeros(kk), np.inf
    for face in np.ndindex(*(3,) * kk):
        face = np.array(face)
        sol = np.where(face == 1, ub, 0.0)
        free = np.flatnonzero(face == 2)
        if free.size:
            if np.any(ub[free] <= 0):
                continue
            part = rhs - A_ld @ sol.astype(_LD)
            sol[free] = np.linalg.lstsq(A[:, free], np.asarray(part, dtype=float), rcond=None)[0]
            if np.any(sol[free] < 0) or np.any(sol[free] > ub[free]):
                continue
        res = rhs - A_ld @ sol.astype(_LD)
        rr = float(np.sqrt(np.sum(res * res)))
        if rr < best_r:
            best, best_r = sol, rr
    return best


# --------------------------------------------------------------------------- multipliers


@dataclass(frozen=True)
class PolishInfo:
    """What :func:`polish` did: steps taken, LSQR iterations, residual before and after."""

    steps: int
    lsqr_iterations: int
    start: float
    end: float


def polish(
    op: StationarityOperator,
    lam0: np.ndarray,
    target: float,
    rounds: int = 12,
    iter_lim: int = 400,
    probes: int = 32,
) -> tuple[np.ndarray, np.ndarray, float, PolishInfo]:
    """Least-squares polish of lambda >= 0 (mu at its best for every lambda) with refinement.

    Each round: r = residual in long double (:meth:`StationarityOperator.residual`); the
    correction min ||A Lm D u - r|| by LSQR, where the lambda correction is written in R-values
    (Lm = :func:`_r_value_map`: lambda -> sum lambda_i h_i is a double cumulative sum, local in
    R-values) and D scales each column to unit norm (norms estimated from ``probes`` random
    adjoint products, E[(A^T g)_k^2] = ||a_k||^2, seed 0). Each mu that :func:`best_mu` left on a
    bound stays there (0, or tied to lambda_i: its column moves with lambda_i's); the others are
    free columns. Lambdas fixed at 0 (below 1e-13 max lambda, or driven negative by an earlier
    step, as in Lawson-Hanson) are held by penalty rows ``PENALTY`` ||h_k|| dlambda_k =
    -``PENALTY`` ||h_k|| lambda_k. The step lambda + alpha dlambda is projected onto
    lambda >= 0, mu re-optimised exactly (:func:`best_mu`) and accepted only if the long-double
    residual decreases (alpha = 1, 1/4, 1/16); after a failed step one retry lets every mu move.
    Stops below ``target`` / 2, after ``rounds`` rounds, or when no step helps. Measured on the
    seed setting (p = 0.1, seed 0): m = 1e4 from 2.1e-6 to 1.4e-8 in one round of 400 LSQR
    iterations; m = 1e5 from 2.7e-6 to 2.6e-7 in one. Returns (lambda, mu, relative L2
    residual, info).
    """
    lam = np.maximum(np.asarray(lam0, dtype=float), 0.0)
    mu = best_mu(op, lam)
    r = op.residual(lam, mu)
    rn = float(np.linalg.norm(r))
    start = rn
    if op.na == 0:  # no active point: lambda = 0 is the only multiplier
        return lam, mu, rn, PolishInfo(0, 0, start, rn)
    # lambda = 0 (no usable start, e.g. all labels equal, where the R-value LP forces it) frees
    # every active point; otherwise the support of the start, as the dense path's polish keeps
    top = float(np.max(lam, initial=0.0))
    free = lam > 1e-13 * top if top > 0 else np.ones(op.na, dtype=bool)
    cl, cm = op.column_norms()
    dm = np.where(cm > 0, 1.0 / np.where(cm > 0, cm, 1.0), 0.0)
    nt = op.st.norm_theta
    pcol = op.pos_of[op.st.pairs[op.pair_idx, 0]] if op.nmu else np.zeros(0, dtype=np.int64)
    Lm = _r_value_map(op)
    rng = np.random.default_rng(0)
    K = op.na
    ones = np.ones(op.na)
    steps = its = 0
    # after a failed step, one retry lets every mu move (the states best_mu leaves at a poor
    # start can block the step)
    bounded = True
    for _ in range(rounds):
        if rn <= target / 2:
            break
        # mu at a bound of its box (as best_mu left it) stays there during the step: fixed at 0,
        # or tied to lambda_i (its column then moves with lambda_i's)
        hi = lam[pcol]
        tied = (mu >= hi) & (hi > 0) & bounded
        fm = np.flatnonzero(((mu > 0) | ~bounded) & ~tied)
        tp = np.flatnonzero(tied)

        pen = np.flatnonzero(~free)  # lambda fixed at 0: penalty rows PENALTY ||h_k|| dlambda_k
        wpen = PENALTY * cl[pen] / nt
        npen = pen.size

        def mv(z, fm=fm, tp=tp, du=ones, pen=pen, wpen=wpen):
            lz = Lm @ (du * z[:K])
            mz = np.zeros(op.nmu)
            mz[fm] = dm[fm] * z[K:]
            mz[tp] = lz[pcol[tp]]
            return np.concatenate([op.apply(lz, mz, float) / nt, wpen * lz[pen]])

        def rmv(u, fm=fm, tp=tp, du=ones, pen=pen, wpen=wpen, npen=npen):
            gl, gm = op.adjoint(u[: 3 * op.n] / nt)
            gl += np.bincount(pcol[tp], weights=gm[tp], minlength=op.na)
            gl[pen] += wpen * u[3 * op.n :]
            return np.concatenate([du * (Lm.T @ gl), dm[fm] * gm[fm]])

        # column norms of the R-value columns with this round's tied mu, from random probes:
        # E[(A^T g)_k^2] = ||column k||^2 for standard normal g (fixed seed: reproducible)
        est = np.zeros(K)
        for _ in range(probes):
            est += rmv(rng.standard_normal(3 * op.n + npen) * nt)[:K] ** 2
        cu = np.sqrt(est / probes)
        du = np.where(cu > 0, 1.0 / np.where(cu > 0, cu, 1.0), 0.0)
        L = LinearOperator(
            (3 * op.n + npen, K + fm.size),
            matvec=functools.partial(mv, du=du),
            rmatvec=functools.partial(rmv, du=du),
            dtype=float,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = lsqr(
                L,
                np.r_[r, -wpen * lam[pen]],
                atol=1e-14,
                btol=1e-14,
                conlim=1e20,
                iter_lim=iter_lim,
            )
        z, its = out[0], its + int(out[2])
        dlam = Lm @ (du * z[:K])
        improved = False
        for alpha in (1.0, 0.25, 0.0625):
            lam_n = lam + alpha * dlam
            neg = free & (lam_n < 0)
            lam_n = np.maximum(lam_n, 0.0)
            mu_n = best_mu(op, lam_n)
            r_n = op.residual(lam_n, mu_n)
            rn_n = float(np.linalg.norm(r_n))
            if rn_n < rn:
                lam, mu, r, rn = lam_n, mu_n, r_n, rn_n
                free &= ~neg
                steps += 1
                improved = True
                break
        if not improved and not bounded:
            break
        bounded = improved
    return lam, mu, rn, PolishInfo(steps, its, start, rn)


def _r_value_map(op: StationarityOperator):
    """Sparse map from R-values to lambda on the active points (the right preconditioner).

    u = (R_0, ..., R_{K-2}, sigma): R_k = R(x_{p_k}) at the active points p_0 < ... < p_{K-1}
    (R_{K-1} = 0: no active point to its right) and sigma = sum_i lambda_i y_i, the slope of
    -R left of p_0; lambda_k = y_k (s_k - s_{k-1}) with s_k the slope of R after p_k (MATH.md
    section 4, :func:`kktsolver.scale.dual_lp`). lambda -> sum lambda_i h_i is a double
    cumulative sum; in R-values it is local, and LSQR converges in far fewer iterations.
    """
    from scipy import sparse

    st = op.st
    K = op.na
    xs = st.sample.x[st.active]
    ys = st.sample.y[st.active]
    D = np.diff(xs)
    # slopes s_k = (R_{k+1} - R_k) / D_k, k = 0..K-2, as a (K - 1) x K matrix on u
    rows, cols, vals = [], [], []
    k = np.arange(K - 1)
    rows += [k, k]
    cols += [k, k + 1]
    vals += [-1.0 / D, 1.0 / D]
    Sl = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(K - 1, K + 1)
    )[:, :K]  # column K - 1 (R_{K-1} = 0) replaced by sigma below
    Sl = sparse.hstack([Sl[:, : K - 1], sparse.csr_matrix((K - 1, 1))], format="csr")
    sig = sparse.csr_matrix(([-1.0], ([0], [K - 1])), shape=(1, K))  # s_{-1} = -sigma
    zero = sparse.csr_matrix((1, K))
    s_after = sparse.vstack([Sl, zero], format="csr")  # s_k, k = 0..K-1 (s_{K-1} = 0)
    s_before = sparse.vstack([sig, Sl], format="csr")  # s_{k-1}
    return (sparse.diags(ys) @ (s_after - s_before)).tocsr()


# --------------------------------------------------------------------------- certificate


def certify_structured(
    network: ReLUNetwork,
    dataset: Dataset,
    width: int,
    tol: CertTolerances,
    t0: float | None = None,
) -> Certificate:
    """The verdict of :func:`kktsolver.certify.certify` for a 1-D network, by the structured path.

    Parameters
    ----------
    network, dataset : validated by the caller (``certify``); ``dataset.d`` must be 1.
    width : the validated width (only checked against the number of nonzero neurons here).
    tol : thresholds; the same meaning as on the dense path.
    t0 : ``time.perf_counter()`` at the caller's start (for ``seconds``).

    Returns
    -------
    Certificate
        ``infeasible`` (min margin < 1 - tol.feasibility; no multiplier search),
        ``global_min`` (relative residual ||theta - sum lambda_i h_i(mu)|| / ||theta|| <=
        tol.stationarity with the reported lambda >= 0 on active points and 0 <= mu_ij <=
        lambda_i, AND relative gap <= tol.gap with LB = sum lambda / max(1, max_k rho_k) over
        all blocks), ``kkt_undecided`` (KKT, gap above tol.gap: the local analysis of the
        dense path is not run), ``undecided`` (residual above tolerance: this path never
        proves ``not_kkt``).
    """
    t0 = time.perf_counter() if t0 is None else t0
    if dataset.d != 1:
        raise InputError(f"the structured certifier is 1-D only (dataset has d = {dataset.d})")
    m = dataset.m
    st = structure_1d(network, dataset, tol)
    s = st.sample
    objective = network.objective()
    nnz = int(st.live.sum())
    if width < nnz:
        raise InputError(f"width {width} is smaller than the network's {nnz} nonzero neurons")
    min_margin = float(st.margins.min())
    notes = [
        f"structured 1-D path (kktsolver.certify_large): m = {m}, n = {network.n}, "
        f"{st.active.size} active points, {st.pairs.shape[0]} kink pairs"
    ]
    common = dict(
        min_margin=min_margin, objective=objective, width=width, nonzero_neurons=nnz, tolerances=tol
    )
    if st.norm_theta == 0:
        return Certificate(
            verdict="infeasible",
            multipliers=np.zeros(m),
            notes=["theta = 0 computes N = 0"],
            seconds=time.perf_counter() - t0,
            **common,
        )
    if min_margin < 1.0 - tol.feasibility:
        notes.append("infeasible: multipliers not searched on the structured path")
        return Certificate(
            verdict="infeasible",
            multipliers=np.zeros(m),
            pinned_kinks=int(st.pairs.shape[0]),
            notes=notes,
            seconds=time.perf_counter() - t0,
            **common,
        )
    op = StationarityOperator(st)
    rd = None
    lam_a = np.zeros(op.na)
    if st.active.size and m > 1:
        try:
            rd = r_dual_lp(st.sample, st.active, network, rounds=DUAL_ROUNDS)
            full = np.zeros(m)
            full[rd.points] = rd.lam
            lam_a = full[st.active]
            notes.append("multipliers: polished from the R-value dual LP's lambda")
        except SolverError as e:
            notes.append(f"multipliers: the R-value dual LP failed ({e}); polished from 0")
    lam_a, mu, stat, info = polish(op, lam_a, tol.stationarity)
    notes.append(
        f"multipliers: {info.steps} least-squares steps ({info.lsqr_iterations} LSQR iterations), "
        f"residual {info.start:.3g} -> {info.end:.3g}"
    )
    lam_sorted = np.zeros(m)
    lam_sorted[st.active] = lam_a
    lam = s.unsort(lam_sorted)
    margins = s.unsort(st.margins)
    # mu list in dataset order of the point, like the dense path (which sorts by (i, j))
    q = op.pair_idx
    di = s.order[st.pairs[q, 0]] if q.size else np.zeros(0, dtype=np.int64)
    dj = st.pairs[q, 1] if q.size else np.zeros(0, dtype=np.int64)
    order = np.lexsort((dj, di))
    mus = [(int(di[k]), int(dj[k]), float(mu[k])) for k in order]

    lam_sum = float(lam.sum())
    cs = float(lam @ np.abs(margins - 1.0) / lam_sum) if lam_sum > 0 else None
    balance = float(np.max(np.abs(np.abs(network.v) - network.neuron_norms())) / st.norm_theta)
    euler = abs(objective - lam_sum) / objective
    is_kkt = stat <= tol.stationarity

    lower_bound = rel_gap = max_rho = None
    if m > 1:
        lower_bound, max_rho = _bound(s, lam_sorted)
        duals = [rd] if rd is not None else []
        if rd is not None and (objective - lower_bound) / objective > tol.gap:
            # the start used DUAL_ROUNDS cutting-plane rounds; the dense path's full 8 may
            # tighten the bound where those did not (the polish is not repeated)
            try:
                duals.append(r_dual_lp(st.sample, st.active, network, rounds=8))
            except SolverError as e:
                notes.append(f"lower bound: the 8-round R-value dual LP failed ({e})")
        for k, dual in enumerate(duals):
            full = np.zeros(m)
            full[dual.points] = dual.lam
            lb2, rho2 = _bound(s, full, dual.max_rho)
            if lb2 > lower_bound:
                lower_bound, max_rho = lb2, rho2
                rounds = DUAL_ROUNDS if k == 0 else 8
                notes.append(
                    f"lower bound: the R-value dual LP's lambda ({rounds} rounds; better than "
                    "the KKT multipliers')"
                )
        rel_gap = (objective - lower_bound) / objective
    near_global = None if rel_gap is None else bool(rel_gap <= tol.gap)
    if not is_kkt:
        verdict = "undecided"
        notes.append(
            f"undecided: the best multipliers found leave residual {stat:.3g} > "
            f"{tol.stationarity:g}; the structured path has no multiplier LP, so it cannot "
            "prove not_kkt (the dense path of certify, below STRUCTURED_MIN_ENTRIES, can)"
        )
    elif near_global:
        verdict = "global_min"
    else:
        verdict = "kkt_undecided"
        notes.append(
            "kkt_undecided: KKT, but the lower bound does not close the gap and the structured "
            "path does not run the local-minimum analysis"
        )
    return Certificate(
        verdict=verdict,
        multipliers=lam,
        mu=mus,
        stationarity_residual=stat,
        complementary_slackness=cs,
        balance_residual=balance,
        euler_residual=euler,
        lyu_li_eps=float(st.norm_theta * stat),
        lyu_li_delta=float(lam @ (margins - 1.0)),
        lower_bound=lower_bound,
        relative_gap=rel_gap,
        max_rho=max_rho,
        near_global=near_global,
        pinned_kinks=int(st.pairs.shape[0]),
        notes=notes,
        seconds=time.perf_counter() - t0,
        **common,
    )


def _bound(sample: SortedSample, lam_sorted: np.ndarray, rho_claimed: float = 0.0):
    """(sum lambda / max(1, max_k rho_k), max_k rho_k) over all 2 (2m - 1) blocks.

    rho from :func:`kktsolver.scale.rho_all_gaps` (O(m), extended precision); a solver's own
    value ``rho_claimed`` is taken into account too (the larger is used), as on the dense path.
    """
    from .scale import rho_all_gaps

    lam_sorted = np.maximum(lam_sorted, 0.0)
    mr = max(float(rho_all_gaps(sample, lam_sorted)["max"]), rho_claimed)
    return float(lam_sorted.sum()) / max(1.0, mr), mr
