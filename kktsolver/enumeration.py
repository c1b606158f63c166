"""Enumeration and sampling of the KKT points of (P) in 1-D, as (function, objective) classes.

Exact enumeration by a pruned search over block sets with convex subproblems (C_B) (MATH.md
sections 2-4, F2, F3); sampling strategies for large m; the KKT points of extreme clean error.

What is enumerated
------------------
KKT points come in convex families. If U and U' both solve (C_B), every nonzero u_k keeps its
direction (the norm is strictly convex off rays: the midpoint of two non-parallel optima would be
strictly better), so the optimal face is {u_k = r_k e_k : r in R_B}, R_B a polytope; every point
of it is a KKT point with the same multipliers (a primal-dual saddle point pairs every primal
optimum with every dual optimum). Different r give different functions, so the set of KKT
functions can be a continuum. We therefore enumerate the *vertex* KKT points: balanced networks
theta whose block set B (one block per neuron, a kink on a data point giving a pinned block) is
all nonzero and is the *unique* optimum of (C_B), and which the certifier accepts as KKT. They are
reported as KKT classes, pairs (function on R, 1/2||theta||^2) up to :class:`EnumTolerances`;
several classes may share a function (``function_id``).

Completeness argument (what ``complete=True`` means)
---------------------------------------------------
1. Every KKT point theta, after merging neurons of one block (KKT forces them parallel:
   u_k / ||u_k|| = s_k g_k(lambda) on a free block, the ray on a pinned one), is optimal for (C_B)
   of its own block set: its Clarke multipliers (lambda, mu) are multipliers of (C_B) with
   alpha_k = s_k y_p mu_p on the equality of a pinned block (MATH.md F2, F3), and KKT conditions
   are sufficient for this convex program.
2. The optimal face R_B is a polytope; its vertices are vertices of {r >= 0 : M r >= 1} (fixed
   directions), so their supports B' have |B'| <= m, each B' a subset of B, each the unique
   optimum of (C_{B'}) and KKT with the same (lambda, alpha). Hence every KKT point is a convex
   combination, with equal objective, of vertex KKT points whose block sets are subsets of its
   own, and it suffices to visit every block set that can carry a vertex KKT point.
3. The search visits every block set B with |B| <= min(m, max_neurons) except those excluded by
   these necessary conditions of a vertex KKT point with blocks exactly B:
   (a) coverage: every point i has a block of sign y_i strictly active at i (else
       y_i N(x_i) <= 0);
   (b) a block's sign appears among the labels of its active points
       (v_k = sum lambda_i y_i relu(z_ik));
   (c) no two blocks of one activation set and opposite signs (a free pattern cone is pointed, so
       s g and -s g cannot both lie in it; two opposite pinned neurons on one ray cancel, which is
       cheaper);
   (d) no free block together with a pinned block of the same sign on an edge of its cone: the
       pinned neuron gives the same margins when moved into the free block, and u1 + u2 is
       strictly cheaper (not parallel);
   (e) dual feasibility (:class:`_DualPrune`): lambda >= 0 such that, for every free block,
       s_k g_k(lambda) lies in its closed cone, beyond the chord and inside the tangent polygon of
       the unit-circle arc in that cone (||g_k|| = 1 relaxed to a polyhedron), and for every
       pinned block <s_k g_k, e_k> = 1 with the implied mu in [0, lambda_p]. Adding blocks only
       adds rows, so an infeasible LP prunes all supersets; this is what makes m = 6 tractable.
       Pairs of blocks whose LP is infeasible on its own are found once before the search
       (:func:`_dual_pair_conflicts`) and treated like (c), (d).
   A covering set is then tested for primal feasibility by an LP (:class:`_PrimalFeasibility`;
   the cones are polyhedral in 1-D); an infeasible (C_B) has no optimum and is skipped without
   pruning its supersets (adding blocks can only restore feasibility).
   Each visited candidate is solved exactly; it is reported when all blocks are nonzero, each
   neuron's block is the block it was solved in (a free block whose optimum lands on a cone edge
   is the pinned block, visited separately), the optimum is unique (rank test below) and
   the certificate says KKT (:func:`fast_certificate` where it decides, else :func:`certify`;
   certify's "global_min by the certified interval alone", near-optimal but not stationary,
   does not count); a rejected candidate is first re-solved once at tighter
   solver tolerances, since an interior-point optimum is stationary only to ~sqrt(tolerance).
4. ``complete`` is True only if the search ran to the end (no time budget hit),
   ``include_pinned`` is True (MATH.md F3: otherwise provably incomplete), no candidate
   subproblem failed numerically and no candidate's certificate was ``undecided`` (its multiplier
   search failed, so it may be a KKT point that is not reported). With ``max_neurons`` < m it is
   complete for KKT points of at most ``max_neurons`` neurons (``scope``).

Rank test: the optimum of (C_B) is declared non-unique (a face, not reported: its vertices have
smaller block sets) when the margin matrix of the blocks at their optimal directions, restricted
to the tight points, has rank < |B| (a null direction keeps every tight margin and the objective,
since sum_k r_k = sum_i lambda_i (M r)_i). Otherwise it is treated as unique (in doubt we report:
a reported class is always a certified KKT point).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .certify import Certificate, CertTolerances, certify, kkt_support
from .clean_error import clean_error
from .data import Dataset, check_seed, interval_or_support, positive_int
from .errors import (
    InputError,
    SolverError,
    check_int_range,
    check_tolerances,
    require_instance,
)
from .gd import rescaled, solve_cell, train
from .network import ReLUNetwork
from .patterns import (
    Block,
    SortedSample,
    all_blocks,
    block_directions,
    block_of_neuron,
    network_from_blocks,
)
from .subproblem import ConvexSubproblem, cone_rows, margins_of

__all__ = [
    "EnumTolerances",
    "KKTClass",
    "EnumerationResult",
    "KKTStream",
    "FunctionRegistry",
    "enumerate_kkt",
    "sample_kkt",
    "extreme_kkt",
    "ExtremeResult",
    "fast_certificate",
    "STRATEGIES",
    "KKT_VERDICTS",
]

#: sampled optima are Newton-polished (``gd.solve_cell``) only up to this m: its dense least squares
#: costs about a second per solve at m = 200, more than the rest of an attempt
POLISH_MAX_M = 20

#: certificate stationarity tolerance for unpolished samples (m > POLISH_MAX_M); reported in each
#: certificate's ``tolerances``
SAMPLE_STATIONARITY = 1e-4

_UNSET = object()  # marks an argument that was not given

KKT_VERDICTS = ("kkt", "kkt_undecided", "local_min", "global_min")
STRATEGIES = ("random", "local", "gradient_flow")

#: Clarabel settings for candidate subproblems (tight: the certifier checks stationarity to 1e-6).
#: Iterative refinement off: it took half of Clarabel's time on the m = 200 subproblems of the
#: sampler (measured 22 ms -> 12 ms per solve, same 31 iterations, objective within 2e-9
#: relative), and every candidate is purified and certified afterwards anyway.
SOLVER_OPTIONS = {
    "tol_gap_abs": 1e-10,
    "tol_gap_rel": 1e-10,
    "tol_feas": 1e-10,
    "max_iter": 200,
    "iterative_refinement_enable": False,
}
#: settings of the one retry of a certificate-rejected vertex candidate (``_Search.retry_tight``)
TIGHT_SOLVER_OPTIONS = {
    "tol_gap_abs": 1e-14,
    "tol_gap_rel": 1e-14,
    "tol_feas": 1e-14,
    "max_iter": 500,
}


@dataclass(frozen=True)
class EnumTolerances:
    """Every threshold the enumeration uses (relative, dimensionless).

    Attributes
    ----------
    zero_block : block k is zero iff ||u_k|| <= zero_block * sum_j ||u_j||.
    kink : a neuron's kink is on data point x_i iff |w x_i + b| <= kink ||(w, b)|| ||(x_i, 1)||
        (``patterns.block_of_neuron``); decides free vs pinned blocks.
    tight : margin i is tight iff y_i N(x_i) <= 1 + tight (rank test).
    rank : the tight margin matrix has full column rank iff sigma_min > rank * sigma_max.
    function : two functions are equal iff sup |f_a - f_b| <= function * scale (on R: end slopes
        and values at 0 and at every kink of either within that; on an interval: at its ends and
        interior kinks), scale = 1 + the largest |value| at a kink or at 0 or |end slope| of
        either function (``_same_function``).
    slope_change : a kink whose slope change is <= slope_change * (1 + max |slope|) is not a kink.
    objective : same class iff objectives agree within objective * max(1, objective).
    dual_slack : slack of the dual-prune LP rows (rows are normalised so that ||g_k|| = 1).
    merge : sampling only: neurons whose unit directions differ by at most this are merged, and a
        kink within this (relative) of a data point is put on it, before the final solve.
    """

    zero_block: float = 1e-7
    kink: float = 1e-7
    tight: float = 1e-6
    rank: float = 1e-8
    function: float = 1e-5
    slope_change: float = 1e-9
    objective: float = 1e-5
    dual_slack: float = 1e-7
    merge: float = 1e-4

    def __post_init__(self) -> None:
        check_tolerances("EnumTolerances", asdict(self))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


# --------------------------------------------------------------------------- classes


@dataclass(frozen=True, eq=False)
class KKTClass:
    """One KKT class: a function on R with an objective 1/2||theta||^2, and one canonical network.

    ``function_id`` numbers distinct functions in order of discovery, ``class_id`` the classes;
    ``kinks`` are the sorted kinks of the function; ``blocks`` the block set (sorted sample indices)
    the canonical network was solved in; ``certificate`` the certifier's verdict and evidence at
    ``width``;
    ``source`` says which search found it (``"enumerate"`` or a sampling strategy).
    """

    class_id: int
    function_id: int
    support_id: int | None
    objective: float
    clean_error: float
    verdict: str
    n_neurons: int
    kinks: tuple[float, ...]
    network: ReLUNetwork
    blocks: tuple[Block, ...]
    certificate: Certificate
    source: str
    found_after: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON line of the command line: ids, objective, clean error, verdict, network,
        evidence."""
        from .cli import to_jsonable

        c = self.certificate
        return to_jsonable(
            {
                "class_id": self.class_id,
                "function_id": self.function_id,
                "support_id": self.support_id,
                "objective": self.objective,
                "clean_error": self.clean_error,
                "verdict": self.verdict,
                "n_neurons": self.n_neurons,
                "kinks": list(self.kinks),
                "network": self.network.to_dict(),
                "blocks": [asdict(b) for b in self.blocks],
                "stationarity_residual": c.stationarity_residual,
                "min_margin": c.min_margin,
                "relative_gap": c.relative_gap,
                "width": c.width,
                "certificate_notes": list(c.notes),
                "source": self.source,
                "found_after": self.found_after,
            }
        )


