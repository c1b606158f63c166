"""The convex program (C_B) of MATH.md section 3 for any set of 1-D blocks, built, then solved.

Two formulations: a sparse conic program handed to Clarabel directly (O(m + K) nonzeros via
prefix/suffix sums, MATH.md section 4) and a plain cvxpy model for any installed conic solver.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import sparse

from .errors import InputError
from .network import ReLUNetwork
from .patterns import Block, SortedSample, block_margin_matrix, network_from_blocks

__all__ = [
    "ConvexSubproblem",
    "SubproblemResult",
    "solve_subproblem",
    "cone_rows",
    "margins_of",
    "scale_estimate",
    "STATUSES",
]

Formulation = Literal["sparse", "cvxpy"]
STATUSES = ("optimal", "infeasible", "inaccurate", "error")

_CLARABEL_STATUS = {
    "Solved": "optimal",
    "AlmostSolved": "inaccurate",
    "PrimalInfeasible": "infeasible",
    "AlmostPrimalInfeasible": "infeasible",
    "MaxIterations": "inaccurate",
    "MaxTime": "inaccurate",
    "InsufficientProgress": "inaccurate",
}
_CVXPY_STATUS = {
    "optimal": "optimal",
    "optimal_inaccurate": "inaccurate",
    "infeasible": "infeasible",
    "infeasible_inaccurate": "infeasible",
}


# ------------------------------------------------------------------ block geometry (vectorised)


@dataclass(frozen=True, eq=False)
class _BlockArrays:
    """Blocks as arrays: sign s_k, the two cone rows, which one is an equality, gap positions."""

    sign: np.ndarray  # (K,) +-1
    G1: np.ndarray  # (K, 2) first cone row: G1 u >= 0 (the active point next to the kink)
    R2: np.ndarray  # (K, 2) second row: R2 u >= 0 (free) or R2 u = 0 (pinned)
    pinned: np.ndarray  # (K,) bool
    right_at: np.ndarray  # (K,) first active index for "all"/"right" blocks, -1 for "left"
    left_at: np.ndarray  # (K,) last active index for "left" blocks, -1 otherwise
    sizes: np.ndarray  # (K,) |A_k|


def cone_rows(
    blocks: Sequence[Block], sample: SortedSample
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`patterns.cone_constraints` for many blocks.

    Returns ``(G1, R2, pinned)``, each row per block: the cone of block k is
    {u : G1_k u >= 0, R2_k u >= 0} for a free block and {u : G1_k u >= 0, R2_k u = 0} for a pinned
    one. (``patterns.cone_constraints`` builds the lifted sample per call, O(m) each: too slow
    for 4m blocks.)
    """
    b = _block_arrays(blocks, sample)
    return b.G1, b.R2, b.pinned


def _block_arrays(blocks: Sequence[Block], sample: SortedSample) -> _BlockArrays:
    m, xt = sample.m, sample.xt
    K = len(blocks)
    sign = np.empty(K)
    gap = np.empty(K, dtype=np.int64)
    code = np.empty(K, dtype=np.int8)  # 0 all, 1 right, 2 left
    pinned = np.zeros(K, dtype=bool)
    codes = {"all": 0, "right": 1, "left": 2}
    for k, blk in enumerate(blocks):
        sign[k], gap[k], code[k], pinned[k] = blk.sign, blk.gap, codes[blk.direction], blk.pinned
    G1 = np.empty((K, 2))
    R2 = np.empty((K, 2))
    isall, isright, isleft = code == 0, code == 1, code == 2
    G1[isall], R2[isall] = xt[0], xt[m - 1]
    g = gap[isright]
    G1[isright], R2[isright] = xt[g], -xt[g - 1]
    g = gap[isleft]
    G1[isleft], R2[isleft] = xt[g - 1], -xt[g]
    R2[
        pinned
    ] *= -1.0  # a pinned cone: the "outside" point is ON the kink, E u = <x~_outside, u> = 0
    right_at = np.where(isall, 0, np.where(isright, gap, -1))
    left_at = np.where(isleft, gap - 1, -1)
    sizes = np.where(isall, m, np.where(isright, m - gap, gap))
    return _BlockArrays(sign, G1, R2, pinned, right_at, left_at, sizes)


