"""Certified global minimum of (P) in 1-D via the convex program over all activation patterns.

conic solve -> purify (LP vertex) -> merge -> polish (Newton on the KKT equations) -> scale to exact
feasibility -> certified lower bound from the dual norms rho_k (MATH.md sections 3-5).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg

from .data import Dataset
from .errors import InputError, SolverError, check_int_range, check_tolerances
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
        Blocks with rho_k(lambda) >= 1 - candidate_rho also become candidates (direction: the
        maximiser
        of s_k <u, g_k(lambda)> over the cone), so a wrong conic support is repaired in the next
        round.
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
    polish_drop : float
        LP columns with mass <= polish_drop * the largest are left out of the Newton polish.
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
    max_newton: int = 12
    max_rounds: int = 10
    polish_drop: float = 1e-5
    lp_tol: float = 1e-7
    conic_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = ("gap", "support_rtol", "candidate_rho", "snap_rtol", "active_rtol", "newton_tol")
        names += ("newton_reg", "newton_accept", "polish_drop", "lp_tol")
        check_tolerances("GlobalTolerances", {k: getattr(self, k) for k in names}, positive=True)
        check_int_range("GlobalTolerances", "max_newton", self.max_newton, 1)
        check_int_range("GlobalTolerances", "max_rounds", self.max_rounds, 1)
        if not isinstance(self.conic_options, dict):
            raise InputError(
                f"GlobalTolerances.conic_options must be a dict, got {self.conic_options!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class GlobalResult:
    """Certified global minimum of (P) on a 1-D dataset.

    Attributes
    ----------
    network : ReLUNetwork
        Balanced network of minimal width (one neuron per support block), scaled so that every
        margin
        is >= 1: feasible for (P).
    multipliers : ndarray, shape (m,)
        lambda >= 0 in the DATASET's order (zero off the active margins).
    objective : float
        1/2 ||theta||^2 of ``network`` (an upper bound on min (P)).
    lower_bound : float
        sum_i lambda_i / max(1, max_k rho_k(lambda)) over every block (MATH.md section 3): a
        certified
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
        Exact clean error on ``dataset.support`` (or [0, 1]); None if kktsolver.clean_error is
        missing.
    status : str
        "optimal" (relative_gap <= tol.gap and min_margin >= 1) or "inaccurate".
    solver, formulation : str
    rounds : int
        Purify/polish rounds used.
    message : str
        Why the rounds stopped early, if they did (e.g. the purification LP hit its time limit).
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
    message: str = ""

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
                "message": self.message,
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
    """z_k = s_k g_k(lambda) = s_k sum_{i in A_k} lambda_i y_i x~_i, by prefix sums (extended
    precision)."""
    w = (lam * sample.y).astype(np.longdouble)
    xt = sample.xt.astype(np.longdouble)
    c = np.vstack([np.zeros((1, 2), np.longdouble), np.cumsum(w[:, None] * xt, axis=0)])
    return (geo.sign[:, None] * (c[geo.stop] - c[geo.start])).astype(float)