@dataclass(frozen=True)
class _FunctionForm:
    """A 1-D piecewise-linear function: kinks, value at each kink, slopes at -inf and +inf, the
    value at 0, and the function itself (``pl``, to evaluate it at another function's kinks)."""

    kinks: np.ndarray
    values: np.ndarray
    slope_left: float
    slope_right: float
    value0: float  # value at x = 0 (pins the function when there is no kink)
    pl: Any = None
    interval: tuple[float, float] | None = None

    @property
    def scale(self) -> float:
        return 1.0 + max(
            float(np.max(np.abs(self.values), initial=0.0)),
            abs(self.value0),
            abs(self.slope_left),
            abs(self.slope_right),
        )


def function_form(
    network: ReLUNetwork, tol: EnumTolerances, interval: tuple[float, float] | None = None
) -> _FunctionForm:
    """Kinks with a real slope change (merged within ``tol.function``), values there, end slopes.

    A 1-D continuous piecewise-linear function is determined by these numbers. With ``interval``
    (a, b) the form describes the function on [a, b] only: kinks inside (a, b) and the values at a,
    at those kinks and at b (the end slopes are then set to 0).
    """
    pl = network.piecewise_linear()
    slopes = pl.slopes
    scale = 1.0 + float(np.max(np.abs(slopes))) if slopes.size else 1.0
    t = pl.kinks
    keep = np.abs(np.diff(slopes)) > tol.slope_change * scale
    t = t[keep]
    if t.size > 1:  # merge kinks closer than the tolerance (two neurons on one kink)
        sep = np.diff(t) > tol.function * (1.0 + np.abs(t[1:]))
        t = t[np.concatenate([[True], sep])]
    if interval is not None:
        a, b = interval
        t = t[(t > a) & (t < b)]
        return _FunctionForm(t, pl(np.concatenate([[a], t, [b]])), 0.0, 0.0, 0.0, pl, interval)
    return _FunctionForm(
        t,
        pl(t) if t.size else np.zeros(0),
        float(slopes[0]),
        float(slopes[-1]),
        float(pl(np.zeros(1))[0]),
        pl,
    )


def _same_function(a: _FunctionForm, b: _FunctionForm, tol: float) -> bool:
    """sup |f_a - f_b| <= tol * scale on R (or on the interval), scale = 1 + the larger of the two
    functions' values at their kinks, at 0 and end slopes.

    f_a - f_b is piecewise linear with kinks among the union of both functions' kinks, so its sup
    on R is finite iff the end slopes agree and is then attained at one of those kinks (or at 0
    when there is none); on [a, b] it is attained at a, b or an interior kink. Comparing values,
    not kink positions, makes a tiny neuron below the certificate's resolution (a kink with a
    negligible slope change) or a kink shifted by such a neuron no reason for a new class.
    """
    scale = max(a.scale, b.scale)
    if a.interval is None:
        if not (
            abs(a.slope_left - b.slope_left) <= tol * scale
            and abs(a.slope_right - b.slope_right) <= tol * scale
            and abs(a.value0 - b.value0) <= tol * scale
        ):
            return False
        pts = np.concatenate([a.kinks, b.kinks])
    else:
        lo, hi = a.interval
        pts = np.concatenate([[lo, hi], a.kinks, b.kinks])
    if not pts.size:
        return True
    return bool(np.max(np.abs(a.pl(pts) - b.pl(pts))) <= tol * scale)


