"""Certified global minimum of (P) in 1-D via the convex program over all activation patterns.

conic solve -> purify (LP vertex) -> merge -> polish (Newton on the KKT equations) -> scale to exact
feasibility -> certified lower bound from the dual norms rho_k (MATH.md sections 3-5) -> kink
refinement + complementarity Newton (a stationary network: certify residual ~1e-11).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg

from .data import Dataset
from .errors import InputError, SolverError, check_int_range, check_tolerances
from .network import ReLUNetwork
from .patterns import Block, SortedSample, all_blocks, network_from_blocks, prefix_sums, rho
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
    "polish_blocks",
    "regularised_step",
    "refine_kinks",
    "stationarize",
    "lower_bound",
    "restore_feasibility",
    "kkt_residual",
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
        maximiser of s_k <u, g_k(lambda)> over the cone), so a wrong conic support is repaired in
        the next round.
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
        margin is >= 1: feasible for (P).
    multipliers : ndarray, shape (m,)
        lambda >= 0 in the DATASET's order (zero off the active margins).
    objective : float
        1/2 ||theta||^2 of ``network`` (an upper bound on min (P)).
    lower_bound : float
        sum_i lambda_i / max(1, max_k rho_k(lambda)) over every block (MATH.md section 3): a
        certified lower bound on min (P) up to float rounding in rho.
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
    stationarity : float or None
        :func:`kkt_residual` of ``network`` with ``multipliers`` (relative; ``kktsolver.certify``
        minimises the same residual over the multipliers, so it can only be smaller there), when
        it was computed; None otherwise.
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
    stationarity: float | None = None

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
                "stationarity": self.stationarity,
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

    @cached_property
    def neighbours(self) -> dict[int, list[int]]:
        """Blocks of the same facing and sign in the adjacent gaps (they share a cone edge);
        computed on first use and kept with this geometry."""
        index = {(b.direction, b.gap, b.sign): i for i, b in enumerate(self.blocks)}
        return {
            i: [
                index[key]
                for g in (b.gap - 1, b.gap + 1)
                if (key := (b.direction, g, b.sign)) in index
            ]
            for i, b in enumerate(self.blocks)
        }


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
    precision, :func:`patterns.prefix_sums`)."""
    c = prefix_sums(sample, lam * sample.y)
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
    (kink on a data point, fixed ray). ``beta`` are the masses ||u|| (u = beta d).
    """

    k: np.ndarray
    D: np.ndarray
    edge: np.ndarray
    beta: np.ndarray | None = None

    def U(self) -> np.ndarray:
        return self.beta[:, None] * self.D

    def take(self, mask: np.ndarray) -> Support:
        """The columns selected by ``mask`` (boolean or indices)."""
        beta = None if self.beta is None else self.beta[mask]
        return Support(self.k[mask], self.D[mask], self.edge[mask], beta)


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
    time_limit: float = 10.0,
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
                "time_limit": time_limit,
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
    cell shares that ray is the same neuron, so rays are identified by (sign, direction) across
    blocks.
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


@dataclass(frozen=True)
class _KKTLayout:
    """Unknowns of the active-set KKT systems of :func:`polish` and :func:`_stationarize_pass`.

    lambda_i of the points ``act`` at o_lam, G_1..G_m (2m) at o_G, u of the interior blocks ``ki``
    at o_u (then, for stationarize, their beta at o_u + 2 nint), the ray masses alpha (``kr``) at
    o_a and P, Q (4m) at the end: n unknowns. ``lin`` is :func:`_linear_kkt_rows` (rows 0..6m-1);
    gs_*, gp_* are the G columns of the block starts / stops (-1 for G_0 = 0).
    """

    ki: np.ndarray
    kr: np.ndarray
    o_lam: int
    o_G: int
    o_u: int
    o_a: int
    n: int
    lin: tuple[list, list, list]
    iP: np.ndarray
    iQ: np.ndarray
    s_i: np.ndarray
    s_r: np.ndarray
    Er: np.ndarray
    gs_i: np.ndarray
    gp_i: np.ndarray
    gs_r: np.ndarray
    gp_r: np.ndarray

    def u(self, z: np.ndarray) -> np.ndarray:
        return z[self.o_u : self.o_u + 2 * self.ki.size].reshape(self.ki.size, 2)

    def g_int(self, z: np.ndarray) -> np.ndarray:
        """s_k (G_stop - G_start) of the interior blocks."""
        return self.s_i[:, None] * (_g_at(z, self.gp_i) - _g_at(z, self.gs_i))

    def g_ray(self, z: np.ndarray) -> np.ndarray:
        """s_k (G_stop - G_start) of the ray blocks."""
        return self.s_r[:, None] * (_g_at(z, self.gp_r) - _g_at(z, self.gs_r))

    def start(
        self,
        geo: _Geometry,
        sample: SortedSample,
        sup: Support,
        lam_act: np.ndarray,
        lam_full: np.ndarray,
    ) -> np.ndarray:
        """Initial point from the support and multipliers (lam_full: sorted order, zero off act)."""
        m = sample.m
        z = np.zeros(self.n)
        z[self.o_lam : self.o_lam + lam_act.size] = lam_act
        z[self.o_G : self.o_G + 2 * m] = np.cumsum(
            (lam_full * sample.y)[:, None] * sample.xt, axis=0
        ).ravel()
        U0 = sup.U()
        z[self.o_u : self.o_u + 2 * self.ki.size] = U0[self.ki].ravel()
        z[self.o_a : self.o_a + self.kr.size] = sup.beta[self.kr]
        P, Q = _pq(geo, sample, sup.k, U0)
        z[self.iP.ravel()] = P.ravel()
        z[self.iQ.ravel()] = Q.ravel()
        return z


def _g_at(z: np.ndarray, gc: np.ndarray) -> np.ndarray:
    return np.where(gc >= 0, z[np.maximum(gc, 0)], 0.0)


def _kkt_layout(
    geo: _Geometry, sample: SortedSample, sup: Support, act: np.ndarray, with_beta: bool
) -> _KKTLayout:
    """The :class:`_KKTLayout` of ``sup`` with multipliers on ``act`` (``with_beta``: an extra
    unknown beta per interior block, as in :func:`_stationarize_pass`)."""
    m, k = sample.m, sup.k
    interior = sup.edge == 0
    ki, kr = np.flatnonzero(interior), np.flatnonzero(~interior)
    nint, nray = ki.size, kr.size
    o_lam, o_G = 0, act.size
    o_u = o_G + 2 * m
    o_a = o_u + 2 * nint + (nint if with_beta else 0)
    n = o_a + nray + 4 * m
    lin_rows, lin_cols, lin_vals, iP, iQ = _linear_kkt_rows(
        geo, sample, sup, k, ki, kr, act, (o_lam, o_G, o_u, o_a), n
    )

    def gcols(j):  # columns of G_j (j >= 1); -1 for G_0 = 0
        return np.where(j[:, None] > 0, o_G + 2 * (j[:, None] - 1) + np.arange(2), -1)

    return _KKTLayout(
        ki, kr, o_lam, o_G, o_u, o_a, n, (lin_rows, lin_cols, lin_vals), iP, iQ,
        geo.sign[k[ki]], geo.sign[k[kr]], sup.D[kr],
        gcols(geo.start[k[ki]]), gcols(geo.stop[k[ki]]),
        gcols(geo.start[k[kr]]), gcols(geo.stop[k[kr]]),
    )  # fmt: skip


def _square_csr(rows: list, cols: list, vals: list, n: int) -> sparse.csr_matrix:
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )


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
    (:func:`regularised_step`), because the primal optimum is often not unique. Returns the
    polished support, lambda (sorted order, zero off ``active``) and :class:`PolishInfo`.
    """
    m = sample.m
    xt, y = sample.xt, sample.y
    I = np.flatnonzero(active)
    nI = I.size
    k = sup.k
    lay = _kkt_layout(geo, sample, sup, I, with_beta=False)
    ki, kr, o_lam, o_u, o_a, n = lay.ki, lay.kr, lay.o_lam, lay.o_u, lay.o_a, lay.n
    nint, nray = ki.size, kr.size
    s_i, s_r, Er = lay.s_i, lay.s_r, lay.Er
    gs_i, gp_i, gs_r, gp_r = lay.gs_i, lay.gp_i, lay.gs_r, lay.gp_r
    # P/Q recursions (interior blocks contribute u, ray blocks alpha e), then the active margins
    row0 = 6 * m
    rm = row0 + np.arange(nI)  # active margins
    coef = y[I, None] * xt[I]
    lin_rows, lin_cols, lin_vals = lay.lin
    lin_rows += [np.repeat(rm, 2), np.repeat(rm, 2)]
    lin_cols += [lay.iP[I].ravel(), lay.iQ[I].ravel()]
    lin_vals += [coef.ravel(), coef.ravel()]
    row0 += nI
    r_int = row0 + np.arange(2 * nint).reshape(nint, 2)
    r_ray = row0 + 2 * nint + np.arange(nray)
    L = _square_csr(lin_rows, lin_cols, lin_vals, n)

    def unit(z):
        u = lay.u(z)
        return u, np.linalg.norm(u, axis=1)

    def residual(z):
        F = L @ z
        F[rm] -= 1.0
        u, nu = unit(z)
        F[r_int] = u / nu[:, None] - lay.g_int(z)
        F[r_ray] = np.einsum("kj,kj->k", Er, lay.g_ray(z)) - 1.0
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
        return (L + _square_csr(rows, cols, vals, n)).tocsc()

    # initial point: the LP vertex and its multipliers
    lam_full = np.zeros(m)
    lam_full[I] = lam0[I]
    z = lay.start(geo, sample, sup, lam0[I], lam_full)
    prim = np.zeros(n)
    prim[o_u : o_a + nray] = tol.newton_reg
    reg = sparse.diags(prim)

    def fnorm(F):  # dimensionless rows: margins and stationarity
        parts = [F[rm], F[r_int].ravel(), F[r_ray]]
        return float(max(np.abs(p).max(initial=0.0) for p in parts))

    z, F, it, fn, converged, msg = _damped_newton(
        z,
        residual,
        jacobian,
        reg,
        lambda F: (fnorm(F),),
        max_iter=tol.max_newton,
        stop=tol.newton_tol,
        accept=tol.newton_accept,
        min_step=1e-4,
        admissible=lambda zn: unit(zn)[1].min(initial=1.0) > 0,
    )
    lam = np.zeros(m)
    lam[I] = z[o_lam : o_lam + nI]
    D, beta = sup.D.copy(), sup.beta.copy()
    u, nu = unit(z)
    D[ki] = u / np.where(nu > 0, nu, 1.0)[:, None]
    beta[ki] = nu
    beta[kr] = z[o_a : o_a + nray]
    return Support(k, D, sup.edge.copy(), beta), lam, PolishInfo(it, fn, nI, converged, msg)