def margins_of(blocks: Sequence[Block], sample: SortedSample, U: np.ndarray) -> np.ndarray:
    """Margins y_i sum_k s_k [i in A_k] <u_k, x~_i> (sorted order) by prefix/suffix sums, O(m + K).

    P_i = sum of s_k u_k over right/all blocks with first active index <= i, Q_i = the sum over left
    blocks with last active index >= i; then N(x_i) = <P_i + Q_i, x~_i> (MATH.md section 4).
    """
    b = _block_arrays(blocks, sample)
    SU = b.sign[:, None] * np.asarray(U, dtype=float).reshape(len(blocks), 2)
    m = sample.m
    dP = np.zeros((m, 2))
    dQ = np.zeros((m, 2))
    r = b.right_at >= 0
    np.add.at(dP, b.right_at[r], SU[r])
    l_ = b.left_at >= 0
    np.add.at(dQ, b.left_at[l_], SU[l_])
    P = np.cumsum(dP, axis=0)
    Q = np.cumsum(dQ[::-1], axis=0)[::-1]
    return sample.y * np.einsum("ij,ij->i", P + Q, sample.xt)


def scale_estimate(sample: SortedSample) -> float:
    """A cheap estimate of min (P): 1 + sum over label changes of 4 sqrt(1 + x_i^2) / gap_i.

    Each label change between neighbours x_i < x_{i+1} forces a slope change of about 4 / gap (from
    +1 to -1 and back) at cost sqrt(1 + t^2) per unit (MATH.md section 4); measured within a factor
    of 2 of the optimum on random seed-setting data. Used to scale the margins (MATH.md section 5).
    """
    ch = np.flatnonzero(sample.y[1:] != sample.y[:-1])
    gaps = np.diff(sample.x)[ch]
    return float(1.0 + np.sum(4.0 * np.hypot(sample.x[ch], 1.0) / gaps))


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class SubproblemResult:
    """Solution of (C_B): minimise sum_k ||u_k|| over the pattern cones subject to the margins.

    Attributes
    ----------
    blocks : tuple of Block
        The block set B, in the order of the rows of ``U``.
    U : ndarray, shape (K, 2)
        u_k = |v_k| (w_k, b_k). NaN when ``status`` is "infeasible" or "error" (no solution).
    multipliers : ndarray, shape (m,)
        lambda_i >= 0 of the margin constraints, SORTED order (``sample.unsort`` maps them back).
        At an optimum sum_i lambda_i = sum_k ||u_k|| (strong duality; MATH.md section 3). NaN
        when no solution is available.
    objective : float
        sum_k ||u_k|| computed from ``U`` (= 1/2||theta||^2 of the mapped balanced network);
        +inf when infeasible, NaN on "error".
    status : str
        "optimal", "infeasible", "inaccurate" (solver stopped early with a usable point) or "error".
    solver, formulation : str
    seconds : float
        Wall time of the solve call (the build time is ``build_seconds``).
    build_seconds : float
    iterations : int or None
    solver_status : str
        The solver's own status string, for diagnosis.
    """

    blocks: tuple[Block, ...]
    U: np.ndarray
    multipliers: np.ndarray
    objective: float
    status: str
    solver: str
    seconds: float
    formulation: str = "sparse"
    build_seconds: float = 0.0
    iterations: int | None = None
    solver_status: str = ""

    @property
    def has_solution(self) -> bool:
        """Whether ``U`` and ``multipliers`` hold a (possibly inaccurate) solution."""
        return self.status in ("optimal", "inaccurate")

    @property
    def dual_objective(self) -> float:
        """sum_i lambda_i (equals ``objective`` at an exact optimum)."""
        return float(np.sum(self.multipliers)) if self.has_solution else float("nan")

    def network(self, atol: float = 0.0) -> ReLUNetwork:
        """The balanced network, one neuron per block with ||u_k|| > atol (network_from_blocks)."""
        if not self.has_solution:
            raise InputError(f"the subproblem has no solution (status {self.status!r})")
        return network_from_blocks(list(self.blocks), self.U, atol)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; NaN/inf become None (cli.to_jsonable)."""
        from .cli import to_jsonable

        return to_jsonable(
            {
                "blocks": [
                    {"direction": b.direction, "gap": b.gap, "sign": b.sign, "pinned": b.pinned}
                    for b in self.blocks
                ],
                "U": self.U,
                "multipliers": self.multipliers,
                "objective": self.objective,
                "dual_objective": self.dual_objective,
                "status": self.status,
                "solver": self.solver,
                "solver_status": self.solver_status,
                "formulation": self.formulation,
                "iterations": self.iterations,
                "seconds": self.seconds,
                "build_seconds": self.build_seconds,
            }
        )


# --------------------------------------------------------------------------- the problem


@dataclass(frozen=True, eq=False)
class _ConicData:
    """min q'x s.t. A x + s = b, s in (zero^nz x nonneg^nn x SOC_3^K); variables (U, t, P, Q)."""

    A: sparse.csc_matrix
    b: np.ndarray
    q: np.ndarray
    n_zero: int
    n_nonneg: int
    margin_rows: np.ndarray  # rows of A (within the nonneg block) holding the margins
    K: int