class FunctionRegistry:
    """Assigns ids to networks: ``function_id`` (equal function on R up to ``tol.function``),
    ``class_id`` (same function and objective within ``tol.objective``) and, with an ``interval``,
    ``support_id`` (equal function on that interval: the clean error depends on nothing else).

    Functions are compared with :func:`_same_function` (sup distance), cheap scalars first.
    """

    def __init__(self, tol: EnumTolerances, interval: tuple[float, float] | None = None) -> None:
        self.tol = tol
        self.interval = interval
        self._forms: dict[int, list[tuple[int, _FunctionForm]]] = {}
        self._support_forms: dict[int, list[tuple[int, _FunctionForm]]] = {}
        self._objectives: dict[int, list[tuple[int, float]]] = {}
        self.n_functions = 0
        self.n_support = 0
        self.n_classes = 0

    def _find(self, buckets: dict, form: _FunctionForm, counter: str | None) -> int | None:
        """Id of ``form`` in ``buckets``; registered under a new id if absent, unless ``counter``
        is None (then None)."""
        bucket = buckets.setdefault(0, [])  # one bucket: the kink count is no invariant
        fid = next((i for i, f in bucket if _same_function(f, form, self.tol.function)), None)
        if fid is None and counter is not None:
            fid = getattr(self, counter)
            setattr(self, counter, fid + 1)
            bucket.append((fid, form))
        return fid

    def support_id(self, network: ReLUNetwork) -> int | None:
        """Id of the network's function restricted to ``interval`` (None without an interval)."""
        if self.interval is None:
            return None
        form = function_form(network, self.tol, self.interval)
        return self._find(self._support_forms, form, "n_support")

    def known(
        self, network: ReLUNetwork, objective: float, form: _FunctionForm | None = None
    ) -> bool:
        """Whether (function, objective) is a registered class (nothing is registered).

        ``form``: ``function_form(network, tol)`` if the caller has it already."""
        form = function_form(network, self.tol) if form is None else form
        fid = self._find(self._forms, form, None)
        if fid is None:
            return False
        otol = self.tol.objective * max(1.0, abs(objective))
        return any(abs(o - objective) <= otol for _, o in self._objectives.get(fid, []))

    def lookup(
        self, network: ReLUNetwork, objective: float, form: _FunctionForm | None = None
    ) -> tuple[int, int, bool]:
        """(function_id, class_id, is_new_class); registers the function and class if new.

        ``form``: as in :meth:`known`."""
        form = function_form(network, self.tol) if form is None else form
        fid = self._find(self._forms, form, "n_functions")
        objs = self._objectives.setdefault(fid, [])
        otol = self.tol.objective * max(1.0, abs(objective))
        cid = next((c for c, o in objs if abs(o - objective) <= otol), None)
        if cid is not None:
            return fid, cid, False
        cid = self.n_classes
        self.n_classes += 1
        objs.append((cid, objective))
        return fid, cid, True


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class EnumerationResult:
    """All classes found by an enumeration or a sampling run, and what the search did.

    ``complete`` (exact enumeration only) is True iff every vertex KKT class within ``scope`` was
    visited (module docstring). ``stopped`` is "exhausted", "time_budget", "max_nodes",
    "n_reached", "max_attempts" or "interrupted". ``counters`` counts search nodes, LPs,
    subproblems and why candidates were dropped; ``timings`` the seconds per stage ("conic"
    solves, "purify" LPs, "certify", "dedupe" function comparisons, "propose" incl. GD runs).
    """

    classes: tuple[KKTClass, ...]
    complete: bool
    stopped: str
    seconds: float
    scope: str
    counters: dict[str, int]
    tolerances: EnumTolerances
    cert_tolerances: CertTolerances
    notes: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Number of KKT classes."""
        return len(self.classes)

    @property
    def n_functions(self) -> int:
        """Number of distinct functions (on R) among the classes."""
        return len({c.function_id for c in self.classes})

    @property
    def n_support_functions(self) -> int:
        """Number of distinct functions on the clean-error interval among the classes."""
        return len({c.support_id for c in self.classes})

    def verdict_counts(self) -> dict[str, int]:
        """How many classes have each certificate verdict."""
        out: dict[str, int] = {}
        for c in self.classes:
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out

    def summary(self) -> dict[str, Any]:
        """The summary line of the command line (no classes)."""
        from .cli import to_jsonable

        errs = [c.clean_error for c in self.classes]
        return to_jsonable(
            {
                "summary": True,
                "complete": self.complete,
                "count": self.count,
                "n_functions": self.n_functions,
                "n_support_functions": self.n_support_functions,
                "seconds": self.seconds,
                "stopped": self.stopped,
                "scope": self.scope,
                "verdicts": self.verdict_counts(),
                "clean_error_range": [min(errs), max(errs)] if errs else None,
                "counters": self.counters,
                "timings": self.timings,
                "tolerances": self.tolerances.to_dict(),
                "cert_tolerances": self.cert_tolerances.to_dict(),
                "notes": list(self.notes),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        d = self.summary()
        d["classes"] = [c.to_dict() for c in self.classes]
        return d


class KKTStream:
    """An iterator over new KKT classes as they are found; :attr:`result` summarises what was seen.

    Iterate it to stream (Ctrl-C keeps everything yielded so far), or call :meth:`collect`.
    """

    def __init__(self, runner: Callable[[_Search], Iterator[KKTClass]], search: _Search) -> None:
        self._search = search
        self._it = runner(search)

    def __iter__(self) -> KKTStream:
        return self

    def __next__(self) -> KKTClass:
        try:
            cls = next(self._it)
        except KeyboardInterrupt:
            self._search.stopped = "interrupted"
            self._search.finish()
            raise
        return cls

    @property
    def result(self) -> EnumerationResult:
        """Everything found so far (``complete`` only once the search has run to the end)."""
        return self._search.result()

    def collect(self) -> EnumerationResult:
        """Run the search to the end and return the :class:`EnumerationResult`."""
        for _ in self:
            pass
        return self.result


# --------------------------------------------------------------------------- fast certificate


@dataclass(frozen=True)
class _GlobalBound:
    """A certified lower bound on min (P) (from ``global_solver.solve_global``) and its max rho."""

    lower_bound: float
    max_rho: float
    # objective of a feasible network (the global optimum's, scaled to margin >= 1): min (P) <= it
    upper_bound: float | None = None


# a failed cell's NNLS residual must exceed tol.stationarity by this relative margin before the
# fast certificate relies on certify failing it too (rounding of both least-squares solutions)
_FAIL_MARGIN = 1e-6


def fast_certificate(
    network: ReLUNetwork,
    dataset: Dataset,
    tol: CertTolerances,
    bound: Any = None,
    width: int | None = None,
    max_cells_log2: int = 6,
) -> Certificate | str | None:
    """A 1-D KKT certificate by non-negative least squares, for candidates of the samplers.

    Stationarity: the multipliers minimise the residual exactly,

        min ||theta - sum_{i active} lambda_i h_i - sum_{(i, j) kink pairs} mu_ij g_ij||_2
        s.t. lambda >= 0, 0 <= mu_ij <= lambda_i,

    h_i the gradient of y_i N(x_i) with the kinks on data points switched off and
    g_ij = y_i v_j x~_i in the (w_j, b_j) coordinates (MATH.md section 2). Writing
    lambda_i = mu_ij + nu_i (mu, nu >= 0) makes this a non-negative least squares problem
    (``scipy.optimize.nnls``, an exact active-set method): its residual is the smallest any
    multipliers achieve, so above ``tol.stationarity`` the point is not KKT (``"not_kkt"``).
    Active points, kink pairs and the zero-neuron rule come from the function
    :func:`kktsolver.certify.certify` uses (:func:`kktsolver.certify.kkt_support`), with the same
    :class:`CertTolerances`.

    Verdict (MATH.md F4), without spare neurons only:

    * ``global_min`` if (1/2||theta||^2 - LB) / (1/2||theta||^2) <= ``tol.gap``, LB =
      ``bound.lower_bound``, a certified lower bound on min (P) (``bound``: any object with
      ``lower_bound`` and ``max_rho``, e.g. a ``global_solver.GlobalResult``; it holds for every
      network);
    * ``local_min`` if no pinned pair with sigma = s_j y_i = +1 sits on an active point: the Clarke
      box [0, lambda_i] then lies in both adjacent cells' sign conditions, so the point is optimal
      in every adjacent cell (the argument of ``certify``); or if there are at most
      2^``max_cells_log2`` combinations of the adjacent cells of those pairs and each cell's KKT
      system (pair in cell "exclude": mu <= 0; "include": mu >= lambda_i) has residual
      <= ``tol.stationarity``, again by NNLS;
    * ``kkt_undecided`` if there are more than 2^``tol.max_cells_log2`` such combinations and
      (1/2||theta||^2 - U) / (1/2||theta||^2) > ``tol.gap``, U = ``bound.upper_bound`` (optional:
      the objective of a feasible network, so U >= min (P) >= every valid lower bound): exactly
      what :func:`kktsolver.certify.certify` returns then (same pairs, same cap, and no lower bound
      it computes can bring the gap under ``tol.gap``), without its bound LPs and cvxpy solves;
      likewise when one of the <= 2^``max_cells_log2`` reduced cells above fails (NNLS residual
      above ``tol.stationarity``), not every kink pair has sigma = +1 on an active point, and the
      kink pairs number more than ``tol.max_cells_log2`` (``certify`` then stops undecided).

    Several kinks on one active point are handled through orderings (``best`` below). Returns None
    when it cannot decide (spare neurons, more than 64 orderings or 2^``max_cells_log2`` cells, a
    failed cell: the caller runs the full :func:`certify`), ``"infeasible"`` or
    ``"not_kkt"`` for rejected points, else a :class:`Certificate` whose ``notes`` name this method.
    """
    from scipy.optimize import nnls

    t0 = time.perf_counter()
    X, y = dataset.X, dataset.y.astype(float)
    m, net = dataset.m, network
    sup = kkt_support(net, dataset, tol)  # certify's rules: zero neurons, active points, kinks
    Z, margins, min_margin = sup.Z, sup.margins, sup.min_margin
    if min_margin < 1.0 - tol.feasibility:
        return "infeasible"
    norms = net.neuron_norms()
    theta, norm_theta = net.theta, sup.norm_theta  # 1-D: theta = (v, w, b)
    nnz = sup.nonzero_neurons
    if (net.n if width is None else width) != nnz:
        return None  # spare neurons: the full certificate decides (MATH.md F4)
    on = np.zeros(Z.shape, dtype=bool)  # certify's kink pairs, also those on inactive points
    on[tuple(sup.pairs.T)] = True
    active = sup.active
    n, na = net.n, active.size
    ind = (Z > 0) & ~on  # activation indicator; kinks on data points go through mu
    ya = y[active]
    H = np.concatenate(  # column i: v-part y_i relu(z_ij), (w_j, b_j)-part y_i v_j [z_ij > 0] x~_i
        [
            (ya[:, None] * np.maximum(Z[active], 0.0)).T,
            (ya[:, None] * ind[active] * net.v[None, :] * X[active, 0][:, None]).T,
            (ya[:, None] * ind[active] * net.v[None, :]).T,
        ]
    )
    pos = {int(i): c for c, i in enumerate(active)}
    pairs = [(int(i), int(j)) for i, j in np.argwhere(on) if int(i) in pos]
    G = np.zeros((3 * n, len(pairs)))
    for p, (i, j) in enumerate(pairs):
        G[n + j, p], G[2 * n + j, p] = y[i] * net.v[j] * X[i, 0], y[i] * net.v[j]
    sigma = np.array([np.sign(net.v[j]) * y[i] for i, j in pairs])
    at: dict[int, list[int]] = {}  # active point -> its pairs
    for p, (i, _) in enumerate(pairs):
        at.setdefault(i, []).append(p)

    def best(modes: list[int]) -> tuple[float, np.ndarray] | None:
        """Least residual with each pair's mode (0 Clarke, 1 exclude, 2 include) and its solution
        (lambda on the active points, then mu per pair); None if too many orderings.

        Clarke pairs of one point i in the order pi: lambda_i = t_1 + ... + t_{k+1} and
        mu_{pi(r)} = t_1 + ... + t_r with t >= 0, so 0 <= mu_{pi(1)} <= ... <= mu_{pi(k)} <=
        lambda_i; the orderings together cover the box [0, lambda_i]^k, so the least residual over
        them is the exact minimum. Exclude: sigma mu <= 0, mu = -sigma t. Include:
        sigma (mu - lambda_i) >= 0, mu = lambda_i + sigma t (every column of lambda_i gets g).
        """
        multi = [(i, [p for p in ps if modes[p] == 0]) for i, ps in at.items()]
        multi = [(i, ps) for i, ps in multi if len(ps) > 1]
        if np.prod([math.factorial(len(ps)) for _, ps in multi]) > 64:
            return None
        out: tuple[float, np.ndarray] | None = None
        for perms in itertools.product(*(itertools.permutations(ps) for _, ps in multi)):
            order = {i: list(pp) for (i, _), pp in zip(multi, perms, strict=True)}
            cols, rec = [], []  # rec: (kind, point column, pair indices)
            for c, i in enumerate(active):
                ps = at.get(int(i), [])
                incl = sum((G[:, p] for p in ps if modes[p] == 2), np.zeros(3 * n))
                chain = order.get(int(i), [p for p in ps if modes[p] == 0])
                for r in range(len(chain) + 1):  # t_{r+1}: h_i + g of the pairs from r on
                    g = sum((G[:, p] for p in chain[r:]), np.zeros(3 * n))
                    cols.append(H[:, c] + g + incl)
                    rec.append(("t", c, chain[r:]))
                for p in ps:
                    if modes[p]:
                        cols.append((-sigma[p] if modes[p] == 1 else sigma[p]) * G[:, p])
                        rec.append(("x", c, [p]))
            sol, res = nnls(np.column_stack(cols), theta, maxiter=50 * len(cols))
            if out is not None and res / norm_theta >= out[0]:
                continue
            lam, mu = np.zeros(na), np.zeros(len(pairs))
            for (kind, c, ps), t in zip(rec, sol, strict=True):
                if kind == "t":
                    lam[c] += t
                    mu[ps] += t
                else:
                    mu[ps] += (-sigma[ps[0]] if modes[ps[0]] == 1 else sigma[ps[0]]) * t
            for p, (i, _) in enumerate(pairs):
                if modes[p] == 2:
                    mu[p] += lam[pos[i]]
            out = (float(res) / norm_theta, np.concatenate([lam, mu]))
        return out

    got = best([0] * len(pairs))
    if got is None:
        return None
    stat, sol = got
    if not stat <= tol.stationarity:
        return "not_kkt"
    lam = np.zeros(m)
    lam[active] = sol[:na]
    mus = [(i, j, float(mu)) for (i, j), mu in zip(pairs, sol[na:], strict=True)]
    objective = net.objective()
    rel_gap = lower = max_rho = None
    upper = None
    if bound is not None:
        lower, max_rho = float(bound.lower_bound), float(bound.max_rho)
        rel_gap = (objective - lower) / objective
        upper = getattr(bound, "upper_bound", None)
    # every valid lower bound LB <= min (P) <= upper, so (objective - LB) / objective > gap
    not_global = upper is not None and (objective - upper) / objective > tol.gap
    notes = ["fast 1-D certificate (enumeration.fast_certificate): exact NNLS multipliers"]
    plus = [p for p in range(len(pairs)) if sigma[p] > 0]
    if rel_gap is not None and rel_gap <= tol.gap:
        verdict = "global_min"
        notes.append("lower bound and max_rho: the certified global optimum's (solve_global)")
    elif not plus:
        verdict = "local_min"
        notes.append("local_min: no spare neuron, the Clarke box lies in every adjacent cell")
    elif len(plus) > tol.max_cells_log2:
        if not not_global:
            return None
        # certify returns exactly this (its _local_analysis, same pairs, sigma and cap) once it
        # has found the point stationary and not global; the NNLS residual is the least any
        # multipliers achieve, and not_global holds for every lower bound certify could find
        verdict = "kkt_undecided"
        notes.append(
            f"local minimality undecided: {len(plus)} pinned kinks to combine exceed "
            f"2^{tol.max_cells_log2} adjacent cells (as certify); not global: (objective - U) / "
            f"objective > gap, U = {upper:.10g} the global optimum's objective"
        )
    elif len(plus) <= max_cells_log2:
        n_all = int(on.sum())  # certify's kink pairs, also those on inactive points
        failed = None
        for choice in itertools.product((1, 2), repeat=len(plus)):
            modes = [0] * len(pairs)
            for p, c in zip(plus, choice, strict=True):
                modes[p] = c
            cell = best(modes)
            if cell is None:
                return None
            if not cell[0] <= tol.stationarity:
                failed = cell[0]
                break
        if failed is None:
            verdict = "local_min"
            notes.append(
                f"local_min: no spare neuron; all {2 ** len(plus)} adjacent cells of the "
                f"{len(plus)} pinned kinks with sigma = +1 are stationary (NNLS)"
            )
        elif (
            failed > tol.stationarity * (1.0 + _FAIL_MARGIN)
            and not_global
            and n_all > max(tol.max_cells_log2, len(plus))
        ):
            # certify's _local_analysis: the reduced cell fails for it too (its multipliers are
            # feasible for the cell, so its residual is >= the NNLS minimum), the failing cell is
            # not a full one (pairs with sigma = -1 or on inactive points remain), and the full
            # cells are not combined beyond 2^max_cells_log2: it returns kkt_undecided
            verdict = "kkt_undecided"
            notes.append(
                f"local minimality undecided: an adjacent cell of the {len(plus)} pinned kinks "
                f"with sigma = +1 fails (NNLS residual {failed:.3g}) and its {n_all} kink pairs "
                f"exceed 2^{tol.max_cells_log2} full cells to combine (as certify); "
                f"not global: (objective - U) / objective > gap, U = {upper:.10g} the global "
                "optimum's objective"
            )
        else:
            return None  # the full certificate looks for a witness in the full cells
    else:
        return None
    lam_sum = float(lam.sum())
    return Certificate(
        verdict=verdict,
        multipliers=lam,
        mu=mus,
        stationarity_residual=stat,
        min_margin=min_margin,
        complementary_slackness=float(lam @ np.abs(margins - 1.0) / lam_sum) if lam_sum else None,
        balance_residual=float(np.max(np.abs(np.abs(net.v) - norms)) / norm_theta),
        euler_residual=abs(objective - lam_sum) / objective,
        lyu_li_eps=stat * norm_theta,
        lyu_li_delta=float(lam @ (margins - 1.0)),
        objective=objective,
        lower_bound=lower,
        relative_gap=rel_gap,
        max_rho=max_rho,
        width=n if width is None else width,
        nonzero_neurons=nnz,
        pinned_kinks=int(on.sum()),
        witness=None,
        tolerances=tol,
        exact=None,
        notes=notes,
        seconds=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- shared machinery


class _Search:
    """State shared by the enumeration and the samplers: dataset, tolerances, registry, counters."""

    def __init__(
        self,
        dataset: Dataset,
        width: int | None,
        tol: EnumTolerances,
        cert_tol: CertTolerances,
        time_budget: float | None,
        interval: tuple[float, float] | None,
        scope: str,
    ) -> None:
        self.dataset = dataset
        self.sample = SortedSample.from_dataset(dataset)
        self.width = width
        self.tol = tol
        self.cert_tol = cert_tol
        self.t0 = time.perf_counter()
        self.deadline = None if time_budget is None else self.t0 + float(time_budget)
        self.interval = interval_or_support(interval, dataset)
        self.registry = FunctionRegistry(tol, tuple(float(t) for t in self.interval))
        self.classes: list[KKTClass] = []
        self.counters: dict[str, int] = {
            "nodes": 0,
            "lps": 0,
            "subproblems": 0,
            "infeasible": 0,
            "solver_failed": 0,
            "zero_block": 0,
            "noncanonical": 0,
            "faces": 0,
            "certified": 0,
            "rejected_by_certificate": 0,
            "undecided_by_certificate": 0,
            "duplicates": 0,
        }
        self.scope = scope
        self.stopped = "exhausted"
        self.complete_if_exhausted = False
        self.notes: list[str] = []
        self.seconds: float | None = None
        self.global_blocks: list[Block] | None = None
        self._global: Any = None  # GlobalResult, or False when solve_global failed
        self.proposed: set[tuple[Block, ...]] = set()  # block sets already solved by a sampler
        self.timings: dict[str, float] = {}  # wall time per stage (``timed``)

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Adds the wall time of the block to ``timings[stage]`` (seconds)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def finish(self) -> None:
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.t0

    def result(self) -> EnumerationResult:
        secs = self.seconds if self.seconds is not None else time.perf_counter() - self.t0
        complete = (
            self.complete_if_exhausted
            and self.stopped == "exhausted"
            and self.counters["solver_failed"] == 0
            and self.counters["undecided_by_certificate"] == 0
            and self.seconds is not None
        )
        return EnumerationResult(
            tuple(self.classes),
            bool(complete),
            self.stopped,
            secs,
            self.scope,
            dict(self.counters),
            self.tol,
            self.cert_tol,
            tuple(self.notes),
            dict(self.timings),
        )

    # ------------------------------------------------------------------ one candidate block set
    def solve_blocks(self, blocks: Sequence[Block]):
        """Solve (C_B); None (with a counter) when infeasible or failed."""
        self.counters["subproblems"] += 1
        with self.timed("conic"):
            res = ConvexSubproblem(self.sample, list(blocks)).solve(**SOLVER_OPTIONS)
        if res.status == "infeasible":
            self.counters["infeasible"] += 1
            return None
        if not res.has_solution:
            self.counters["solver_failed"] += 1
            return None
        return res

    def vertex_candidate(self, blocks: Sequence[Block]) -> tuple[ReLUNetwork, np.ndarray] | None:
        """Exact-enumeration test of one block set: nonzero, canonical, unique optimum (module
        docstring)."""
        res = self.solve_blocks(blocks)
        if res is None:
            return None
        U = np.asarray(res.U)
        norms = np.linalg.norm(U, axis=1)
        if np.any(norms <= self.tol.zero_block * norms.sum()):
            self.counters["zero_block"] += 1
            return None
        net = network_from_blocks(list(blocks), U)
        for k, blk in enumerate(blocks):
            own = block_of_neuron(net.W[k, 0], net.b[k], net.v[k], self.sample, self.tol.kink)
            if own != blk:
                self.counters["noncanonical"] += 1
                return None
        if not self._unique(list(blocks), U, np.asarray(res.multipliers)):
            self.counters["faces"] += 1
            return None
        return self.polished(blocks, net), U

    def retry_tight(self, blocks: Sequence[Block]) -> KKTClass | None:
        """Re-solve a certificate-rejected vertex candidate at TIGHT_SOLVER_OPTIONS, certify again.

        Measured (m = 6): a vertex optimum whose polish failed had stationarity residual 1e-4 at the
        default settings and 2e-9 at these; a genuinely non-stationary one stayed at 1e-4.
        """
        self.counters["tight_retries"] = self.counters.get("tight_retries", 0) + 1
        res = ConvexSubproblem(self.sample, list(blocks)).solve(**TIGHT_SOLVER_OPTIONS)
        if not res.has_solution:
            return None
        net = network_from_blocks(list(blocks), np.asarray(res.U))
        self.counters["rejected_by_certificate"] -= 1  # counted again below if it fails again
        return self.accept(net, blocks, "enumerate", fast=True)

    def polished(self, blocks: Sequence[Block], net: ReLUNetwork) -> ReLUNetwork:
        """Newton-polished optimum of (C_B) (``gd.solve_cell``, MATH.md section 5), else ``net``.

        An interior-point optimum has its directions right to about sqrt(solver tolerance) only; the
        polish makes equal functions found from different block sets compare equal at tight
        tolerances.
        """
        try:
            cell = solve_cell(self.sample, list(blocks))
        except SolverError:
            return net
        if not cell.polished or cell.network.n != net.n:
            return net
        self.counters["polished"] = self.counters.get("polished", 0) + 1
        return cell.network

    def _unique(self, blocks: list[Block], U: np.ndarray, lam: np.ndarray | None = None) -> bool:
        """Rank test of the module docstring on the tight margin rows."""
        s = self.sample
        marg = margins_of(blocks, s, U)
        tight = marg <= 1.0 + self.tol.tight
        E = U / np.linalg.norm(U, axis=1, keepdims=True)
        M = np.zeros((int(tight.sum()), len(blocks)))
        rows = np.flatnonzero(tight)
        for k, blk in enumerate(blocks):
            act = np.zeros(s.m, dtype=bool)
            act[blk.active(s.m)] = True
            M[:, k] = np.where(act[rows], s.y[rows] * blk.sign * (s.xt[rows] @ E[k]), 0.0)
        if M.shape[0] < M.shape[1]:
            return False
        sv = np.linalg.svd(M, compute_uv=False)
        return bool(sv[-1] > self.tol.rank * sv[0])

    def global_bound(self) -> _GlobalBound | None:
        """The certified lower bound of ``global_solver.solve_global`` (computed once; None if it
        failed or is not certified optimal)."""
        if self._global is None:
            _global_network(self)
        g = self._global
        if g is None or g is False or g.status != "optimal":
            return None
        mm = float(g.min_margin)
        upper = float(g.objective) * max(1.0, 1.0 / mm) if mm > 0 else None
        return _GlobalBound(float(g.lower_bound), float(g.max_rho), upper)

    def accept(
        self,
        net: ReLUNetwork,
        blocks: Sequence[Block],
        source: str,
        fast: bool = False,
        cert: Any = _UNSET,
    ) -> KKTClass | None:
        """Restore feasibility, drop known classes, certify, and register; the new class, or None
        (rejected or duplicate).

        With ``fast`` the candidate first gets :func:`fast_certificate` (exact NNLS multipliers, no
        solver): a point it proves non-stationary is rejected, a verdict it decides is kept, and
        only the rest (pinned kinks that are not global, spare neurons) go to :func:`certify`.
        Known classes are recognised before any certification, so duplicates cost no certificate.
        ``cert``: the :func:`fast_certificate` result already computed for ``net`` (feasible).
        """
        ds = self.dataset
        # margin below 1: scaled up onto the feasible set; already feasible: kept as it is
        scaled = rescaled(net, ds, shrink=False)
        if scaled is None:
            self.counters["rejected_by_certificate"] += 1
            return None
        net = scaled
        obj = net.objective()
        if fast:
            if cert is _UNSET:
                with self.timed("certify"):
                    cert = fast_certificate(net, ds, self.cert_tol, self.global_bound(), self.width)
            if isinstance(cert, str):
                self.counters["rejected_by_certificate"] += 1
                return None
        else:
            cert = None
        with self.timed("dedupe"):
            form = function_form(net, self.tol)  # one form for dedupe, registration and kinks
            known = self.registry.known(net, obj, form)
        if known:
            self.counters["duplicates"] += 1
            return None
        if cert is None:
            with self.timed("certify"):
                cert = certify(net, ds, width=self.width, tol=self.cert_tol)
            self.counters["full_certificates"] = self.counters.get("full_certificates", 0) + 1
        else:
            self.counters["fast_certificates"] = self.counters.get("fast_certificates", 0) + 1
        interval_only = any("by the certified interval alone" in n for n in cert.notes)
        if cert.verdict not in KKT_VERDICTS or interval_only:
            # certify calls a near-optimal point global_min from its objective gap even when it is
            # not stationary; such a point is not a KKT point and is not reported. An "undecided"
            # one (the multiplier search failed) might be: the enumeration is then not complete
            self.counters["rejected_by_certificate"] += 1
            self.counters["undecided_by_certificate"] += cert.verdict == "undecided"
            return None
        self.counters["certified"] += 1
        fid, cid, new = self.registry.lookup(net, obj, form)
        cls = KKTClass(
            class_id=cid,
            function_id=fid,
            support_id=self.registry.support_id(net),
            objective=obj,
            clean_error=clean_error(net, self.interval),
            verdict=cert.verdict,
            n_neurons=net.n,
            kinks=tuple(float(t) for t in form.kinks),
            network=net,
            blocks=tuple(blocks),
            certificate=cert,
            source=source,
            found_after=time.perf_counter() - self.t0,
        )
        self.classes.append(cls)
        return cls


# --------------------------------------------------------------------------- dual prune


class _DualPrune:
    """Feasibility of the relaxed dual conditions (module docstring, 3e) for a growing block set.

    A persistent HiGHS model over lambda >= 0 holds the rows of every block; a block's rows are
    switched on and off through their bounds, so each test is a warm-started dual simplex solve.
    """

    def __init__(self, sample: SortedSample, blocks: list[Block], slack: float) -> None:
        import highspy

        self.hs = highspy
        m, xt, y = sample.m, sample.xt, sample.y
        self.inf = highspy.kHighsInf
        h = _silent_highs(highspy)
        h.addVars(m, np.zeros(m), np.full(m, self.inf))
        G1, R2, pinned = cone_rows(blocks, sample)
        E1, E2 = block_directions(blocks, sample)
        self.rows: list[list[tuple[np.ndarray, float, float]]] = []
        self.ids: list[list[int]] = []
        nrow = 0
        for k, blk in enumerate(blocks):
            act = np.zeros(m)
            act[blk.active(m)] = 1.0
            s = float(blk.sign)

            def L(c: np.ndarray, act=act) -> np.ndarray:  # <c, g_k(lambda)> as a row over lambda
                return act * y * (xt @ c)

            rows: list[tuple[np.ndarray, float, float]] = []
            if pinned[k]:
                p = blk.pinned_index()
                xp = xt[p]
                rows.append((s * L(E1[k]), 1.0 - slack, 1.0 + slack))  # <s g_k, e_k> = 1
                c = -y[p] * L(xp)  # mu_p ||x~_p||^2 >= 0
                rows.append((c, -slack, self.inf))
                d = -c
                d[p] += float(xp @ xp)  # (lambda_p - mu_p) ||x~_p||^2 >= 0
                rows.append((d, -slack, self.inf))
            else:
                rows.append((s * L(G1[k]), -slack, self.inf))
                rows.append((s * L(R2[k]), -slack, self.inf))
                if np.all(np.isfinite(E1[k])):
                    bis = E1[k] + E2[k]
                    bis /= np.linalg.norm(bis)
                    rows.append(
                        (s * L(bis), float(E1[k] @ bis) - slack, self.inf)
                    )  # beyond the chord
                    for t in (0.0, 0.25, 0.5, 0.75, 1.0):  # inside the tangent polygon
                        d = (1 - t) * E1[k] + t * E2[k]
                        d /= np.linalg.norm(d)
                        rows.append((s * L(d), -self.inf, 1.0 + slack))
            ids = []
            for coef, _, _ in rows:
                nz = np.flatnonzero(coef).astype(np.int32)
                h.addRow(-self.inf, self.inf, nz.size, nz, coef[nz])
                ids.append(nrow)
                nrow += 1
            self.rows.append(rows)
            self.ids.append(ids)
        self.h = h
        self.n_lp = 0

    def holds(self, k: int, lam: np.ndarray | None) -> bool:
        """Whether the rows of block k hold at lam (then no LP is needed)."""
        if lam is None:
            return False
        return all(lo <= coef @ lam <= hi for coef, lo, hi in self.rows[k])

    def switch(self, k: int, on: bool) -> None:
        for rid, (_, lo, hi) in zip(self.ids[k], self.rows[k], strict=True):
            if on:
                self.h.changeRowBounds(rid, lo, hi)
            else:
                self.h.changeRowBounds(rid, -self.inf, self.inf)

    def solve(self) -> np.ndarray | None:
        """A feasible lambda for the rows switched on, or None if the LP is infeasible."""
        self.n_lp += 1
        self.h.run()
        if self.h.getModelStatus() != self.hs.HighsModelStatus.kOptimal:
            return None
        return np.asarray(self.h.getSolution().col_value, dtype=float)


def _silent_highs(highspy: Any):
    """A HiGHS instance with output off; its one-time banner (C++ stdout) would corrupt JSON
    lines."""
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
            h.setOptionValue("output_flag", False)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    return h


def _conflicts(blocks: list[Block], m: int) -> np.ndarray:
    """Pairs excluded by conditions (c) and (d) of the module docstring, as a boolean matrix."""
    K = len(blocks)
    index = {b: k for k, b in enumerate(blocks)}
    C = np.zeros((K, K), dtype=bool)
    for k, b in enumerate(blocks):
        other = Block(b.direction, b.gap, -b.sign, b.pinned)
        if other in index:
            C[k, index[other]] = True
        if b.pinned:
            continue
        if b.direction == "all":
            edges = [Block("right", 1, b.sign, True), Block("left", m - 1, b.sign, True)]
        elif b.direction == "right":
            edges = [Block("right", b.gap, b.sign, True), Block("right", b.gap + 1, b.sign, True)]
        else:
            edges = [Block("left", b.gap, b.sign, True), Block("left", b.gap - 1, b.sign, True)]
        for e in edges:
            if e in index:
                C[k, index[e]] = C[index[e], k] = True
    return C


class _PrimalFeasibility:
    """Feasibility of (C_B) as an LP (the cones are polyhedral in 1-D), for a growing block set.

    A persistent HiGHS model over u_k in R^2 for every block: the margin rows
    y_i sum_k s_k [i in A_k] <u_k, x~_i> >= 1 and each block's cone rows (MATH.md section 3); a
    block is switched off by fixing its u_k to 0 (its cone rows then hold trivially). Measured at
    m = 6: about 90% of the covering candidate sets are infeasible, and this dual-simplex test
    replaces their interior-point solve.
    """

    def __init__(self, sample: SortedSample, blocks: list[Block]) -> None:
        import highspy

        self.hs = highspy
        m, K = sample.m, len(blocks)
        inf = highspy.kHighsInf
        h = _silent_highs(highspy)
        h.addVars(2 * K, np.zeros(2 * K), np.zeros(2 * K))  # all blocks off (u_k = 0)
        G1, R2, pinned = cone_rows(blocks, sample)
        M = np.zeros((m, 2 * K))
        for k, blk in enumerate(blocks):
            sl = blk.active(m)
            M[sl, 2 * k : 2 * k + 2] = (sample.y[sl] * blk.sign)[:, None] * sample.xt[sl]
        for i in range(m):
            nz = np.flatnonzero(M[i]).astype(np.int32)
            h.addRow(1.0, inf, nz.size, nz, M[i, nz])
        for k in range(K):
            idx = np.array([2 * k, 2 * k + 1], dtype=np.int32)
            h.addRow(0.0, inf, 2, idx, G1[k])
            h.addRow(0.0, 0.0 if pinned[k] else inf, 2, idx, R2[k])
        self.h, self.inf, self.n_lp = h, inf, 0

    def switch(self, k: int, on: bool) -> None:
        b = self.inf if on else 0.0
        for c in (2 * k, 2 * k + 1):
            self.h.changeColBounds(c, -b, b)

    def feasible(self) -> bool:
        """Whether the blocks switched on admit a feasible (C_B)."""
        self.n_lp += 1
        self.h.run()
        return self.h.getModelStatus() == self.hs.HighsModelStatus.kOptimal


def _dual_pair_conflicts(dual: _DualPrune, conflicts: np.ndarray) -> np.ndarray:
    """Pairs {a, b} whose dual-prune LP (module docstring, 3e) is infeasible on its own.

    Rows only accumulate along the search, so a set containing such a pair is infeasible too:
    marking the pair as a conflict removes it without an LP at every node where it would arise
    (K^2 / 2 LPs once instead of one per node; measured at m = 6 it halves the node LPs).
    """
    K = conflicts.shape[0]
    out = np.zeros_like(conflicts)
    alone = np.zeros(K, dtype=bool)  # a single block whose rows are infeasible
    for a in range(K):
        dual.switch(a, True)
        alone[a] = dual.solve() is None
        dual.switch(a, False)
    out[alone, :] = out[:, alone] = True  # (the first level of the search still tests it alone)
    for a in range(K):
        if alone[a]:
            continue
        dual.switch(a, True)
        lam_a = dual.solve()
        for b in range(a + 1, K):
            if conflicts[a, b] or alone[b] or dual.holds(b, lam_a):
                continue
            dual.switch(b, True)
            if dual.solve() is None:
                out[a, b] = out[b, a] = True
            dual.switch(b, False)
        dual.switch(a, False)
    return out


def _own_sign_blocks(sample: SortedSample, include_pinned: bool) -> list[Block]:
    """Blocks whose active set contains a point labelled with the block's sign (condition (b))."""
    m, y = sample.m, sample.y
    out = []
    for b in all_blocks(m, pinned=include_pinned and m >= 2):
        if np.any(y[b.active(m)] == b.sign):
            out.append(b)
    return out


