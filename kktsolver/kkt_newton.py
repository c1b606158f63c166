"""Newton's method on the exact 1-D KKT system of (P), in O(1) "chain" coordinates.

Turns a value-optimal 1-D solution (a certified gap of ~1e-9 leaves kinks ~sqrt(1e-9) off;
docs/scale.md) into a stationary one: primal and dual unknowns together, the structure fixed.

The structure (MATH.md sections 2-4): the support A = {j : lambda_j > 0} (sorted points
a_0 < ... < a_{n-1}), R(t) = sum_{x_i > t} lambda_i y_i (x_i - t) linear between support points with
R(a_0) = R(a_{n-1}) = 0 (the relaxed dual with a free linear part), and kinks of f only where R
touches s w, w(t) = sqrt(1 + t^2): at most one *interior* kink per support interval (R is linear
there and w strictly convex: a tangency) and *rays* (kinks on a support point, |R(a_j)| = w(a_j)).
f(a_j) = y_j on the support (complementary slackness). Unknowns: R_j = R(a_j), the slope sigma_j of
f just right of a_j, per interior kink its position t_k and slope change delta_k, per ray its slope
change. Equations (square: the unknown and equation counts agree for any structure):

    R_0 = R_{n-1} = 0
    V_j:  sigma_j D_j + delta_k (a_{j+1} - t_k) = y_{j+1} - y_j        (f(a_{j+1}) = y_{j+1})
    S_j:  sigma_{j+1} - sigma_j - delta_k(j) - delta_ray(j+1) = 0      (slopes chain)
    T1_k: R(t_k) = s_k w(t_k),   T2_k: R'(t_k) = s_k w'(t_k)           (tangency)
    C_j:  R_j = s_j w(a_j)                                             (contact at a ray)

All of it in O(1) values (R ~ w, the values y), which is why it converges where Newton in prefix
sums of lambda (~1e6 at m = 1e3) stalls. The caller certifies the result (lambda = y * jump of R',
>= 0; |R| <= w on every gap; margins >= 1 off the support): nothing here is trusted unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg
from scipy.sparse.csgraph import maximum_bipartite_matching, structural_rank

from .global_solver import regularised_step
from .network import PiecewiseLinear

__all__ = [
    "KKTStructure",
    "NewtonPoint",
    "WorkBudget",
    "identify_structure",
    "solve_structure",
    "chain_kkt_newton",
    "dual_violations",
]


class WorkBudget:
    """A deterministic cap on Newton work: iterations weighted by their number of unknowns.

    A time limit made the stage's outcome depend on machine load (the same m = 2000 dataset came
    out stationary or not from run to run); counted work does not.
    """

    def __init__(self, limit: float) -> None:
        self.limit = float(limit)
        self.used = 0.0

    @property
    def spent(self) -> bool:
        return self.used >= self.limit

    def spend(self, amount: float) -> bool:
        """Charge ``amount``; False (and nothing charged) if the budget is already spent."""
        if self.spent:
            return False
        self.used += float(amount)
        return True


@dataclass(frozen=True, eq=False)
class KKTStructure:
    """Active structure of a 1-D KKT point (indices refer to the sorted sample).

    ``support``: the points a_0 < ... < a_{n-1} with margin 1 (lambda > 0). Interior kinks: support
    interval ``k_int`` (between support[k] and support[k+1]), sign, initial slope change and
    position. Rays: support index ``k_ray`` (1 .. n-2), sign, initial slope change.
    """

    support: np.ndarray
    k_int: np.ndarray
    s_int: np.ndarray
    d_int: np.ndarray
    t_int: np.ndarray
    k_ray: np.ndarray
    s_ray: np.ndarray
    d_ray: np.ndarray

    def without(self, interior: np.ndarray, rays: np.ndarray) -> KKTStructure:
        """The structure with the given interior intervals and ray points removed."""
        ki = ~np.isin(self.k_int, interior)
        kr = ~np.isin(self.k_ray, rays)
        return KKTStructure(
            self.support,
            self.k_int[ki],
            self.s_int[ki],
            self.d_int[ki],
            self.t_int[ki],
            self.k_ray[kr],
            self.s_ray[kr],
            self.d_ray[kr],
        )

    def rays_to_interior(self, rays: np.ndarray, intervals: np.ndarray, x: np.ndarray):
        """The structure with the rays at support indices ``rays`` moved into the support
        ``intervals`` (one each) as interior kinks at the interval's midpoint, merged with an
        interior kink of the same sign already there."""
        if rays.size == 0:
            return self
        keep = ~np.isin(self.k_ray, rays)
        pos = np.searchsorted(self.k_ray, rays)
        xa = x[self.support]
        k_int, s_int = list(self.k_int), list(self.s_int)
        d_int, t_int = list(self.d_int), list(self.t_int)
        for p, q in zip(pos, intervals, strict=True):
            s, d = self.s_ray[p], self.d_ray[p]
            if q in k_int:
                i = k_int.index(q)
                if s_int[i] != s:  # one interior kink per interval: the ray stays
                    keep[p] = True
                    continue
                d_int[i] += d
            else:
                k_int.append(q)
                s_int.append(s)
                d_int.append(d)
                t_int.append(0.5 * (xa[q] + xa[q + 1]))
        o = np.argsort(k_int, kind="stable")
        arr = [np.asarray(a)[o] for a in (k_int, s_int, d_int, t_int)]
        return KKTStructure(
            self.support,
            arr[0].astype(int),
            *arr[1:],
            self.k_ray[keep],
            self.s_ray[keep],
            self.d_ray[keep],
        )


@dataclass(frozen=True, eq=False)
class NewtonPoint:
    """A solution of the KKT equations of a :class:`KKTStructure`.

    ``t``, ``d``: all kinks (sorted; t in long double, see :class:`_System`) and their slope
    changes; ``L0`` = (slope, intercept) of f left of the first support point; ``R``: R at the
    support points; ``sigma``: slope of f just right of each support point but the last;
    ``residual``: max-norm of the (scaled) equations; ``iterations``; ``converged``: residual <=
    the requested tolerance AND every interior tangency inside its interval AND every slope
    change of its kink's sign.
    """

    t: np.ndarray
    d: np.ndarray
    L0: np.ndarray
    R: np.ndarray
    support: np.ndarray
    residual: float
    iterations: int
    converged: bool
    message: str
    sigma: np.ndarray

    def local_values(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """f at the sorted sample x, from the support values and slopes of the equations.

        On [a_j, a_{j+1}]: f = y_{a_j} + sigma_j (x - a_j) + delta_k relu(x - t_k) (its interior
        kink, if any); beyond the ends the end lines continue. Unlike :attr:`function`, which
        integrates L0 and every slope change from the left, this does not carry the equations'
        residuals along: a slope-chain row met to 4e-14 of max |sigma| ~ 1e8 is a slope error of
        4e-6, and integrated it read a point 1.6e-8 short between two support points where f is
        exactly linear (two clusters of width 1e-4, m = 300; the repairs then cycled).
        """
        a, ya = x[self.support], np.asarray(y, dtype=float)[self.support]
        n = a.size
        j = np.clip(np.searchsorted(a, x, side="right") - 1, 0, max(n - 2, 0))
        if n < 2:
            return np.full(x.size, ya[0] if n else 0.0)
        ld = np.longdouble
        f = ya[j].astype(ld) + self.sigma[j].astype(ld) * (x.astype(ld) - a[j])
        inner = (self.t > a[0]) & (self.t < a[-1]) & ~np.isin(self.t, a)
        q = np.searchsorted(a, self.t[inner].astype(float), side="right") - 1
        dk = np.zeros(n - 1, dtype=ld)
        tk = np.zeros(n - 1, dtype=ld)
        dk[q], tk[q] = np.asarray(self.d[inner], dtype=ld), self.t[inner]
        f += dk[j] * np.maximum(x.astype(ld) - tk[j], 0)
        f[self.support] = ya  # (the last one would otherwise come from the line before it)
        return f

    @property
    def function(self) -> PiecewiseLinear:
        """f = L0[0] x + L0[1] + sum_k d_k relu(x - t_k), evaluated in extended precision: float64
        errs by ~eps sum |d_k|, up to ~1e-6 at objective 5e10, the size of the margin violations
        the repairs look for."""
        return PiecewiseLinear.from_kinks(self.t, self.d, self.L0, dtype=np.longdouble)


def _interval_lines(xa: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R(t) = A - B t on each support interval (R linear between support points), and the
    maximiser t* = -B / A of |A - B t| / sqrt(1 + t^2), whose value is ||(A, B)|| (tangency)."""
    B = -np.diff(R) / np.diff(xa)
    A = R[:-1] + B * xa[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return A, B, -B / A


def identify_structure(
    x: np.ndarray,
    y: np.ndarray,
    support: np.ndarray,
    R_support: np.ndarray,
    t: np.ndarray,
    d: np.ndarray,
    on_point: float = 1e-6,
    prefer: str = "dual",
    contact: float = 1e-6,
) -> KKTStructure:
    """The structure of a near-KKT point from its multipliers' R and its kinks (t, slope change d).

    A kink within ``on_point`` of its support interval's length (or 1e-12) of a support point is a
    ray there, otherwise interior (kinks of one interval merge, mass-weighted); an interior kink
    whose interval has no tangency of its sign under R (value >= 1 - ``contact``) becomes a ray at
    the end where s R / w is larger. A contact at a point and a tangency of the
    same sign in an adjacent interval cannot both hold (R is linear on the interval, w strictly
    convex, so their contacts differ only at second order, ~1e-8 for gaps of 1e-3): the stronger
    contact under R keeps both masses (``prefer="dual"``; "ray" / "interior" always keep that
    kind: the alternatives :func:`chain_kkt_newton` tries when the first fails). Runs of >= 3
    equal-label support points without kinks keep only their ends (f is constant there, R free in
    between: the equations would be dependent).
    """
    n = support.size
    xa = x[support]
    D = np.diff(xa)
    w = np.hypot(1.0, t)
    big = np.abs(d) * w > 1e-13 * np.sum(np.abs(d) * w)
    t, d = t[big], d[big]
    i = np.clip(np.searchsorted(xa, t, side="right") - 1, 0, n - 2)
    near = np.maximum(on_point * D[i], 1e-12)
    ray_at = np.where(t - xa[i] <= near, i, np.where(xa[i + 1] - t <= near, i + 1, -1))
    inner = ray_at < 0
    # the dual's contacts: tangency value per interval (0 if the tangency is outside) and |R| / w
    # at the points
    A, B, tan = _interval_lines(xa, R_support)
    rho_int = np.where((tan > xa[:-1]) & (tan < xa[1:]), np.hypot(A, B), 0.0)
    Rw = R_support / np.hypot(1.0, xa)
    rho_pt = np.abs(Rw)
    # an interior kink needs a tangency of its sign inside its interval; without one (e.g. in a
    # tiny gap between opposite labels, where R runs from +w to -w) it moves to the end point
    # where s R / w is larger (a ray there)
    sd = np.sign(d)
    no_tan = inner & ((rho_int[i] < 1.0 - contact) | (sd != np.sign(A[i])))
    ray_at = np.where(no_tan, np.where(sd * Rw[i] >= sd * Rw[i + 1], i, i + 1), ray_at)
    inner = ray_at < 0
    d_int = np.bincount(i[inner], d[inner], minlength=n - 1)
    dt_int = np.zeros(n - 1, dtype=np.result_type(t, np.float64))  # long double t stays so
    np.add.at(dt_int, i[inner], d[inner] * t[inner])
    d_ray = np.bincount(ray_at[~inner], d[~inner], minlength=n)
    d_ray[0] = d_ray[-1] = 0.0  # R = 0 at the end points: no contact there
    for j in np.flatnonzero(d_ray):
        for q in (j - 1, j):
            if 0 <= q < n - 1 and d_int[q] != 0 and d_ray[j] != 0:
                if np.sign(d_int[q]) != np.sign(d_ray[j]):
                    continue
                to_interior = rho_int[q] >= rho_pt[j] if prefer == "dual" else prefer == "interior"
                if to_interior:
                    dt_int[q] += d_ray[j] * xa[j]
                    d_int[q] += d_ray[j]
                    d_ray[j] = 0.0
                else:
                    d_ray[j] += d_int[q]
                    d_int[q] = dt_int[q] = 0.0
    has_int, has_ray = d_int != 0, d_ray != 0
    # flat runs: a support point with equal labels on both sides and no kink around is redundant
    yl = y[support]
    redundant = np.zeros(n, bool)
    redundant[1:-1] = (
        ~has_ray[1:-1] & ~has_int[:-1] & ~has_int[1:] & (yl[:-2] == yl[1:-1]) & (yl[1:-1] == yl[2:])
    )
    new_index = np.cumsum(~redundant) - 1
    qi, qr = np.flatnonzero(has_int), np.flatnonzero(has_ray)
    return KKTStructure(
        support[~redundant],
        new_index[qi],
        np.sign(d_int[qi]),
        d_int[qi],
        dt_int[qi] / d_int[qi],
        new_index[qr],
        np.sign(d_ray[qr]),
        d_ray[qr],
    )


class _System:
    """Residual and Jacobian of the equations of the module docstring for one structure.

    Unknown vector: R (n), sigma (n - 1), delta_int (K), tau (K), delta_ray (Kr), where
    tau_k = t_k - a_q is the kink's offset from the left end of its support interval q: an
    absolute t resolves only ulp(t) ~ 5e-17, which moves the value equation by delta_k ulp(t) ~ 4e-8
    when delta_k ~ 7e8 (two clusters of width 1e-2, m = 1000: Newton stalled there); tau resolves
    ulp(D_q). Rows are scaled to
    O(1): V_j by 1 / (|y_{j+1} - y_j| + |sigma_j D_j| + 1) at the start, S_j by 1 / max |sigma|, T2
    by D_k.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, st: KKTStructure, sigma0: np.ndarray):
        self.st = st
        n = st.support.size
        self.n, self.K, self.Kr = n, st.k_int.size, st.k_ray.size
        self.xa = x[st.support]
        self.ya = y[st.support].astype(float)
        self.D = np.diff(self.xa)
        self.o_s = n
        self.o_d = self.o_s + n - 1
        self.o_t = self.o_d + self.K
        self.o_r = self.o_t + self.K
        self.N = self.o_r + self.Kr
        self.kint = np.full(n - 1, -1)
        self.kint[st.k_int] = np.arange(self.K)
        self.kray = np.full(n, -1)
        self.kray[st.k_ray] = np.arange(self.Kr)
        # |delta (a_{j+1} - t)| too: a kink that a mended structure moved into a gap of 4e-5
        # made both terms of V_j ~3e4 (cancelling) while sigma0 D_j was ~2, and the rounding of the
        # unscaled row (4e-9) stalled Newton (two clusters of width 1e-2, m = 1000)
        lever = np.zeros(n - 1)
        lever[st.k_int] = np.abs(st.d_int * (self.xa[st.k_int + 1] - st.t_int))
        self.v_scale = 1.0 / (np.abs(np.diff(self.ya)) + np.abs(sigma0 * self.D) + lever + 1.0)
        self.s_scale = 1.0 / max(float(np.abs(sigma0).max(initial=0.0)), 1.0)

    def start(self, R0: np.ndarray, sigma0: np.ndarray) -> np.ndarray:
        z = np.zeros(self.N)
        z[: self.n] = R0
        z[self.o_s : self.o_d] = sigma0
        z[self.o_d : self.o_t] = self.st.d_int
        z[self.o_t : self.o_r] = self.st.t_int - self.xa[self.st.k_int]
        z[self.o_r :] = self.st.d_ray
        return z

    def parts(self, z):
        n = self.n
        return (
            z[:n],
            z[self.o_s : self.o_d],
            z[self.o_d : self.o_t],
            z[self.o_t : self.o_r],
            z[self.o_r :],
        )

    def __call__(self, z: np.ndarray, jacobian: bool = True):
        st, n, K, Kr = self.st, self.n, self.K, self.Kr
        xa, ya, D = self.xa, self.ya, self.D
        R, sg, dk, tau, dr = self.parts(z)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []

        def put(r, c, v):
            rows.append(np.asarray(r).ravel())
            cols.append(np.asarray(c).ravel())
            vals.append(np.broadcast_to(np.asarray(v, dtype=float), np.shape(r)).ravel())

        F = [np.array([R[0], R[-1]])]
        put([0, 1], [0, n - 1], 1.0)
        row = 2
        # V_j
        j = np.arange(n - 1)
        has = self.kint >= 0
        kk = self.kint[has]
        V = sg * D - np.diff(ya)
        V[has] += dk[kk] * (D[has] - tau[kk])  # a_{j+1} - t_k
        vs = self.v_scale
        F.append(V * vs)
        put(row + j, self.o_s + j, D * vs)
        put(row + j[has], self.o_d + kk, (D[has] - tau[kk]) * vs[has])
        put(row + j[has], self.o_t + kk, -dk[kk] * vs[has])
        row += n - 1
        # S_j
        js = np.arange(n - 2)
        ss = self.s_scale
        S = sg[1:] - sg[:-1]
        hi = self.kint[:-1] >= 0
        S[hi] -= dk[self.kint[:-1][hi]]
        hr = self.kray[1:-1] >= 0
        S[hr] -= dr[self.kray[1:-1][hr]]
        F.append(S * ss)
        put(row + js, self.o_s + js + 1, ss)
        put(row + js, self.o_s + js, -ss)
        put(row + js[hi], self.o_d + self.kint[:-1][hi], -ss)
        put(row + js[hr], self.o_r + self.kray[1:-1][hr], -ss)
        row += n - 2
        # T1, T2
        q, s = st.k_int, st.s_int
        f = tau / D[q]
        tk = xa[q] + tau
        wt = np.hypot(1.0, tk)
        slope = (R[q + 1] - R[q]) / D[q]
        F.append(R[q] + (R[q + 1] - R[q]) * f - s * wt)
        F.append((slope - s * tk / wt) * D[q])
        e = np.arange(K)
        put(row + e, q, 1.0 - f)
        put(row + e, q + 1, f)
        put(row + e, self.o_t + e, slope - s * tk / wt)
        row += K
        put(row + e, q + 1, 1.0)
        put(row + e, q, -1.0)
        put(row + e, self.o_t + e, -s * D[q] / wt**3)
        row += K
        # C_j
        F.append(R[st.k_ray] - st.s_ray * np.hypot(1.0, xa[st.k_ray]))
        put(row + np.arange(Kr), st.k_ray, 1.0)
        F = np.concatenate(F)
        if not jacobian:
            return F, None
        J = sparse.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(F.size, self.N),
        )
        return F, J

    def mended(self, J: sparse.spmatrix, x: np.ndarray, R0: np.ndarray) -> KKTStructure | None:
        """The structure to try instead of a structurally singular one, or None if nothing to mend.

        Interior intervals and ray points whose equations a maximum matching leaves unmatched go
        (more contacts than the dual can touch there). A support point whose R appears in no
        equation (no contact, no tangency next to it) sits between two kinks that the network put
        in tiny gaps: measured in two clusters of width 1e-2 (m = 1000), f = -1 at two points
        5e-9 apart between +1 labels, its V-shaped kink between them read as a ray on one of them;
        R linear between two contacts would exceed the strictly convex w there. An adjacent ray
        with the sign of R at that point moves into the gap between them (the closer one if both).
        ``R0``: R at the support points (the start of the solve).
        """
        Jr = J.tocsr()
        bad = np.flatnonzero(maximum_bipartite_matching(Jr, perm_type="column") < 0)
        n, K = self.n, self.K
        t0 = 2 + (n - 1) + (n - 2)
        tang = bad[(bad >= t0) & (bad < t0 + 2 * K)] - t0
        interior = self.st.k_int[np.unique(tang % max(K, 1))]
        rays = self.st.k_ray[bad[bad >= t0 + 2 * K] - t0 - 2 * K]
        free = np.flatnonzero(maximum_bipartite_matching(Jr, perm_type="row")[:n] < 0)
        move, into = [], []
        sR = np.sign(R0[free])
        for j, s in zip(free, sR, strict=True):
            options = [
                (self.D[q], r, q)
                for r, q in ((j - 1, j - 1), (j + 1, j))
                if 0 < r < n - 1
                and self.kray[r] >= 0
                and self.st.s_ray[self.kray[r]] == s
                and r not in rays
                and r not in move
            ]
            if options:
                _, r, q = min(options)
                move.append(r)
                into.append(q)
        if interior.size == 0 and rays.size == 0 and not move:
            return None
        st = self.st.without(interior.astype(int), rays.astype(int))
        return st.rays_to_interior(np.asarray(move, dtype=int), np.asarray(into, dtype=int), x)


def solve_structure(
    x: np.ndarray,
    y: np.ndarray,
    st: KKTStructure,
    R0: np.ndarray,
    sigma0: np.ndarray,
    tol: float = 1e-11,
    max_iter: int = 30,
    accept: float = 1e-9,
    work: WorkBudget | None = None,
) -> NewtonPoint | KKTStructure | None:
    """Levenberg-Marquardt Newton on the equations of ``st`` from (R0, sigma0) at the support.

    Stops when the residual is <= ``tol``, when ``work`` is spent (each iteration costs the number
    of unknowns), or when no step reduces the residual and it is <= ``accept`` (the rounding level
    of the O(1) rows grows with m: measured 9e-11 at m = 2000).
    Returns a :class:`NewtonPoint`; when the Jacobian is structurally singular, the structure to
    try instead (:meth:`_System.mended`), or None if it cannot be mended.
    """
    sysm = _System(x, y, st, sigma0)
    z = sysm.start(R0, sigma0)
    F, J = sysm(z)
    if structural_rank(J.tocsr()) < sysm.N:
        return sysm.mended(J, x, R0)
    scale = np.maximum(np.abs(z), 1.0)  # columns: R, t ~ 1; slopes ~ 1e5 .. 1e9
    fn, it, msg = float(np.abs(F).max()), 0, "converged"
    for it in range(1, max_iter + 1):  # noqa: B007 (reported)
        if fn <= tol:
            break
        if work is not None and not work.spend(sysm.N):
            msg = "work budget"
            break
        # Levenberg-Marquardt in the scaled unknowns: mu = 0 is Newton; a near-singular structure
        # (measured m = 1000, p = 0.4: Newton steps of 1e14) gets mu raised until the 2-norm drops
        Js = (J @ sparse.diags(scale)).tocsc()
        f2, accepted = float(F @ F), False
        for mu in (0.0, 1e-12, 1e-9, 1e-6, 1e-3, 1.0):
            with np.errstate(all="ignore"):
                try:
                    if mu == 0.0:
                        step = splinalg.spsolve(Js, -F)
                    else:
                        step = regularised_step(Js, F, mu * sparse.identity(sysm.N, format="csc"))
                except RuntimeError:  # numerically singular
                    continue
            if not np.all(np.isfinite(step)):
                continue
            Fn = sysm(z + step * scale, jacobian=False)[0]
            if float(Fn @ Fn) < (1.0 - 1e-4) * f2:
                accepted = True
                break
        if not accepted:
            msg = "no descent step" if fn > accept else "stalled at rounding level"
            break
        z = z + step * scale
        F, J = sysm(z)
        fn = float(np.abs(F).max())
    R, sg, dk, tau, dr = sysm.parts(z)
    xa, q = sysm.xa, st.k_int
    # a tangency that ends within 1e-9 of its interval's length outside it is the end point (a
    # ray: R touches w there to ~1e-18); farther out, the structure was wrong
    slack = 1e-9 * sysm.D[q]
    inside = bool(np.all((tau >= -slack) & (tau <= sysm.D[q] + slack)))
    # kink positions in long double: a_q + tau keeps tau's resolution (see _System)
    tk = xa[q].astype(np.longdouble) + np.clip(tau, 0.0, sysm.D[q])
    signs = bool(np.all(dk * st.s_int >= 0) and np.all(dr * st.s_ray >= 0))
    if fn > tol and msg == "converged":
        msg = "max_iter"
    if not inside:
        msg += "; a tangency left its interval"
    if not signs:
        msg += "; a slope change of the wrong sign"
    t_all = np.r_[tk, xa[st.k_ray].astype(np.longdouble)]
    d_all = np.r_[dk, dr]
    o = np.argsort(t_all, kind="stable")
    L0 = np.array([sg[0], sysm.ya[0] - sg[0] * xa[0]])
    small = fn <= tol or msg == "stalled at rounding level"
    return NewtonPoint(
        t_all[o],
        d_all[o],
        L0,
        R.copy(),
        st.support,
        fn,
        it,
        small and inside and signs,
        msg,
        sg.copy(),
    )


def dual_violations(
    x: np.ndarray,
    y: np.ndarray,
    point: NewtonPoint,
    slack: float = 1e-12,
    lam_slack: float = 1e-9,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where the Newton point's R fails to be a dual certificate.

    Returns (support indices with lambda_j < -lam_slack max lambda; violations: support intervals
    whose tangency value ||(A, B)|| exceeds 1 + slack with the tangency inside, then support
    points with |R| > (1 + slack) w; the positions of the kinks they need; their signs).
    lambda_j = y_j (R'(a_j+) - R'(a_j-)) with R = 0 outside the support (MATH.md section 3).
    Violations within the slacks are left alone: rho - 1 costs that much, relative, in the bound
    sum lambda / max(1, max rho), and a lambda_j within ``lam_slack`` below 0 is the rounding of
    R's second difference over gaps down to 1e-9, which the certificate removes by moving R_j by
    ~lambda_j D (``scale._repair_nonnegative``) instead of charging it to rho. Measured:
    ``slack`` 1e-9 leaves m = 2000, p = 0.1, seed 0 at certify residual 1.1e-6 (1e-12: 1.9e-9).
    ``lam_slack`` 1e-12 made the repairs cycle (m = 1e4, and m = 2000, p = 0.2, seed 1: one
    lambda between -1e-9 and -1e-12 of max lambda against |R| / w > 1 + 1e-12 on two intervals
    next to it; removing the point brings them back); 1e-9 gives the latter a stationary point
    (gap 9.0e-9 then, 3.9e-9 after the rounding changes of docs/scale.md, session 4).
    """
    xa, R = x[point.support], point.R
    A, B, tan = _interval_lines(xa, R)
    slope = -B
    lam = y[point.support] * (np.r_[slope, 0.0] - np.r_[0.0, slope])
    neg = np.flatnonzero(lam < -lam_slack * max(float(lam.max(initial=0.0)), 1e-300))
    inside = (tan > xa[:-1]) & (tan < xa[1:])
    over = np.flatnonzero(inside & (np.hypot(A, B) > 1.0 + slack))
    # |R| > w at a support point itself (measured at m = 1e4: rho - 1 = 5.7e-3 there, invisible
    # to the interval test): a kink on that point (a ray) is missing
    at_pt = np.flatnonzero(np.abs(R) > (1.0 + slack) * np.hypot(1.0, xa))
    t_new = np.r_[tan[over], xa[at_pt]]
    return neg, np.r_[over, at_pt], t_new, np.r_[np.sign(A[over]), np.sign(R[at_pt])]


#: a Newton point that did not converge but got its residual this low is repaired (its structure
#: re-identified from its own kinks and R) rather than given up
REPAIR_RESIDUAL = 1e-6


def chain_kkt_newton(
    x: np.ndarray,
    y: np.ndarray,
    support: np.ndarray,
    R_support: np.ndarray,
    t: np.ndarray,
    d: np.ndarray,
    sigma: np.ndarray,
    tol: float = 1e-11,
    attempts: int = 4,
    rounds: int = 6,
    work: WorkBudget | None = None,
) -> NewtonPoint | None:
    """Active-set Newton: identify the structure (:func:`identify_structure`), solve it
    (:func:`solve_structure`; contacts that make the system structurally singular are dropped, at
    most ``attempts`` times per round), then repair what the solution shows (at most ``rounds``
    times): support points with lambda < 0 leave the support, intervals where |R| > w get a kink
    (:func:`dual_violations`), points with margin < 1 join the support. ``sigma``: slopes of f just
    right of each support point. ``work``: a budget of Newton iterations weighted by their
    number of unknowns over all solves (deterministic, unlike a time limit); no new solve starts
    once it is spent. Returns the last Newton point (check ``converged``) or None if no attempt gave
    a solvable system.
    """
    first = None
    for prefer in ("dual", "ray", "interior"):
        if work is not None and work.spent:
            break
        point = _active_set(
            x, y, support, R_support, t, d, sigma, tol, attempts, rounds, prefer, work
        )
        if point is not None and point.converged:
            return point
        first = first or point
    return first


def _active_set(x, y, support, R_support, t, d, sigma, tol, attempts, rounds, prefer, work):
    """The loop of :func:`chain_kkt_newton` for one conflict rule ``prefer``.

    A point whose equations hold but whose last check still found violations (the repairs, the
    work budget or the solvable structures ran out) is returned with ``converged`` False: measured
    at m = 2000, p = 0.4, seed 1, such a point had a point off its support at margin 0.63.
    """
    point, clean = _repairs(
        x, y, support, R_support, t, d, sigma, tol, attempts, rounds, prefer, work
    )
    if point is not None and point.converged and not clean:
        point = replace(point, converged=False, message="KKT violations left after the repairs")
    return point


def _repairs(x, y, support, R_support, t, d, sigma, tol, attempts, rounds, prefer, work):
    """(last Newton point or None, whether it passed every check) of :func:`_active_set`."""
    point = None
    for _ in range(rounds):
        if work is not None and work.spent:
            return point, False
        st = identify_structure(x, y, support, R_support, t, d, prefer=prefer)
        keep = np.isin(support, st.support)
        R0, sigma0 = R_support[keep], sigma[keep][:-1]
        out = None
        for _ in range(attempts):
            out = solve_structure(x, y, st, R0, sigma0, tol, work=work)
            if not isinstance(out, KKTStructure):
                break
            st = out
        if not isinstance(out, NewtonPoint):
            return point, False
        point = out
        if not point.converged and point.residual > REPAIR_RESIDUAL:
            return point, False
        neg, over, t_new, s_new = dual_violations(x, y, point)
        f = point.local_values(x, y)
        # margins short by <= 1e-9 cost that much, relative, when the network is scaled to
        # margins >= 1. At m = 1e4 points short by ~2.5e-10 lay between two support points on a
        # linear piece, i.e. rounding of the Newton point; chasing them cycled, because the
        # flat-run rule of identify_structure removes such points again
        short = np.setdiff1d(np.flatnonzero(y * f < 1.0 - 1e-9), point.support)
        if point.converged and neg.size == 0 and over.size == 0 and short.size == 0:
            return point, True
        # repair and start again from this point; a kink whose sign disagrees with R's there
        # goes (a tangency that left its interval is re-assigned by identify_structure)
        agree = np.sign(point.d) == np.sign(
            np.interp(point.t.astype(float), x[point.support], point.R)
        )
        tiny = 1e-9 * float(np.abs(point.d).max(initial=1.0))
        t = np.r_[point.t[agree], t_new]
        d = np.r_[point.d[agree], s_new * tiny]
        o = np.argsort(t, kind="stable")
        t, d = t[o], d[o]
        keep_pts = np.ones(point.support.size, bool)
        keep_pts[neg] = False
        keep_pts[[0, -1]] = True
        support = np.union1d(point.support[keep_pts], short)
        R_support = np.interp(x[support], x[point.support], point.R)
        sigma = PiecewiseLinear.from_kinks(t, d, point.L0).slope(x[support])
    return point, False