def best_directions(geo: _Geometry, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rho_k = max { <u, z_k> : u in cone_k, ||u|| <= 1 } with its maximiser D_k and which edge it
    is on.

    Inside the wedge D = z / ||z||; outside, the better edge ray if <z, e> > 0, else rho = 0 (D =
    0).
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
    """Stage 1: solve (C_B) over ``blocks`` by interior point; raises SolverError without a
    solution."""
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

    ``edge`` 0: d is inside the cone (free to rotate in the polish); 1 or 2: d is that cone edge
    (kink
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

    Variables: beta (at ncol_offset + j), P (2m) and Q (2m) at the END of the variable vector (n
    total).
    Rows 0..2m-1: P_i - P_{i-1} - sum_{j: right_at = i} s d_j beta_j = 0; rows 2m..4m-1 the same
    for Q.
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


def _column_margins(
    geo: _Geometry, sample: SortedSample, cols: Support, rows: np.ndarray
) -> np.ndarray:
    """Dense M[r, j] = y_i s_j [i in A_j] <d_j, x~_i> for the sorted points i = rows[r]."""
    i = rows[:, None]
    inside = (i >= geo.start[cols.k][None, :]) & (i < geo.stop[cols.k][None, :])
    val = sample.xt[rows] @ cols.D.T  # <d_j, x~_i>
    return np.where(inside, val * geo.sign[cols.k][None, :], 0.0) * sample.y[rows, None]


def purify(
    geo: _Geometry,
    sample: SortedSample,
    cols: Support,
    rows: np.ndarray | None = None,
    lp_tol: float = 1e-10,
    max_cuts: int = 20,
) -> tuple[Support, np.ndarray]:
    """Stage 2 (Caratheodory): a VERTEX of the LP over the masses beta_j >= 0 of fixed directions
    d_j,

        minimise sum_j beta_j  s.t.  y_i sum_j beta_j s_j [i in A_j] <d_j, x~_i> >= 1,

    solved by HiGHS dual simplex. A vertex has at most as many nonzero masses as active margins, so
    the analytic-centre clutter of the interior-point solution disappears. Only the margins in
    ``rows`` (the likely active ones) are written; every other margin is checked afterwards and the
    violated ones are added (constraint generation), so the LP stays small and dense.
    Returns the support (beta > 0) and the LP multipliers lambda (sorted order, zero off the rows).
    """
    from scipy.optimize import linprog

    m, nc = sample.m, cols.k.size
    rows = np.arange(m) if rows is None else np.unique(rows)
    for _ in range(max_cuts):
        M = _column_margins(geo, sample, cols, rows)
        for tol_ in dict.fromkeys(
            (lp_tol, 1e-7)
        ):  # HiGHS's default tolerance if the tight one fails numerically
            opts = {
                "primal_feasibility_tolerance": tol_,
                "dual_feasibility_tolerance": tol_,
                "time_limit": 10.0,
            }
            res = linprog(
                np.ones(nc),
                A_ub=-M,
                b_ub=-np.ones(rows.size),
                bounds=(0, None),
                method="highs-ds",
                options=opts,
            )
            if res.status == 0:
                break
        if res.status != 0:
            raise SolverError(f"purification LP failed: {res.message}")
        beta = res.x
        keep = beta > 0
        marg = margins_of(
            [geo.blocks[k] for k in cols.k[keep]], sample, beta[keep, None] * cols.D[keep]
        )
        bad = np.setdiff1d(np.flatnonzero(marg < 1 - 1e-9), rows)
        if bad.size == 0:
            break
        rows = np.union1d(rows, bad)
    lam = np.zeros(m)
    lam[rows] = np.maximum(-np.asarray(res.ineqlin.marginals), 0.0)
    return Support(cols.k[keep], cols.D[keep], cols.edge[keep], beta[keep]), lam


def merge(sup: Support, geo: _Geometry, snap_rtol: float = 1e-6) -> Support:
    """Stage 3: one column per neuron.

    Columns of the same block add up (u = sum beta_j d_j stays in the convex cone and
    ||sum|| <= sum ||.||, so the LP optimum is kept); a column on a cone edge whose neighbouring
    cell
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


def polish(
    geo: _Geometry,
    sample: SortedSample,
    sup: Support,
    active: np.ndarray,
    lam0: np.ndarray,
    tol: GlobalTolerances,
) -> tuple[Support, np.ndarray, PolishInfo]:
    """Stage 4: Newton on the KKT equations of the identified active system (MATH.md section 5).

    Unknowns: lambda_i (i active), G_j = sum_{i<j} lambda_i y_i x~_i, u_k of the interior support
    blocks, the mass alpha_k of the ray (edge) blocks, and the prefix/suffix sums P_i, Q_i of N.
    Equations (square, sparse, O(m + K) nonzeros):

        u_k / ||u_k|| = s_k (G_stop - G_start)       interior block (stationarity, rho_k = 1)
        <e_k, s_k (G_stop - G_start)> = 1            ray block on edge e_k (kink on a data point)
        y_i <P_i + Q_i, x~_i> = 1                    active margin i

    plus the linear recursions of G, P and Q. Each step is a regularised Gauss-Newton step
    (:func:`_regularised_step`), because the primal optimum is often not unique. Returns the
    polished support, lambda (sorted order, zero off ``active``) and :class:`PolishInfo`.
    """
    m = sample.m
    xt, y = sample.xt, sample.y
    I = np.flatnonzero(active)
    nI = I.size
    k = sup.k
    interior = sup.edge == 0
    ki, kr = np.flatnonzero(interior), np.flatnonzero(~interior)
    nint, nray = ki.size, kr.size
    o_lam, o_G = 0, nI
    o_u = o_G + 2 * m
    o_a = o_u + 2 * nint
    n = o_a + nray + 4 * m
    # P/Q recursions: interior blocks contribute u (two unit columns), ray blocks alpha e
    cols_u = Support(np.repeat(k[ki], 2), np.tile(np.eye(2), (nint, 1)), np.zeros(2 * nint, int))
    cols_r = Support(k[kr], sup.D[kr], sup.edge[kr])
    r1, c1, v1, iP, iQ = _chain_matrix(geo, sample, cols_u, o_u, n)
    r2, c2, v2, _, _ = _chain_matrix(geo, sample, cols_r, o_a, n)
    keep2 = c2 < o_a + nray  # the identity part of the recursions is already in (r1, c1)
    lin_rows, lin_cols, lin_vals = [r1, r2[keep2]], [c1, c2[keep2]], [v1, v2[keep2]]
    # G recursion: G_{j+1} - G_j - [j in I] lambda_j y_j x~_j = 0, j = 0..m-1 (G_0 = 0)
    row0 = 4 * m
    jj = np.arange(m)
    gidx = o_G + 2 * jj[:, None] + np.arange(2)
    rg = row0 + 2 * jj[:, None] + np.arange(2)
    lin_rows += [rg.ravel(), rg[1:].ravel(), rg[I].ravel()]
    lin_cols += [gidx.ravel(), gidx[:-1].ravel(), np.repeat(o_lam + np.arange(nI), 2)]
    lin_vals += [np.ones(2 * m), -np.ones(2 * m - 2), -(y[I, None] * xt[I]).ravel()]
    row0 += 2 * m
    rm = row0 + np.arange(nI)  # active margins
    coef = y[I, None] * xt[I]
    lin_rows += [np.repeat(rm, 2), np.repeat(rm, 2)]
    lin_cols += [iP[I].ravel(), iQ[I].ravel()]
    lin_vals += [coef.ravel(), coef.ravel()]
    row0 += nI
    r_int = row0 + np.arange(2 * nint).reshape(nint, 2)
    r_ray = row0 + 2 * nint + np.arange(nray)
    L = sparse.csr_matrix(
        (np.concatenate(lin_vals), (np.concatenate(lin_rows), np.concatenate(lin_cols))),
        shape=(n, n),
    )
    s_i, s_r = geo.sign[k[ki]], geo.sign[k[kr]]
    Er = sup.D[kr]

    def gcols(j):  # columns of G_j (j >= 1); -1 for G_0 = 0
        return np.where(j[:, None] > 0, o_G + 2 * (j[:, None] - 1) + np.arange(2), -1)

    gs_i, gp_i = gcols(geo.start[k[ki]]), gcols(geo.stop[k[ki]])
    gs_r, gp_r = gcols(geo.start[k[kr]]), gcols(geo.stop[k[kr]])

    def G(z, gc):
        return np.where(gc >= 0, z[np.maximum(gc, 0)], 0.0)

    def unit(z):
        u = z[o_u : o_u + 2 * nint].reshape(nint, 2)
        return u, np.linalg.norm(u, axis=1)

    def residual(z):
        F = L @ z
        F[rm] -= 1.0
        u, nu = unit(z)
        F[r_int] = u / nu[:, None] - s_i[:, None] * (G(z, gp_i) - G(z, gs_i))
        h_r = s_r[:, None] * (G(z, gp_r) - G(z, gs_r))
        F[r_ray] = np.einsum("kj,kj->k", Er, h_r) - 1.0
        return F

    def jacobian(z):
        u, nu = unit(z)
        e = u / nu[:, None]
        rows, cols, vals = [], [], []
        for a in range(2):
            for b in range(2):  # d(u/||u||)/du = (I - e e')/||u||
                rows.append(r_int[:, a])
                cols.append(o_u + 2 * np.arange(nint) + b)
                vals.append(((a == b) - e[:, a] * e[:, b]) / nu)
            for gc, sgn in ((gp_i, -1.0), (gs_i, 1.0)):
                ok = gc[:, a] >= 0
                rows.append(r_int[ok, a])
                cols.append(gc[ok, a])
                vals.append(sgn * s_i[ok])
            for gc, sgn in ((gp_r, 1.0), (gs_r, -1.0)):
                ok = gc[:, a] >= 0
                rows.append(r_ray[ok])
                cols.append(gc[ok, a])
                vals.append(sgn * s_r[ok] * Er[ok, a])
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
    z[o_u : o_u + 2 * nint] = U0[ki].ravel()
    z[o_a : o_a + nray] = sup.beta[kr]
    P, Q = _pq(geo, sample, k, U0)
    z[iP.ravel()] = P.ravel()
    z[iQ.ravel()] = Q.ravel()
    prim = np.zeros(n)
    prim[o_u : o_a + nray] = tol.newton_reg
    reg = sparse.diags(prim)

    def fnorm(F):  # dimensionless rows: margins and stationarity
        parts = [F[rm], F[r_int].ravel(), F[r_ray]]
        return float(max(np.abs(p).max(initial=0.0) for p in parts))

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
    lam = np.zeros(m)
    lam[I] = z[o_lam : o_lam + nI]
    D, beta = sup.D.copy(), sup.beta.copy()
    u, nu = unit(z)
    D[ki] = u / np.where(nu > 0, nu, 1.0)[:, None]
    beta[ki] = nu
    beta[kr] = z[o_a : o_a + nray]
    if not msg:
        msg = "converged" if converged else "max_newton"
    return Support(k, D, sup.edge.copy(), beta), lam, PolishInfo(it, fn, nI, converged, msg)


def _regularised_step(J: sparse.spmatrix, F: np.ndarray, reg: sparse.spmatrix) -> np.ndarray:
    """Newton step dz = argmin ||J dz + F||^2 + dz' R dz via the sparse augmented system

        [ -I   J ] [r ]   [-F]
        [ J'   R ] [dz] = [0],     r = J dz + F  (first row: -r + J dz = -F).

    The primal optimum is often not unique (a right- and a left-facing neuron at one kink differ by
    a
    linear function, MATH.md section 4): J is then singular along primal directions only, and the
    tiny
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


def restore_feasibility(
    net: ReLUNetwork, X: np.ndarray, y: np.ndarray
) -> tuple[ReLUNetwork, float]:
    """Stage 5: scale theta by c = sqrt((1 + delta) / min margin) (N is 2-homogeneous), so every
    margin
    is >= 1 + delta >= 1 on the points X, y (pass the dataset's own order: that is how users
    evaluate).

    delta = 4 eps max_i sum_j |v_j relu(z_ij)| / min margin covers the rounding of N(x_i) in another
    summation order (measured: margins of networks with 1/2||theta||^2 ~ 1e7 differ by ~1e-10
    between
    row orders of the same BLAS product). Returns the scaled network and its min margin.
    """
    Z = np.maximum(net.preactivations(X), 0.0)
    mm = float((y * (Z @ net.v)).min())
    if mm <= 0:
        raise SolverError(
            f"the polished network misclassifies a training point (min margin {mm:.3g})"
        )
    delta = 4.0 * np.finfo(float).eps * float((Z * np.abs(net.v)).sum(axis=1).max()) / mm
    c = np.sqrt((1.0 + delta) / mm)
    out = net.scaled(c)
    mm2 = float(out.margins(X, y).min())
    for _ in range(5):
        if mm2 >= 1.0:
            break
        c *= np.sqrt((1.0 + 4 * delta + 1e-15) / mm2)
        out = net.scaled(c)
        mm2 = float(out.margins(X, y).min())
    return out, mm2


# --------------------------------------------------------------------------- driver


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


#: method="auto" uses :func:`kktsolver.scale.solve_global_large` from this many points on: measured
#: (docs/global.md) 1.4 s vs 13 s at m = 1000 and both certified; below it the conic pipeline is
#: the reference (and agrees with the cvxpy model).
AUTO_SCALE_M = 500


def solve_global(
    dataset: Dataset,
    solver: str = "CLARABEL",
    formulation: str = "sparse",
    tol: GlobalTolerances | None = None,
    method: str = "auto",
    progress: bool | None = None,
) -> GlobalResult:
    """The certified global minimum of (P) on a 1-D dataset (MATH.md sections 3-5).

    ``method``: "conic" runs the pipeline below; "scale" runs
    :func:`kktsolver.scale.solve_global_large` (one banded all-gaps chain program, certificate over
    all blocks; issue 8); "auto" (default) uses "scale" when m >= ``AUTO_SCALE_M`` and the
    formulation is "sparse", else "conic". Both return a :class:`GlobalResult` certified the
    same way (``formulation`` says which path ran).

    Stages: (1) interior-point solve of (C_B) over all 2(2m - 1) blocks; (2) purify: LP vertex over
    the
    candidate directions; (3) merge duplicate neurons; (4) polish: Newton on the KKT equations of
    the
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
        (the "scale" path uses only ``tol.gap``).
    method : {"auto", "conic", "scale"}
    progress : bool, optional
        tqdm bar on stderr for the "scale" path (default: only on a TTY).

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
    if method not in ("auto", "conic", "scale"):
        raise InputError(f"method must be 'auto', 'conic' or 'scale', got {method!r}")
    if method == "scale" and formulation != "sparse":
        raise InputError("method='scale' has its own formulation; use formulation='sparse'")
    clarabel = str(solver).upper() == "CLARABEL"
    if method == "scale" and not clarabel:
        raise InputError(f"method='scale' uses Clarabel; got solver {solver!r}")
    if method == "scale" or (
        method == "auto" and formulation == "sparse" and clarabel and sample.m >= AUTO_SCALE_M
    ):
        from .scale import ScaleTolerances, solve_global_large

        return solve_global_large(dataset, ScaleTolerances(gap=tol.gap), progress=progress)
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
    # LP rows: margins the conic solution makes (nearly) active; the rest are checked by the LP
    # stage
    cm = margins_of(blocks, sample, conic.U)
    lam_c = conic.multipliers
    lp_rows = np.flatnonzero((cm <= 1 + 1e-3) | (lam_c > 1e-6 * lam_c.max()))
    rounds, message = 0, ""
    for rounds in range(1, tol.max_rounds + 1):  # noqa: B007 (reported after the loop)
        t = time.perf_counter()
        try:
            sup_lp, lam_lp = purify(geo, sample, cols, lp_rows, tol.lp_tol)
        except SolverError as e:
            message = f"round {rounds}: {e}"
            if best is None:  # certify the conic solution itself (feasible after scaling)
                n = np.linalg.norm(conic.U, axis=1)
                k = np.flatnonzero(n > tol.support_rtol * n.max())
                sup_c = Support(k, conic.U[k] / n[k, None], np.zeros(k.size, int), n[k])
                try:
                    best = _evaluate(geo, sample, sup_c, conic.multipliers, dataset.X, dataset.y)
                except SolverError as e2:
                    raise SolverError(
                        f"m = {sample.m}: {e}; the raw conic solution is not usable either ({e2}). "
                        "For large m use kktsolver.scale.solve_global_large."
                    ) from None
            break  # keep the best certified round so far
        sup_lp = merge(sup_lp, geo, tol.snap_rtol)
        timings["purify"] += time.perf_counter() - t
        t = time.perf_counter()
        active = (lam_lp > 1e-9 * lam_lp.max()) | active_extra
        # LP masses this small are compensation for inexact directions, not neurons of the optimum
        big = sup_lp.beta > tol.polish_drop * sup_lp.beta.max()
        sup_big = Support(sup_lp.k[big], sup_lp.D[big], sup_lp.edge[big], sup_lp.beta[big])
        sup_p, lam_p, info = polish(geo, sample, sup_big, active, lam_lp, tol)
        ok = info.converged and np.all(sup_p.beta >= 0) and np.all(lam_p >= 0)
        timings["polish"] += time.perf_counter() - t
        t = time.perf_counter()
        tried = [_evaluate(geo, sample, sup_lp, lam_lp, dataset.X, dataset.y)]
        if ok:
            tried.append(_evaluate(geo, sample, sup_p, lam_p, dataset.X, dataset.y))
        timings["certify"] += time.perf_counter() - t
        for cand in tried:
            if best is None or cand["gap"] < best["gap"]:
                best = cand
        if best["gap"] <= tol.gap:
            break
        # next round (Kelley / column generation on the dual): keep every column, add the support
        # and the directions that the current multipliers price at rho_k >= 1 - candidate_rho
        t = time.perf_counter()
        lam_next = lam_p if ok else lam_lp
        # keep the LP's basis (its support) rather than every old column: the LP stays small
        keep = [sup_lp] + ([sup_p] if ok else [])
        extra = Support(
            np.concatenate([c.k for c in keep]),
            np.vstack([c.D for c in keep]),
            np.concatenate([c.edge for c in keep]),
        )
        cols = candidates(geo, sample, None, lam_next, tol, extra)
        active_extra |= tried[-1]["margins"] <= 1 + tol.active_rtol
        lp_rows = np.union1d(lp_rows, np.flatnonzero(active_extra | (lam_lp > 0)))
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
        message=message,
    )


def _evaluate(
    geo: _Geometry,
    sample: SortedSample,
    sup: Support,
    lam: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
) -> dict[str, Any]:
    blocks = tuple(geo.blocks[k] for k in sup.k)
    U = sup.U()
    net = network_from_blocks(list(blocks), U).merged(rtol=1e-12)
    net, mm = restore_feasibility(net, X, y)
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