def _new_search(
    dataset: Dataset,
    width: int | None,
    tol: EnumTolerances | None,
    cert_tol: CertTolerances | None,
    time_budget: float | None,
    interval: tuple[float, float] | None,
    scope: str,
) -> _Search:
    """The search state with the default tolerances of enumeration and sampling."""
    if time_budget is not None and not (np.isfinite(time_budget) and time_budget > 0):
        raise InputError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
    if tol is None:  # sampled optima on an optimal face are not polished: directions right to ~1e-5
        tol = EnumTolerances(function=1e-4)
    if cert_tol is None and dataset.m > POLISH_MAX_M:
        # unpolished interior-point optima (Clarabel at 1e-10) have stationarity residuals ~1e-5
        cert_tol = CertTolerances(stationarity=SAMPLE_STATIONARITY)
    return _Search(dataset, width, tol, cert_tol or CertTolerances(), time_budget, interval, scope)


def _check_dataset(dataset: Any) -> Dataset:
    return require_instance(
        dataset, Dataset, "dataset", d=1, why="KKT enumeration works in dimension one"
    )


def _progress_bar(total: int | None, desc: str, enabled: bool):
    import sys

    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        disable=not enabled or not sys.stderr.isatty(),
        file=sys.stderr,
        leave=False,
    )


