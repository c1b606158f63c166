"""Enumeration and sampling of the KKT points of (P) in 1-D, grouped into (function, objective) classes.

Exact enumeration by a pruned search over block sets with convex subproblems (C_B) (MATH.md sections 2-4,
F2, F3); sampling strategies for large m; the KKT points of extreme clean error.

What is enumerated
------------------
KKT points come in convex families. If U and U' both solve (C_B), every nonzero u_k keeps its direction
(the norm is strictly convex off rays: the midpoint of two non-parallel optima would be strictly better),
so the optimal face is {u_k = r_k e_k : r in R_B}, R_B a polytope; every point of it is a KKT point with
the same multipliers (a primal-dual saddle point pairs every primal optimum with every dual optimum).
Different r give different functions, so the set of KKT functions can be a continuum. We therefore
enumerate the *vertex* KKT points: balanced networks theta whose block set B (one block per neuron, a
kink on a data point giving a pinned block) is all nonzero and is the *unique* optimum of (C_B), and which
the certifier accepts as KKT. They are reported as KKT classes, i.e. pairs (function on R, 1/2||theta||^2)
up to :class:`EnumTolerances`; several classes may share a function (``function_id``).

Completeness argument (what ``complete=True`` means)
---------------------------------------------------
1. Every KKT point theta, after merging neurons of one block (KKT forces them parallel: u_k / ||u_k||
   = s_k g_k(lambda) on a free block, the ray on a pinned one), is optimal for (C_B) of its own block set:
   its Clarke multipliers (lambda, mu) are multipliers of (C_B) with alpha_k = s_k y_p mu_p on the equality
   of a pinned block (MATH.md F2, F3), and KKT conditions are sufficient for this convex program.
2. The optimal face R_B is a polytope; its vertices are vertices of {r >= 0 : M r >= 1} (fixed
   directions), so their supports B' have |B'| <= m, each B' subset of B, each the unique optimum of
   (C_{B'}) and KKT with the same (lambda, alpha). Hence every KKT point is a convex combination, with equal
   objective, of vertex KKT points whose block sets are subsets of its own, and it suffices to visit every
   block set that can carry a vertex KKT point.
3. The search visits every block set B with |B| <= min(m, max_neurons) except those excluded by these
   necessary conditions of a vertex KKT point with blocks exactly B:
   (a) coverage: every point i has a block of sign y_i strictly active at i (else y_i N(x_i) <= 0);
   (b) a block's sign appears among the labels of its active points (v_k = sum lambda_i y_i relu(z_ik));
   (c) two blocks of one activation set and opposite signs (a free pattern cone is pointed, so s g and
       -s g cannot both lie in it; two opposite pinned neurons on one ray cancel, which is cheaper);
   (d) a free block and a pinned block of the same sign on an edge of its cone: the pinned neuron gives
       the same margins when moved into the free block, and u1 + u2 is strictly cheaper (not parallel);
   (e) dual feasibility (:class:`_DualPrune`): lambda >= 0 such that, for every free block, s_k g_k(lambda)
       lies in its closed cone, beyond the chord and inside the tangent polygon of the unit circle arc in
       that cone (||g_k|| = 1 relaxed to a polyhedron), and for every pinned block <s_k g_k, e_k> = 1 with
       the implied mu in [0, lambda_p]. Adding blocks only adds rows, so an infeasible LP prunes all
       supersets; this is what makes m = 6 tractable.
   Each visited candidate is solved exactly; it is reported when all blocks are nonzero, each neuron's
   block is the block it was solved in (a free block whose optimum lands on a cone edge is the pinned
   block, visited separately), the optimum is unique (rank test below) and :func:`certify` says KKT.
4. ``complete`` is True only if the search ran to the end (no time budget hit), ``include_pinned`` is
   True (MATH.md F3: otherwise provably incomplete), and no candidate subproblem failed numerically. With
   ``max_neurons`` < m it is complete for KKT points of at most ``max_neurons`` neurons (``scope``).

Rank test: the optimum of (C_B) is declared non-unique (a face, not reported: its vertices have smaller
block sets) when the margin matrix of the blocks at their optimal directions, restricted to the tight
points, has rank < |B| (a null direction keeps every tight margin and keeps the objective,
since sum_k r_k = sum_i lambda_i (M r)_i). Otherwise it is treated as unique (in doubt we report: a
reported class is always a certified KKT point).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .certify import Certificate, CertTolerances, certify
from .clean_error import clean_error
from .data import Dataset, check_seed, positive_int
from .errors import InputError, SolverError
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
    "STRATEGIES",
    "KKT_VERDICTS",
]

KKT_VERDICTS = ("kkt", "kkt_undecided", "local_min", "global_min")
STRATEGIES = ("random", "local", "gradient_flow")

#: Clarabel settings for candidate subproblems (tight: the certifier checks stationarity to 1e-6)
SOLVER_OPTIONS = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10, "max_iter": 200}


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
    function : two functions are equal iff they have the same number of kinks, kinks within
        function * (1 + |t|), slopes at -inf / +inf and values at every kink within function * scale,
        scale = 1 + max |value at kinks| (values are O(1): margins are 1).
    slope_change : a kink whose slope change is <= slope_change * (1 + max |slope|) is not a kink.
    objective : same class iff objectives agree within objective * max(1, objective).
    dual_slack : slack of the dual-prune LP rows (rows are normalised so that ||g_k|| = 1).
    """

    zero_block: float = 1e-7
    kink: float = 1e-7
    tight: float = 1e-6
    rank: float = 1e-8
    function: float = 1e-5
    slope_change: float = 1e-9
    objective: float = 1e-5
    dual_slack: float = 1e-7

    def __post_init__(self) -> None:
        for name, val in asdict(self).items():
            if not (isinstance(val, (int, float)) and np.isfinite(val) and val >= 0):
                raise InputError(f"tolerance {name} must be a finite number >= 0, got {val!r}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


# --------------------------------------------------------------------------- classes


@dataclass(frozen=True, eq=False)
class KKTClass:
    """One KKT class: a function on R with an objective 1/2||theta||^2, and one canonical network.

    ``function_id`` numbers distinct functions in order of discovery, ``class_id`` the classes;
    ``kinks`` are the sorted kinks of the function; ``blocks`` the block set (sorted sample indices) the
    canonical network was solved in; ``certificate`` the certifier's verdict and evidence at ``width``;
    ``source`` says which search found it (``"enumerate"`` or a sampling strategy).
    """

    class_id: int
    function_id: int
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
        """The JSON line of the command line: ids, objective, clean error, verdict, network, evidence."""
        from .cli import to_jsonable

        c = self.certificate
        return to_jsonable(
            {
                "class_id": self.class_id,
                "function_id": self.function_id,
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
                "source": self.source,
                "found_after": self.found_after,
            }
        )


@dataclass(frozen=True)
class _FunctionForm:
    """Canonical 1-D piecewise-linear form: kinks, value at each kink, slopes at -inf and +inf."""

    kinks: np.ndarray
    values: np.ndarray
    slope_left: float
    slope_right: float
    value0: float  # value at x = 0 (pins the function when there is no kink)


def function_form(network: ReLUNetwork, tol: EnumTolerances) -> _FunctionForm:
    """Kinks with a real slope change (merged when within ``tol.function``), values there, end slopes.

    A 1-D continuous piecewise-linear function is determined by these numbers.
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
    return _FunctionForm(
        t,
        pl(t) if t.size else np.zeros(0),
        float(slopes[0]),
        float(slopes[-1]),
        float(pl(np.zeros(1))[0]),
    )


def _same_function(a: _FunctionForm, b: _FunctionForm, tol: float) -> bool:
    if a.kinks.size != b.kinks.size:
        return False
    scale = 1.0 + max(
        float(np.max(np.abs(a.values), initial=0.0)),
        abs(a.value0),
        abs(a.slope_left),
        abs(a.slope_right),
    )
    if not np.all(np.abs(a.kinks - b.kinks) <= tol * (1.0 + np.abs(a.kinks))):
        return False
    if not np.all(np.abs(a.values - b.values) <= tol * scale):
        return False
    return (
        abs(a.slope_left - b.slope_left) <= tol * scale
        and abs(a.slope_right - b.slope_right) <= tol * scale
        and abs(a.value0 - b.value0) <= tol * scale
    )


class FunctionRegistry:
    """Assigns ``function_id`` and ``class_id`` to networks: equal function on R (and objective) up to tol.

    Functions are bucketed by their number of kinks and compared with :func:`_same_function`.
    """

    def __init__(self, tol: EnumTolerances) -> None:
        self.tol = tol
        self._forms: dict[int, list[tuple[int, _FunctionForm]]] = {}
        self._objectives: dict[int, list[tuple[int, float]]] = {}
        self.n_functions = 0
        self.n_classes = 0

    def lookup(self, network: ReLUNetwork, objective: float) -> tuple[int, int, bool]:
        """(function_id, class_id, is_new_class); registers the network's function and class if new."""
        form = function_form(network, self.tol)
        bucket = self._forms.setdefault(form.kinks.size, [])
        fid = next((i for i, f in bucket if _same_function(f, form, self.tol.function)), None)
        if fid is None:
            fid = self.n_functions
            self.n_functions += 1
            bucket.append((fid, form))
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

    ``complete`` (exact enumeration only) is True iff every vertex KKT class within ``scope`` was visited
    (module docstring). ``stopped`` is "exhausted", "time_budget", "n_reached", "max_attempts" or
    "interrupted". ``counters`` counts search nodes, LPs, subproblems and why candidates were dropped.
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

    @property
    def count(self) -> int:
        """Number of KKT classes."""
        return len(self.classes)

    @property
    def n_functions(self) -> int:
        """Number of distinct functions among the classes."""
        return len({c.function_id for c in self.classes})

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
                "seconds": self.seconds,
                "stopped": self.stopped,
                "scope": self.scope,
                "verdicts": self.verdict_counts(),
                "clean_error_range": [min(errs), max(errs)] if errs else None,
                "counters": self.counters,
                "tolerances": self.tolerances.to_dict(),
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
        self.interval = interval or dataset.support or (0.0, 1.0)
        self.registry = FunctionRegistry(tol)
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
            "duplicates": 0,
        }
        self.scope = scope
        self.stopped = "exhausted"
        self.complete_if_exhausted = False
        self.notes: list[str] = []
        self.seconds: float | None = None

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
        )

    # ------------------------------------------------------------------ one candidate block set
    def solve_blocks(self, blocks: Sequence[Block]):
        """Solve (C_B); None (with a counter) when infeasible or failed."""
        self.counters["subproblems"] += 1
        res = ConvexSubproblem(self.sample, list(blocks)).solve(**SOLVER_OPTIONS)
        if res.status == "infeasible":
            self.counters["infeasible"] += 1
            return None
        if not res.has_solution:
            self.counters["solver_failed"] += 1
            return None
        return res

    def vertex_candidate(self, blocks: Sequence[Block]) -> tuple[ReLUNetwork, np.ndarray] | None:
        """Exact-enumeration test of one block set: nonzero, canonical, unique optimum (module docstring)."""
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

    def polished(self, blocks: Sequence[Block], net: ReLUNetwork) -> ReLUNetwork:
        """Newton-polished optimum of (C_B) (``gd.solve_cell``, MATH.md section 5), else ``net``.

        An interior-point optimum has its directions right to about sqrt(solver tolerance) only; the polish
        makes equal functions found from different block sets compare equal at tight tolerances.
        """
        from .gd import solve_cell

        try:
            cell = solve_cell(self.sample, list(blocks))
        except SolverError:
            return net
        if not cell.polished or cell.network.n != net.n:
            return net
        self.counters["polished"] = self.counters.get("polished", 0) + 1
        return cell.network

    def _unique(self, blocks: list[Block], U: np.ndarray, lam: np.ndarray) -> bool:
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

    def accept(self, net: ReLUNetwork, blocks: Sequence[Block], source: str) -> KKTClass | None:
        """Restore feasibility, certify, and register; the new class, or None (rejected or duplicate)."""
        ds = self.dataset
        mm = float(np.min(net.margins(ds.X, ds.y)))
        if not mm > 0:
            self.counters["rejected_by_certificate"] += 1
            return None
        if mm < 1.0:  # 2-homogeneity: scaling theta by c scales every margin by c^2
            net = net.scaled(1.0 / np.sqrt(mm))
        cert = certify(net, ds, width=self.width, tol=self.cert_tol)
        if cert.verdict not in KKT_VERDICTS:
            self.counters["rejected_by_certificate"] += 1
            return None
        self.counters["certified"] += 1
        obj = net.objective()
        fid, cid, new = self.registry.lookup(net, obj)
        if not new:
            self.counters["duplicates"] += 1
            return None
        form = function_form(net, self.tol)
        cls = KKTClass(
            class_id=cid,
            function_id=fid,
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

    A persistent HiGHS model over lambda >= 0 holds the rows of every block; a block's rows are switched
    on and off through their bounds, so each test is a warm-started dual simplex solve.
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
    """A HiGHS instance with output off; its one-time banner (C++ stdout) would corrupt JSON lines."""
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


def _own_sign_blocks(sample: SortedSample, include_pinned: bool) -> list[Block]:
    """Blocks whose active set contains a point labelled with the block's sign (condition (b))."""
    m, y = sample.m, sample.y
    out = []
    for b in all_blocks(m, pinned=include_pinned and m >= 2):
        if np.any(y[b.active(m)] == b.sign):
            out.append(b)
    return out


def _check_dataset(dataset: Any) -> Dataset:
    if not isinstance(dataset, Dataset):
        raise InputError(f"dataset must be a kktsolver.Dataset, got {type(dataset).__name__}")
    if dataset.d != 1:
        raise InputError(f"KKT enumeration works in dimension one; the dataset has d = {dataset.d}")
    return dataset


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
    tol: EnumTolerances = EnumTolerances(),
    cert_tol: CertTolerances = CertTolerances(),
    interval: tuple[float, float] | None = None,
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

    Returns
    -------
    KKTStream
        Iterate for :class:`KKTClass` objects; ``.collect()`` / ``.result`` give the
        :class:`EnumerationResult` with ``complete``.
    """
    dataset = _check_dataset(dataset)
    m = dataset.m
    kmax = m if max_neurons is None else min(m, positive_int(max_neurons, "max_neurons"))
    if time_budget is not None and not (np.isfinite(time_budget) and time_budget > 0):
        raise InputError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
    scope = f"vertex KKT classes with at most {kmax} neurons" + (
        "" if include_pinned else ", no pinned kinks"
    )
    search = _Search(dataset, width, tol, cert_tol, time_budget, interval, scope)
    search.complete_if_exhausted = bool(include_pinned)
    if not include_pinned:
        search.notes.append(
            "include_pinned=False: KKT points with a kink on a data point are missed (MATH.md F3)"
        )

    def run(search: _Search) -> Iterator[KKTClass]:
        yield from _dfs(search, include_pinned, kmax, progress)

    return KKTStream(run, search)


def _dfs(search: _Search, include_pinned: bool, kmax: int, progress: bool) -> Iterator[KKTClass]:
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
    bar = _progress_bar(K, "enumerate", progress)

    def rec(
        chosen: list[int], covered: np.ndarray, lam: np.ndarray | None, start: int
    ) -> Iterator[KKTClass]:
        for j in range(start, K):
            if search.out_of_time():
                search.stopped = "time_budget"
                return
            if not chosen:
                bar.update(1)
            if conflicts[j, chosen].any():
                continue
            cov = covered | cover[j]
            dual.switch(j, True)
            try:
                lam_j = lam if dual.holds(j, lam) else dual.solve()
                if lam_j is None:
                    continue
                search.counters["nodes"] += 1
                now = chosen + [j]
                if cov.all():
                    cand = [blocks[i] for i in now]
                    got = search.vertex_candidate(cand)
                    if got is not None:
                        cls = search.accept(got[0], cand, "enumerate")
                        if cls is not None:
                            yield cls
                if len(now) < kmax and (cov | suffix[j + 1]).all():
                    yield from rec(now, cov, lam_j, j + 1)
            finally:
                dual.switch(j, False)
            if search.stopped != "exhausted":
                return

    try:
        yield from rec([], np.zeros(m, dtype=bool), None, 0)
    finally:
        search.counters["lps"] = dual.n_lp
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
    tol: EnumTolerances = EnumTolerances(),
    cert_tol: CertTolerances = CertTolerances(),
    interval: tuple[float, float] | None = None,
) -> KKTStream:
    """Sample certified KKT classes for larger m; streams each NEW class (duplicates are dropped).

    Every attempt builds a block set B, solves (C_B) exactly, maps its optimum to a balanced network
    (zero blocks dropped; a vertex or a point of an optimal face, both KKT by MATH.md F2, F3 when the
    certifier agrees) and keeps it only if :func:`certify` says KKT.

    Strategies
    ----------
    "random"
        B = a random set of blocks: each point gets, with probability 1/2, a random free or pinned block of
        its own sign ending next to it (right- or left-facing), plus blocks added until every point is
        covered by a block of its sign.
    "local"
        A random walk on block sets started from the global optimum's blocks (or the last class found):
        one block's kink is moved to a neighbouring gap (free <-> pinned on the point in between), or its
        orientation is flipped (right <-> left facing at the same kink), or a block is added or removed.
    "gradient_flow"
        ``gd.train`` on the exponential loss from a random initialisation (``gd_width`` neurons, scale
        ``gd_init_scale``, ``gd_steps`` normalised steps of size ``gd_lr``); the activation pattern of
        the final iterate gives B (``patterns.block_of_neuron``).

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
    if time_budget is not None and not (np.isfinite(time_budget) and time_budget > 0):
        raise InputError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
    attempts = 50 * n if max_attempts is None else positive_int(max_attempts, "max_attempts")
    search = _Search(dataset, width, tol, cert_tol, time_budget, interval, f"sample ({strategy})")
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
                blocks = proposer.propose()
                if not blocks:
                    continue
                cls = _attempt(search, blocks, strategy)
                proposer.feedback(cls)
                if cls is not None:
                    bar.update(1)
                    yield cls
        finally:
            bar.close()
            search.finish()

    return KKTStream(run, search)


def _attempt(search: _Search, blocks: list[Block], source: str) -> KKTClass | None:
    """Solve (C_B), keep the nonzero blocks, certify."""
    res = search.solve_blocks(blocks)
    if res is None:
        return None
    U = np.asarray(res.U)
    norms = np.linalg.norm(U, axis=1)
    keep = norms > search.tol.zero_block * norms.sum()
    used = [b for b, k in zip(blocks, keep, strict=True) if k]
    net = search.polished(used, network_from_blocks(used, U[keep]))
    # the network's own blocks (a free block whose optimum sits on a cone edge is pinned there)
    own = tuple(
        block_of_neuron(net.W[j, 0], net.b[j], net.v[j], search.sample, search.tol.kink)
        for j in range(net.n)
    )
    return search.accept(net, tuple(b for b in own if b is not None), source)


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


class _RandomProposer(_Proposer):
    def propose(self) -> list[Block]:
        chosen = {
            self.random_block_at(int(i)) for i in np.flatnonzero(self.rng.random(self.m) < 0.5)
        }
        return self.cover(chosen)


class _LocalProposer(_Proposer):
    """Random walk: move one kink to a neighbouring gap, flip one orientation, add or drop a block."""

    def __init__(self, search: _Search, rng: np.random.Generator, **kw: Any) -> None:
        super().__init__(search, rng, **kw)
        self.current: list[Block] | None = None

    def _start(self) -> list[Block]:
        blocks = _own_sign_blocks(self.search.sample, False)
        res = self.search.solve_blocks(blocks)
        if res is None:
            raise SolverError(
                "the global convex program over all blocks failed; cannot start the local search"
            )
        U = np.asarray(res.U)
        norms = np.linalg.norm(U, axis=1)
        net = network_from_blocks(blocks, U, atol=self.search.tol.zero_block * norms.sum())
        own = {
            block_of_neuron(net.W[j, 0], net.b[j], net.v[j], self.search.sample, 1e-7)
            for j in range(net.n)
        }
        return sorted(b for b in own if b is not None)

    def _move(self, b: Block) -> Block | None:
        r = self.rng.random()
        if r < 0.4:  # one step of the kink: gap -> pinned point -> next gap
            step = 1 if self.rng.random() < 0.5 else -1
            if b.direction == "all":
                return None
            if (
                b.direction == "right"
            ):  # kink positions: ... gap g (free), x_{g-1} (pinned right@g) ...
                if b.pinned:
                    return (
                        Block("right", b.gap, b.sign)
                        if step > 0
                        else Block("right", b.gap - 1, b.sign)
                    )
                return (
                    Block("right", b.gap, b.sign, True)
                    if step < 0
                    else Block("right", b.gap + 1, b.sign, True)
                )
            if b.pinned:  # left@g pinned: kink on x_g
                return (
                    Block("left", b.gap + 1, b.sign) if step > 0 else Block("left", b.gap, b.sign)
                )
            return (
                Block("left", b.gap, b.sign, True)
                if step > 0
                else Block("left", b.gap - 1, b.sign, True)
            )
        if r < 0.7:
            return _flip(b)
        return Block(b.direction, b.gap, b.sign, not b.pinned) if b.direction != "all" else None

    def propose(self) -> list[Block]:
        if self.current is None:
            self.current = self._start()
        cur = set(self.current)
        k = int(self.rng.integers(len(self.current)))
        b = self.current[k]
        if self.rng.random() < 0.15:
            cur.add(self.random_block_at(int(self.rng.integers(self.m))))
        elif self.rng.random() < 0.1 and len(cur) > 1:
            cur.discard(b)
        else:
            nb = self._move(b)
            if self.valid(nb):
                cur.discard(b)
                cur.add(nb)
        return self.cover(cur)

    def feedback(self, cls: KKTClass | None) -> None:
        if cls is not None:
            self.current = sorted(cls.blocks)


class _FlowProposer(_Proposer):
    """Activation pattern of a short GD run on the exponential loss (``gd.train``)."""

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
        from .gd import train

        seed = int(self.rng.integers(2**31))
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
        net = traj.network
        own = {
            block_of_neuron(net.W[j, 0], net.b[j], net.v[j], self.search.sample, 0.0)
            for j in range(net.n)
        }
        return self.cover({b for b in own if b is not None})


# --------------------------------------------------------------------------- extremes


@dataclass(frozen=True, eq=False)
class ExtremeResult:
    """The KKT class of largest (``target="max_error"``) or smallest clean error found.

    ``exact`` is True iff it comes from a complete enumeration (then it is the extreme over all vertex KKT
    classes; points inside an optimal face are convex combinations of those, module docstring).
    ``effort`` is the search's counters and ``search`` says which method ran.
    """

    target: str
    best: KKTClass | None
    exact: bool
    search: str
    n_classes: int
    seconds: float
    effort: dict[str, int]
    clean_error_range: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        from .cli import to_jsonable

        return to_jsonable(
            {
                "target": self.target,
                "exact": self.exact,
                "search": self.search,
                "n_classes": self.n_classes,
                "seconds": self.seconds,
                "effort": self.effort,
                "clean_error_range": self.clean_error_range,
                "best": None if self.best is None else self.best.to_dict(),
            }
        )


def extreme_kkt(
    dataset: Dataset,
    target: str = "max_error",
    budget: float = 60.0,
    *,
    seed: int | None = 0,
    n_per_strategy: int = 1000,
    progress: bool = False,
    **kwargs: Any,
) -> ExtremeResult:
    """The KKT class with the largest or smallest clean error.

    First runs :func:`enumerate_kkt` with half the ``budget`` (seconds); if that completes the answer is
    exact. Otherwise the remaining time is split between the samplers ("local", "random",
    "gradient_flow") and the best class found is returned with ``exact=False`` and the effort spent.
    """
    if target not in ("max_error", "min_error"):
        raise InputError(f"target must be 'max_error' or 'min_error', got {target!r}")
    if not (np.isfinite(budget) and budget > 0):
        raise InputError(f"budget must be a positive number of seconds, got {budget!r}")
    t0 = time.perf_counter()
    sign = 1.0 if target == "max_error" else -1.0
    en = enumerate_kkt(dataset, time_budget=budget / 2, progress=progress, **kwargs).collect()
    classes = list(en.classes)
    effort = {f"enumerate_{k}": v for k, v in en.counters.items()}
    method = "enumerate"
    if not en.complete:
        method = "enumerate (incomplete) + sample"
        left = budget - (time.perf_counter() - t0)
        for i, strat in enumerate(("local", "random", "gradient_flow")):
            share = left / (3 - i)
            if share <= 0:
                break
            t1 = time.perf_counter()
            res = sample_kkt(
                dataset,
                n_per_strategy,
                strat,
                seed=seed,
                time_budget=share,
                progress=progress,
                **kwargs,
            ).collect()
            classes.extend(res.classes)
            for k, v in res.counters.items():
                effort[f"{strat}_{k}"] = v
            left -= time.perf_counter() - t1
    best = max(classes, key=lambda c: sign * c.clean_error, default=None)
    errs = [c.clean_error for c in classes]
    return ExtremeResult(
        target,
        best,
        en.complete,
        method,
        len(classes),
        time.perf_counter() - t0,
        effort,
        (min(errs), max(errs)) if errs else None,
    )
