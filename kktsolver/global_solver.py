"""Certified global minimum of the max-margin problem (P) in 1-D via the convex program over all blocks.

Pipeline (MATH.md sections 3-5): conic solve -> purify (LP vertex) -> merge -> polish (active-set Newton
on the KKT equations) -> exact feasibility by scaling -> certified lower bound from the dual norms rho_k.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg

from .data import Dataset
from .errors import InputError, SolverError
from .network import ReLUNetwork
from .patterns import Block, SortedSample, all_blocks, network_from_blocks, rho
from .subproblem import ConvexSubproblem, SubproblemResult, cone_rows, margins_of

__all__ = [
    "GlobalTolerances",
    "GlobalResult",
    "Support",
    "solve_global",
    "conic_solve",
    "cone_edges",
    "best_directions",
    "candidates",
    "purify",
    "merge",
    "polish",
    "lower_bound",
    "restore_feasibility",
]


@dataclass(frozen=True)
class GlobalTolerances:
    """Tolerances of :func:`solve_global` (all relative and dimensionless).

    Attributes
    ----------
    gap : float
        Status "optimal" needs relative_gap = (objective - lower_bound) / objective <= gap.
    support_rtol : float
        A conic block with ||u_k|| <= support_rtol * max_k ||u_k|| is not a purification candidate.
    candidate_rho : float
        Blocks with rho_k(lambda) >= 1 - candidate_rho also become candidates (direction: the maximiser
        of s_k <u, g_k(lambda)> over the cone), so a wrong conic support is repaired in the next round.
    snap_rtol : float
        A candidate direction d with <a, d> <= snap_rtol ||a|| for a cone row a (kink within about
        snap_rtol of a data point) is snapped onto that cone edge: the kink sits ON the data point.
    active_rtol : float
        After a round, margins <= 1 + active_rtol that were not active are added to the active set.
    newton_tol : float
        Newton stops when the max-norm of the (dimensionless) KKT residual is below this.
    newton_accept : float
        If the line search stalls (the residual is at its rounding level), the polish counts as
        converged when the residual is below this; the certificate decides in any case.
    newton_reg : float
        Proximal term on the primal unknowns in the Newton matrix (the primal optimum is often not
        unique; the term only regularises the step, solutions are unchanged).
    max_newton : int
        Newton iterations per active set.
    max_rounds : int
        Rounds of purify -> polish -> price (each adds the blocks the multipliers price above 1).
    lp_tol : float
        Primal and dual feasibility tolerance of the purification LP (HiGHS).
    conic_options : dict
        Extra Clarabel settings for the conic stage.
    """

    gap: float = 1e-8
    support_rtol: float = 1e-7
    candidate_rho: float = 1e-3
    snap_rtol: float = 1e-6
    active_rtol: float = 1e-9
    newton_tol: float = 1e-13
    newton_reg: float = 1e-12
    newton_accept: float = 1e-9
    max_newton: int = 30
    max_rounds: int = 8
    lp_tol: float = 1e-10
    conic_options: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class GlobalResult:
    """Certified global minimum of (P) on a 1-D dataset.

    Attributes
    ----------
    network : ReLUNetwork
        Balanced network of minimal width (one neuron per support block), scaled so that every margin
        is >= 1: feasible for (P).
    multipliers : ndarray, shape (m,)
        lambda >= 0 in the DATASET's order (zero off the active margins).
    objective : float
        1/2 ||theta||^2 of ``network`` (an upper bound on min (P)).
    lower_bound : float
        sum_i lambda_i / max(1, max_k rho_k(lambda)) over every block (MATH.md section 3): a certified
        lower bound on min (P) up to float rounding in rho.
    relative_gap : float
        (objective - lower_bound) / objective.
    min_margin : float
        min_i y_i N(x_i) of ``network`` (>= 1 up to one rounding).
    max_rho : float
        max_k rho_k(lambda) over all 2(2m - 1) blocks.
    n_neurons : int
        Width of ``network``.
    clean_error : float or None
        Exact clean error on ``dataset.support`` (or [0, 1]); None if kktsolver.clean_error is missing.
    status : str
        "optimal" (relative_gap <= tol.gap and min_margin >= 1) or "inaccurate".
    solver, formulation : str
    rounds : int
        Purify/polish rounds used.
    timings : dict
        Seconds per stage: build, conic, purify, polish, certify, clean_error.
    seconds : float
        Total wall time.
    tol : GlobalTolerances
    blocks, U :
        The support in (C_B) form (sorted-sample blocks, U rows), before the final scaling.
    """

    network: ReLUNetwork
    multipliers: np.ndarray
    objective: float
    lower_bound: float
    relative_gap: float
    min_margin: float
    max_rho: float
    n_neurons: int
    clean_error: float | None
    status: str
    solver: str
    formulation: str
    rounds: int
    timings: dict[str, float]
    seconds: float
    tol: GlobalTolerances
    blocks: tuple[Block, ...] = ()
    U: np.ndarray | None = None
    conic: SubproblemResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (network as its JSON form)."""
        from .cli import to_jsonable

        return to_jsonable(
            {
                "objective": self.objective,
                "lower_bound": self.lower_bound,
                "relative_gap": self.relative_gap,
                "min_margin": self.min_margin,
                "max_rho": self.max_rho,
                "n_neurons": self.n_neurons,
                "clean_error": self.clean_error,
                "status": self.status,
                "solver": self.solver,
                "formulation": self.formulation,
                "rounds": self.rounds,
                "timings": self.timings,
                "seconds": self.seconds,
                "tolerances": self.tol.to_dict(),
                "multipliers": self.multipliers,
                "network": self.network.to_dict(),
                "conic_status": None if self.conic is None else self.conic.status,
            }
        )