# --------------------------------------------------------------------------- exact enumeration


def enumerate_kkt(
    dataset: Dataset,
    max_neurons: int | None = None,
    include_pinned: bool = True,
    time_budget: float | None = None,
    progress: bool = True,
    *,
    width: int | None = None,
    tol: EnumTolerances | None = None,
    cert_tol: CertTolerances | None = None,
    interval: tuple[float, float] | None = None,
    max_nodes: int | None = None,
) -> KKTStream:
    """Every vertex KKT class of (P) on a 1-D dataset, streamed as found (module docstring).

    Parameters
    ----------
    dataset : Dataset (d = 1)
    max_neurons : int, optional
        Only block sets of at most this many blocks (default m: enough, |B| <= m at a vertex).
    include_pinned : bool
        Include blocks with a kink on a data point (MATH.md F3). False makes the result incomplete.
    time_budget : float, optional
        Seconds; the search stops after it (``complete=False``, ``stopped="time_budget"``).
    progress : bool
        tqdm bar on stderr over the first block of the search.
    width : int, optional
        Width passed to :func:`certify` for the local/global verdict (default: each network's own).
    tol, cert_tol : tolerances of the enumeration and of the certificates.
    interval : (a, b), optional
        Interval of the clean error (default: the dataset's support, else [0, 1]).
    max_nodes : int, optional
        Stop after this many search nodes (``stopped="max_nodes"``, incomplete): a reproducible
        effort limit, unlike ``time_budget``.

    Returns
    -------
    KKTStream
        Iterate for :class:`KKTClass` objects; ``.collect()`` / ``.result`` give the
        :class:`EnumerationResult` with ``complete``.
    """
    dataset = _check_dataset(dataset)
    m = dataset.m
    kmax = m if max_neurons is None else min(m, positive_int(max_neurons, "max_neurons"))
    if max_nodes is not None:
        check_int_range("enumerate_kkt", "max_nodes", max_nodes, 1)
    scope = f"vertex KKT classes with at most {kmax} neurons" + (
        "" if include_pinned else ", no pinned kinks"
    )
    search = _new_search(dataset, width, tol, cert_tol, time_budget, interval, scope)
    search.complete_if_exhausted = bool(include_pinned)
    if not include_pinned:
        search.notes.append(
            "include_pinned=False: KKT points with a kink on a data point are missed (MATH.md F3)"
        )

    def run(search: _Search) -> Iterator[KKTClass]:
        yield from _dfs(search, include_pinned, kmax, progress, max_nodes)

    return KKTStream(run, search)


