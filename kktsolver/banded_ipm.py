"""Specialised interior-point solver for the all-gaps chain program of :mod:`kktsolver.scale`.

Solves exactly what ``scale.chain_master(sample, arange(m), arange(1, m), scaling="dual")`` builds
(primal-dual Mehrotra predictor-corrector, Nesterov-Todd scaling) in O(m) per iteration by reducing
every Newton system to a banded system (bandwidth 3) in the values F and the continuity multipliers
(docs/banded_ipm.md).

The program (chain_master's "dual" column scaling; kink k = 2 i + (0 if s_k = +1 else 1) lives in
interval i = 0..n-2 between sorted points i and i + 1; e_i = 1 / (C D_i), C = max_i 1 / D_i)::

    minimise    sum_k t_k
    subject to  e_{j+1} (F_{j+2} - F_{j+1}) - e_j (F_{j+1} - F_j)
                  - sum_{k in I_{j+1}} s_k b_k + sum_{k in I_j} s_k a_k = 0     j = 0..n-3  (y_j)
                y_j F_j >= 1                                                    j = 0..n-1  (z_j)
                a_k <= 0 <= b_k,   t_k >= ||(b_k - a_k, x_R a_k - x_L b_k)||    k = 0..K-1

alpha_k = D_k C a_k, beta_k = D_k C b_k, tau_k = D_k C t_k are chain_master's unscaled kink values,
its continuity rows are these rows exactly, so y_j = R(x_{j+1}) and lambda_j = C z_j as there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_solve_banded, cholesky_banded
from scipy.linalg.lapack import dgbtrf, dgbtrs

from .errors import InputError, SolverError, check_int_range, check_tolerances
from .patterns import SortedSample
from .scale import _ChainSolution

__all__ = [
    "ChainProgram",
    "IPMInfo",
    "banded_chain_master",
    "banded_chain_master_info",
    "build_chain_program",
]

#: "AlmostSolved" (instead of "MaxIterations" / "InsufficientProgress") when all three stopping
#: measures are below ALMOST_FACTOR * tol (like Clarabel's reduced-accuracy status)
ALMOST_FACTOR = 1e3
#: the relative gap is measured against max(min(|primal|, |dual|), GAP_FLOOR): the relaxed
#: program's optimum is 0 when all labels are equal (docs/banded_ipm.md)
GAP_FLOOR = 1e-6
#: fraction of the step to the boundary of the cones
STEP = 0.99
#: at most this many rounds of O(m) iterative refinement per corrector solve, done only while
#: the relative residual of the Newton system exceeds REFINE_TOL (measured: rarely needed)
REFINE = 3
REFINE_TOL = 1e-10
_SQ2 = np.sqrt(0.5)
#: at most this many kinks per chunk of the vectorised per-kink work (cache-sized temporaries:
#: 80 kB per row; 8192 .. 16000 kinks measured within noise of each other)
CHUNK = 10000


# --------------------------------------------------------------------------- the program


@dataclass(frozen=True, eq=False)
class ChainProgram:
    """Data of the all-gaps chain program on n >= 3 sorted points (K = 2 (n - 1) kinks).

    ``e[i] = 1 / (C D_i)``; ``xl``, ``xr`` (K,) bound each kink's interval, ``sk`` (K,) is its
    sign (+1, -1 alternating: two kinks per interval).
    """

    x: np.ndarray
    y: np.ndarray
    D: np.ndarray
    C: float
    e: np.ndarray
    xl: np.ndarray
    xr: np.ndarray
    sk: np.ndarray

    @property
    def n(self) -> int:
        return int(self.x.size)

    @property
    def K(self) -> int:
        return 2 * (self.n - 1)

    @property
    def nz(self) -> int:
        """Number of continuity rows (equality constraints), n - 2."""
        return self.n - 2

    @property
    def degree(self) -> int:
        """Barrier degree: n margins + K (alpha) + K (beta) nonnegative coordinates + K SOC_3."""
        return self.n + 3 * self.K


def build_chain_program(sample: SortedSample) -> ChainProgram:
    """Validate a sorted 1-D sample and build the all-gaps chain program (no solving).

    Raises
    ------
    InputError
        ``sample`` is not a SortedSample, has fewer than 3 points, non-finite or not strictly
        increasing x, or labels other than +-1 (the first offending index is named).
    """
    if not isinstance(sample, SortedSample):
        raise InputError(
            f"sample must be a kktsolver.patterns.SortedSample, got {type(sample).__name__}"
        )
    x = np.asarray(sample.x, dtype=float)
    y = np.asarray(sample.y, dtype=float)
    if x.ndim != 1 or y.shape != x.shape:
        raise InputError(
            f"sample.x and sample.y must be 1-D of one length, got {x.shape}, {y.shape}"
        )
    if x.size < 3:
        raise InputError(f"the banded chain program needs at least 3 points, got m = {x.size}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise InputError(f"sample.x[{bad[0]}] = {x[bad[0]]!r} is not finite")
    bad = np.flatnonzero(np.diff(x) <= 0)
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"sample.x must be strictly increasing: x[{i}] = {x[i]!r} >= x[{i + 1}] = {x[i + 1]!r}"
        )
    bad = np.flatnonzero((y != 1.0) & (y != -1.0))
    if bad.size:
        raise InputError(f"sample.y[{bad[0]}] = {y[bad[0]]!r} is not +1 or -1")
    D = np.diff(x)
    C = float(np.max(1.0 / D))  # chain_master: max over the kinks' gaps (here every gap)
    return ChainProgram(
        x,
        y,
        D,
        C,
        1.0 / (C * D),
        np.repeat(x[:-1], 2),
        np.repeat(x[1:], 2),
        np.tile([1.0, -1.0], x.size - 1),
    )


# --------------------------------------------------------------------------- linear operators
# Layout: x = (F (n,), k (3, K) rows a, b, t). Cone rows G x + s = h, h = (-1 on the margins, 0):
# nonnegative part (n + 2K,) = (-y F, a, -b), SOC part (3, K) = -(t, b - a, x_R a - x_L b).


def _A(P: ChainProgram, F: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Continuity rows (n - 2,): scaled slope jump at point j + 1 minus the kinks' jumps."""
    g = P.e * np.diff(F)
    a, b = k[0], k[1]
    return g[1:] - g[:-1] - (b[2::2] - b[3::2]) + (a[0:-2:2] - a[1:-2:2])


def _A_kinks(hk: np.ndarray) -> np.ndarray:
    """The kink part of :func:`_A` for kink rows a = hk[0], b = hk[1] (F = 0)."""
    a, b = hk[0], hk[1]
    return (a[0:-2:2] - a[1:-2:2]) - (b[2::2] - b[3::2])