# --------------------------------------------------------------------------- cone geometry


@dataclass(frozen=True, eq=False)
class _Geometry:
    """All blocks of a sample as arrays: cone rows, edges, active ranges (computed once, O(m))."""

    blocks: tuple[Block, ...]
    sign: np.ndarray
    G1: np.ndarray
    R2: np.ndarray
    E1: np.ndarray  # unit edge on the line G1 u = 0 (NaN for a half-plane)
    E2: np.ndarray  # unit edge on the line R2 u = 0
    start: np.ndarray  # active set = [start, stop)
    stop: np.ndarray
    right_at: np.ndarray
    left_at: np.ndarray


def cone_edges(G1: np.ndarray, R2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit edge rays (E1, E2) of the free wedges {G1 u >= 0, R2 u >= 0}, vectorised.

    E1 lies on G1 u = 0 oriented into R2 u >= 0, E2 on R2 u = 0 oriented into G1 u >= 0 (the same
    convention as ``patterns.block_directions``). Parallel rows (m = 1: a half-plane) give NaN.
    """
    r1 = np.column_stack([G1[:, 1], -G1[:, 0]])
    r2 = np.column_stack([R2[:, 1], -R2[:, 0]])
    s1 = np.einsum("kj,kj->k", R2, r1)
    s2 = np.einsum("kj,kj->k", G1, r2)
    half = (s1 == 0) | (s2 == 0)
    r1 *= np.where(s1 < 0, -1.0, 1.0)[:, None]
    r2 *= np.where(s2 < 0, -1.0, 1.0)[:, None]
    E1 = r1 / np.linalg.norm(r1, axis=1)[:, None]
    E2 = r2 / np.linalg.norm(r2, axis=1)[:, None]
    E1[half] = np.nan
    E2[half] = np.nan
    return E1, E2


def _geometry(sample: SortedSample, blocks: list[Block]) -> _Geometry:
    G1, R2, pinned = cone_rows(blocks, sample)
    if pinned.any():
        raise InputError("the global solver works on free blocks only")
    E1, E2 = cone_edges(G1, R2)
    m = sample.m
    sign = np.array([b.sign for b in blocks], dtype=float)
    start = np.array([b.active(m).start for b in blocks])
    stop = np.array([b.active(m).stop for b in blocks])
    isleft = np.array([b.direction == "left" for b in blocks])
    right_at = np.where(isleft, -1, start)
    left_at = np.where(isleft, stop - 1, -1)
    return _Geometry(tuple(blocks), sign, G1, R2, E1, E2, start, stop, right_at, left_at)


def _block_sums(geo: _Geometry, sample: SortedSample, lam: np.ndarray) -> np.ndarray:
    """z_k = s_k g_k(lambda) = s_k sum_{i in A_k} lambda_i y_i x~_i, by prefix sums (extended precision)."""
    w = (lam * sample.y).astype(np.longdouble)
    xt = sample.xt.astype(np.longdouble)
    c = np.vstack([np.zeros((1, 2), np.longdouble), np.cumsum(w[:, None] * xt, axis=0)])
    return (geo.sign[:, None] * (c[geo.stop] - c[geo.start])).astype(float)


def best_directions(geo: _Geometry, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rho_k = max { <u, z_k> : u in cone_k, ||u|| <= 1 } with its maximiser D_k and which edge it is on.

    Inside the wedge D = z / ||z||; outside, the better edge ray if <z, e> > 0, else rho = 0 (D = 0).
    ``edge`` is 0 (interior), 1 (on E1) or 2 (on E2). A half-plane {a u >= 0} (m = 1) projects z.
    """
    E1, E2 = geo.E1, geo.E2
    nz = np.linalg.norm(z, axis=1)
    det = E1[:, 0] * E2[:, 1] - E1[:, 1] * E2[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = (z[:, 0] * E2[:, 1] - z[:, 1] * E2[:, 0]) / det
        beta = (E1[:, 0] * z[:, 1] - E1[:, 1] * z[:, 0]) / det
    inside = (alpha >= 0) & (beta >= 0)
    p1 = np.einsum("kj,kj->k", z, np.nan_to_num(E1))
    p2 = np.einsum("kj,kj->k", z, np.nan_to_num(E2))
    edge = np.where(inside, 0, np.where(p1 >= p2, 1, 2))
    r = np.where(inside, nz, np.maximum(0.0, np.maximum(p1, p2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        D = np.where(inside[:, None], z / nz[:, None], np.where((edge == 1)[:, None], E1, E2))
    D[r == 0] = 0.0
    for k in np.flatnonzero(np.isnan(E1[:, 0])):  # half-plane {a u >= 0}
        a = geo.G1[k]
        t = min(0.0, float(a @ z[k])) / float(a @ a)
        p = z[k] - t * a
        r[k] = float(np.linalg.norm(p))
        D[k] = p / r[k] if r[k] > 0 else 0.0
        edge[k] = 0 if t == 0 else 1
    return r, np.nan_to_num(D), edge


def _snap(geo: _Geometry, k: np.ndarray, D: np.ndarray, snap_rtol: float):
    """Snap unit directions D (rows, blocks k) onto a cone edge when within snap_rtol of it."""
    D = D.copy()
    edge = np.zeros(k.size, dtype=np.int8)
    g1 = np.einsum("kj,kj->k", geo.G1[k], D) / np.linalg.norm(geo.G1[k], axis=1)
    g2 = np.einsum("kj,kj->k", geo.R2[k], D) / np.linalg.norm(geo.R2[k], axis=1)
    half = np.isnan(geo.E1[k, 0])
    on1 = (g1 <= snap_rtol) & (g1 <= g2) & ~half
    on2 = (g2 <= snap_rtol) & ~on1 & ~half
    D[on1], edge[on1] = geo.E1[k[on1]], 1
    D[on2], edge[on2] = geo.E2[k[on2]], 2
    if half.any():  # half-plane: snap onto its boundary line, keeping the side of D
        hk = np.flatnonzero(half & (g1 <= snap_rtol))
        for j in hk:
            a = geo.G1[k[j]]
            p = D[j] - (a @ D[j]) / (a @ a) * a
            D[j], edge[j] = p / np.linalg.norm(p), 1
    return D, edge


# --------------------------------------------------------------------------- stages


def conic_solve(
    sample: SortedSample,
    blocks: list[Block],
    solver: str = "CLARABEL",
    formulation: str = "sparse",
    options: dict | None = None,
) -> SubproblemResult:
    """Stage 1: solve (C_B) over ``blocks`` by interior point; raises SolverError without a solution."""
    res = ConvexSubproblem(sample, blocks, formulation).solve(solver, **(options or {}))
    if not res.has_solution:
        raise SolverError(
            f"the conic solver {res.solver} returned status {res.status!r} ({res.solver_status}) "
            f"on the global problem with m = {sample.m}"
        )
    return res


@dataclass(frozen=True, eq=False)
class Support:
    """Columns of the purification LP / support of a solution: block k, unit direction d, edge flag.

    ``edge`` 0: d is inside the cone (free to rotate in the polish); 1 or 2: d is that cone edge (kink
    on a data point, fixed ray). ``beta`` are the masses ||u|| (u = beta d).
    """

    k: np.ndarray
    D: np.ndarray
    edge: np.ndarray
    beta: np.ndarray | None = None

    def U(self) -> np.ndarray:
        return self.beta[:, None] * self.D


def candidates(
    geo: _Geometry,
    sample: SortedSample,
    U: np.ndarray | None,
    lam: np.ndarray | None,
    tol: GlobalTolerances,
    extra: Support | None = None,
) -> Support:
    """LP columns: conic blocks with ||u_k|| > support_rtol max ||u||, blocks priced rho_k >= 1 -
    candidate_rho by ``lam`` (maximising direction), and ``extra`` (the previous support)."""
    ks, Ds = [], []
    if U is not None:
        n = np.linalg.norm(U, axis=1)
        k = np.flatnonzero(n > tol.support_rtol * n.max())
        ks.append(k)
        Ds.append(U[k] / n[k, None])
    if lam is not None:
        r, D, _ = best_directions(geo, _block_sums(geo, sample, lam))
        k = np.flatnonzero(r >= (1 - tol.candidate_rho) * max(1.0, r.max()))
        ks.append(k)
        Ds.append(D[k])
    k = np.concatenate(ks) if ks else np.zeros(0, int)
    D = np.vstack(Ds) if Ds else np.zeros((0, 2))
    D, edge = _snap(geo, k, D, tol.snap_rtol)
    if extra is not None:
        k, D, edge = (
            np.concatenate([k, extra.k]),
            np.vstack([D, extra.D]),
            np.concatenate([edge, extra.edge]),
        )
    # drop exact duplicates (same block, same direction)
    key = np.column_stack([k, np.round(D * 1e12)])
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    return Support(k[first], D[first], edge[first])


def _chain_matrix(geo: _Geometry, sample: SortedSample, cols: Support, ncol_offset: int, n: int):
    """COO of the prefix/suffix recursions (4m rows) for columns beta_j d_j of blocks k_j.

    Variables: beta (at ncol_offset + j), P (2m) and Q (2m) at the END of the variable vector (n total).
    Rows 0..2m-1: P_i - P_{i-1} - sum_{j: right_at = i} s d_j beta_j = 0; rows 2m..4m-1 the same for Q.
    """
    m = sample.m
    iP = n - 4 * m + np.arange(2 * m).reshape(m, 2)
    iQ = iP + 2 * m
    rows, cols_, vals = [], [], []
    rP = np.arange(2 * m).reshape(m, 2)
    rQ = rP + 2 * m
    rows += [rP.ravel(), rP[1:].ravel(), rQ.ravel(), rQ[:-1].ravel()]
    cols_ += [iP.ravel(), iP[:-1].ravel(), iQ.ravel(), iQ[1:].ravel()]
    vals += [np.ones(2 * m), -np.ones(2 * m - 2), np.ones(2 * m), -np.ones(2 * m - 2)]
    k = cols.k
    s = geo.sign[k]
    j = ncol_offset + np.arange(k.size)
    for at, r in ((geo.right_at[k], rP), (geo.left_at[k], rQ)):
        sel = at >= 0
        for c in (0, 1):
            rows.append(r[at[sel], c])
            cols_.append(j[sel])
            vals.append(-s[sel] * cols.D[sel, c])
    return np.concatenate(rows), np.concatenate(cols_), np.concatenate(vals), iP, iQ


def purify(
    geo: _Geometry, sample: SortedSample, cols: Support, lp_tol: float = 1e-10
) -> tuple[Support, np.ndarray]:
    """Stage 2 (Caratheodory): a VERTEX of the LP over the masses beta_j >= 0 of fixed directions d_j,

        minimise sum_j beta_j  s.t.  y_i sum_j beta_j s_j [i in A_j] <d_j, x~_i> >= 1,

    solved by HiGHS dual simplex with the margins written by prefix/suffix sums. A vertex has at most
    as many nonzero masses as active margins, so the analytic-centre clutter of the interior-point
    solution disappears. Returns the support (beta > 0) and the LP multipliers lambda (sorted order).
    """
    from scipy.optimize import linprog

    m, nc = sample.m, cols.k.size
    n = nc + 4 * m
    r, c, v, iP, iQ = _chain_matrix(geo, sample, cols, 0, n)
    A_eq = sparse.csr_matrix((v, (r, c)), shape=(4 * m, n))
    coef = -(sample.y[:, None] * sample.xt)
    mr = np.repeat(np.arange(m), 2)
    A_ub = sparse.csr_matrix(
        (
            np.concatenate([coef.ravel(), coef.ravel()]),
            (np.concatenate([mr, mr]), np.concatenate([iP.ravel(), iQ.ravel()])),
        ),
        shape=(m, n),
    )
    cost = np.zeros(n)
    cost[:nc] = 1.0
    bounds = [(0, None)] * nc + [(None, None)] * (4 * m)
    res = linprog(
        cost,
        A_ub=A_ub,
        b_ub=-np.ones(m),
        A_eq=A_eq,
        b_eq=np.zeros(4 * m),
        bounds=bounds,
        method="highs-ds",
        options={"primal_feasibility_tolerance": lp_tol, "dual_feasibility_tolerance": lp_tol},
    )
    if res.status != 0:
        raise SolverError(f"purification LP failed: {res.message}")
    beta = res.x[:nc]
    keep = beta > 0
    lam = np.maximum(-np.asarray(res.ineqlin.marginals), 0.0)
    return Support(cols.k[keep], cols.D[keep], cols.edge[keep], beta[keep]), lam


def merge(sup: Support, geo: _Geometry, snap_rtol: float = 1e-6) -> Support:
    """Stage 3: one column per neuron.

    Columns of the same block add up (u = sum beta_j d_j stays in the convex cone and
    ||sum|| <= sum ||.||, so the LP optimum is kept); a column on a cone edge whose neighbouring cell
    shares that ray is the same neuron, so rays are identified by (sign, direction) across blocks.
    """
    if sup.k.size == 0:
        return sup
    U = sup.U()
    ks, Us = [], []
    index: dict[Any, int] = {}
    for j in range(sup.k.size):
        k = int(sup.k[j])
        key = ("k", k)
        if sup.edge[j] > 0:  # a ray: kink on a data point, shared by two neighbouring cells
            key = ("ray", int(geo.sign[k]), tuple(np.round(sup.D[j], 12)))
        if key in index:
            Us[index[key]] += U[j]
        else:
            index[key] = len(ks)
            ks.append(k)
            Us.append(U[j].copy())
    k = np.array(ks)
    U = np.array(Us)
    beta = np.linalg.norm(U, axis=1)
    D, edge = _snap(geo, k, U / beta[:, None], snap_rtol)
    return Support(k, D, edge, beta)


@dataclass(frozen=True)
class PolishInfo:
    """What the Newton polish did: iterations, final residual, active margins, success."""

    iterations: int
    residual: float
    n_active: int
    converged: bool
    message: str = ""


def _projection(geo: _Geometry, k: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pi_k(z_k): projection onto each block's cone, with its (piecewise constant) Jacobian (K x 2 x 2).

    Inside the wedge Pi = z (Jacobian I); outside, onto the better edge e with <z, e> > 0
    (Jacobian e e'); otherwise 0. A half-plane {a u >= 0} (m = 1) projects onto its boundary line.
    """
    E1, E2 = geo.E1[k], geo.E2[k]
    K = k.size
    Pz = np.zeros((K, 2))
    Jp = np.zeros((K, 2, 2))
    det = E1[:, 0] * E2[:, 1] - E1[:, 1] * E2[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = (z[:, 0] * E2[:, 1] - z[:, 1] * E2[:, 0]) / det
        beta = (E1[:, 0] * z[:, 1] - E1[:, 1] * z[:, 0]) / det
    half = np.isnan(E1[:, 0])
    inside = (alpha >= 0) & (beta >= 0) & ~half
    p1 = np.einsum("kj,kj->k", z, np.nan_to_num(E1))
    p2 = np.einsum("kj,kj->k", z, np.nan_to_num(E2))
    Pz[inside] = z[inside]
    Jp[inside] = np.eye(2)
    for E, p, sel in ((E1, p1, ~inside & ~half & (p1 >= p2) & (p1 > 0)),
                      (E2, p2, ~inside & ~half & (p2 > p1) & (p2 > 0))):
        Pz[sel] = p[sel, None] * E[sel]
        Jp[sel] = np.einsum("ki,kj->kij", E[sel], E[sel])
    for j in np.flatnonzero(half):
        a = geo.G1[k[j]]
        if a @ z[j] >= 0:
            Pz[j], Jp[j] = z[j], np.eye(2)
        else:
            A = np.eye(2) - np.outer(a, a) / (a @ a)
            Pz[j], Jp[j] = A @ z[j], A
    return Pz, Jp


def polish(
    geo: _Geometry,
    sample: SortedSample,
    sup: Support,
    active: np.ndarray,
    lam0: np.ndarray,
    tol: GlobalTolerances,
) -> tuple[Support, np.ndarray, PolishInfo]:
    """Stage 4: semismooth Newton on the KKT equations of the identified active system (MATH.md 5).

    Unknowns: lambda_i (i active), G_j = sum_{i<j} lambda_i y_i x~_i, u_k of the support blocks and
    the prefix/suffix sums P_i, Q_i of N. Equations (square, sparse, O(m + K) nonzeros):

        u_k / ||u_k|| = Pi_k( s_k (G_stop - G_start) )     support block k (stationarity, rho_k = 1)
        y_i <P_i + Q_i, x~_i> = 1                           active margin i

    plus the linear recursions of G, P and Q. Pi_k is the projection onto block k's cone: inside the
    cone the equation says u_k is parallel to s_k g_k(lambda) with rho_k = ||g_k|| = 1; on an edge e
    (kink on a data point) it says u_k is along e and rho_k = <e, s_k g_k> = 1. Pi is piecewise linear,
    so the Newton matrix uses its generalised Jacobian and the interior/edge case needs no guess.
    Returns the polished support, lambda (sorted order, zero off ``active``) and :class:`PolishInfo`.
    """
    m = sample.m
    xt, y = sample.xt, sample.y
    I = np.flatnonzero(active)
    nI = I.size
    k = sup.k
    K = k.size
    o_lam, o_G, o_u = 0, nI, nI + 2 * m
    n = o_u + 2 * K + 4 * m
    cols_u = Support(np.repeat(k, 2), np.tile(np.eye(2), (K, 1)), np.zeros(2 * K, int))
    r1, c1, v1, iP, iQ = _chain_matrix(geo, sample, cols_u, o_u, n)
    lin_rows, lin_cols, lin_vals = [r1], [c1], [v1]
    # G recursion: G_{j+1} - G_j - [j in I] lambda_j y_j x~_j = 0, j = 0..m-1 (G_0 = 0)
    row0 = 4 * m
    jj = np.arange(m)
    gidx = o_G + 2 * jj[:, None] + np.arange(2)
    rg = row0 + 2 * jj[:, None] + np.arange(2)
    lin_rows += [rg.ravel(), rg[1:].ravel(), rg[I].ravel()]
    lin_cols += [gidx.ravel(), gidx[:-1].ravel(), np.repeat(o_lam + np.arange(nI), 2)]
    lin_vals += [np.ones(2 * m), -np.ones(2 * m - 2), -(y[I, None] * xt[I]).ravel()]
    row0 += 2 * m
    rm = row0 + np.arange(nI)  # margins
    coef = y[I, None] * xt[I]
    lin_rows += [np.repeat(rm, 2), np.repeat(rm, 2)]
    lin_cols += [iP[I].ravel(), iQ[I].ravel()]
    lin_vals += [coef.ravel(), coef.ravel()]
    row0 += nI
    rs = row0 + np.arange(2 * K).reshape(K, 2)  # stationarity
    L = sparse.csr_matrix(
        (np.concatenate(lin_vals), (np.concatenate(lin_rows), np.concatenate(lin_cols))), shape=(n, n)
    )
    sg = geo.sign[k]

    def gcols(j):  # columns of G_j (j >= 1); -1 for G_0 = 0
        return np.where(j[:, None] > 0, o_G + 2 * (j[:, None] - 1) + np.arange(2), -1)

    gs_, gp_ = gcols(geo.start[k]), gcols(geo.stop[k])

    def zval(z):
        def G(gc):
            return np.where(gc >= 0, z[np.maximum(gc, 0)], 0.0)

        return sg[:, None] * (G(gp_) - G(gs_))

    def unit(z):
        u = z[o_u : o_u + 2 * K].reshape(K, 2)
        nu = np.linalg.norm(u, axis=1)
        return u, nu

    def residual(z):
        F = L @ z
        F[rm] -= 1.0
        u, nu = unit(z)
        Pz, _ = _projection(geo, k, zval(z))
        F[rs] = u / nu[:, None] - Pz
        return F

    def jacobian(z):
        u, nu = unit(z)
        e = u / nu[:, None]
        _, Jp = _projection(geo, k, zval(z))
        rows, cols, vals = [], [], []
        for a in range(2):
            for b in range(2):
                rows.append(rs[:, a])  # d(u/||u||)/du = (I - e e')/||u||
                cols.append(o_u + 2 * np.arange(K) + b)
                vals.append(((a == b) - e[:, a] * e[:, b]) / nu)
                for gc, sgn in ((gp_, -1.0), (gs_, 1.0)):  # -Jp dz/dG, z = s (G_stop - G_start)
                    ok = gc[:, b] >= 0
                    rows.append(rs[ok, a])
                    cols.append(gc[ok, b])
                    vals.append(sgn * sg[ok] * Jp[ok, a, b])
        N = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )
        return (L + N).tocsc()

    # initial point: the LP vertex and its multipliers
    z = np.zeros(n)
    lam_full = np.zeros(m)
    lam_full[I] = lam0[I]
    z[o_lam : o_lam + nI] = lam0[I]
    z[o_G : o_G + 2 * m] = np.cumsum((lam_full * y)[:, None] * xt, axis=0).ravel()
    U0 = sup.U()
    z[o_u : o_u + 2 * K] = U0.ravel()
    P, Q = _pq(geo, sample, k, U0)
    z[iP.ravel()] = P.ravel()
    z[iQ.ravel()] = Q.ravel()
    prim = np.zeros(n)
    prim[o_u : o_u + 2 * K] = tol.newton_reg
    reg = sparse.diags(prim)

    def fnorm(F):  # dimensionless rows: margins and unit-vector stationarity
        return float(max(np.abs(F[rm]).max(initial=0.0), np.abs(F[rs]).max(initial=0.0)))

    F = residual(z)
    fn = fnorm(F)
    it, msg, converged = 0, "", fn <= tol.newton_tol
    while not converged and it < tol.max_newton:
        it += 1
        try:
            dz = _regularised_step(jacobian(z), F, reg)
        except RuntimeError as e:  # singular factor
            msg = f"singular Newton matrix: {e}"
            break
        if not np.all(np.isfinite(dz)):
            msg = "singular Newton matrix (non-finite step)"
            break
        step, accepted = 1.0, False
        while step > 1e-4:
            zn = z + step * dz
            if unit(zn)[1].min(initial=1.0) > 0:
                Fn = residual(zn)
                fnn = fnorm(Fn)
                if fnn < fn:
                    accepted = True
                    break
            step /= 2
        if not accepted:
            # no descent left: at the rounding level of the residual this is convergence
            converged = fn <= tol.newton_accept
            msg = "stalled at rounding level" if converged else "line search failed"
            break
        z, F, fn = zn, Fn, fnn
        converged = fn <= tol.newton_tol
        if _DEBUG:
            _, Jp = _projection(geo, k, zval(z))
            tr = np.trace(Jp, axis1=1, axis2=2)
            print("     it", it, step, fn, "inside", int((tr > 1.5).sum()), "edge", int(((tr > .5) & (tr < 1.5)).sum()), "zero", int((tr < .5).sum()))
    lam = np.zeros(m)
    lam[I] = z[o_lam : o_lam + nI]
    u, nu = unit(z)
    D = u / np.where(nu > 0, nu, 1.0)[:, None]
    D, edge = _snap(geo, k, D, 1e-12)
    if not msg:
        msg = "converged" if converged else "max_newton"
    return Support(k, D, edge, nu), lam, PolishInfo(it, fn, nI, converged, msg)


def _regularised_step(J: sparse.spmatrix, F: np.ndarray, reg: sparse.spmatrix) -> np.ndarray:
    """Newton step dz = argmin ||J dz + F||^2 + dz' R dz via the sparse augmented system

        [ -I   J ] [r ]   [-F]
        [ J'   R ] [dz] = [0],     r = J dz + F  (first row: -r + J dz = -F).

    The primal optimum is often not unique (a right- and a left-facing neuron at one kink differ by a
    linear function, MATH.md section 4): J is then singular along primal directions only, and the tiny
    proximal term R on the primal unknowns picks the step of least primal motion (Gauss-Newton on a
    consistent system converges quadratically; the term does not move the solution set).
    """
    n = J.shape[0]
    A = sparse.bmat([[-sparse.identity(n), J], [J.T, reg]], format="csc")
    sol = splinalg.spsolve(A, np.concatenate([-F, np.zeros(n)]))
    return sol[n:]


def _pq(geo: _Geometry, sample: SortedSample, k: np.ndarray, U: np.ndarray):
    m = sample.m
    SU = geo.sign[k, None] * U
    dP, dQ = np.zeros((m, 2)), np.zeros((m, 2))
    ra, la = geo.right_at[k], geo.left_at[k]
    np.add.at(dP, ra[ra >= 0], SU[ra >= 0])
    np.add.at(dQ, la[la >= 0], SU[la >= 0])
    return np.cumsum(dP, axis=0), np.cumsum(dQ[::-1], axis=0)[::-1]


def lower_bound(geo: _Geometry, sample: SortedSample, lam: np.ndarray) -> tuple[float, float]:
    """Certified bound sum_i lambda_i / max(1, max_k rho_k(lambda)) over every block (MATH.md 3).

    Returns (bound, max_rho). rho comes from ``patterns.rho`` with precomputed edges.
    """
    lam = np.maximum(lam, 0.0)
    r = rho(list(geo.blocks), sample, lam, directions=(geo.E1, geo.E2))
    mr = float(r.max())
    return float(lam.sum()) / max(1.0, mr), mr


def restore_feasibility(net: ReLUNetwork, sample: SortedSample) -> tuple[ReLUNetwork, float]:
    """Stage 5: scale theta by 1/sqrt(min margin) (N is 2-homogeneous) so that every margin is >= 1.

    Returns the scaled network and its min margin (recomputed, nudged up by a few ulps if rounding
    left it a hair below 1).
    """
    mm = float(net.margins(sample.x, sample.y).min())
    if mm <= 0:
        raise SolverError(
            f"the polished network misclassifies a training point (min margin {mm:.3g})"
        )
    c = 1.0 / np.sqrt(mm)
    for _ in range(5):
        out = net.scaled(c)
        mm2 = float(out.margins(sample.x, sample.y).min())
        if mm2 >= 1.0:
            return out, mm2
        c = c / np.sqrt(mm2) * (1.0 + 2e-16)  # rounding left a margin a few ulps below 1
    return out, mm2


# --------------------------------------------------------------------------- driver

_DEBUG = False


def _validate(dataset: Any, formulation: str, tol: Any) -> SortedSample:
    if not isinstance(dataset, Dataset):
        raise InputError(f"solve_global needs a kktsolver Dataset, got {type(dataset).__name__}")
    dataset.require_1d()
    if formulation not in ("sparse", "cvxpy"):
        raise InputError(f"formulation must be 'sparse' or 'cvxpy', got {formulation!r}")
    if not isinstance(tol, GlobalTolerances):
        raise InputError(f"tol must be a GlobalTolerances, got {type(tol).__name__}")
    sample = SortedSample.from_dataset(dataset)
    if sample.m >= 2 and np.any(np.diff(sample.x) <= 0):
        raise InputError("inputs must be distinct after merging duplicates")
    return sample


def solve_global(
    dataset: Dataset,
    solver: str = "CLARABEL",
    formulation: str = "sparse",
    tol: GlobalTolerances | None = None,
) -> GlobalResult:
    """The certified global minimum of (P) on a 1-D dataset (MATH.md sections 3-5).

    Stages: (1) interior-point solve of (C_B) over all 2(2m - 1) blocks; (2) purify: LP vertex over the
    candidate directions; (3) merge duplicate neurons; (4) polish: Newton on the KKT equations of the
    active system; (5) scale theta by 1/sqrt(min margin); (6) certify: lower bound
    sum lambda / max(1, max_k rho_k(lambda)). Stages 2-4 repeat (up to ``tol.max_rounds``) with the
    blocks that the polished multipliers price above 1 until the relative gap is <= ``tol.gap``.

    Parameters
    ----------
    dataset : Dataset (d = 1)
    solver : str
        Conic solver of stage 1 ("CLARABEL" for the sparse formulation, any cvxpy conic solver
        otherwise).
    formulation : {"sparse", "cvxpy"}
    tol : GlobalTolerances

    Raises
    ------
    InputError
        Not a 1-D dataset, bad arguments. (Equal inputs with different labels are rejected when the
        Dataset is built: (P) is infeasible.)
    SolverError
        The conic solver or the purification LP failed.
    """
    t_start = time.perf_counter()
    tol = GlobalTolerances() if tol is None else tol
    sample = _validate(dataset, formulation, tol)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    blocks = all_blocks(sample.m)
    geo = _geometry(sample, blocks)
    timings["build"] = time.perf_counter() - t
    t = time.perf_counter()
    conic = conic_solve(sample, blocks, solver, formulation, tol.conic_options)
    timings["conic"] = time.perf_counter() - t
    timings.update(purify=0.0, polish=0.0, certify=0.0)

    best = None
    t = time.perf_counter()
    cols = candidates(geo, sample, conic.U, conic.multipliers, tol)
    timings["purify"] += time.perf_counter() - t
    active_extra = np.zeros(sample.m, bool)
    rounds = 0
    for rounds in range(1, tol.max_rounds + 1):
        t = time.perf_counter()
        sup_lp, lam_lp = purify(geo, sample, cols, tol.lp_tol)
        sup_lp = merge(sup_lp, geo, tol.snap_rtol)
        timings["purify"] += time.perf_counter() - t
        t = time.perf_counter()
        active = (lam_lp > 1e-9 * lam_lp.max()) | active_extra
        big = sup_lp.beta > 1e-5 * sup_lp.beta.max()
        sup_big = Support(sup_lp.k[big], sup_lp.D[big], sup_lp.edge[big], sup_lp.beta[big])
        sup_p, lam_p, info = polish(geo, sample, sup_big, active, lam_lp, tol)
        ok = info.converged and np.all(sup_p.beta >= 0) and np.all(lam_p >= 0)
        timings["polish"] += time.perf_counter() - t
        if _DEBUG:
            print(
                "round",
                rounds,
                "cols",
                cols.k.size,
                "support",
                sup_lp.k.size,
                "edges",
                (sup_lp.edge > 0).sum(),
                "active",
                active.sum(),
                info,
                ok,
            )
        t = time.perf_counter()
        tried = [_evaluate(geo, sample, sup_lp, lam_lp)]
        if ok:
            tried.append(_evaluate(geo, sample, sup_p, lam_p))
        timings["certify"] += time.perf_counter() - t
        for cand in tried:
            if best is None or cand["gap"] < best["gap"]:
                best = cand
        if _DEBUG:
            print("   gaps", [c["gap"] for c in tried])
        if best["gap"] <= tol.gap:
            break
        # next round (Kelley / column generation on the dual): keep every column, add the support
        # and the directions that the current multipliers price at rho_k >= 1 - candidate_rho
        t = time.perf_counter()
        lam_next = lam_p if ok else lam_lp
        extra = Support(
            np.concatenate([cols.k, sup_p.k]) if ok else cols.k,
            np.vstack([cols.D, sup_p.D]) if ok else cols.D,
            np.concatenate([cols.edge, sup_p.edge]) if ok else cols.edge,
        )
        cols = candidates(geo, sample, None, lam_next, tol, extra)
        active_extra |= tried[-1]["margins"] <= 1 + tol.active_rtol
        timings["purify"] += time.perf_counter() - t

    t = time.perf_counter()
    cerr = _clean_error(best["network"], dataset)
    timings["clean_error"] = time.perf_counter() - t
    status = "optimal" if best["gap"] <= tol.gap and best["min_margin"] >= 1.0 else "inaccurate"
    return GlobalResult(
        network=best["network"],
        multipliers=sample.unsort(best["lam"]),
        objective=best["objective"],
        lower_bound=best["lower"],
        relative_gap=best["gap"],
        min_margin=best["min_margin"],
        max_rho=best["max_rho"],
        n_neurons=best["network"].n,
        clean_error=cerr,
        status=status,
        solver=conic.solver,
        formulation=formulation,
        rounds=rounds,
        timings=timings,
        seconds=time.perf_counter() - t_start,
        tol=tol,
        blocks=best["blocks"],
        U=best["U"],
        conic=conic,
    )


def _evaluate(
    geo: _Geometry, sample: SortedSample, sup: Support, lam: np.ndarray
) -> dict[str, Any]:
    blocks = tuple(geo.blocks[k] for k in sup.k)
    U = sup.U()
    net = network_from_blocks(list(blocks), U).merged(rtol=1e-12)
    net, mm = restore_feasibility(net, sample)
    obj = net.objective()
    lb, mr = lower_bound(geo, sample, lam)
    gap = (obj - lb) / obj
    return dict(
        network=net,
        objective=obj,
        lower=lb,
        gap=gap,
        min_margin=mm,
        max_rho=mr,
        lam=np.maximum(lam, 0.0),
        blocks=blocks,
        U=U,
        margins=margins_of(list(blocks), sample, U),
    )


def _clean_error(net: ReLUNetwork, dataset: Dataset) -> float | None:
    try:
        from .clean_error import clean_error
    except ImportError:  # pragma: no cover - another helper's module
        return None
    return float(clean_error(net, dataset.support or (0.0, 1.0)))