def _dfs(
    search: _Search, include_pinned: bool, kmax: int, progress: bool, max_nodes: int | None = None
) -> Iterator[KKTClass]:
    s, m = search.sample, search.sample.m
    blocks = _own_sign_blocks(s, include_pinned)
    K = len(blocks)
    conflicts = _conflicts(blocks, m)
    cover = np.zeros((K, m), dtype=bool)  # points covered by a block of their own label
    for k, b in enumerate(blocks):
        cover[k, b.active(m)] = s.y[b.active(m)] == b.sign
    suffix = np.zeros((K + 1, m), dtype=bool)
    for k in range(K - 1, -1, -1):
        suffix[k] = suffix[k + 1] | cover[k]
    dual = _DualPrune(s, blocks, search.tol.dual_slack)
    conflicts |= _dual_pair_conflicts(dual, conflicts)
    primal = _PrimalFeasibility(s, blocks)
    bar = _progress_bar(K, "enumerate", progress)

    def rec(
        chosen: list[int], covered: np.ndarray, lam: np.ndarray | None, start: int, feas: bool
    ) -> Iterator[KKTClass]:
        for j in range(start, K):
            if search.out_of_time():
                search.stopped = "time_budget"
                return
            if max_nodes is not None and search.counters["nodes"] >= max_nodes:
                search.stopped = "max_nodes"
                return
            if not chosen:
                bar.update(1)
            if conflicts[j, chosen].any():
                continue
            cov = covered | cover[j]
            dual.switch(j, True)
            primal.switch(j, True)
            try:
                lam_j = lam if dual.holds(j, lam) else dual.solve()
                if lam_j is None:
                    continue
                search.counters["nodes"] += 1
                now = chosen + [j]
                # (C_B) feasible => (C_B') feasible for B' containing B (new blocks at u = 0), so
                # the primal LP is needed only until one set on the path is feasible
                feas_j = feas or (cov.all() and primal.feasible())
                if cov.all() and not feas_j:
                    search.counters["infeasible"] += 1
                elif cov.all():
                    cand = [blocks[i] for i in now]
                    got = search.vertex_candidate(cand)
                    if got is not None:
                        rejected = search.counters["rejected_by_certificate"]
                        cls = search.accept(got[0], cand, "enumerate", fast=True)
                        if cls is None and search.counters["rejected_by_certificate"] > rejected:
                            cls = search.retry_tight(cand)
                        if cls is not None:
                            yield cls
                if len(now) < kmax and (cov | suffix[j + 1]).all():
                    yield from rec(now, cov, lam_j, j + 1, feas_j)
            finally:
                dual.switch(j, False)
                primal.switch(j, False)
            if search.stopped != "exhausted":
                return

    try:
        yield from rec([], np.zeros(m, dtype=bool), None, 0, False)
    finally:
        search.counters["lps"] = dual.n_lp
        search.counters["primal_lps"] = primal.n_lp
        bar.close()
        search.finish()


# --------------------------------------------------------------------------- sampling


def sample_kkt(
    dataset: Dataset,
    n: int,
    strategy: str = "random",
    seed: int | None = 0,
    *,
    time_budget: float | None = None,
    max_attempts: int | None = None,
    width: int | None = None,
    gd_width: int = 20,
    gd_init_scale: float = 1.0,
    gd_steps: int = 300,
    gd_lr: float = 0.5,
    progress: bool = True,
    tol: EnumTolerances | None = None,
    cert_tol: CertTolerances | None = None,
    interval: tuple[float, float] | None = None,
) -> KKTStream:
    """Sample certified KKT classes for larger m; streams each NEW class (duplicates are dropped).

    Every attempt builds a block set B, solves (C_B) exactly, maps its optimum to a balanced network
    (zero blocks dropped; a vertex or a point of an optimal face, both KKT by MATH.md F2, F3 when
    the certifier agrees) and keeps it only if its certificate says KKT: :func:`fast_certificate`
    (exact NNLS multipliers; decides global minima, local minima without spare neurons, the
    ``kkt_undecided`` cases where certify provably stops undecided too, and rejects
    non-stationary points) and :func:`certify` for everything it leaves open. A class
    already found is recognised before it is certified.

    Strategies
    ----------
    "random"
        The global optimum's blocks (``global_solver.solve_global``), each moved at random with a
        probability q ~ U[0.1, 0.6] (kink to a neighbouring position, orientation flipped, pinned
        <-> free), plus a few random blocks (:class:`_RandomProposer` says why not uniform subsets).
    "local"
        A random walk on block sets started from the global optimum's blocks (or the last class
        found): one block's kink is moved to a neighbouring gap (free <-> pinned on the point in
        between), or its orientation is flipped (right <-> left facing at the same kink), or a block
        is added or removed.
    "gradient_flow"
        ``gd.train`` on the exponential loss from a random initialisation (``gd_width`` neurons,
        scale ``gd_init_scale``, ``gd_steps`` normalised steps of size ``gd_lr``); B is the
        activation pattern of the final iterate (``patterns.block_of_neuron``), plus the blocks
        next to each point the iterate still misclassifies (:class:`_FlowProposer`).

    After the solve, kinks that land on data points trigger at most ``hops`` re-solves with the
    adjacent cells added (:func:`_attempt`).

    Parameters
    ----------
    n : int
        Stop after n distinct classes.
    seed : int or None
        Seed of ``np.random.default_rng`` (and of the GD initialisations).
    time_budget, max_attempts : optional limits (default max_attempts = 50 n).
    width : int, optional
        Width passed to :func:`certify` (default: each network's own).
    """
    dataset = _check_dataset(dataset)
    n = positive_int(n, "n")
    seed = check_seed(seed)
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    attempts = 50 * n if max_attempts is None else positive_int(max_attempts, "max_attempts")
    search = _new_search(
        dataset, width, tol, cert_tol, time_budget, interval, f"sample ({strategy})"
    )
    rng = np.random.default_rng(seed)
    proposer = {"random": _RandomProposer, "local": _LocalProposer, "gradient_flow": _FlowProposer}[
        strategy
    ](search, rng, gd_width=gd_width, gd_init_scale=gd_init_scale, gd_steps=gd_steps, gd_lr=gd_lr)

    def run(search: _Search) -> Iterator[KKTClass]:
        bar = _progress_bar(n, f"sample {strategy}", progress)
        search.counters["attempts"] = 0
        try:
            while True:
                if len(search.classes) >= n:
                    search.stopped = "n_reached"
                    return
                if search.counters["attempts"] >= attempts:
                    search.stopped = "max_attempts"
                    return
                if search.out_of_time():
                    search.stopped = "time_budget"
                    return
                search.counters["attempts"] += 1
                with search.timed("propose"):
                    blocks = proposer.propose()
                if not blocks:
                    continue
                cls = _attempt(search, blocks, strategy, fast_hops=proposer.fast_hops)
                proposer.feedback(cls)
                if cls is not None:
                    bar.update(1)
                    yield cls
        finally:
            bar.close()
            search.finish()

    return KKTStream(run, search)