def _AT(P: ChainProgram, yv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transpose of :func:`_A`: (F component (n,), kink component (3, K), t row zero)."""
    n = P.n
    # g_i (i = 0..n-2) enters row i - 1 with +1 and row i with -1: cg_i = e_i (y_{i-1} - y_i)
    cg = np.empty(n - 1)
    cg[0] = -yv[0] if yv.size else 0.0
    if yv.size:
        cg[-1] = yv[-1]
        np.subtract(yv[:-1], yv[1:], out=cg[1:-1])
    cg *= P.e
    dF = np.empty(n)
    dF[0] = -cg[0]
    dF[-1] = cg[-1]
    np.subtract(cg[:-1], cg[1:], out=dF[1:-1])
    dk = np.empty((3, P.K))
    _AT_kinks(yv, dk[:2])
    dk[2] = 0.0
    return dF, dk


def _AT_kinks(yv: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The a, b rows of the kink component of :func:`_AT`, written into out (2, K).

    Kink 2i has s = +1, kink 2i + 1 has s = -1; a of interval i enters row i, b row i - 1
    (yp[i] = y_{i-1}, zero at both ends)."""
    nz = yv.size
    a2, b2 = out[0].reshape(-1, 2), out[1].reshape(-1, 2)  # (interval, sign) views
    a2[:nz, 0] = yv
    a2[nz:, 0] = 0.0
    b2[0, 0] = 0.0
    np.negative(yv, out=b2[1 : nz + 1, 0])
    b2[nz + 1 :, 0] = 0.0
    np.negative(a2[:, 0], out=a2[:, 1])
    np.negative(b2[:, 0], out=b2[:, 1])
    return out


def _G(P: ChainProgram, F: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cone rows G x: nonnegative part (n + 2K,) = (-y F, a, -b) and SOC part (3, K) =
    -(t, b - a, x_R a - x_L b) (negations written out: a - b = -(b - a) exactly)."""
    n, K = P.n, P.K
    a, b, t = k
    gl = np.empty(n + 2 * K)
    np.multiply(P.y, F, out=gl[:n])
    np.negative(gl[:n], out=gl[:n])
    gl[n : n + K] = a
    np.negative(b, out=gl[n + K :])
    gq = np.empty((3, P.K))
    np.negative(t, out=gq[0])
    np.subtract(a, b, out=gq[1])
    np.multiply(P.xl, b, out=gq[2])
    gq[2] -= P.xr * a
    return gl, gq


def _GT(P: ChainProgram, zl: np.ndarray, zq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transpose of :func:`_G`: (F component, kink component (3, K))."""
    n, K = P.n, P.K
    dk = np.empty((3, K))
    tmp = np.empty(K)
    np.add(zl[n : n + K], zq[1], out=dk[0])
    dk[0] -= np.multiply(P.xr, zq[2], out=tmp)
    np.negative(zl[n + K :], out=dk[1])
    dk[1] -= zq[1]
    dk[1] += np.multiply(P.xl, zq[2], out=tmp)
    np.negative(zq[0], out=dk[2])
    gF = np.multiply(P.y, zl[:n])
    return np.negative(gF, out=gF), dk


# --------------------------------------------------------------------------- SOC_3 algebra, (3, K)


def _jdet(u: np.ndarray) -> np.ndarray:
    """u0^2 - |u1|^2 as a product (less cancellation near the boundary)."""
    nr = u[1] * u[1]
    t = u[2] * u[2]
    nr += t
    np.sqrt(nr, out=nr)
    np.add(u[0], nr, out=t)
    np.subtract(u[0], nr, out=nr)
    nr *= t
    return nr


def _jprod(u: np.ndarray, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Jordan product (u'v, u0 v1 + v0 u1)."""
    if out is None:
        out = np.empty_like(u)
    t = np.empty_like(u[0])
    np.multiply(u[0], v[0], out=out[0])
    out[0] += np.multiply(u[1], v[1], out=t)
    out[0] += np.multiply(u[2], v[2], out=t)
    for i in (1, 2):
        np.multiply(u[0], v[i], out=out[i])
        out[i] += np.multiply(v[0], u[i], out=t)
    return out


def _jdiv(lam: np.ndarray, x: np.ndarray, dl: np.ndarray | None = None) -> np.ndarray:
    """r with lam o r = x: r0 = (l0 x0 - l1'x1) / det lam, r1 = (x1 - r0 l1) / l0."""
    r = np.empty_like(x)
    t = np.empty_like(x[0])
    np.multiply(lam[0], x[0], out=r[0])
    r[0] -= np.multiply(lam[1], x[1], out=t)
    r[0] -= np.multiply(lam[2], x[2], out=t)
    r[0] /= _jdet(lam) if dl is None else dl
    for i in (1, 2):
        np.multiply(r[0], lam[i], out=t)
        np.subtract(x[i], t, out=r[i])
        r[i] /= lam[0]
    return r


def _soc_step(lam: np.ndarray, d: np.ndarray, dl: np.ndarray | None = None) -> float:
    """Largest alpha with lam + alpha d in every SOC_3 (inf if unbounded), lam interior.

    The eigenvalues of P(lam^{-1/2}) d are (b +- sqrt(b^2 - det(lam) det(d))) / det(lam) with
    b = lam' J d; the step is 1 / max(0, -smallest), the root taken in cancellation-free form.
    (In-place arithmetic: three (K,) buffers instead of ~20 temporaries.)
    """
    if dl is None:
        dl = _jdet(lam)
    t = np.empty_like(d[0])
    b = lam[0] * d[0]  # b = l0 d0 - l1 d1 - l2 d2
    b -= np.multiply(lam[1], d[1], out=t)
    b -= np.multiply(lam[2], d[2], out=t)
    c = d[0] * d[0]  # c = det d
    c -= np.multiply(d[1], d[1], out=t)
    c -= np.multiply(d[2], d[2], out=t)
    disc = b * b
    disc -= np.multiply(dl, c, out=t)
    np.maximum(disc, 0.0, out=disc)
    np.sqrt(disc, out=disc)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.add(b, disc, out=t)
        np.divide(c, t, out=t)  # root for b >= 0
        np.subtract(b, disc, out=disc)
        disc /= dl  # root for b < 0
        mu_min = np.where(b >= 0, t, disc)
    np.copyto(mu_min, 0.0, where=~np.isfinite(mu_min))
    worst = max(0.0, -float(mu_min.min())) if mu_min.size else 0.0
    return 1.0 / worst if worst > 0 else np.inf


def _lin_step(lam: np.ndarray, d: np.ndarray) -> float:
    """Largest alpha with lam + alpha d >= 0 (lam > 0): 1 / max(0, max(-d / lam))."""
    if not d.size:
        return np.inf
    worst = max(0.0, -float(np.min(np.divide(d, lam))))  # -(d / lam) = (-d) / lam exactly
    return 1.0 / worst if worst > 0 else np.inf


def _coords(wh: np.ndarray, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Coordinates (q-'v, q+'v, qp'v) of v (3, K) in the eigenbasis of an NT scaling."""
    w0, w1 = wh
    if out is None:
        out = np.empty_like(v)
    proj = w0 * v[1]
    proj += w1 * v[2]
    np.subtract(v[0], proj, out=out[0])
    np.add(v[0], proj, out=out[1])
    out[:2] *= _SQ2
    np.multiply(w0, v[2], out=out[2])
    np.multiply(w1, v[1], out=proj)
    out[2] -= proj
    return out


def _vector(wh: np.ndarray, c: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`_coords`: c- q- + c+ q+ + cp qp (``out`` must not overlap ``c``)."""
    w0, w1 = wh
    if out is None:
        out = np.empty_like(c)
    d = c[1] - c[0]
    d *= _SQ2
    np.add(c[0], c[1], out=out[0])
    out[0] *= _SQ2
    t = c[2] * w1
    np.multiply(d, w0, out=out[1])
    out[1] -= t
    np.multiply(c[2], w0, out=t)
    np.multiply(d, w1, out=out[2])
    out[2] += t
    return out


def _chunks(K: int) -> list[slice]:
    """At most CHUNK kinks per slice, in equal slices: the per-kink work runs chunk by chunk so
    that its temporaries stay in cache (measured at m = 1e5: kink factorisation 30 ms in chunks of
    8192 vs 150-280 ms on whole arrays). Every kink's arithmetic is the same whatever the slicing
    (the result is bit for bit independent of CHUNK, tested)."""
    size = -(-K // -(-K // CHUNK)) if K else 1  # ceil(K / number of chunks)
    return [slice(a, min(K, a + size)) for a in range(0, K, size)]


@dataclass(frozen=True, eq=False)
class _SocScaling:
    """Nesterov-Todd scaling of K SOC_3 blocks, kept in spectral form.

    W = beta [[w0, w1'], [w1, I + w1 w1' / (1 + w0)]] (Vandenberghe, "The CVXOPT linear and
    quadratic cone program solvers", section 4), w = (s / sqrt(det s) + J z / sqrt(det z)) /
    (2 gamma), gamma = sqrt((1 + <s-bar, z-bar>) / 2), det w = 1, beta = (det s / det z)^(1/4).
    Its eigenpairs: beta / rho on q- = (1, -w-hat) / sqrt 2, beta rho on q+ = (1, w-hat) / sqrt 2,
    beta on qp = (0, w-hat-perp), rho = w0 + |w1| (so 1 / rho = w0 - |w1| without cancellation).
    W^2 and W^{-2} (cond rho^4 near the optimum) are never formed as matrices.
    """

    beta: np.ndarray  # (K,)
    rho: np.ndarray  # (K,)
    wh: np.ndarray  # (2, K) w1 / |w1| ((1, 0) when w1 = 0)

    def coords(self, v: np.ndarray) -> np.ndarray:
        """Coordinates (q-'v, q+'v, qp'v), (3, K)."""
        return _coords(self.wh, v)

    def vector(self, c: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`coords`: c- q- + c+ q+ + cp qp."""
        return _vector(self.wh, c)

    def winv_eig(self) -> np.ndarray:
        """Eigenvalues of W^{-1} on (q-, q+, qp): (rho, 1 / rho, 1) / beta, (3, K)."""
        return self._eig_pow(1)

    def apply(self, v: np.ndarray, p: int) -> np.ndarray:
        """W^p v (p in -2, -1, 1, 2; the powers of the eigenvalues are cached).

        Chunk by chunk: on whole (K,) rows the temporaries of coords / vector are fresh
        megabytes each (measured at K = 2e5: 5.0 ms whole vs 2.6 ms in chunks, same result)."""
        e, wh = self._eig_pow(-p), self.wh
        out = np.empty_like(v)
        for q in _chunks(v.shape[1]):
            c = _coords(wh[:, q], v[:, q])
            c *= e[:, q]
            _vector(wh[:, q], c, out=out[:, q])
        return out

    def _eig_pow(self, p: int) -> np.ndarray:
        """(eigenvalues of W^{-1})^p, cached per scaling."""
        cache = self.__dict__.setdefault("_cache", {})
        if p not in cache:
            if p == 1:
                e = cache[1] = np.empty((3, self.beta.size))
                ib = np.divide(1.0, self.beta, out=e[2])
                np.multiply(self.rho, ib, out=e[0])
                np.divide(ib, self.rho, out=e[1])
            elif p == -1:
                cache[-1] = 1.0 / self._eig_pow(1)
            else:
                base = self._eig_pow(1 if p > 0 else -1)
                cache[p] = base * base if abs(p) == 2 else base ** abs(p)
        return cache[p]

    @classmethod
    def identity(cls, K: int) -> _SocScaling:
        wh = np.zeros((2, K))
        wh[0] = 1.0
        return cls(np.ones(K), np.ones(K), wh)


def _soc_nt(s: np.ndarray, z: np.ndarray) -> tuple[_SocScaling, np.ndarray]:
    """NT scaling of SOC_3 blocks and lambda = W z (= W^{-1} s), chunk by chunk (cache-sized
    temporaries, see :meth:`_SocScaling.apply`)."""
    K = s.shape[1]
    beta, rho, wh = np.empty(K), np.empty(K), np.empty((2, K))
    for q in _chunks(K):
        _soc_nt_chunk(s[:, q], z[:, q], beta[q], rho[q], wh[:, q])
    sc = _SocScaling(beta, rho, wh)
    return sc, sc.apply(z, 1)


def _soc_nt_chunk(s, z, beta, rho, wh) -> None:
    """:func:`_soc_nt` on one chunk: writes beta, rho = w0 + |w1| and w-hat into the views."""
    ds, dz = _jdet(s), _jdet(z)
    if not (np.all(ds > 0) and np.all(dz > 0)):
        raise SolverError("banded IPM: an iterate left the interior of a second-order cone")
    sb = s * (1.0 / np.sqrt(ds))
    zb = z * (1.0 / np.sqrt(dz))
    ig = 1.0 / np.sqrt(2.0 * (1.0 + np.einsum("rk,rk->k", sb, zb)))
    w0 = (sb[0] + zb[0]) * ig
    sb[1:] -= zb[1:]
    sb[1:] *= ig
    nw = np.sqrt(np.einsum("rk,rk->k", sb[1:], sb[1:]))
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(sb[1:], nw, out=wh)
    zero = ~(nw > 0)
    if np.any(zero):
        wh[0, zero], wh[1, zero] = 1.0, 0.0
    np.divide(ds, dz, out=beta)
    np.sqrt(beta, out=beta)
    np.sqrt(beta, out=beta)
    np.add(w0, nw, out=rho)


# --------------------------------------------------------------------------- Newton systems


def _mv(M: np.ndarray, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Batched M v for M (r, c, K), v (c, K) (into ``out`` (r, K) if given).

    einsum's single pass: measured 25-35 % faster than a loop of products and sums."""
    return np.einsum("rck,ck->rk", M, v, out=out)


def _mtv(M: np.ndarray, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Batched M' v for M (r, c, K), v (r, K) (into ``out`` (c, K) if given)."""
    return np.einsum("rck,rk->ck", M, v, out=out)


def _sdot(p: list, q: list):
    """sum_r p_r q_r over 5-vectors of one chunk of kinks held as lists of rows: (k,) arrays,
    Python floats, or None for an exact zero (skipped: the blocks of T are half zeros)."""
    out = None
    for a, b in zip(p, q, strict=True):
        if a is None or b is None:
            continue
        t = a * b
        if out is None:
            out = t
        elif isinstance(out, np.ndarray):
            out += t  # out is a fresh product or sum: accumulate in place
        else:
            out = t + out
    return out


def _saxpy(u: list, c: np.ndarray, q: list) -> None:
    """u <- u - c q in place for row lists as in :func:`_sdot` (u's arrays are its own)."""
    for r, b in enumerate(q):
        if b is None:
            continue
        t = c * b
        if u[r] is None:
            u[r] = np.negative(t, out=t)
        elif isinstance(u[r], np.ndarray):
            u[r] -= t
        else:
            u[r] = np.subtract(u[r], t, out=t)


def _kink_factors(xl, xr, meig, wh, wa, wb, Qh, X, hk) -> None:
    """Per-kink factors of :class:`_Newton` for one chunk of k kinks, written into Qh (5, 3, k),
    X (3, 3, k) and hk (3, k) = the (a, a), (b, b), (a, b) entries of H^{-1} = X X'.

    Written out row by row (no (3, 3, k) / (5, 3, k) temporaries, no products with the known
    zeros of T): the per-kink work is bound by the number of numpy passes, not by flops."""
    iD = 1.0 / (xr - xl)
    f0, f1, f2 = 1.0 / meig  # (beta / rho, rho beta, beta)
    w0, w1 = wh
    # columns c_i = f_i M^{-1} q_i; M^{-1} u = ((u2 + x_L u1) / D, (u2 + x_R u1) / D, u0):
    # q-: -(A, B, -1/sqrt2), q+: (A, B, 1/sqrt2), qp: (Ca, Cb, 0) with the values below
    s = iD * _SQ2
    A = (w1 + xl * w0) * s
    B = (w1 + xr * w0) * s
    Ca = (w0 - xl * w1) * iD
    Cb = (w0 - xr * w1) * iD
    Cm = (
        (-f0 * A, f1 * A, f2 * Ca),
        (-f0 * B, f1 * B, f2 * Cb),
        (f0 * _SQ2, f1 * _SQ2, None),  # Cm[2, 2] = 0
    )
    iwa, miwb = 1.0 / wa, -1.0 / wb
    # T = [va'; -vb'; -I] (5 x 3) = Qh Rt, Gram-Schmidt twice (orthogonal to rounding);
    # column j of T: (va_j, -vb_j, -e_j). Q[j] holds the nonzero rows of Qh[:, j] (views).
    Q: list[list] = []
    Rt = [[None] * 3 for _ in range(3)]
    for j in range(3):
        u = [Cm[0][j] * iwa, Cm[1][j] * miwb, None, None, None]
        u[2 + j] = -1.0
        for _ in range(2):
            for i in range(j):
                c = _sdot(Q[i], u)
                _saxpy(u, c, Q[i])
                Rt[i][j] = c if Rt[i][j] is None else Rt[i][j] + c
        rjj = Rt[j][j] = np.sqrt(_sdot(u, u))
        qj = []
        for r, a in enumerate(u):
            if a is None:
                Qh[r, j] = 0.0
                qj.append(None)
            else:
                qj.append(np.divide(a, rjj, out=Qh[r, j]))
        Q.append(qj)
    r00, r11, r22 = Rt[0][0], Rt[1][1], Rt[2][2]
    i00, i11, i22 = 1.0 / r00, 1.0 / r11, 1.0 / r22
    i01 = -Rt[0][1] * i00 * i11
    i12 = -Rt[1][2] * i11 * i22
    i02 = (Rt[0][1] * Rt[1][2] - Rt[0][2] * r11) * (i00 * i11 * i22)
    # X = Cm Rt^{-1} (upper triangular inverse)
    for r in range(3):
        c0, c1, c2 = Cm[r]
        np.multiply(c0, i00, out=X[r, 0])
        np.multiply(c0, i01, out=X[r, 1])
        X[r, 1] += c1 * i11
        np.multiply(c0, i02, out=X[r, 2])
        X[r, 2] += c1 * i12
        if c2 is not None:
            X[r, 2] += c2 * i22
    x0, x1 = X[0], X[1]
    np.einsum("jk,jk->k", x0, x0, out=hk[0])
    np.einsum("jk,jk->k", x1, x1, out=hk[1])
    np.einsum("jk,jk->k", x0, x1, out=hk[2])


def _local_rhs(ra, rb, rq, meig, wh, wa, wb, out: np.ndarray) -> np.ndarray:
    """r-hat = W^{-1} r of one chunk of kinks, written into out (5, k): (r_a / w_a, r_b / w_b,
    W_q^{-1} r_q in the eigenbasis of W_q)."""
    np.divide(ra, wa, out=out[0])
    np.divide(rb, wb, out=out[1])
    _coords(wh, rq, out=out[2:])
    out[2:] *= meig
    return out


class _Newton:
    """One factorisation of the Newton system for a scaling (w_l, W_q), reused by every right-hand
    side.

    The system is [[0, A', G'], [A, 0, 0], [G, 0, -W^2]] (dx, dy, dz) = (r_x, r_y, r_z).
    Eliminating, per kink, the 3 primal and 5 dual unknowns and the margin duals leaves the banded
    quasi-definite system [[H_F, A_F'], [A_F, -A_k H_k^{-1} A_k']] in (F, y) (interleaved,
    bandwidth 3, ``_factor_reduced``), solved by banded LU. Per kink, with M (a, b, t) =
    (t, b - a, x_R a - x_L b) and W^{-1} = Q diag(m) Q': N = diag(m) Q' M, Cm = N^{-1} =
    M^{-1} Q diag(1/m) (exact, M^{-1} u = ((u2 + x_L u1) / D, (u2 + x_R u1) / D, u0)),
    T = [e_a' Cm / w_a; -e_b' Cm / w_b; -I_3] = Qh Rt (Gram-Schmidt; |r_jj| >= 1),
    X = Cm Rt^{-1}, H^{-1} = X X'. H itself (cond ~ rho^4) is never formed.
    """

    def __init__(self, P: ChainProgram, wl2: np.ndarray, sc: _SocScaling, use_lu: bool = False):
        self.P, self.wl2, self.sc, self.use_lu = P, wl2, sc, use_lu
        n, K = P.n, P.K
        self.wm2 = wl2[:n]
        self.wa = np.sqrt(wl2[n : n + K])
        self.wb = np.sqrt(wl2[n + K :])
        self.meig = sc.winv_eig()  # (3, K) eigenvalues of W^{-1}
        self._factor_kinks()
        if P.nz:
            self._factor_reduced()

    def _factor_kinks(self) -> None:
        P, sc, K = self.P, self.sc, self.P.K
        self.Qh, self.X, self.hk = np.empty((5, 3, K)), np.empty((3, 3, K)), np.empty((3, K))
        for c in _chunks(K):
            _kink_factors(
                P.xl[c],
                P.xr[c],
                self.meig[:, c],
                sc.wh[:, c],
                self.wa[c],
                self.wb[c],
                self.Qh[:, :, c],
                self.X[:, :, c],
                self.hk[:, c],
            )
        # hk holds squares and products of every entry of X: finite iff X is
        if not np.all(np.isfinite(self.hk)):
            raise SolverError("banded IPM: a kink block of the Newton system is not finite")

    def _factor_reduced(self) -> None:
        if self.use_lu:
            self._factor_lu()
        else:
            self._factor_cholesky()

    def _factor_cholesky(self) -> None:
        """Cholesky (LAPACK pbtrf) of the Schur complement S = A H^{-1} A' in y (pentadiagonal):
        the fast default (LAPACK pbtrf 5-9 ms at m = 1e5, against 15-18 ms for gbtrf of the
        banded LU and 7-9 ms instead of 2.5 ms per solve; measured in session 6)."""
        P = self.P
        nz = P.nz
        e = P.e
        hFi = self.wm2  # H_F^{-1} = w^2 (y^2 = 1)
        er, er1 = e[:-1], e[1:]  # e_r, e_{r+1} for rows r = 0..n-3
        diag = er**2 * hFi[:-2] + (er + er1) ** 2 * hFi[1:-1] + er1**2 * hFi[2:]
        off1 = (
            -(er[:-1] + er1[:-1]) * er1[:-1] * hFi[1:-2]
            - er1[:-1] * (er1[:-1] + er1[1:]) * hFi[2:-1]
        )
        off2 = er1[:-2] * er1[1:-1] * hFi[2:-2]
        # kinks: a of interval i enters row i with s, b of interval i row i - 1 with -s
        hsum = self.hk[:, 0::2] + self.hk[:, 1::2]  # both kinks of each interval (s^2 = 1)
        haa, hbb, hab = hsum
        diag = diag + haa[:-1] + hbb[1:]
        off1 = off1 - hab[1:-1]
        ab = np.zeros((3, nz))
        ab[2] = diag
        ab[1, 1:] = off1
        ab[0, 2:] = off2
        try:
            self.cb = cholesky_banded(ab, lower=False, check_finite=False)
        except (LinAlgError, ValueError):
            self.use_lu = True  # numerically semidefinite: the robust path
            self._factor_lu()

    def _factor_lu(self) -> None:
        """LU (partial pivoting, LAPACK gbtrf) of the banded quasi-definite system in (F, y),
        interleaved as F_0, y_0, F_1, y_1, ... (bandwidth 3):

            [[H_F, A_F'], [A_F, -S_k]] (dF, dy) = (g_F, r_y - A_k H_k^{-1} g_k),

        S_k = A_k H_k^{-1} A_k' (tridiagonal). The margin blocks are NOT eliminated: an inactive
        margin makes F_j almost free (w^2 = s/z up to 1e20 measured at m = 1e4, p = 0.01), and
        eliminating it put entries of that size into a Cholesky-factored Schur complement, whose
        accuracy then stalled the iteration at a relative gap of 1e-7."""
        P = self.P
        n = P.n
        e = P.e
        N = 2 * n - 1
        kl = ku = 3
        # M[i, j] -> ab[off + i - j, j]; F_j is column 2 j, y_j column 2 j + 1, so every diagonal
        # of M is a strided slice of one row of ab (no fancy indexing)
        off = kl + ku
        ab = np.zeros((2 * kl + ku + 1, N), order="F")  # LAPACK layout: no copy in dgbtrf
        haa, hbb, hab = self.hk[:, 0::2] + self.hk[:, 1::2]  # both kinks of an interval (s^2 = 1)
        ny = slice(1, 2 * n - 3, 2)  # columns of y_0 .. y_{n-3}
        np.divide(1.0, self.wm2, out=ab[off, 0::2])
        np.add(haa[:-1], hbb[1:], out=ab[off, ny])
        np.negative(ab[off, ny], out=ab[off, ny])
        ab[off, N - 2] = 1.0  # slot 2n - 3 is a dummy unknown (there are only n - 2 rows y)
        if n >= 4:
            # y_j, y_{j+1}: +hab of interval j + 1 (distance 2)
            ab[off - 2, 3 : 2 * n - 3 : 2] = hab[1:-1]  # M[y_j, y_{j+1}] (row above column)
            ab[off + 2, 1 : 2 * n - 5 : 2] = hab[1:-1]  # M[y_{j+1}, y_j]
        # F-y coupling: row y_j has e_j at F_j, -(e_j + e_{j+1}) at F_{j+1}, e_{j+1} at F_{j+2};
        # M[y_j, F_{j+dj}] sits at row - column = d = 1 - 2 dj
        ej, ej1 = e[:-1], e[1:]
        for dj, val in ((0, ej), (1, -(ej + ej1)), (2, ej1)):
            d = 1 - 2 * dj
            ab[off + d, 2 * dj : 2 * dj + 2 * (n - 2) : 2] = val  # M[y_j, F_{j+dj}]
            ab[off - d, ny] = val  # M[F_{j+dj}, y_j]
        lub, piv, info = dgbtrf(ab, kl, ku, overwrite_ab=True)
        if info != 0:
            raise SolverError(f"banded IPM: the reduced Newton system is singular (gbtrf {info})")
        self.lu = (lub, piv, kl, ku)

    def _xt(self, rxk: np.ndarray) -> np.ndarray:
        """X' r_k (3, K), kept for the last r_k object: the predictor and the corrector solve with
        the same -r_x (so no caller may modify an r_k in place between solves; none does)."""
        last = self.__dict__.get("_xt_last")
        if last is not None and last[0] is rxk:
            return last[1]
        xr = np.empty((3, self.P.K))
        for q in _chunks(self.P.K):
            _mtv(self.X[:, :, q], rxk[:, q], out=xr[:, q])
        self._xt_last = (rxk, xr)
        return xr

    def _solve_once(self, rx, ry, rz, kinks_dx: bool = True):
        """One solve. Per kink (scaled basis: xi = N dx, v = W dz in the eigenbasis of W,
        r-hat = W^{-1} r): T' v = Cm' g, T xi - v = r-hat, so with c = X' g + Qh' r-hat:
        dx = X c, v = Qh c - r-hat. Every factor is bounded (|Rt^{-1}| <= 1, Qh orthonormal), so
        the dual rows hold to rounding without multiplying by the huge blocks of W^{-2}.
        ``kinks_dx=False`` skips dx of the kinks (None; the predictor needs only dz)."""
        P = self.P
        n, K = P.n, P.K
        rxF, rxk = rx
        rl, rq = rz
        rm, ra, rb = rl[:n], rl[n : n + K], rl[n + K :]
        wm2 = self.wm2
        gF = rxF - P.y * rm / wm2  # margins: G row -y e_F, H_F = 1 / w^2
        X, Qh, meig, wh, wa, wb = self.X, self.Qh, self.meig, self.sc.wh, self.wa, self.wb
        chunks = _chunks(K)
        c = np.empty((3, K))
        rh = np.empty((5, K))  # r-hat, kept for the back substitution
        hk = np.empty((2, K))
        xr = self._xt(rxk)
        for q in chunks:
            rhq, cq = rh[:, q], c[:, q]
            _local_rhs(ra[q], rb[q], rq[:, q], meig[:, q], wh[:, q], wa[q], wb[q], rhq)
            _mtv(Qh[:, :, q], rhq, out=cq)
            cq += xr[:, q]
            _mv(X[:2, :, q], cq, out=hk[:, q])
        ak = np.zeros((2, K))
        if P.nz:
            if self.use_lu:
                rhs = np.zeros(2 * n - 1)
                rhs[0::2] = gF
                np.subtract(ry, _A_kinks(hk), out=rhs[1 : 2 * n - 3 : 2])
                lub, piv, kl, ku = self.lu
                u, _ = dgbtrs(lub, kl, ku, rhs, piv, overwrite_b=True)
                dxF, dy = u[0::2], u[1 : 2 * n - 3 : 2]
                _AT_kinks(dy, ak)
            else:
                rhs = _A(P, gF * wm2, hk) - ry
                dy = cho_solve_banded((self.cb, False), rhs, check_finite=False)
                aF, akk = _AT(P, dy)
                ak[:] = akk[:2]
                dxF = (gF - aF) * wm2
        else:
            dy = np.zeros(0)
            dxF = gF * wm2
        dxk = np.empty((3, K)) if kinks_dx else None
        dzl = np.empty(n + 2 * K)
        dzl[:n] = (-P.y * dxF - rm) / wm2
        dzq = np.empty((3, K))
        v = np.empty((5, min(K, CHUNK)))
        tmp = np.empty((3, min(K, CHUNK)))
        for q in chunks:
            Xq, cq, k = X[:, :, q], c[:, q], q.stop - q.start
            vq = v[:, :k]
            cq -= _mtv(Xq[:2], ak[:, q], out=tmp[:, :k])  # c - X' A_k' dy (its t row is 0)
            if kinks_dx:
                _mv(Xq, cq, out=dxk[:, q])
            _mv(Qh[:, :, q], cq, out=vq)
            vq -= rh[:, q]
            np.divide(vq[0], wa[q], out=dzl[n + q.start : n + q.stop])
            np.divide(vq[1], wb[q], out=dzl[n + K + q.start : n + K + q.stop])
            vq[2:] *= meig[:, q]
            _vector(wh[:, q], vq[2:], out=dzq[:, q])
        return (dxF, dxk), dy, (dzl, dzq)

    def _apply(self, dx, dy, dz):
        """The KKT matrix times (dx, dy, dz)."""
        P = self.P
        gF, gk = _GT(P, *dz)
        if P.nz:
            aF, ak = _AT(P, dy)
            gF += aF
            gk[:2] += ak[:2]  # the t row of A'y is zero
            ay = _A(P, *dx)
        else:
            ay = np.zeros(0)
        Gl, Gq = _G(P, *dx)
        Gl -= self.wl2 * dz[0]
        Gq -= self.sc.apply(dz[1], 2)
        return (gF, gk), ay, (Gl, Gq)

    def solve(self, rx, ry, rz, refine: int = REFINE, kinks_dx: bool = True):
        """Solve with up to ``refine`` rounds of iterative refinement on the full system (O(m)
        each; stops when the relative residual is <= REFINE_TOL). ``self.err`` is the last residual
        checked (0 if none was). ``kinks_dx=False`` (only without refinement): dx of the kinks is
        not computed (None)."""
        dx, dy, dz = self._solve_once(rx, ry, rz, kinks_dx or refine > 0)
        self.err = 0.0
        if refine:
            scale = max(_norm(rx), _norm(ry), _norm(rz), 1e-300)
        for _ in range(refine):
            ax, ay, az = self._apply(dx, dy, dz)  # fresh arrays: the residual overwrites them
            ex = (np.subtract(rx[0], ax[0], out=ax[0]), np.subtract(rx[1], ax[1], out=ax[1]))
            ey = np.subtract(ry, ay, out=ay)
            ez = (np.subtract(rz[0], az[0], out=az[0]), np.subtract(rz[1], az[1], out=az[1]))
            self.err = max(_norm(ex), _norm(ey), _norm(ez)) / scale
            if self.err <= REFINE_TOL:
                break
            cx, cy, cz = self._solve_once(ex, ey, ez)
            dx = (dx[0] + cx[0], dx[1] + cx[1])
            dy = dy + cy
            dz = (dz[0] + cz[0], dz[1] + cz[1])
        return dx, dy, dz


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    """sum u * v over all entries, without BLAS: a threaded BLAS dot (OpenBLAS splits long ones)
    leaves its worker threads spinning on the other core, and on a shared 2-core machine they then
    slowed every later numpy pass of the iteration ~2x (measured at m = 1e4: 1.27 s with default
    threads vs 0.57 s with OMP_NUM_THREADS=1 before this change); it also made the result depend
    on the number of threads."""
    return float(np.einsum("i,i->", u.ravel(), v.ravel()))


def _norm(parts) -> float:
    """Max-norm of an array or of nested tuples of arrays (max(max, -min): no |.| temporary)."""
    if isinstance(parts, np.ndarray):
        if not parts.size:
            return 0.0
        return float(np.maximum(parts.max(), -parts.min()))
    return max((_norm(p) for p in parts), default=0.0)


# --------------------------------------------------------------------------- the solver


@dataclass(frozen=True)
class IPMInfo:
    """Stopping measures of the returned iterate of :func:`banded_chain_master` (its docstring
    defines them) and the tolerance they were tested against."""

    primal_residual: float
    dual_residual: float
    relative_gap: float
    primal_objective: float
    dual_objective: float
    tol: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _residuals(P, x, yv, sl, sq, zl, zq):
    """r_x = c + A'y + G'z, r_y = A x, r_z = G x + s - h."""
    F, k = x
    gF, gk = _GT(P, zl, zq)
    if P.nz:
        aF, ak = _AT(P, yv)
        gF += aF
        gk[:2] += ak[:2]  # the t row of A'y is zero
        ry = _A(P, F, k)
    else:
        ry = np.zeros(0)
    gk[2] += 1.0
    Gl, Gq = _G(P, F, k)
    Gl[: P.n] += 1.0  # h = -1 on the margins
    Gl += sl
    Gq += sq
    return (gF, gk), ry, (Gl, Gq)


def _measures(P, x, yv, sl, sq, zl, zq, res):
    rx, ry, rz = res
    pobj = float(np.sum(x[1][2]))
    dobj = float(np.sum(zl[: P.n]))  # -h'z - b'y with h = -1 on the margins, b = 0
    pabs, pden = max(_norm(ry), _norm(rz)), 1.0 + max(_norm(x), _norm(sl), _norm(sq), 1.0)
    dabs, dden = _norm(rx), 1.0 + max(_norm(zl), _norm(zq), _norm(yv), 1.0)
    gap = abs(pobj - dobj) / max(min(abs(pobj), abs(dobj)), GAP_FLOOR)
    # the absolute residuals and their scales feed the accuracy monitor of _ipm
    return pabs / pden, dabs / dden, gap, pobj, dobj, (pabs, pden, dabs, dden)


def _shift_interior(vl: np.ndarray, vq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CVXOPT's shift: v + (1 + a) e if a = max(-min v_l, max(|v1| - v0)) >= -1e-8 max(1, |v|)."""
    worst = max(float(np.max(-vl)), float(np.max(np.hypot(vq[1], vq[2]) - vq[0])))
    if worst >= -1e-8 * max(1.0, _norm(vl), _norm(vq)):
        vl = vl + (1.0 + worst)
        vq = vq.copy()
        vq[0] += 1.0 + worst
    return vl, vq


def _initial_point(P: ChainProgram):
    """CVXOPT's start: least-norm s (primal) and z (dual) from the Newton system with W = I, each
    shifted into the interior of its cones."""
    n, K = P.n, P.K
    nt = _Newton(P, np.ones(n + 2 * K), _SocScaling.identity(K))
    h = np.zeros(n + 2 * K)
    h[:n] = -1.0
    zq0 = np.zeros((3, K))
    zx = (np.zeros(n), np.zeros((3, K)))
    # primal: G'sh + A'y = 0, A x = 0, G x - sh = h  ->  s = -sh = h - G x
    x, _, sh = nt.solve(zx, np.zeros(P.nz), (h, zq0))
    # dual: G'z + A'y = -c, A x = 0, G x - z = 0
    c = np.zeros((3, K))
    c[2] = -1.0
    _, yv, (zl, zq) = nt.solve((np.zeros(n), c), np.zeros(P.nz), (np.zeros(n + 2 * K), zq0))
    sl, sq = _shift_interior(-sh[0], -sh[1])
    zl, zq = _shift_interior(zl, zq)
    return x, yv, sl, sq, zl, zq


def _direction(system, rcl, rcq, rounds, need_dx=True):
    """Newton direction for lambda o (W^{-1} ds + W dz) = lambda o rc (rc = (rcl, rcq)): returns
    (dx, dy, dz), the scaled steps W^{-1} ds and W dz, and the primal / dual steps to the cone
    boundary. ``system`` = (Newton factorisation, w_l, lambda_l, lambda_q, -r_x, -r_y, -r_z).
    ``need_dx=False``: dx of the kinks is not computed (None)."""
    nt, wl, laml, lamq, mrx, mry, mrz = system
    rhs = (mrz[0] - wl * rcl, mrz[1] - nt.sc.apply(rcq, 1))
    dx, dy, dz = nt.solve(mrx, mry, rhs, rounds, kinks_dx=need_dx)
    wdz = (wl * dz[0], nt.sc.apply(dz[1], 1))
    ds = (np.subtract(rcl, wdz[0], out=rhs[0]), np.subtract(rcq, wdz[1], out=rhs[1]))
    dl = nt.lamq_det
    amax_p = min(_lin_step(laml, ds[0]), _soc_step(lamq, ds[1], dl))
    amax_d = min(_lin_step(laml, wdz[0]), _soc_step(lamq, wdz[1], dl))
    return dx, dy, dz, ds, wdz, amax_p, amax_d


def _ipm(P: ChainProgram, tol: float, max_iter: int, trace=None):
    """The iteration; returns the best iterate (smallest max of the three measures)."""
    nu = P.degree
    x, yv, sl, sq, zl, zq = _initial_point(P)
    best = None
    small_steps = 0
    status = "MaxIterations"
    it = 0
    # switched on for good once a residual grows instead of shrinking (lost accuracy)
    refine, use_lu = 0, False
    expect = None
    while True:
        res = _residuals(P, x, yv, sl, sq, zl, zq)
        meas = _measures(P, x, yv, sl, sq, zl, zq, res)
        if not all(np.isfinite(meas[:5])):
            status = "InsufficientProgress"
            break
        worst = max(meas[:3])
        pabs, pden, dabs, dden = meas[5]
        # a residual that grows instead of shrinking by (1 - step), to a level that matters
        # (above tol / 100), means the Newton solves lost accuracy
        floor = 0.01 * tol
        if expect is not None and (
            (pabs > 10 * expect[0] and pabs > floor * pden)
            or (dabs > 10 * expect[1] and dabs > floor * dden)
        ):
            # lost accuracy: refine from now on; if it is lost again with refinement, use the
            # banded LU of the (F, y) system from now on as well
            use_lu = use_lu or refine > 0
            refine = REFINE
        if best is None or worst <= best[0]:
            # no copies needed: the updates below build new arrays, never modify these
            best = (worst, x, yv, zl, meas)
        if worst <= tol:
            status = "Solved"
            break
        if it >= max_iter:
            break
        mu = (_dot(sl, zl) + _dot(sq, zq)) / nu
        try:
            wl2 = sl / zl
            laml = np.sqrt(sl * zl)
            sc, lamq = _soc_nt(sq, zq)
            nt = _Newton(P, wl2, sc, use_lu)
            nt.lamq_det = _jdet(lamq)
        except SolverError as exc:
            if trace is not None:
                trace(it, str(exc), mu)
            status = "InsufficientProgress"
            break
        wl = np.sqrt(wl2)
        rx, ry, rz = res
        mrx, mry, mrz = (-rx[0], -rx[1]), -ry, (-rz[0], -rz[1])

        # predictor (affine scaling, lambda o (W^{-1} ds + W dz) = -lambda o lambda): it only
        # sets sigma and the second-order term, so it gets no refinement
        sys_ = (nt, wl, laml, lamq, mrx, mry, mrz)
        _, _, _, ds_a, wdz_a, ap, ad = _direction(sys_, -laml, -lamq, 0, need_dx=False)
        ap, ad = min(1.0, ap), min(1.0, ad)
        # <s + ap ds, z + ad dz>: the first row of the Jordan product is the inner product
        gap_a = _dot(laml + ap * ds_a[0], laml + ad * wdz_a[0]) + _dot(
            lamq + ap * ds_a[1], lamq + ad * wdz_a[1]
        )
        sigma = min(1.0, max(0.0, gap_a / (mu * nu))) ** 3
        # corrector (Mehrotra): + sigma mu e - (W^{-1} ds_a) o (W dz_a)
        rcl = laml * laml
        np.subtract(sigma * mu, rcl, out=rcl)
        rcl -= ds_a[0] * wdz_a[0]
        rcl /= laml
        cq = _jprod(lamq, lamq)
        cq += _jprod(ds_a[1], wdz_a[1])
        np.negative(cq, out=cq)
        cq[0] += sigma * mu
        dx, dy, dz, ds, _, amax_p, amax_d = _direction(
            sys_, rcl, _jdiv(lamq, cq, nt.lamq_det), refine
        )
        # separate primal and dual steps (linear objective: each residual shrinks by its own step)
        alpha_p = min(1.0, STEP * amax_p)
        alpha_d = min(1.0, STEP * amax_d)
        alpha = min(alpha_p, alpha_d)
        if trace is not None:
            trace(it, meas, mu, sigma, alpha, nt.err)
        if not np.isfinite(alpha):
            status = "InsufficientProgress"
            break
        # a step of length a shrinks the residuals by 1 - a (up to rounding)
        # (absolute residuals: the relative measures' scales move with the iterate)
        expect = ((1 - alpha_p) * pabs + 1e-13 * pden, (1 - alpha_d) * dabs + 1e-13 * dden)
        x = (x[0] + alpha_p * dx[0], x[1] + alpha_p * dx[1])
        sl, sq = sl + alpha_p * wl * ds[0], sq + alpha_p * sc.apply(ds[1], 1)
        yv = yv + alpha_d * dy
        zl, zq = zl + alpha_d * dz[0], zq + alpha_d * dz[1]
        it += 1
        small_steps = small_steps + 1 if alpha < 1e-10 else 0
        if small_steps >= 2:
            status = "InsufficientProgress"
            break
    if best is None:
        raise SolverError("banded IPM: non-finite numbers at the initial point")
    worst, x, yv, zl, meas = best
    if status != "Solved":
        if worst <= ALMOST_FACTOR * tol:
            status = "AlmostSolved"
        elif status == "InsufficientProgress" and worst > 1e-3:
            raise SolverError(
                f"banded IPM broke down after {it} iterations (best iterate: primal residual "
                f"{meas[0]:.2e}, dual residual {meas[1]:.2e}, relative gap {meas[2]:.2e}, "
                f"tol {tol:.1e})"
            )
    return x, yv, zl, it, status, meas


def banded_chain_master_info(
    sample: SortedSample, tol: float = 1e-8, max_iter: int = 100
) -> tuple[_ChainSolution, IPMInfo]:
    """:func:`banded_chain_master` and the stopping measures of the returned iterate."""
    check_tolerances("banded_chain_master", {"tol": tol}, positive=True)
    check_int_range("banded_chain_master", "max_iter", max_iter, 1)
    P = build_chain_program(sample)
    t0 = time.perf_counter()
    x, yv, zl, it, status, meas = _ipm(P, float(tol), int(max_iter))
    secs = time.perf_counter() - t0
    info = IPMInfo(*(float(v) for v in meas[:5]), float(tol))
    return _to_chain_solution(P, x, yv, zl, status, secs, it), info


def banded_chain_master(
    sample: SortedSample, tol: float = 1e-8, max_iter: int = 100
) -> _ChainSolution:
    """Solve the all-gaps chain program (chain_master's, scaling "dual") in O(m) per iteration.

    Infeasible-start primal-dual interior-point method (CVXOPT coneqp's scheme): Nesterov-Todd
    scaling of the nonnegative and SOC_3 cones, Mehrotra predictor-corrector (centring
    sigma = (<s + a ds, z + a dz> / <s, z>)^3 from the affine step a), separate primal and dual
    steps of 0.99 times the step to the cone boundary. Each Newton system is reduced (margin duals
    and per-kink unknowns eliminated in a numerically stable scaled form, see ``_Newton``) to a
    quasi-definite system in F and the n - 2 continuity multipliers, interleaved with bandwidth 3
    and solved by banded LU (LAPACK gbtrf / gbtrs); up to 3 rounds of O(m) iterative refinement
    of the full Newton system once a residual stops shrinking as it should.

    Stopping rule (program written as min c'x, A x = 0, G x + s = h, s in the cones; max-norms):

        primal residual  max(||A x||, ||G x + s - h||) / (1 + max(1, ||x||, ||s||))   <= tol
        dual residual    ||c + A'y + G'z|| / (1 + max(1, ||y||, ||z||))               <= tol
        relative gap     |c'x + h'z| / max(min(|c'x|, |h'z|), GAP_FLOOR = 1e-6)       <= tol

    all three: "Solved". Otherwise, at the iteration limit or when the step collapses (< 1e-10
    twice) or the scaling / Newton system breaks down, the best iterate (smallest max of the three)
    is returned with "AlmostSolved" if all three are <= ALMOST_FACTOR * tol (1e3 tol), else
    "MaxIterations" / "InsufficientProgress" (a breakdown with a measure still above 1e-3 raises).

    Parameters
    ----------
    sample : SortedSample
        Sorted 1-D data: strictly increasing x, labels +-1, m >= 3.
    tol : float
        Tolerance of the three measures (> 0).
    max_iter : int
        Iteration limit (>= 1).

    Returns
    -------
    scale._ChainSolution
        The fields of ``chain_master(sample, arange(m), arange(1, m), scaling="dual")`` with the
        same meanings: F, alpha = D C a <= 0, beta = D C b >= 0, U = (beta - alpha, alpha x_R -
        beta x_L) / D, L0, lam = C z_margin, R = (0, y, 0), objective = sum ||U_k||, status,
        seconds, iterations. :func:`banded_chain_master_info` also returns the measures.

    Raises
    ------
    InputError
        Bad sample, tol or max_iter.
    SolverError
        The iteration broke down far from the optimum (see above); never a NaN result.
    """
    return banded_chain_master_info(sample, tol, max_iter)[0]


def _to_chain_solution(P, x, yv, zl, status, secs, it) -> _ChainSolution:
    """Map the scaled iterate to chain_master's fields (:meth:`_ChainSolution.from_iterate`)."""
    n = P.n
    F, (a, b, _) = x
    Dk = np.repeat(P.D, 2)
    lam = np.maximum(zl[:n], 0.0) * P.C
    R = np.zeros(n)
    R[1:-1] = yv
    sol = _ChainSolution.from_iterate(
        P.x,
        np.arange(n),
        np.repeat(np.arange(n - 1), 2),
        P.sk,
        F,
        a * Dk * P.C,
        b * Dk * P.C,
        lam,
        R,
        status,
        secs,
        int(it),
    )
    for name, v in (("F", sol.F), ("U", sol.U), ("lam", sol.lam), ("R", sol.R)):
        if not np.all(np.isfinite(v)):
            raise SolverError(f"banded IPM: non-finite {name} in the solution ({status})")
    return sol