# --------------------------------------------------------------------------- stationarity polish


@dataclass(frozen=True)
class StationarizeInfo:
    """What :func:`stationarize` did: Newton iterations (all passes), final max-norm of the
    dimensionless KKT residual, passes (a pass restarts after interior neurons were moved onto a
    cone edge), neurons dropped (mass 0 at the solution), candidate margins, success."""

    iterations: int
    residual: float
    passes: int
    dropped: int
    n_candidates: int
    converged: bool
    message: str = ""


def _fb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fischer-Burmeister function a + b - sqrt(a^2 + b^2): zero iff a >= 0, b >= 0, ab = 0."""
    return a + b - np.hypot(a, b)


def _fb_grad(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An element of the (semismooth) generalised gradient of :func:`_fb`: (1 - a/r, 1 - b/r),
    and (1 - 1/sqrt 2, 1 - 1/sqrt 2) at a = b = 0."""
    r = np.hypot(a, b)
    safe = np.where(r > 0, r, 1.0)
    c = 1.0 - np.sqrt(0.5)
    return np.where(r > 0, 1.0 - a / safe, c), np.where(r > 0, 1.0 - b / safe, c)


def stationarize(
    geo: _Geometry,
    sample: SortedSample,
    sup: Support,
    lam0: np.ndarray,
    candidates_mask: np.ndarray,
    tol: GlobalTolerances,
    max_passes: int = 4,
    repair: str | None = "drop-ray",
) -> tuple[Support, np.ndarray, StationarizeInfo]:
    """Newton on the KKT system of a 1-D support WITH complementarity (MATH.md sections 2, 5).

    :func:`polish` imposes rho_k = 1 on every support block and margin = 1 on every active point:
    a square system with NO solution when the support or the active set of a value-optimal LP
    vertex is slightly wrong (measured m = 30, p = 0.25, seed 4: residual stuck at 9e-9 after 60
    steps). Here every block and every candidate point carries a complementarity pair, written
    with the Fischer-Burmeister function phi(a, b) = a + b - sqrt(a^2 + b^2) (zero iff a, b >= 0
    and ab = 0; semismooth Newton):

        u_k = beta_k s_k g_k(lambda),  phi(beta_k / sb, 1 - ||g_k(lambda)||) = 0   interior
        phi(alpha_k / sb, 1 - <e_k, s_k g_k(lambda)>) = 0                      ray on edge e_k
        phi(lambda_i / sl, y_i N(x_i) - 1) = 0                                 candidate i

    with g_k = G_stop - G_start (prefix sums of lambda_i y_i x~_i, unknowns), the margins N by
    the prefix/suffix sums P, Q (unknowns), sb = max beta, sl = max lambda (dimensionless rows).
    A neuron that should not exist can take beta = 0 and a point that is not active lambda = 0.
    Each step is the regularised Gauss-Newton step of :func:`regularised_step` with a
    backtracking line search on the 2-norm of the (dimensionless) residual. After a pass:

    * an interior direction clearly outside its cone (its kink crossed a data point) moves to the
      neighbouring block of the same facing and sign that contains it (else onto the edge it
      crossed), and Newton restarts (measured m = 300, seed 0: this is what makes it converge);
    * a pass that does not converge gets the ``repair`` of :func:`_repair` on the neurons whose
      rows keep the residual, and Newton restarts (at most ``max_passes`` passes).

    Returns the support (zero-mass neurons dropped), lambda (sorted order, zero off the
    candidates) and :class:`StationarizeInfo`.
    """
    m = sample.m
    xt, y = sample.xt, sample.y
    C = np.flatnonzero(candidates_mask)
    nC = C.size
    sup = Support(sup.k.copy(), sup.D.copy(), sup.edge.copy(), sup.beta.copy())
    lam = np.zeros(m)
    lam[C] = np.maximum(lam0[C], 0.0)
    total_it, passes, fn, converged, msg = 0, 0, np.inf, False, ""
    first_converged = None
    for passes in range(1, max_passes + 1):  # noqa: B007 (reported)
        sup, lam, it, fn, converged, msg, moved, conflict = _stationarize_pass(
            geo, sample, sup, lam, C, tol, xt, y
        )
        total_it += it
        if converged and not moved:
            break
        if converged and first_converged is None:  # (a kink crossed a point: try both)
            first_converged = (_live(sup), lam.copy())
        if moved or not conflict.any() or repair is None:
            continue
        sup = _repair(geo, sup, conflict, repair)
    live = sup.beta > 0
    dropped = int((~live).sum())
    out = sup.take(live)
    if not converged and first_converged is not None:
        out, lam = first_converged
        converged, msg = True, msg + "; returned the first converged pass (a kink off its block)"
    info = StationarizeInfo(total_it, fn, passes, dropped, nC, converged, msg)
    return out, lam, info