@dataclass(eq=False)
class ConvexSubproblem:
    """(C_B) for a 1-D sorted sample and a block set B (MATH.md section 3), built at construction.

        minimise  sum_k ||u_k||
        s.t.      y_i sum_k s_k [i in A_k] <u_k, x~_i>  >= rhs     (margins, multipliers lambda_i)
                  u_k in cone_k  (two inequalities; a pinned block: one inequality and one equality)

    Parameters
    ----------
    sample : SortedSample
    blocks : sequence of Block
        Any blocks (free or pinned, both signs); duplicates are allowed.
    formulation : {"sparse", "cvxpy"}
        "sparse": a conic program passed to Clarabel directly. "cvxpy": a cvxpy model (any conic
        solver).
    margins : {"auto", "prefix", "direct"}
        How the sparse formulation writes the margins: "prefix" adds the prefix/suffix sums P_i, Q_i
        as variables (O(m + K) nonzeros), "direct" writes y_i s_k <u_k, x~_i> for every i in A_k
        (O(sum_k |A_k|) nonzeros, fewer variables), "auto" picks the one with fewer nonzeros.
    rhs : float or None
        Right-hand side r of the margins the solver sees (default 1). The program is positively
        homogeneous: the solution for rhs = r is r times the solution for 1, with the same
        multipliers lambda, so the returned U is divided by r again and the result is always for
        (C_B) with margins >= 1. None takes r = 1 / :func:`scale_estimate` (optimum O(1)); measured:
        it helps at tight tolerances for m <~ 100 but Clarabel's absolute feasibility tolerance then
        breaks it for m >~ 300 (tiny margins), so the default is r = 1.
    """

    sample: SortedSample
    blocks: Sequence[Block]
    formulation: Formulation = "sparse"
    margins: str = "auto"
    rhs: float | None = 1.0
    build_seconds: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        t0 = time.perf_counter()
        if not isinstance(self.sample, SortedSample):
            raise InputError(
                f"sample must be a patterns.SortedSample, got {type(self.sample).__name__}"
            )
        if self.formulation not in ("sparse", "cvxpy"):
            raise InputError(f"formulation must be 'sparse' or 'cvxpy', got {self.formulation!r}")
        if self.margins not in ("auto", "prefix", "direct"):
            raise InputError(f"margins must be 'auto', 'prefix' or 'direct', got {self.margins!r}")
        if self.rhs is None:
            self.rhs = 1.0 / scale_estimate(self.sample)
        if not (np.isfinite(self.rhs) and self.rhs > 0):
            raise InputError(f"rhs must be a positive finite number, got {self.rhs!r}")
        self.blocks = tuple(self.blocks)
        for j, blk in enumerate(self.blocks):
            if not isinstance(blk, Block):
                raise InputError(f"blocks[{j}] is {blk!r}, not a patterns.Block")
            try:
                blk.validate(self.sample.m)
            except ValueError as e:
                raise InputError(f"blocks[{j}]: {e}") from None
        self._arrays = _block_arrays(self.blocks, self.sample) if self.blocks else None
        self._conic = None
        self._cvx = None
        if self.blocks:
            if self.formulation == "sparse":
                self._conic = self._build_sparse()
            else:
                self._cvx = self._build_cvxpy()
        self.build_seconds = time.perf_counter() - t0

    @property
    def K(self) -> int:
        """Number of blocks."""
        return len(self.blocks)

    # ------------------------------------------------------------------ sparse conic form
    def _use_prefix(self) -> bool:
        if self.margins != "auto":
            return self.margins == "prefix"
        m = self.sample.m
        direct_nnz = 2 * int(self._arrays.sizes.sum())
        prefix_nnz = 2 * self.K + 12 * m
        return prefix_nnz < direct_nnz

    def _build_sparse(self) -> _ConicData:
        s, m, K = self.sample, self.sample.m, self.K
        ba = self._arrays
        xt, y = s.xt, s.y
        prefix = self._use_prefix()
        nU, nt = 2 * K, K
        iU = np.arange(nU).reshape(K, 2)
        it = nU + np.arange(K)
        n = nU + nt + (4 * m if prefix else 0)
        iP = nU + nt + np.arange(2 * m).reshape(m, 2)
        iQ = nU + nt + 2 * m + np.arange(2 * m).reshape(m, 2)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        row = 0

        def put(r, c, v):
            rows.append(np.asarray(r).ravel())
            cols.append(np.asarray(c).ravel())
            vals.append(np.broadcast_to(np.asarray(v, dtype=float), np.shape(r)).ravel())

        # ---- zero cone: prefix/suffix recursions, pinned equalities
        if prefix:
            # P_i - P_{i-1} - sum_{right/all k starting at i} s_k u_k = 0 (P_{-1} = 0), per coord.
            rP = row + np.arange(2 * m).reshape(m, 2)
            put(rP, iP, 1.0)
            put(rP[1:], iP[:-1], -1.0)
            sel = ba.right_at >= 0
            put(rP[ba.right_at[sel]], iU[sel], -ba.sign[sel, None])
            row += 2 * m
            # Q_i - Q_{i+1} - sum_{left k ending at i} s_k u_k = 0 (Q_m = 0)
            rQ = row + np.arange(2 * m).reshape(m, 2)
            put(rQ, iQ, 1.0)
            put(rQ[:-1], iQ[1:], -1.0)
            sel = ba.left_at >= 0
            put(rQ[ba.left_at[sel]], iU[sel], -ba.sign[sel, None])
            row += 2 * m
        pk = np.flatnonzero(ba.pinned)
        rE = row + np.arange(pk.size)
        put(np.repeat(rE, 2), iU[pk].ravel(), ba.R2[pk].ravel())
        row += pk.size
        n_zero = row

        # ---- nonnegative cone: margins (A x + s = b, s >= 0 <=> margin_i >= rhs), cone rows
        margin_rows = row + np.arange(m)
        if prefix:
            coef = -(y[:, None] * xt)
            put(np.repeat(margin_rows, 2), iP.ravel(), coef.ravel())
            put(np.repeat(margin_rows, 2), iQ.ravel(), coef.ravel())
        else:
            M = block_margin_matrix(list(self.blocks), s).tocoo()
            put(margin_rows[M.row], M.col, -M.data)
        row += m
        r1 = row + np.arange(K)
        put(np.repeat(r1, 2), iU.ravel(), -ba.G1.ravel())
        row += K
        fk = np.flatnonzero(~ba.pinned)
        r2 = row + np.arange(fk.size)
        put(np.repeat(r2, 2), iU[fk].ravel(), -ba.R2[fk].ravel())
        row += fk.size
        n_nonneg = row - n_zero

        # ---- second-order cones (t_k, u_k)
        rS = row + 3 * np.arange(K)
        put(rS, it, -1.0)
        put(rS + 1, iU[:, 0], -1.0)
        put(rS + 2, iU[:, 1], -1.0)
        row += 3 * K

        A = sparse.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(row, n)
        )
        b = np.zeros(row)
        b[margin_rows] = -self.rhs
        q = np.zeros(n)
        q[it] = 1.0
        return _ConicData(A, b, q, n_zero, n_nonneg, margin_rows, K)

    def _solve_sparse(self, solver: str, options: dict[str, Any]) -> SubproblemResult:
        import clarabel

        if solver.upper() != "CLARABEL":
            raise InputError(
                f"the sparse formulation calls Clarabel directly; solver {solver!r} needs "
                "formulation='cvxpy'"
            )
        c = self._conic
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        for key, val in options.items():
            if not hasattr(settings, key):
                raise InputError(f"unknown Clarabel setting {key!r}")
            setattr(settings, key, val)
        cones = []
        if c.n_zero:
            cones.append(clarabel.ZeroConeT(c.n_zero))
        cones.append(clarabel.NonnegativeConeT(c.n_nonneg))
        cones.extend(clarabel.SecondOrderConeT(3) for _ in range(c.K))
        P = sparse.csc_matrix((c.A.shape[1], c.A.shape[1]))
        t0 = time.perf_counter()
        try:
            sol = clarabel.DefaultSolver(P, c.q, c.A, c.b, cones, settings).solve()
        except Exception as e:  # Clarabel raises plain exceptions on internal failures
            return self._failed("CLARABEL", time.perf_counter() - t0, f"exception: {e}")
        secs = time.perf_counter() - t0
        raw = str(sol.status)
        status = _CLARABEL_STATUS.get(raw, "error")
        if status in ("infeasible", "error"):
            return self._failed("CLARABEL", secs, raw, status, iterations=int(sol.iterations))
        x, z = np.asarray(sol.x), np.asarray(sol.z)
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(z))):
            return self._failed(
                "CLARABEL", secs, raw + " (non-finite iterate)", iterations=int(sol.iterations)
            )
        U = x[: 2 * c.K].reshape(c.K, 2) / self.rhs
        lam = np.maximum(z[c.margin_rows], 0.0)
        return self._result(U, lam, status, "CLARABEL", secs, raw, int(sol.iterations))

    # ------------------------------------------------------------------ cvxpy form
    def _build_cvxpy(self):
        import cvxpy as cp

        s, m, K = self.sample, self.sample.m, self.K
        ba = self._arrays
        U = cp.Variable((K, 2), name="U")
        SU = cp.multiply(ba.sign[:, None], U)
        # P = cumsum of right/all blocks at their first active index; Q = reverse cumsum of left
        sel = np.flatnonzero(ba.right_at >= 0)
        cons = []
        N = 0
        if sel.size:
            Hr = sparse.csr_matrix((np.ones(sel.size), (ba.right_at[sel], sel)), shape=(m, K))
            N = N + cp.cumsum(Hr @ SU, axis=0)
        sel = np.flatnonzero(ba.left_at >= 0)
        if sel.size:
            rev = sparse.csr_matrix((np.ones(m), (np.arange(m), np.arange(m)[::-1])), shape=(m, m))
            Hl = sparse.csr_matrix(
                (np.ones(sel.size), (m - 1 - ba.left_at[sel], sel)), shape=(m, K)
            )
            N = N + rev @ cp.cumsum(Hl @ SU, axis=0)
        margin = cp.sum(cp.multiply(N, s.y[:, None] * s.xt), axis=1)
        margin_con = margin >= self.rhs
        cons.append(margin_con)
        cons.append(cp.sum(cp.multiply(ba.G1, U), axis=1) >= 0)
        free = np.flatnonzero(~ba.pinned)
        if free.size:
            cons.append(cp.sum(cp.multiply(ba.R2[free], U[free]), axis=1) >= 0)
        pin = np.flatnonzero(ba.pinned)
        if pin.size:
            cons.append(cp.sum(cp.multiply(ba.R2[pin], U[pin]), axis=1) == 0)
        prob = cp.Problem(cp.Minimize(cp.sum(cp.norm(U, 2, axis=1))), cons)
        return prob, U, margin_con

    def _solve_cvxpy(self, solver: str, options: dict[str, Any]) -> SubproblemResult:
        import cvxpy as cp

        name = solver.upper()
        if name not in cp.installed_solvers():
            raise InputError(
                f"solver {solver!r} is not installed; installed: {cp.installed_solvers()}"
            )
        prob, U, margin_con = self._cvx
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():  # "may be inaccurate": reported as status instead
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(solver=name, **options)
        except cp.error.SolverError as e:
            return self._failed(name, time.perf_counter() - t0, f"SolverError: {e}")
        except TypeError as e:  # unknown keyword option
            raise InputError(f"bad option for solver {name}: {e}") from None
        secs = time.perf_counter() - t0
        raw = str(prob.status)
        status = _CVXPY_STATUS.get(raw, "error")
        iters = prob.solver_stats.num_iters if prob.solver_stats is not None else None
        if status in ("infeasible", "error") or U.value is None or margin_con.dual_value is None:
            return self._failed(
                name, secs, raw, "infeasible" if status == "infeasible" else "error", iters
            )
        lam = np.maximum(np.asarray(margin_con.dual_value, dtype=float).ravel(), 0.0)
        return self._result(
            np.asarray(U.value, dtype=float) / self.rhs, lam, status, name, secs, raw, iters
        )

    # ------------------------------------------------------------------ public
    def solve(self, solver: str = "CLARABEL", **solver_options: Any) -> SubproblemResult:
        """Solve (C_B); never raises for infeasible block sets or solver failures (see ``status``).

        Parameters
        ----------
        solver : str
            "CLARABEL" for the sparse formulation; any installed cvxpy conic solver for "cvxpy".
        **solver_options
            Clarabel settings (e.g. ``tol_gap_rel=1e-10``) or keywords of ``cvxpy.Problem.solve``.

        Raises
        ------
        InputError
            Unknown solver or option.
        """
        if not self.blocks:  # no block: every margin is 0 < rhs
            return self._failed(solver.upper(), 0.0, "no blocks", "infeasible")
        if self.formulation == "sparse":
            return self._solve_sparse(solver, solver_options)
        return self._solve_cvxpy(solver, solver_options)

    def _result(self, U, lam, status, solver, secs, raw, iters, obj=None) -> SubproblemResult:
        """Freeze U (K x 2) and lambda; ``obj`` defaults to sum ||u_k||."""
        U = np.array(U, dtype=float).reshape(self.K, 2)
        U.setflags(write=False)
        lam = np.array(lam, dtype=float)
        lam.setflags(write=False)
        if obj is None:
            obj = float(np.sum(np.linalg.norm(U, axis=1)))
        return SubproblemResult(
            self.blocks,
            U,
            lam,
            obj,
            status,
            solver,
            secs,
            self.formulation,
            self.build_seconds,
            iters,
            raw,
        )

    def _failed(self, solver, secs, raw, status="error", iterations=None) -> SubproblemResult:
        """NaN solution; objective +inf for an infeasible block set (NaN for other failures)."""
        obj = float("inf") if status == "infeasible" else float("nan")
        nan_u, nan_lam = np.full((self.K, 2), np.nan), np.full(self.sample.m, np.nan)
        return self._result(nan_u, nan_lam, status, solver, secs, raw, iterations, obj)


def solve_subproblem(
    sample: SortedSample,
    blocks: Sequence[Block],
    formulation: Formulation = "sparse",
    solver: str = "CLARABEL",
    **solver_options: Any,
) -> SubproblemResult:
    """Build and solve (C_B): ``ConvexSubproblem(sample, blocks, formulation).solve(solver)``."""
    return ConvexSubproblem(sample, blocks, formulation).solve(solver, **solver_options)