def _attempt(
    search: _Search, blocks: list[Block], source: str, hops: int = 8, fast_hops: int = 1
) -> KKTClass | None:
    """Solve (C_B), move to a vertex of its optimal face (:func:`vertex_of_face`), hop cells,
    certify.

    An optimum of (C_B) whose free block ends on an edge of its cone (kink on a data point x_p) is
    often not Clarke-stationary (MATH.md F3: the cone constraint pushes, mu would fall outside [0,
    lambda_p]), and a pinned block is stationary only if its point is optimal for both cells meeting
    there. So the cells adjacent to such kinks are added to B and (C_B) re-solved (objective
    non-increasing), at most ``hops`` times; the final network is certified either way.

    For m > POLISH_MAX_M each optimum first gets :func:`fast_certificate`: a stationary one is
    accepted at once (no further hop, no merge re-solve), and after ``fast_hops`` hops without a
    stationary optimum the attempt is abandoned (counter ``gave_up``). A block set solved before
    is skipped (counter ``repeated_proposals``).
    """
    blocks = list(blocks)
    key = tuple(sorted(blocks))
    if key in search.proposed:  # the same (C_B) again: same optimum, nothing new to learn
        search.counters["repeated_proposals"] = search.counters.get("repeated_proposals", 0) + 1
        return None
    search.proposed.add(key)
    early = search.sample.m > POLISH_MAX_M  # small m: always the full pipeline with the polish
    for hop in range(hops + 1):
        res = search.solve_blocks(blocks)
        if res is None:
            return None
        U = np.asarray(res.U)
        norms = np.linalg.norm(U, axis=1)
        keep = norms > search.tol.zero_block * norms.max()
        used = [b for b, k in zip(blocks, keep, strict=True) if k]
        with search.timed("purify"):
            U = vertex_of_face(search.sample, used, U[keep])
        if U is None:
            search.counters["solver_failed"] += 1
            return None
        nz = np.linalg.norm(U, axis=1) > 0
        used = [b for b, k in zip(used, nz, strict=True) if k]
        net = network_from_blocks(used, U[nz])
        # the network's own blocks (a free block whose optimum sits on a cone edge is pinned there)
        own = _own_blocks(net, search.sample, search.tol.kink)
        if early:  # already stationary (exact NNLS multipliers): no hop, no merge re-solve
            feas = rescaled(net, search.dataset, shrink=False)
            if feas is not None:
                with search.timed("certify"):
                    quick = fast_certificate(
                        feas, search.dataset, search.cert_tol, search.global_bound(), search.width
                    )
                if not isinstance(quick, str):
                    if hop:
                        search.counters["accepted_after_hop"] = (
                            search.counters.get("accepted_after_hop", 0) + 1
                        )
                    own_blocks = tuple(b for b in own if b is not None)
                    return search.accept(feas, own_blocks, source, fast=True, cert=quick)
        across = {
            _across(b, o, search.sample.m)
            for b, o in zip(used, own, strict=True)
            if o is not None and o.pinned and not b.pinned
        }
        # a pinned neuron is Clarke-stationary iff it is optimal for both adjacent cells
        for b in used:
            if b.pinned:
                across.update(_adjacent_cells(b, search.sample.m))
        across.discard(None)
        if early and (hop >= fast_hops or not across - set(blocks)):
            # measured (m = 200, local): new classes needed 1-2 solves, candidates still not
            # stationary after one hop were rejected in the end 45 times out of 47
            # (and the merge re-solve below turned none of 34 such candidates into a KKT point)
            search.counters["gave_up"] = search.counters.get("gave_up", 0) + 1
            return None
        if not across - set(blocks):
            break
        search.counters["hops"] = search.counters.get("hops", 0) + 1
        blocks = sorted(set(blocks) | across)
    # Final solve in the network's own blocks after merging near-parallel neurons: an interior-point
    # optimum on an edge shared by two cells splits one neuron over both with directions off by
    # ~sqrt(tolerance); merged, the edge is the pinned block and its ray is solved exactly.
    merged = net.merged(rtol=search.tol.merge)
    final = sorted(set(_own_blocks(merged, search.sample, search.tol.merge)) - {None})
    if final and final != sorted(used):
        res = search.solve_blocks(final)
        if (
            res is not None
            and (U2 := vertex_of_face(search.sample, final, np.asarray(res.U))) is not None
            # snapping a kink that was merely near a data point onto it raises the objective
            # (measured at m = 200: 17 of 38 kinks snapped, stationarity residual 0.2): keep the
            # re-solve only when it is no worse
            and np.linalg.norm(U2, axis=1).sum() <= net.objective() * (1.0 + 1e-9)
        ):
            nz = np.linalg.norm(U2, axis=1) > 0
            used, U = [b for b, k in zip(final, nz, strict=True) if k], U2
            net = network_from_blocks(used, U[nz])
    # polish only a unique optimum: re-solving a face would return its analytic centre, not a vertex
    if search.sample.m <= POLISH_MAX_M and search._unique(used, U[nz], None):
        net = search.polished(used, net)
    own = _own_blocks(net, search.sample, search.tol.kink)  # of the final network
    return search.accept(net, tuple(b for b in own if b is not None), source, fast=True)


def _global_network(search: _Search) -> ReLUNetwork:
    """The global optimum from ``global_solver.solve_global``; if that fails, (C_B) over every free
    block moved to a vertex of its face (:func:`vertex_of_face`), with a note in the result."""
    from .global_solver import solve_global

    if search._global:
        return search._global.network
    try:
        search._global = solve_global(search.dataset)
        return search._global.network
    except Exception as e:  # another module's failure must not stop sampling; it is reported
        search._global = False
        search.notes.append(f"solve_global failed ({type(e).__name__}: {e}); used the plain (C_B)")
    blocks = all_blocks(search.sample.m)
    res = search.solve_blocks(blocks)
    if res is None:
        raise SolverError("the convex program over all blocks failed; cannot start the sampler")
    U = np.asarray(res.U)
    keep = np.linalg.norm(U, axis=1) > search.tol.zero_block * np.linalg.norm(U, axis=1).max()
    used = [b for b, k in zip(blocks, keep, strict=True) if k]
    V = vertex_of_face(search.sample, used, U[keep])
    return network_from_blocks(used, U[keep] if V is None else V, atol=0.0).pruned()


def _own_blocks(net: ReLUNetwork, sample: SortedSample, kink: float) -> list[Block | None]:
    """Each neuron's block on the data (``patterns.block_of_neuron``; None: zero there)."""
    return [block_of_neuron(net.W[j, 0], net.b[j], net.v[j], sample, kink) for j in range(net.n)]


def _adjacent_cells(landed: Block, m: int) -> tuple[Block, Block | None]:
    """The two free cells meeting on the data point x_p carrying a pinned block's kink.

    Right-facing: {p..m-1} (``right@p``, or ``all`` if p = 0) and {p+1..m-1} (``right@(p+1)``);
    left-facing: {0..p} (``left@(p+1)``, or ``all`` if p = m - 1) and {0..p-1} (``left@p``).
    The second is None when it does not exist.
    """
    p, s = landed.pinned_index(), landed.sign
    if landed.direction == "right":
        with_p = Block("all", 0, s) if p == 0 else Block("right", p, s)
        return with_p, (Block("right", p + 1, s) if p + 1 <= m - 1 else None)
    with_p = Block("all", 0, s) if p == m - 1 else Block("left", p + 1, s)
    return with_p, (Block("left", p, s) if p >= 1 else None)


def _across(solved: Block, landed: Block, m: int) -> Block | None:
    """The free cell on the other side of the data point that ``solved``'s kink landed on."""
    with_p, without = _adjacent_cells(landed, m)
    return without if solved == with_p else with_p


def vertex_of_face(sample: SortedSample, blocks: list[Block], U: np.ndarray) -> np.ndarray | None:
    """A vertex of the optimal face of (C_B) through U: directions e_k = u_k / ||u_k|| fixed, then

        minimise sum_k r_k  s.t.  y_i sum_k s_k [i in A_k] r_k <e_k, x~_i> >= 1,  r >= 0

    by the dual simplex (HiGHS), whose basic solution is a vertex (module docstring, item 2).
    Returns the new U (rows r_k e_k, zero rows dropped blocks) or None if the LP fails. An
    interior-point optimum is the analytic centre of its face (MATH.md section 5); this is the
    purification step.
    """
    from scipy.optimize import linprog

    norms = np.linalg.norm(U, axis=1)
    E = U / norms[:, None]
    m, K = sample.m, len(blocks)
    M = np.zeros((m, K))
    for k, blk in enumerate(blocks):
        sl = blk.active(m)
        M[sl, k] = sample.y[sl] * blk.sign * (sample.xt[sl] @ E[k])
    res = linprog(np.ones(K), A_ub=-M, b_ub=-np.ones(m), bounds=(0, None), method="highs-ds")
    if res.status != 0:
        return None
    r = np.asarray(res.x)
    r[r <= 1e-12 * r.max()] = 0.0
    return r[:, None] * E


def _move(b: Block, rng: np.random.Generator) -> Block | None:
    """A neighbouring block: the kink one position left or right (gap -> data point -> gap), the
    orientation flipped at the same kink, or pinned <-> free. May be invalid (checked by the
    caller)."""
    r = rng.random()
    if b.direction == "all":
        return None
    if r < 0.5:
        step = 1 if rng.random() < 0.5 else -1
        if b.direction == "right":  # kink positions: gap g (free right@g), x_{g-1} (pinned right@g)
            if b.pinned:
                return (
                    Block("right", b.gap, b.sign) if step > 0 else Block("right", b.gap - 1, b.sign)
                )
            return (
                Block("right", b.gap, b.sign, True)
                if step < 0
                else Block("right", b.gap + 1, b.sign, True)
            )
        if b.pinned:  # left@g pinned: kink on x_g
            return Block("left", b.gap + 1, b.sign) if step > 0 else Block("left", b.gap, b.sign)
        return (
            Block("left", b.gap, b.sign, True)
            if step > 0
            else Block("left", b.gap - 1, b.sign, True)
        )
    if r < 0.8:
        return _flip(b)
    return Block(b.direction, b.gap, b.sign, not b.pinned)


def _flip(b: Block) -> Block | None:
    """The block with the same kink position and the opposite orientation (None for "all")."""
    if b.direction == "all":
        return None
    if b.pinned:  # kink on x_p: right@(p+1) <-> left@p
        p = b.pinned_index()
        return (
            Block("left", p, b.sign, True)
            if b.direction == "right"
            else Block("right", p + 1, b.sign, True)
        )
    return Block("left" if b.direction == "right" else "right", b.gap, b.sign)


class _Proposer:
    #: hops without a stationary optimum before an attempt is abandoned (m > POLISH_MAX_M)
    fast_hops = 1

    def __init__(self, search: _Search, rng: np.random.Generator, **_: Any) -> None:
        self.search = search
        self.rng = rng
        self.m = search.sample.m
        self.y = search.sample.y

    def valid(self, b: Block | None) -> bool:
        if b is None:
            return False
        try:
            b.validate(self.m)
        except ValueError:
            return False
        if b.pinned and b.direction == "all":
            return False
        return bool(np.any(self.y[b.active(self.m)] == b.sign))

    def random_block_at(self, i: int) -> Block:
        """A random block of sign y_i active at i, with its kink just before or after i."""
        m, rng = self.m, self.rng
        s = int(self.y[i])
        pinned = bool(rng.random() < 0.5) and m >= 2
        right = bool(rng.random() < 0.5)
        if right and i >= 1:  # right-facing, kink in gap i (between x_{i-1} and x_i) or on x_{i-1}
            return Block("right", i, s, pinned)
        if not right and i <= m - 2:  # left-facing, kink in gap i+1 or on x_{i+1}
            return Block("left", i + 1, s, pinned)
        return Block("all", 0, s)

    def cover(self, blocks: set[Block]) -> list[Block]:
        """Add blocks until every point is covered by a block of its own sign."""
        m = self.m
        covered = np.zeros(m, dtype=bool)
        for b in blocks:
            covered[b.active(m)] |= self.y[b.active(m)] == b.sign
        for i in self.rng.permutation(m):
            if not covered[i]:
                b = self.random_block_at(int(i))
                blocks.add(b)
                covered[b.active(m)] |= self.y[b.active(m)] == b.sign
        return sorted(blocks)

    def feedback(self, cls: KKTClass | None) -> None:
        pass

    def global_blocks(self) -> list[Block]:
        """Blocks of the certified global optimum (``global_solver.solve_global``), computed
        once."""
        if self.search.global_blocks is None:
            net = _global_network(self.search)
            own = set(_own_blocks(net, self.search.sample, self.search.tol.kink))
            self.search.global_blocks = sorted(b for b in own if b is not None)
        return list(self.search.global_blocks)