def _live(sup: Support) -> Support:
    """The neurons of nonzero mass (merging a zero-mass neuron would divide by zero)."""
    return sup.take(sup.beta > 0)


def _edge_coords(geo: _Geometry, k: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """<G1_k, d> / ||G1_k|| and <R2_k, d> / ||R2_k||: both >= 0 iff d is in block k's cone."""
    g1 = np.einsum("kj,kj->k", geo.G1[k], D) / np.linalg.norm(geo.G1[k], axis=1)
    g2 = np.einsum("kj,kj->k", geo.R2[k], D) / np.linalg.norm(geo.R2[k], axis=1)
    return g1, g2


def _repair(geo: _Geometry, sup: Support, conflict: np.ndarray, how: str) -> Support:
    """Change the support where Newton found no solution (``conflict``: neurons whose rows keep
    the residual). "drop-ray": remove the conflicting rays; "drop-interior": remove the
    conflicting interior neurons; "snap": put the conflicting interior neurons on their nearest
    cone edge (kink ON the data point) and merge them with a ray already there."""
    interior = sup.edge == 0
    if how == "unsnap":  # the conflicting rays become interior neurons of their own block
        edge = np.where(conflict, 0, sup.edge)
        return Support(sup.k, sup.D, edge, sup.beta)
    if how == "drop-ray":
        keep = ~(conflict & ~interior)
    elif how == "drop-interior":
        keep = ~(conflict & interior)
    else:
        D, edge = sup.D.copy(), sup.edge.copy()
        j = np.flatnonzero(conflict & interior)
        kk = sup.k[j]
        g1, g2 = _edge_coords(geo, kk, D[j])
        first = (g1 <= g2) & ~np.isnan(geo.E1[kk, 0])
        second = (g1 > g2) & ~np.isnan(geo.E1[kk, 0])
        D[j[first]], edge[j[first]] = geo.E1[kk[first]], 1
        D[j[second]], edge[j[second]] = geo.E2[kk[second]], 2
        return merge(_live(Support(sup.k, D, edge, sup.beta)), geo, 1e-12)
    return sup.take(keep)


def _stationarize_pass(geo, sample, sup, lam, C, tol, xt, y, accept=1e-10, max_newton=40):
    """One Newton solve of :func:`stationarize` with a fixed interior/ray split; a line-search
    stall counts as converged only below ``accept`` (the dimensionless rounding level)."""
    m = sample.m
    nC = C.size
    k = sup.k
    lay = _kkt_layout(geo, sample, sup, C, with_beta=True)
    ki, kr, o_lam, o_u, o_a, n = lay.ki, lay.kr, lay.o_lam, lay.o_u, lay.o_a, lay.n
    nint, nray = ki.size, kr.size
    o_b = o_u + 2 * nint
    row0 = 6 * m
    rm = row0 + np.arange(nC)
    r_int = row0 + nC + np.arange(2 * nint).reshape(nint, 2)
    r_nrm = row0 + nC + 2 * nint + np.arange(nint)
    r_ray = row0 + nC + 3 * nint + np.arange(nray)
    L = _square_csr(*lay.lin, n)
    s_i, s_r, Er = lay.s_i, lay.s_r, lay.Er
    gs_i, gp_i, gs_r, gp_r = lay.gs_i, lay.gp_i, lay.gs_r, lay.gp_r
    coefC = y[C, None] * xt[C]
    iPC, iQC = lay.iP[C], lay.iQ[C]

    # initial point (lam is zero off C)
    z = lay.start(geo, sample, sup, lam[C], lam)
    z[o_b : o_b + nint] = sup.beta[ki]
    sb = float(max(sup.beta.max(initial=0.0), 1e-300))
    sl = float(max(lam[C].max(initial=0.0), 1e-300))
    # proximal term on every unknown: the multipliers of a degenerate vertex are not unique either
    reg = sparse.identity(n, format="csc") * tol.newton_reg

    def parts(z):
        gi, gr = lay.g_int(z), lay.g_ray(z)
        marg = np.einsum("ij,ij->i", coefC, z[iPC] + z[iQC])
        return gi, gr, marg

    def pairs(z):
        """The complementarity pairs (a, b) of the margins, interior norms and rays."""
        gi, gr, marg = parts(z)
        ng = np.linalg.norm(gi, axis=1)
        return (
            (
                (z[o_lam : o_lam + nC] / sl, marg - 1.0),
                (z[o_b : o_b + nint] / sb, 1.0 - ng),
                (z[o_a : o_a + nray] / sb, 1.0 - np.einsum("kj,kj->k", Er, gr)),
            ),
            gi,
            gr,
            ng,
        )

    def residual(z):
        F = L @ z
        (pm, pn, pr), gi, _, _ = pairs(z)
        F[rm], F[r_nrm], F[r_ray] = _fb(*pm), _fb(*pn), _fb(*pr)
        beta = z[o_b : o_b + nint]
        u = lay.u(z)
        F[r_int] = (u - beta[:, None] * gi) / sb
        return F

    def jacobian(z):
        (pm, pn, pr), gi, gr, ng = pairs(z)
        beta = z[o_b : o_b + nint]
        (am, bm), (an, bn), (ar, br) = _fb_grad(*pm), _fb_grad(*pn), _fb_grad(*pr)
        rows, cols, vals = [rm], [o_lam + np.arange(nC)], [am / sl]
        for c in range(2):  # margins: d(marg) = y <dP + dQ, x~>
            for idx in (iPC, iQC):
                rows.append(rm)
                cols.append(idx[:, c])
                vals.append(bm * coefC[:, c])
        rows.append(r_nrm)
        cols.append(o_b + np.arange(nint))
        vals.append(an / sb)
        rows.append(r_ray)
        cols.append(o_a + np.arange(nray))
        vals.append(ar / sb)
        e = gi / np.where(ng > 0, ng, 1.0)[:, None]
        for c in range(2):
            rows.append(r_int[:, c])  # (u - beta g) / sb
            cols.append(o_u + 2 * np.arange(nint) + c)
            vals.append(np.full(nint, 1.0 / sb))
            rows.append(r_int[:, c])
            cols.append(o_b + np.arange(nint))
            vals.append(-gi[:, c] / sb)
            for gc, sgn in ((gp_i, 1.0), (gs_i, -1.0)):  # g = s (G_stop - G_start)
                ok = gc[:, c] >= 0
                rows.append(r_int[ok, c])
                cols.append(gc[ok, c])
                vals.append(-sgn * s_i[ok] * beta[ok] / sb)
                rows.append(r_nrm[ok])  # d(1 - ||g||) = -<e, dg>
                cols.append(gc[ok, c])
                vals.append(-bn[ok] * sgn * s_i[ok] * e[ok, c])
            for gc, sgn in ((gp_r, 1.0), (gs_r, -1.0)):
                ok = gc[:, c] >= 0
                rows.append(r_ray[ok])
                cols.append(gc[ok, c])
                vals.append(-br[ok] * sgn * s_r[ok] * Er[ok, c])
        return (L + _square_csr(rows, cols, vals, n)).tocsc()

    # merit: every row dimensionless (recursion rows of P, Q in units of sb, of G in units of sl)
    wrow = np.ones(n)
    wrow[: 4 * m] = 1.0 / sb
    wrow[4 * m : 6 * m] = 1.0 / sl

    def merit(F):  # (2-norm for the line search: Newton on FB is a descent direction for it)
        Fw = F * wrow
        return float(np.linalg.norm(Fw)), float(np.abs(Fw).max(initial=0.0))

    z, F, it, fn, converged, msg = _damped_newton(
        z,
        residual,
        jacobian,
        reg,
        merit,
        max_iter=max_newton,
        stop=tol.newton_tol,
        accept=accept,
        min_step=1e-6,
        accept_at_max_iter=True,
    )
    lam = np.zeros(m)
    lam[C] = np.maximum(z[o_lam : o_lam + nC], 0.0)
    gi, gr, _ = parts(z)
    beta_i = np.maximum(z[o_b : o_b + nint], 0.0)
    alpha = np.maximum(z[o_a : o_a + nray], 0.0)
    D, edge, beta = sup.D.copy(), sup.edge.copy(), sup.beta.copy()
    ng = np.linalg.norm(gi, axis=1)
    D[ki] = np.where(ng[:, None] > 0, gi / np.where(ng > 0, ng, 1.0)[:, None], sup.D[ki])
    beta[ki] = beta_i * ng  # ||u|| = beta ||g|| (= beta at the solution)
    beta[kr] = alpha
    # an interior direction outside its cone: the kink crossed a data point -> put it on the edge
    g1, g2 = _edge_coords(geo, k[ki], D[ki])
    half = np.isnan(geo.E1[k[ki], 0])
    # (clearly outside only: a kink within rounding of its data point is fine for the Clarke KKT
    # conditions, and moving it made the next pass fail at m = 300)
    out1 = (g1 < -1e-9) & (g1 <= g2) & ~half & (beta[ki] > 0)
    out2 = (g2 < -1e-9) & ~out1 & ~half & (beta[ki] > 0)
    moved = bool(out1.any() or out2.any())
    k = k.copy()
    # a kink that left its gap moves into the neighbouring gap (the block of the same facing and
    # sign whose cone contains the direction); if none does, onto the edge it crossed
    nbrs = geo.neighbours if moved else {}
    for j in np.flatnonzero(out1 | out2):
        kj, dj = int(k[ki[j]]), D[ki[j]]
        for nb in nbrs.get(kj, []):
            a1 = geo.G1[nb] @ dj / np.linalg.norm(geo.G1[nb])
            a2 = geo.R2[nb] @ dj / np.linalg.norm(geo.R2[nb])
            if a1 >= -1e-12 and a2 >= -1e-12:
                k[ki[j]] = nb
                out1[j] = out2[j] = False
                break
    D[ki[out1]], edge[ki[out1]] = geo.E1[k[ki[out1]]], 1
    D[ki[out2]], edge[ki[out2]] = geo.E2[k[ki[out2]]], 2
    out = Support(k, D, edge, beta)
    if moved:
        out = merge(_live(out), geo, 1e-12)
    # neurons whose complementarity rows carry the residual left (an inconsistent pair)
    conflict = np.zeros(k.size, bool)
    if not converged and not moved:
        big = 0.1 * fn
        conflict[ki] = np.abs(F[r_nrm]) >= big
        conflict[kr] = np.abs(F[r_ray]) >= big
    return out, lam, it, fn, converged, msg, moved, conflict


def _linear_kkt_rows(
    geo: _Geometry,
    sample: SortedSample,
    sup: Support,
    k: np.ndarray,
    ki: np.ndarray,
    kr: np.ndarray,
    act: np.ndarray,
    offsets: tuple[int, int, int, int],
    n: int,
) -> tuple[list, list, list, np.ndarray, np.ndarray]:
    """Sparse (rows, cols, vals) of the linear part of the active-set KKT system, rows 0..6m-1.

    Rows 0..4m-1: the P/Q prefix recursions of the margins, with interior blocks contributing u
    (two unit columns at offset o_u) and ray blocks alpha e (offset o_a). Rows 4m..6m-1: the G
    recursion G_{j+1} - G_j - [j in act] lambda_j y_j x~_j = 0, j = 0..m-1 (G_0 = 0), with the
    multipliers of the points ``act`` at offset o_lam and G at o_G. Also returns the column
    indices iP, iQ of the prefix sums.
    """
    o_lam, o_G, o_u, o_a = offsets
    m, nint = sample.m, ki.size
    y, xt = sample.y, sample.xt
    cols_u = Support(np.repeat(k[ki], 2), np.tile(np.eye(2), (nint, 1)), np.zeros(2 * nint, int))
    cols_r = Support(k[kr], sup.D[kr], sup.edge[kr])
    r1, c1, v1, iP, iQ = _chain_matrix(geo, sample, cols_u, o_u, n)
    r2, c2, v2, _, _ = _chain_matrix(geo, sample, cols_r, o_a, n)
    keep2 = c2 < o_a + kr.size  # the identity part of the recursions is already in (r1, c1)
    rows, cols, vals = [r1, r2[keep2]], [c1, c2[keep2]], [v1, v2[keep2]]
    jj = np.arange(m)
    gidx = o_G + 2 * jj[:, None] + np.arange(2)
    rg = 4 * m + 2 * jj[:, None] + np.arange(2)
    rows += [rg.ravel(), rg[1:].ravel(), rg[act].ravel()]
    cols += [gidx.ravel(), gidx[:-1].ravel(), np.repeat(o_lam + np.arange(act.size), 2)]
    vals += [np.ones(2 * m), -np.ones(2 * m - 2), -(y[act, None] * xt[act]).ravel()]
    return rows, cols, vals, iP, iQ


def _damped_newton(
    z: np.ndarray,
    residual: Callable[[np.ndarray], np.ndarray],
    jacobian: Callable[[np.ndarray], sparse.spmatrix],
    reg: sparse.spmatrix,
    merit: Callable[[np.ndarray], tuple[float, ...]],
    *,
    max_iter: int,
    stop: float,
    accept: float,
    min_step: float,
    admissible: Callable[[np.ndarray], bool] = lambda z: True,
    accept_at_max_iter: bool = False,
) -> tuple[np.ndarray, np.ndarray, int, float, bool, str]:
    """Newton on F(z) = 0 with regularised steps (:func:`regularised_step`) and backtracking.

    ``merit(F)`` returns measures of F whose LAST entry is the max-norm used to stop: the iteration
    converges when it is <= ``stop``; a step of length t (halved down to ``min_step``) is taken
    when ``admissible(z + t dz)`` and some measure decreases. Without descent, a residual <=
    ``accept`` counts as converged (the rounding level of F); with ``accept_at_max_iter`` so does
    running out of iterations. Returns (z, F(z), iterations, max-norm, converged, message).
    """
    F = residual(z)
    fm = merit(F)
    it, msg, converged = 0, "", fm[-1] <= stop
    while not converged and it < max_iter:
        it += 1
        try:
            dz = regularised_step(jacobian(z), F, reg)
        except RuntimeError as e:  # singular factor
            msg = f"singular Newton matrix: {e}"
            break
        if not np.all(np.isfinite(dz)):
            msg = "singular Newton matrix (non-finite step)"
            break
        step, accepted = 1.0, False
        while step > min_step:
            zn = z + step * dz
            if admissible(zn):
                Fn = residual(zn)
                fmn = merit(Fn)
                if any(a < b for a, b in zip(fmn, fm, strict=True)):
                    accepted = True
                    break
            step /= 2
        if not accepted:
            # no descent left: at the rounding level of the residual this is convergence
            converged = fm[-1] <= accept
            msg = "stalled at rounding level" if converged else "line search failed"
            break
        z, F, fm = zn, Fn, fmn
        converged = fm[-1] <= stop
    if not msg:
        if converged:
            msg = "converged"
        elif accept_at_max_iter and fm[-1] <= accept:
            converged, msg = True, "stalled at rounding level"
        else:
            msg = "max_newton"
    return z, F, it, fm[-1], converged, msg


def regularised_step(J: sparse.spmatrix, F: np.ndarray, reg: sparse.spmatrix) -> np.ndarray:
    """Newton step dz = argmin ||J dz + F||^2 + dz' R dz via the sparse augmented system

        [ -I   J ] [r ]   [-F]
        [ J'   R ] [dz] = [0],     r = J dz + F  (first row: -r + J dz = -F).

    The primal optimum is often not unique (a right- and a left-facing neuron at one kink differ by
    a linear function, MATH.md section 4): J is then singular along primal directions only, and the
    tiny proximal term R on the primal unknowns picks the step of least primal motion (Gauss-Newton
    on a consistent system converges quadratically; the term does not move the solution set).
    """
    n = J.shape[0]
    # the same matrix as sparse.bmat([[-I, J], [J', reg]]) (bitwise: same entries, same explicit
    # zeros, so the same SuperLU ordering and rounding), assembled from COO triplets: bmat took
    # ~0.2 s of the ~1 s of Newton steps at m = 300 (``reg`` is diagonal; its zeros are dropped
    # as bmat does)
    Jc = J.tocoo()
    d = np.arange(n)
    rd = reg.diagonal()
    nz = np.flatnonzero(rd)
    A = sparse.csc_matrix(
        (
            np.concatenate([-np.ones(n), Jc.data, Jc.data, rd[nz]]),
            (
                np.concatenate([d, Jc.row, Jc.col + n, nz + n]),
                np.concatenate([d, Jc.col + n, Jc.row, nz + n]),
            ),
        ),
        shape=(2 * n, 2 * n),
    )
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


def polish_blocks(
    sample: SortedSample,
    blocks: list[Block],
    sub: SubproblemResult,
    tol: GlobalTolerances | None = None,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Stages 2-4 (purify -> merge -> Newton polish) on the block set B of a solved (C_B).

    ``sub`` is the interior-point solution of (C_B) over ``blocks`` (e.g.
    ``subproblem.ConvexSubproblem(sample, blocks).solve()``); its support and the blocks its
    multipliers price at rho_k >= 1 - ``tol.candidate_rho`` are the LP columns. Returns (U, one
    row per block of ``blocks``; lambda, sorted order; relative gap (sum ||u_k|| - lower bound) /
    sum ||u_k|| with the lower bound sum lambda / max(1, max_{k in B} rho_k) of MATH.md section 3
    over B), or None when a stage fails, the Newton polish does not converge, or the polished
    point violates a margin by more than 1e-12. Free blocks only: None if one is pinned.
    """
    tol = GlobalTolerances() if tol is None else tol
    if any(b.pinned for b in blocks):
        return None
    try:
        geo = _geometry(sample, list(blocks))
        cols = candidates(geo, sample, sub.U, sub.multipliers, tol)
        lam_c = np.asarray(sub.multipliers)
        rows = np.flatnonzero(
            (margins_of(blocks, sample, sub.U) <= 1 + 1e-3) | (lam_c > 1e-6 * lam_c.max())
        )
        sup, lam = purify(geo, sample, cols, rows, tol.lp_tol)
        sup = merge(sup, geo, tol.snap_rtol)
        sup = sup.take(sup.beta > tol.polish_drop * sup.beta.max())
        sup, lam, info = polish(geo, sample, sup, lam > 1e-9 * lam.max(), lam, tol)
    except SolverError:
        return None
    if not (info.converged and np.all(sup.beta >= 0) and np.all(lam >= 0)):
        return None
    U = np.zeros((len(blocks), 2))
    np.add.at(U, sup.k, sup.U())
    if margins_of(blocks, sample, U).min() < 1 - 1e-12:
        return None
    objective = float(np.sum(np.linalg.norm(U, axis=1)))
    bound, _ = lower_bound(geo, sample, lam)
    return U, lam, (objective - bound) / objective


def restore_feasibility(
    net: ReLUNetwork, X: np.ndarray, y: np.ndarray
) -> tuple[ReLUNetwork, float]:
    """Stage 5: scale theta by c = sqrt((1 + delta) / min margin) (N is 2-homogeneous), so every
    margin is >= 1 + delta >= 1 on the points X, y (pass the dataset's own order: that is how users
    evaluate).

    delta = 4 eps max_i sum_j |v_j relu(z_ij)| / min margin covers the rounding of N(x_i) in another
    summation order (measured: margins of networks with 1/2||theta||^2 ~ 1e7 differ by ~1e-10
    between row orders of the same BLAS product). Returns the scaled network and its min margin.
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


#: method="auto" uses :func:`kktsolver.scale.solve_global_large` from this many points on (with its
#: KKT Newton stage it returns stationary, certified networks: 30 of 30 seed-setting datasets at
#: m = 30 .. 400 with p >= 0.2 or m >= 100, 0.1 .. 0.5 s at m = 300 against ~1 s for the conic
#: pipeline; docs/global.md); below it the conic pipeline is the reference (and agrees with the
#: cvxpy model).
AUTO_SCALE_M = 200
#: below this m, "auto" runs the conic pipeline after a scale-path result that is not a certified
#: stationary point (its KKT Newton stage failed, e.g. the flips LP was infeasible)
AUTO_CONIC_FALLBACK_M = 500

#: a Newton KKT point (polish or stationarize) whose dimensionless KKT residual (max-norm, the
#: ``residual`` of :class:`PolishInfo` / :class:`StationarizeInfo`) is at most this, with
#: multipliers that certify its gap, is returned without calling ``kktsolver.certify``: measured
#: certify residuals 1e-12 .. 2e-11 for such points (m = 30 .. 300), against its 1e-6 threshold.
STATIONARY_ACCEPT = 1e-10
#: a candidate whose :func:`kkt_residual` with its own multipliers is at most this (and whose
#: gap is certified) is returned without ``kktsolver.certify`` (whose threshold is 1e-6)
KKT_ACCEPT = 1e-8
#: ``kktsolver.certify``'s default stationarity tolerance (its global_min needs a residual at most
#: this): "auto" tries the other path when a result's known residual exceeds it
CERTIFY_STATIONARITY = 1e-6


def _one_label(dataset: Dataset, sample: SortedSample, tol: GlobalTolerances, t_start: float):
    """Closed form when every label is s (MATH.md section 3, a one-neuron certificate).

    One neuron s relu(<u, x~>) with min ||u|| s.t. <u, x~_i> >= 1 for all i: u = p / ||p||^2, p the
    point of conv{x~_i} = {(t, 1) : t in [x_min, x_max]} closest to 0, i.e. p = (c, 1) with
    c = clip(0, x_min, x_max); value 1 / sqrt(1 + c^2). Multipliers: lambda = ||u|| on the data
    point at c, or split between the two points around 0 so that their combination is p. Their
    lower bound over every block (computed as for any solution) proves that no wider network does
    better: its gap is 0 up to rounding. The issue's hand-derived case: 0 <= x_1 gives
    1 / sqrt(1 + x_1^2).
    """
    x, y, m = sample.x, sample.y, sample.m
    s = float(y[0])
    c = float(np.clip(0.0, x[0], x[-1]))
    p = np.array([c, 1.0])
    u = p / float(p @ p)
    value = float(np.linalg.norm(u))
    lam = np.zeros(m)
    if c == x[0]:
        lam[0] = value
    elif c == x[-1]:
        lam[-1] = value
    else:  # 0 strictly inside: p = a x~_j + (1 - a) x~_{j+1}, x_j < 0 < x_{j+1}
        j = int(np.searchsorted(x, 0.0)) - 1
        a = x[j + 1] / (x[j + 1] - x[j])
        lam[j], lam[j + 1] = a * value, (1.0 - a) * value
    scale = np.sqrt(value)
    net = ReLUNetwork(np.array([s * scale]), (u[:1] / scale)[None, :], u[1:] / scale)
    net, mm = restore_feasibility(net, dataset.X, dataset.y)
    blocks = all_blocks(m)
    bound, mr = lower_bound(_geometry(sample, blocks), sample, lam)
    obj = net.objective()
    gap = (obj - bound) / obj
    total = time.perf_counter() - t_start
    return GlobalResult(
        network=net,
        multipliers=sample.unsort(lam),
        objective=obj,
        lower_bound=bound,
        relative_gap=gap,
        min_margin=mm,
        max_rho=mr,
        n_neurons=1,
        clean_error=_clean_error(net, dataset),
        status="optimal" if gap <= tol.gap and mm >= 1.0 else "inaccurate",
        solver="closed form",
        formulation="one-label",
        rounds=0,
        timings={"total": total},
        seconds=total,
        tol=tol,
        message="all labels equal: closed form",
        stationarity=kkt_residual(net, dataset, sample.unsort(lam)),
    )


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
    the candidate directions; (3) merge duplicate neurons; (4) polish: Newton on the KKT equations
    of the active system; (5) scale theta by 1/sqrt(min margin); (6) certify: lower bound
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
        "auto" with all labels equal uses the closed form of ``_one_label`` (one neuron). "auto"
        below ``AUTO_CONIC_FALLBACK_M`` falls back to "conic" when the scale path's network
        is not a certified stationary point (``stationarity`` None or > ``KKT_ACCEPT``), and
        below ``AUTO_SCALE_M`` tries "scale" when the conic pipeline's network is not stationary
        (``stationarity`` None or > ``CERTIFY_STATIONARITY``).
    progress : bool, optional
        tqdm bar on stderr for the "scale" path (default: only on a TTY).

    Raises
    ------
    InputError
        Not a 1-D dataset, bad arguments. (Equal inputs with different labels are rejected when the
        Dataset is built: (P) is infeasible.)
    SolverError
        The conic solver or the purification LP failed (method "conic", or "auto" below
        AUTO_SCALE_M; above it a failed conic fallback returns the scale result).
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
    if method == "auto" and np.all(sample.y == sample.y[0]):
        return _one_label(dataset, sample, tol, t_start)
    if method == "scale" or (
        method == "auto" and formulation == "sparse" and clarabel and sample.m >= AUTO_SCALE_M
    ):
        large = _scale_path(dataset, tol, progress)
        if method == "scale" or sample.m >= AUTO_CONIC_FALLBACK_M:
            return large
        if _certified_stationary(large, KKT_ACCEPT):
            return large
        try:
            conic_result = solve_global(dataset, solver, formulation, tol, "conic", progress)
        except SolverError as e:
            # the scale result stands (its own status and certificate say what it is): measured
            # on two clusters of width 1e-4 (m = 300), scale gap 1.05e-8 while the conic path's
            # purification LP ran out of time and its raw solution misclassified a point
            return replace(large, message=f"{large.message}; conic fallback failed: {e}")
        return conic_result if conic_result.status == "optimal" else large
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
        sup_big = sup_lp.take(big)
        sup_p, lam_p, info = polish(geo, sample, sup_big, active, lam_lp, tol)
        ok = info.converged and np.all(sup_p.beta >= 0) and np.all(lam_p >= 0)
        timings["polish"] += time.perf_counter() - t
        t = time.perf_counter()
        tried = [_evaluate(geo, sample, sup_lp, lam_lp, dataset.X, dataset.y)]
        if ok:
            tried.append(_evaluate(geo, sample, sup_p, lam_p, dataset.X, dataset.y))
            if info.residual <= STATIONARY_ACCEPT:  # maybe a KKT point (checked before stage 7)
                tried[-1]["polish_residual"] = info.residual
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
    try:
        budget = time.perf_counter() - t_start
        if best.get("polish_residual") is not None and best["gap"] <= tol.gap:
            best["stationarity"] = kkt_residual(
                best["network"], dataset, sample.unsort(best["lam"])
            )
        if best.get("stationarity", np.inf) <= KKT_ACCEPT and best["gap"] <= tol.gap:
            # the Newton polish of a round converged, its own multipliers certify the gap and
            # make the network stationary: nothing left for stage 7 (measured m = 100: it would
            # cost 0.09 s of 0.25 s). (Polish convergence alone is not enough: m = 200, p = 0.2,
            # seed 0 converged with a network of stationarity residual 1.4e-6.)
            stat_msg = ""
        else:
            best, stat_msg = _stationary_round(geo, sample, best, dataset, tol, budget)
    except (SolverError, ValueError, RuntimeError, np.linalg.LinAlgError) as e:
        # the final stage only improves stationarity; the certified result stands without it
        stat_msg = f"stationarity stage failed ({type(e).__name__}: {e}); kept the LP vertex"
    message = "; ".join(x for x in (message, stat_msg) if x)
    timings["stationarize"] = time.perf_counter() - t
    t = time.perf_counter()
    cerr = _clean_error(best["network"], dataset)
    timings["clean_error"] = time.perf_counter() - t
    status = "optimal" if best["gap"] <= tol.gap and best["min_margin"] >= 1.0 else "inaccurate"
    result = GlobalResult(
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
        stationarity=best.get("stationarity"),
    )
    stationary = result.stationarity is not None and result.stationarity <= CERTIFY_STATIONARITY
    if method == "auto" and formulation == "sparse" and clarabel and not stationary:
        # the conic pipeline's stationarity stage failed (measured: 30 clustered points, residual
        # 2.1e-6); the scale path's KKT Newton stage solves such cases (there: 6.8e-10)
        try:
            large = _scale_path(dataset, tol, progress)
        except SolverError:
            return result
        if _certified_stationary(large, KKT_ACCEPT):
            return large
    return result


def _scale_path(dataset: Dataset, tol: GlobalTolerances, progress: bool | None) -> GlobalResult:
    """``method="scale"``: :func:`kktsolver.scale.solve_global_large` with this gap."""
    from .scale import ScaleTolerances, solve_global_large

    return solve_global_large(dataset, ScaleTolerances(gap=tol.gap), progress=progress)


def _certified_stationary(result: GlobalResult, threshold: float) -> bool:
    """Status "optimal" (gap and margins certified) and a known stationarity residual <=
    ``threshold``: what the "auto" fallbacks accept without running the other path."""
    return (
        result.status == "optimal"
        and result.stationarity is not None
        and result.stationarity <= threshold
    )


def _cone_coordinate(geo: _Geometry, k: np.ndarray, D: np.ndarray) -> np.ndarray:
    """t in [0, 1] with D parallel to (1 - t) E1_k + t E2_k (0: on E1, 1: on E2)."""
    E1, E2 = geo.E1[k], geo.E2[k]
    det = E1[:, 0] * E2[:, 1] - E1[:, 1] * E2[:, 0]
    a1 = (D[:, 0] * E2[:, 1] - D[:, 1] * E2[:, 0]) / det
    a2 = (E1[:, 0] * D[:, 1] - E1[:, 1] * D[:, 0]) / det
    return np.clip(a2 / (a1 + a2), 0.0, 1.0)


def _on_segment(geo: _Geometry, k: np.ndarray, t: np.ndarray) -> np.ndarray:
    V = (1 - t)[:, None] * geo.E1[k] + t[:, None] * geo.E2[k]
    return V / np.linalg.norm(V, axis=1)[:, None]


def zoom_columns(
    geo: _Geometry, sup: Support, width: float, points: int, neighbours: dict[int, list[int]]
) -> Support:
    """LP columns around a support: for each neuron (block k, direction D at cone coordinate
    t_D, :func:`_cone_coordinate`), 2 * points + 1 directions at t_D + width * [-1, 1], clipped
    to [0, 1] (t = 0, 1 are the rays on the edges); where t_D is within ``width`` of an edge, the
    neighbouring blocks that share that edge (kink on the same data point, ``neighbours``) get
    points + 1 directions within ``width`` of it on their side."""
    ks, ts = [], []
    ok = ~np.isnan(geo.E1[sup.k, 0])
    k = sup.k[ok]
    t0 = _cone_coordinate(geo, k, sup.D[ok])
    off = width * np.linspace(-1.0, 1.0, 2 * points + 1)
    for kj, tj in zip(k, t0, strict=True):
        tt = np.clip(tj + off, 0.0, 1.0)
        ks.append(np.full(tt.size, kj))
        ts.append(tt)
        for end, e_vec in ((0.0, geo.E1[kj]), (1.0, geo.E2[kj])):
            if abs(tj - end) > width:
                continue
            for nb in neighbours.get(int(kj), []):
                if np.allclose(geo.E1[nb], e_vec, rtol=0, atol=1e-14):
                    tn = np.clip(off[off >= 0], 0.0, 1.0)
                elif np.allclose(geo.E2[nb], e_vec, rtol=0, atol=1e-14):
                    tn = np.clip(1.0 - off[off >= 0], 0.0, 1.0)
                else:
                    continue
                ks.append(np.full(tn.size, nb))
                ts.append(tn)
    if not ks:
        return Support(np.zeros(0, int), np.zeros((0, 2)), np.zeros(0, int))
    k = np.concatenate(ks)
    t = np.concatenate(ts)
    key = np.unique(np.column_stack([k, np.round(t * 2**50)]), axis=0)
    k, t = key[:, 0].astype(int), key[:, 1] / 2**50
    edge = np.where(t == 0.0, 1, np.where(t == 1.0, 2, 0))
    D = _on_segment(geo, k, t)
    ok = np.all(np.isfinite(D), axis=1)  # a wedge of angle pi has (1 - t) E1 + t E2 = 0 inside
    return Support(k[ok], D[ok], edge[ok])


def refine_kinks(
    geo: _Geometry,
    sample: SortedSample,
    sup: Support,
    rows: np.ndarray,
    lp_tol: float,
    rounds: int = 3,
    width: float = 0.02,
    shrink: float = 0.1,
    points: int = 4,
) -> tuple[Support, np.ndarray]:
    """Move the kinks of an LP vertex to their optimal positions by zooming LPs: each round's
    columns are :func:`zoom_columns` of the previous support (width multiplied by ``shrink``); the
    LP (:func:`purify`) picks a vertex, :func:`merge` adds the columns of one block (their sum lies
    between the neighbouring grid directions). Kink positions then improve by ~``shrink`` per
    round (measured at m = 300: the LP vertex degrades below width ~2e-5, hence 3 rounds). Returns
    the support and LP multipliers of the round with the smallest objective after scaling to
    margins >= 1 on ALL points."""
    nb = geo.neighbours
    best = (np.inf, sup, None)
    for _ in range(rounds):
        cols = zoom_columns(geo, sup, width, points, nb)
        if cols.k.size == 0:  # only half-plane blocks (m = 1): nothing to move
            break
        # keep the current directions as columns too: the LP can only improve
        cols = Support(
            np.concatenate([cols.k, sup.k]),
            np.vstack([cols.D, sup.D]),
            np.concatenate([cols.edge, sup.edge]),
        )
        try:
            # (a refinement LP that stalls is not worth waiting for: measured 10 s at m = 400)
            sup, lam = purify(geo, sample, cols, rows, lp_tol, time_limit=2.0)
        except SolverError:
            break
        sup = merge(sup, geo, 1e-12)
        # the objective after scaling to margins >= 1 on ALL points (the LP sees only its rows,
        # and near-parallel columns make its vertex inexact at widths ~1e-7)
        U = sup.U()
        mm = float(margins_of([geo.blocks[k] for k in sup.k], sample, U).min())
        value = float(np.linalg.norm(U, axis=1).sum()) / mm if mm > 0 else np.inf
        if value < best[0]:
            best = (value, sup, lam)
        width *= shrink
    if best[2] is None:
        raise SolverError("kink refinement: no LP vertex")
    return best[1], best[2]


def _stationary_round(
    geo: _Geometry,
    sample: SortedSample,
    best: dict[str, Any],
    dataset: Dataset,
    tol: GlobalTolerances,
    budget: float = 1.0,
) -> tuple[dict[str, Any], str]:
    """Final stage: a KKT point (stationarity residual ~1e-11) with the certified value.

    The LP vertex of the rounds is value-optimal, but its kinks sit where the candidate
    directions put them, so it is not stationary (certify residual 2e-6 .. 4e-6 at m = 30 .. 300)
    and its support can be a wrong mixture (a ray plus an interior neuron for one kink), from
    which no Newton method converges to the optimum (measured m = 30, p = 0.25, seed 4: KKT
    points 6e-6 .. 4e-3 above the optimum). So first :func:`refine_kinks` (zooming LPs around
    the support), then :func:`stationarize` from that vertex (repairs "unsnap", then "snap").
    Candidates (each rescaled to margins >= 1 and certified with the better of its own and the
    previous lower bound; kept only if the gap is <= max(tol.gap, previous gap)): the Newton
    KKT point, the refined vertex, the rounds' vertex. The Newton point is returned without
    ``certify`` when its pass ended at the rounding level and its own multipliers certify the gap
    and give :func:`kkt_residual` <= ``KKT_ACCEPT`` (certify took 0.4 s of this stage's 0.75 s at
    m = 300); otherwise the first that ``certify`` calls global_min is returned, else the one with
    the smallest certify residual (:func:`_most_stationary`). Newton attempts stop after
    max(1 s, ``budget``) (the time of the rounds): measured 3 s of failing attempts at
    m = 200 .. 400, p = 0.4.
    """
    lam0 = best["lam"]
    cand = (best["margins"] <= 1.0 + 1e-2) | (lam0 > 0)
    rows = np.flatnonzero((best["margins"] <= 1.0 + 1e-3) | (lam0 > 0))
    try:
        sup_z, lam_z = refine_kinks(geo, sample, best["sup"], rows, tol.lp_tol)
    except SolverError as e:
        return best, f"kink refinement failed ({e}); kept the LP vertex"

    def certified(sup: Support, lam: np.ndarray) -> dict[str, Any] | None:
        try:
            new = _evaluate(geo, sample, sup, lam, dataset.X, dataset.y)
        except SolverError:
            return None
        new["own_lam"] = True
        if new["gap"] > tol.gap and new["lower"] < best["lower"]:
            # its own multipliers do not certify it: use the previous certificate (any lambda
            # >= 0 bounds min (P) from below), reported with its multipliers
            new.update(lower=best["lower"], max_rho=best["max_rho"], lam=best["lam"], own_lam=False)
            new["gap"] = (new["objective"] - new["lower"]) / new["objective"]
        return new if new["gap"] <= max(tol.gap, best["gap"]) else None

    # candidates in order of preference; the first that the certifier (kktsolver.certify, the
    # judge of issue 4) calls global_min is returned, else the one with the smallest residual
    msgs, found = [], []
    # budget: the stage may take as long as the rounds did (at least 1 s), then stops trying
    deadline = time.perf_counter() + max(1.0, budget)
    for how in ("unsnap", "snap"):
        if time.perf_counter() > deadline:
            msgs.append(f"{how}: not tried (time budget)")
            continue
        sup, lam, info = stationarize(geo, sample, sup_z, lam_z, cand, tol, repair=how)
        if not info.converged or sup.k.size == 0:
            msgs.append(f"{how}: {info.message} ({info.residual:.1e})")
            continue
        new = certified(sup, lam)
        if new is None:
            msgs.append(f"{how}: a KKT point outside the certified gap")
            continue
        found.append(("newton/" + how, new))
        exact_pass = info.message in ("converged", "stalled at rounding level")
        if exact_pass and info.residual <= STATIONARY_ACCEPT and new["own_lam"]:
            new["stationarity"] = kkt_residual(new["network"], dataset, sample.unsort(new["lam"]))
        if new.get("stationarity", np.inf) <= KKT_ACCEPT:
            # Newton solved the KKT system (stationarity, complementarity, margins) to the
            # rounding level with THESE multipliers, and they certify the gap: a stationary
            # network whose value is certified; calling certify to confirm it cost 0.4 s of the
            # 0.75 s of this stage at m = 300
            return new, ""
        if exact_pass:
            break
    new = certified(sup_z, lam_z)
    if new is not None:
        found.append(("refined LP vertex", new))
    found.append(("LP vertex", best))
    return _most_stationary(found, dataset, tol, msgs)


def _most_stationary(found, dataset, tol, msgs) -> tuple[dict[str, Any], str]:
    """The first candidate that ``certify`` calls global_min, else the smallest residual."""
    try:
        from .certify import CertTolerances, certify
    except ImportError:  # pragma: no cover - another helper's module
        return found[0][1], ""
    ctol = CertTolerances(gap=tol.gap)
    scored = []
    for name, cand in found:
        try:
            c = certify(cand["network"], dataset, tol=ctol)
        except Exception as e:  # noqa: BLE001 - a certifier failure must not lose the solve
            msgs.append(f"{name}: certify failed ({type(e).__name__})")
            continue
        res = c.stationarity_residual if c.stationarity_residual is not None else np.inf
        if c.verdict == "global_min":
            cand["stationarity"] = res
            return cand, "" if name.startswith("newton") else f"returned the {name}"
        scored.append((res, name, cand))
        msgs.append(f"{name}: {c.verdict} (residual {res:.1e})")
    if not scored:
        return found[-1][1], "; ".join(msgs)
    res, name, cand = min(scored, key=lambda t: t[0])
    cand["stationarity"] = res
    return cand, f"no candidate is a certified KKT point ({'; '.join(msgs)}); returned the {name}"


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
        sup=sup,
    )


def kkt_residual(
    net: ReLUNetwork, dataset: Dataset, lam: np.ndarray, kink: float = 1e-7, active: float = 1e-6
) -> float:
    """Relative stationarity residual of ``net`` with the GIVEN multipliers (dataset order):

        ||theta - sum_i lambda_i h_i||_2 / ||theta||_2,

    h_i = gradient of y_i N(x_i): (y_i relu(z_ij))_j in v, y_i v_j [z_ij > 0] x~_i in (w_j, b_j);
    a point on neuron j's kink (|z_ij| <= ``kink`` ||(w_j, b_j)|| ||x~_i||, the rule of
    ``kktsolver.certify``) contributes y_i v_j mu x~_i with any mu in [0, lambda_i] (Clarke
    subdifferential): mu starts at its side's value (lambda_i if z_ij > 0, else 0) and a few
    coordinate sweeps move it to the best value given the others; lambda_i is set to 0 where
    y_i N(x_i) > 1 + ``active``. Every choice of mu is feasible for the certifier's conditions with
    these multipliers, so the value bounds its (minimised) residual from above, at O(m n) cost
    instead of an LP (0.4 s at m = 300). (One sweep from mu = 0 read 0.99 on a stationary
    m = 2000 network whose gaps of 2.5e-9 put dozens of points inside the kink tolerance of a
    neuron; the sweeps from the sides read 1.1e-6.)
    """
    X = dataset.X.reshape(dataset.m, -1)
    y = dataset.y.astype(float)
    Xt = np.column_stack([X, np.ones(dataset.m)])
    Z = net.preactivations(X)
    relu = np.maximum(Z, 0.0)
    # float64 margins of cancelling 1e9-sized neurons err by ~1e-6: that dropped a lambda of 1.3e4
    # and read 7e3 for a network certify finds stationary to 2e-6 (m = 2000, p = 0.4, seed 1)
    margins = net.accurate_margins(X, y, Z, near=1e-3)  # compared with 1 + active only
    lam = np.where(margins <= 1.0 + active, np.maximum(lam, 0.0), 0.0)
    ly = lam * y
    at_kink = np.abs(Z) <= kink * np.linalg.norm(Xt, axis=1)[:, None] * net.neuron_norms()[None, :]
    on = Z > 0
    r_v = net.v - relu.T @ ly
    r_wb = np.column_stack([net.W, net.b]) - net.v[:, None] * ((on * ly[:, None]).T @ Xt)
    pairs = np.argwhere(at_kink & (lam[:, None] > 0))
    mu = np.where(on[pairs[:, 0], pairs[:, 1]], lam[pairs[:, 0]], 0.0)
    for _sweep in range(3):
        for p, (i, j) in enumerate(pairs):
            a = net.v[j] * y[i] * Xt[i]
            aa = float(a @ a)
            if aa > 0:
                new = float(np.clip(mu[p] + float(r_wb[j] @ a) / aa, 0.0, lam[i]))
                r_wb[j] -= (new - mu[p]) * a
                mu[p] = new
    norm = float(np.linalg.norm(net.theta))
    return float(np.sqrt(np.sum(r_v**2) + np.sum(r_wb**2))) / norm if norm > 0 else np.inf


def _clean_error(net: ReLUNetwork, dataset: Dataset) -> float | None:
    try:
        from .clean_error import clean_error
    except ImportError:  # pragma: no cover - another helper's module
        return None
    return float(clean_error(net, dataset.support or (0.0, 1.0)))