class _RandomProposer(_Proposer):
    """The global optimum's blocks, each moved at random with probability q ~ U[0.1, 0.6] (kink to a
    neighbouring position, orientation flipped, or pinned <-> free), plus a few random extra blocks.

    Uniform random subsets of all ~8m blocks are the textbook choice, but at m = 200 their (C_B) has
    hundreds of blocks, is badly conditioned and its interior-point optimum is an analytic centre
    with many tiny blocks that is not a KKT point to certificate accuracy; perturbing a KKT support
    keeps B small.
    """

    def propose(self) -> list[Block]:
        base = self.global_blocks()
        q = self.rng.uniform(0.1, 0.6)
        cur: set[Block] = set()
        for b in base:
            nb = _move(b, self.rng) if self.rng.random() < q else b
            cur.add(nb if self.valid(nb) else b)
        for _ in range(int(self.rng.poisson(2))):
            cur.add(self.random_block_at(int(self.rng.integers(self.m))))
        return self.cover(cur)


class _LocalProposer(_Proposer):
    """Random walk: move one kink to a neighbouring gap, flip one orientation, add or drop a
    block. The walk restarts from each new class found; after ``patience`` proposals in a row that
    were all solved before, it jumps to a random feasible block set it solved without finding a
    new class (measured at m = 100, seed 1: a walk that only moved to new classes proposed the
    global optimum's few neighbours over and over and found 1 class in 15 s; always drifting to
    the last proposal instead cost 60-80% of the classes at m = 200)."""

    patience = 5

    def __init__(self, search: _Search, rng: np.random.Generator, **kw: Any) -> None:
        super().__init__(search, rng, **kw)
        self.current: list[Block] | None = None
        self.last: list[Block] | None = None
        self.visited: list[list[Block]] = []
        self.stall = 0
        self._seen = (0, 0)

    def propose(self) -> list[Block]:
        if self.current is None:
            self.current = self.global_blocks()
        cur = set(self.current)
        k = int(self.rng.integers(len(self.current)))
        b = self.current[k]
        if self.rng.random() < 0.15:
            cur.add(self.random_block_at(int(self.rng.integers(self.m))))
        elif self.rng.random() < 0.1 and len(cur) > 1:
            cur.discard(b)
        else:
            nb = _move(b, self.rng)
            if self.valid(nb):
                cur.discard(b)
                cur.add(nb)
        self.last = self.cover(cur)
        self._seen = (
            self.search.counters["infeasible"],
            self.search.counters.get("repeated_proposals", 0),
        )
        return self.last

    def feedback(self, cls: KKTClass | None) -> None:
        if cls is not None:
            self.current, self.stall = sorted(cls.blocks), 0
            return
        infeasible, repeated = self._seen
        if self.search.counters.get("repeated_proposals", 0) > repeated:
            self.stall += 1
        elif self.search.counters["infeasible"] == infeasible and self.last is not None:
            self.visited.append(self.last)  # feasible, solved, nothing new: a place to go on from
        if self.stall >= self.patience and self.visited:
            self.current = self.visited[int(self.rng.integers(len(self.visited)))]
            self.stall = 0


class _FlowProposer(_Proposer):
    """Activation pattern of a short GD run on the exponential loss (``gd.train``)."""

    # a GD pattern repaired around misclassified points is far from stationary: measured at m = 200,
    # none of 100 was stationary after one hop; a proposal costs a GD run, so spend more hops on it
    fast_hops = 8

    def __init__(
        self,
        search: _Search,
        rng: np.random.Generator,
        *,
        gd_width: int,
        gd_init_scale: float,
        gd_steps: int,
        gd_lr: float,
        **_: Any,
    ) -> None:
        super().__init__(search, rng)
        self.gd = dict(
            width=positive_int(gd_width, "gd_width"),
            init_scale=float(gd_init_scale),
            steps=positive_int(gd_steps, "gd_steps"),
            lr=float(gd_lr),
        )

    def propose(self) -> list[Block]:
        seed = int(self.rng.integers(2**31))
        try:
            traj = train(
                self.search.dataset,
                loss="exp",
                seed=seed,
                normalized=True,
                residuals=False,
                clean=False,
                progress=False,
                **self.gd,
            )
        except SolverError:  # diverged: no pattern from this initialisation
            self.search.counters["gd_failed"] = self.search.counters.get("gd_failed", 0) + 1
            return []
        net, sample = traj.network, self.search.sample
        blocks = set(_own_blocks(net, sample, 0.0)) - {None}
        # A short run rarely fits isolated noisy points yet (measured at m = 200: GD fits the 21
        # flipped
        # labels only after far more steps), and a pattern that misclassifies a point makes (C_B)
        # infeasible. Repair: for each point the iterate still misclassifies, add every block whose
        # kink
        # lies within one position of it (both signs and orientations); the rest of B is GD's
        # pattern.
        wrong = np.flatnonzero(net.margins(sample.x, sample.y) <= 0)
        self.search.counters["gd_repaired_points"] = self.search.counters.get(
            "gd_repaired_points", 0
        ) + int(wrong.size)
        for i in wrong:
            blocks.update(b for b in _near_blocks(int(i), self.m) if self.valid(b))
        return self.cover(blocks)


def _near_blocks(i: int, m: int) -> list[Block]:
    """Blocks with a kink in the gaps next to sorted point i or on x_{i-1}, x_i, x_{i+1}, both
    signs."""
    out = []
    for s in (1, -1):
        for g in (i, i + 1):  # free blocks in the gaps left and right of x_i
            if 1 <= g <= m - 1:
                out += [Block("right", g, s), Block("left", g, s)]
        for p in (i - 1, i, i + 1):  # pinned on x_p: right@(p+1), left@p
            if 0 <= p <= m - 2:
                out.append(Block("right", p + 1, s, True))
            if 1 <= p <= m - 1:
                out.append(Block("left", p, s, True))
    return out


# --------------------------------------------------------------------------- extremes


@dataclass(frozen=True, eq=False)
class ExtremeResult:
    """The KKT class of largest (``target="max_error"``) or smallest clean error found.

    ``exact`` is True iff it comes from a complete enumeration (then it is the extreme over all
    vertex KKT classes; points inside an optimal face are convex combinations of those, module
    docstring).
    ``effort`` is the search's counters and ``search`` says which method ran.
    """

    target: str
    best: KKTClass | None
    exact: bool
    search: str
    n_classes: int
    seconds: float
    effort: dict[str, Any]
    clean_error_range: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        from .cli import to_jsonable

        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["best"] = None if self.best is None else self.best.to_dict()
        return to_jsonable(d)


#: extreme_kkt tries the complete enumeration only up to this m (measured: m = 6 takes 15-30 s)
EXTREME_ENUMERATE_MAX_M = 8


def extreme_kkt(
    dataset: Dataset,
    target: str = "max_error",
    budget: int | float | None = None,
    *,
    time_budget: float | None = None,
    max_nodes: int = 200_000,
    seed: int | None = 0,
    n_per_strategy: int = 1000,
    progress: bool = False,
    **kwargs: Any,
) -> ExtremeResult:
    """The KKT class with the largest or smallest clean error.

    Parameters
    ----------
    budget : int, optional
        Sampling effort in attempts (default 600), split evenly between the samplers "local",
        "random" and "gradient_flow" (``max_attempts`` of :func:`sample_kkt`). With a fixed
        ``seed`` and no time cap the result is reproducible. A **float** is read the old way,
        as seconds (deprecated; a ``DeprecationWarning`` says so): half for the enumeration, the
        rest split between the samplers, no attempt limit.
    time_budget : float, optional
        Separate wall-clock cap in seconds (None: none); the enumeration gets at most half of it.
        When it cuts the search the effort counters say so (``*_stopped``).
    max_nodes : int
        Node limit of the exact enumeration, which runs first when m <= EXTREME_ENUMERATE_MAX_M
        (or always, with a float budget). If it completes the answer is exact (``exact=True``) and
        no sampling is done.
    seed : int or None
        Seed of the samplers.
    """
    if target not in ("max_error", "min_error"):
        raise InputError(f"target must be 'max_error' or 'min_error', got {target!r}")
    dataset = _check_dataset(dataset)
    seconds_mode = isinstance(budget, float)
    if seconds_mode:
        import warnings

        warnings.warn(
            "extreme_kkt(budget=<float seconds>) is deprecated: pass budget=<int attempts> and "
            "time_budget=<seconds>",
            DeprecationWarning,
            stacklevel=2,
        )
        if not (np.isfinite(budget) and budget > 0):
            raise InputError(f"budget must be a positive number of seconds, got {budget!r}")
        time_budget, attempts = float(budget), None
    else:
        attempts = 600 if budget is None else budget
        check_int_range("extreme_kkt", "budget", attempts, 3)
        attempts = int(attempts)
    if time_budget is not None and not (np.isfinite(time_budget) and time_budget > 0):
        raise InputError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
    check_int_range("extreme_kkt", "max_nodes", max_nodes, 1)
    t0 = time.perf_counter()
    sign = 1.0 if target == "max_error" else -1.0
    classes: list[KKTClass] = []
    effort: dict[str, Any] = {}
    complete, method = False, "sample"
    if seconds_mode or dataset.m <= EXTREME_ENUMERATE_MAX_M:
        en = enumerate_kkt(
            dataset,
            time_budget=None if time_budget is None else time_budget / 2,
            progress=progress,
            max_nodes=max_nodes,
            **kwargs,
        ).collect()
        classes = list(en.classes)
        effort = {f"enumerate_{k}": v for k, v in en.counters.items()}
        effort["enumerate_stopped"] = en.stopped
        complete, method = en.complete, "enumerate"
    if not complete:
        method = "enumerate (incomplete) + sample" if effort else "sample"
        strategies = ("local", "random", "gradient_flow")
        for i, strat in enumerate(strategies):
            share = None
            if time_budget is not None:
                share = (time_budget - (time.perf_counter() - t0)) / (len(strategies) - i)
                if share <= 0:
                    break
            res = sample_kkt(
                dataset,
                n_per_strategy,
                strat,
                seed=seed,
                time_budget=share,
                max_attempts=None if attempts is None else attempts // len(strategies),
                progress=progress,
                **kwargs,
            ).collect()
            classes.extend(res.classes)
            for k, v in res.counters.items():
                effort[f"{strat}_{k}"] = v
            effort[f"{strat}_stopped"] = res.stopped
    best = max(classes, key=lambda c: sign * c.clean_error, default=None)
    errs = [c.clean_error for c in classes]
    return ExtremeResult(
        target,
        best,
        complete,
        method,
        len(classes),
        time.perf_counter() - t0,
        effort,
        (min(errs), max(errs)) if errs else None,
    )
