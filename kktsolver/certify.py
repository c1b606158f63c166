"""KKT certifier: is a given two-layer ReLU network a KKT point, a local or a global minimum of (P)?

Finds the best Clarke multipliers by a linear program, reports documented residuals, a certified
optimality interval (1-D) and a verdict with evidence (MATH.md sections 2-3, F3, F4).

Verdicts (decided in this order; every threshold is a field of :class:`CertTolerances`)
----------------------------------------------------------------------------------------
Every verdict but ``infeasible``, ``not_kkt`` and ``undecided`` is a KKT point (stationarity within
tolerance).

``infeasible``
    min_i y_i N(x_i) < 1 - ``feasibility``. Up to float rounding of the margins (proven with
    ``exact=True``).
``not_kkt``
    Feasible, but the best multipliers found leave a relative stationarity residual
    ||theta - sum_i lambda_i h_i||_2 / ||theta||_2 > ``stationarity``, where lambda_i >= 0 may be
    nonzero only on points with margin <= 1 + ``active`` and mu_ij in [0, lambda_i] exists only
    where neuron j's kink is within ``kink`` of data point i (:func:`kink_pairs`). The LP
    (HiGHS) minimises the L1 residual and is then polished by active-set least squares with
    iterative refinement; residuals are evaluated in long double (:func:`_residual`); when the
    L2 residual is still above tolerance but the L1 optimum does not prove that every L2 residual
    is (L2 >= L1 / sqrt(n (d + 2))), the L2 problem is solved too, so the verdict does not hinge
    on the norm; a residual whose minimality neither proves is ``undecided`` instead. A
    ``not_kkt`` network can still be ``near_global`` (its value certified within ``gap`` of
    min (P)): a global minimiser of the value up to the gap that is not stationary,
    e.g. because tiny neurons point against the multipliers (``notes`` names the neurons that
    carry the residual and their share of the objective).
``undecided``
    Feasible, stationarity not decided: the multiplier search failed (``notes`` say why: the LP
    solver and its message, the L2 program's status) and the best multipliers found leave a
    residual > ``stationarity``. Reached only when the LP failed or its L1 optimum does not prove
    the L2 residual above tolerance, and the L2 program was skipped (a failed LP on a system of
    more than ``_FALLBACK_MAX_ENTRIES`` entries), failed, or its "optimal" answer is not
    confirmed by weak duality with the Euler bound sum lambda <= 1/2||theta||^2 (1 + tol) /
    kappa (:func:`_dual_proves_above`). Without the LP the multipliers come from lambda = 0, the
    projected least-squares solution (polished) and, in 1-D, the R-value dual LP's lambda
    (polished). ``lower_bound``, ``relative_gap`` and ``near_global`` are reported as for every
    feasible network. Not a KKT point as far as anything was proven; not proven non-KKT either.
``global_min`` (1-D only)
    KKT and (1/2||theta||^2 - LB) / (1/2||theta||^2) <= ``gap``, with
    LB = sum lambda / max(1, max_k rho_k(lambda)) over ALL 1-D blocks (MATH.md section 3). LB is a
    lower bound on min (P) for every lambda >= 0 and every width, so this proves global
    optimality of the value up to ``gap`` and the float rounding of rho_k. lambda: the KKT
    multipliers, then the R-value dual LP of :func:`kktsolver.scale.dual_lp` on the active
    points, then the maximiser of sum lambda subject to max_k rho_k <= 1 among lambda >= 0 on the
    active points (the dual of (C_all), a small SOCP), whichever bound is best.
``local_min``
    KKT and no descent path in a neighbourhood at the given ``width`` (MATH.md F4):

    * no kink on a data point and no spare neuron: optimal in its own cell (any d);
    * 1-D with kinks on data points: for every combination of adjacent closed cells of the pinned
      neurons, the cell's convex problem is optimal at u, i.e. its KKT system (the Clarke box of mu
      replaced by that cell's sign condition) has a solution with residual <= ``stationarity``;
    * 1-D with one spare zero neuron (width - #nonzero neurons = 1): also, in every such cell,
      min over the cell's multiplier polytope of rho_k <= 1 + ``rho`` for every block k. With two
      or more spare neurons, a multiplier vector with max_k rho_k <= 1 + ``rho`` in every cell is
      required (sufficient; also necessary when the multipliers are unique).

    A "multiplier polytope" is the set of multipliers satisfying the sign constraints whose
    relative L1 residual is within ``stationarity`` of the best one found, so these statements
    hold up to that tolerance.
``kkt``
    KKT, but not a local minimum at the given width; ``witness`` shows why. ``kind="block"``: a
    spare neuron started in that block as u = t * ``direction`` (size sqrt(t)) gives a feasible
    path of strictly smaller 1/2||theta||^2, because min over the multiplier polytope of
    rho_k > 1 + ``rho``. ``kind="cell"``: an adjacent cell of the pinned kinks whose convex problem
    is not optimal at u (best residual > ``stationarity``; the F3 situation).
``kkt_undecided``
    KKT, local minimality not decided: d > 1 with spare neurons or kinks on data points (the blocks
    of R^d are not enumerated), more than 2^``max_cells_log2`` cell combinations, two or more
    spare neurons with non-unique multipliers and no single violated block, or an adjacent
    cell whose multiplier search failed and left a residual above tolerance that is not proven
    minimal (no ``kind="cell"`` witness without proof). ``notes`` says which.

Large 1-D problems (m n > ``STRUCTURED_MIN_ENTRIES``, ``exact`` off) take the structured path of
:mod:`kktsolver.certify_large` (prefix sums, no m x n array; docs/certify_large.md): same
residuals, lower bound and tolerances, but only ``infeasible``, ``global_min``, ``kkt_undecided``
(KKT, gap above ``gap``: no local analysis there) and ``undecided`` (it never proves
``not_kkt``); kink pairs there include tiny neurons (below ``zero_neuron``), e.g. the solver's
twin neurons whose kinks sit on data points.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from .data import Dataset
from .errors import InputError, SolverError, check_int_range, check_tolerances, require_instance
from .network import ReLUNetwork, require_compatible
from .patterns import Block, SortedSample, all_blocks, block_directions, cone_constraints, rho

__all__ = [
    "CertTolerances",
    "Certificate",
    "ExactCheck",
    "Witness",
    "certify",
    "kink_pairs",
    "kkt_support",
    "KKTSupport",
    "VERDICTS",
]

VERDICTS = (
    "infeasible",
    "not_kkt",
    "undecided",
    "kkt",
    "kkt_undecided",
    "local_min",
    "global_min",
)


@dataclass(frozen=True)
class CertTolerances:
    """Every threshold a verdict uses (all relative, dimensionless).

    Attributes
    ----------
    feasibility : infeasible iff min_i y_i N(x_i) < 1 - feasibility.
    active : lambda_i may be nonzero only if y_i N(x_i) <= 1 + active.
    kink : neuron j's kink sits on point i iff |z_ij| <= kink * ||(w_j, b_j)|| * ||(x_i, 1)||
        (the rule of :func:`kktsolver.patterns.block_of_neuron`); only then mu_ij exists.
    stationarity : KKT iff ||theta - sum lambda_i h_i||_2 / ||theta||_2 <= stationarity.
    zero_neuron : neuron j counts as zero (a spare neuron) iff
        sqrt(v_j^2 + ||(w_j, b_j)||^2) <= zero_neuron * ||theta||.
    gap : global_min iff (1/2||theta||^2 - lower_bound) / (1/2||theta||^2) <= gap.
    rho : a block is violated iff its dual norm rho_k exceeds 1 + rho.
    max_cells_log2 : at most 2^max_cells_log2 adjacent-cell LPs are solved for pinned kinks.
    """

    feasibility: float = 1e-7
    active: float = 1e-6
    kink: float = 1e-7
    stationarity: float = 1e-6
    zero_neuron: float = 1e-9
    gap: float = 1e-6
    rho: float = 1e-6
    max_cells_log2: int = 10

    def __post_init__(self) -> None:
        fields = ("feasibility", "active", "kink", "stationarity", "zero_neuron", "gap", "rho")
        check_tolerances("CertTolerances", {name: getattr(self, name) for name in fields})
        check_int_range("CertTolerances", "max_cells_log2", self.max_cells_log2, 0, 20)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Witness:
    """Evidence that a KKT point is not a local minimum at the given width.

    ``kind="block"``: a new neuron in ``block`` (a 1-D block of the sorted sample; its active
    points in dataset order are ``active_points``) started as u = t * ``direction`` (unit vector,
    size sqrt(t) after balancing) decreases the objective; ``rho`` = min over the multiplier
    polytope of rho_k (> 1). If the point has kinks on data points, ``cell`` names the adjacent
    cell in which this holds. ``kind="cell"``: the pinned neurons listed in ``cell`` (each with the
    data point carrying its kink and the side chosen, "include" / "exclude" that point) define an
    adjacent cell whose convex problem is not optimal at u; ``residual`` is that cell's best
    relative stationarity residual (> tolerance).
    """

    kind: str
    block: Block | None = None
    active_points: list[int] | None = None
    rho: float | None = None
    direction: list[float] | None = None
    cell: list[dict[str, Any]] | None = None
    residual: float | None = None

    def to_dict(self) -> dict[str, Any]:
        from .cli import to_jsonable

        d = asdict(self)
        d["block"] = None if self.block is None else asdict(self.block)
        return to_jsonable(d)


@dataclass(frozen=True)
class ExactCheck:
    """Numbers proven in rational arithmetic (``exact=True``), each rounded outward to a float.

    Data and weights are read exactly (every float is a rational). With lambda, mu the reported
    multipliers as rationals (lambda >= 0, zero off the active set, 0 <= mu <= lambda):

    * ``min_margin_lower``: min_i y_i N(x_i) of the network as given, rounded down;
    * ``stationarity_upper``: ||theta' - sum_i lambda_i h_i(theta')||_2 / ||theta'||_2 rounded up,
      where theta' is theta with the bias of each neuron carrying a mu replaced by the rational
      -<w_j, x_i> that puts its kink exactly on that point (theta' = theta if there is none) and
      h_i uses the exact activation signs (mu only where z_ij = 0 exactly);
    * ``snap_distance_upper``: ||theta' - theta|| / ||theta|| rounded up;
    * ``min_margin_snapped_lower``: min margin of theta', rounded down;
    * ``complementary_slackness_upper``: sum_i lambda_i |y_i N'(x_i) - 1| / sum_i lambda_i for
      theta', rounded up.

    Not proven: rho_k, the lower bound, local or global optimality, or that no better multipliers
    exist (they come from the float LP).
    """

    min_margin_lower: float
    min_margin_snapped_lower: float
    stationarity_upper: float | None
    snap_distance_upper: float
    complementary_slackness_upper: float | None
    snapped_neurons: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        from .cli import to_jsonable

        return to_jsonable(asdict(self))


@dataclass(frozen=True)
class Certificate:
    """The result of :func:`certify`; see the module docstring for what each verdict proves.

    Residuals (relative unless said otherwise; None when undefined, e.g. theta = 0):

    * ``stationarity_residual`` = ||theta - sum lambda_i h_i||_2 / ||theta||_2 for the multipliers
      found (proven upper bound when ``exact``);
    * ``min_margin`` = min_i y_i N(x_i) (primal feasibility is min_margin - 1; proven lower bound
      when ``exact``);
    * ``complementary_slackness`` = sum lambda_i |y_i N(x_i) - 1| / sum lambda_i;
    * ``balance_residual`` = max_j | |v_j| - ||(w_j, b_j)|| | / ||theta||;
    * ``euler_residual`` = |1/2||theta||^2 - sum lambda| / (1/2||theta||^2);
    * Lyu & Li's (eps, delta)-KKT numbers, absolute: ``lyu_li_eps`` = ||theta - sum lambda_i h_i||_2
      and ``lyu_li_delta`` = sum lambda_i (y_i N(x_i) - 1);
    * ``lower_bound`` <= min (P) (1-D only, else None); ``relative_gap`` =
      (objective - lower_bound) / objective (None if infeasible or no bound); ``max_rho`` =
      max_k rho_k of the multipliers giving the bound;
    * ``near_global``: True iff the network is feasible and ``relative_gap`` <= ``tolerances.gap``,
      i.e. its value 1/2||theta||^2 is certified within the gap of min (P), whatever its
      stationarity (False if the gap is larger, None without a bound). ``global_min`` is
      ``near_global`` AND KKT; a ``not_kkt`` network may be ``near_global``.

    ``multipliers``: length m, dataset order; ``mu``: list of (point, neuron, mu_ij) on kink pairs.
    """

    verdict: str
    multipliers: np.ndarray
    min_margin: float
    objective: float
    width: int
    nonzero_neurons: int
    tolerances: CertTolerances
    stationarity_residual: float | None = None
    near_global: bool | None = None
    mu: list[tuple[int, int, float]] = field(default_factory=list)
    complementary_slackness: float | None = None
    balance_residual: float | None = None
    euler_residual: float | None = None
    lyu_li_eps: float = 0.0
    lyu_li_delta: float = 0.0
    lower_bound: float | None = None
    relative_gap: float | None = None
    max_rho: float | None = None
    pinned_kinks: int = 0
    witness: Witness | None = None
    exact: ExactCheck | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        from .cli import to_jsonable

        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["mu"] = [{"point": i, "neuron": j, "mu": v} for i, j, v in self.mu]
        d["witness"] = None if self.witness is None else self.witness.to_dict()
        d["exact"] = None if self.exact is None else self.exact.to_dict()
        d["tolerances"] = self.tolerances.to_dict()
        return to_jsonable(d)


# --------------------------------------------------------------------------- numerical core


def kink_pairs(
    Z: np.ndarray, net: ReLUNetwork, Xt: np.ndarray, kink_tol: float, live: np.ndarray
) -> np.ndarray:
    """Pairs (i, j) with |z_ij| <= kink_tol ||(w_j, b_j)|| ||x~_i||, live neurons only: (P, 2).

    The same relative rule as :func:`kktsolver.patterns.block_of_neuron` (there in 1-D).
    """
    scale = kink_tol * np.linalg.norm(Xt, axis=1)[:, None] * net.neuron_norms()[None, :]
    hit = (np.abs(Z) <= scale) & live[None, :]
    return np.argwhere(hit)


@dataclass(frozen=True, eq=False)
class KKTSupport:
    """Where the Clarke multipliers of a network on a dataset may live, by the certifier's rules.

    One function (:func:`kkt_support`) computes this for :func:`certify` and for
    ``enumeration.fast_certificate``, so that the two cannot disagree on which neurons are zero,
    which points are active or which kinks sit on data points.

    Attributes
    ----------
    Xt : (m, d + 1) lifted inputs x~_i = (x_i, 1).
    Z : (m, n) preactivations z_ij = <w_j, x_i> + b_j.
    margins : (m,) y_i N(x_i).
    norm_theta : ||theta||_2.
    live : (n,) bool, neuron j is nonzero: sqrt(v_j^2 + ||(w_j, b_j)||^2) > zero_neuron ||theta||.
    active : indices of the points that may carry lambda_i: y_i N(x_i) <= 1 + active.
    pairs : (P, 2) kink pairs (i, j) of live neurons (:func:`kink_pairs`), on any point.
    """

    Xt: np.ndarray
    Z: np.ndarray
    margins: np.ndarray
    norm_theta: float
    live: np.ndarray
    active: np.ndarray
    pairs: np.ndarray

    @property
    def min_margin(self) -> float:
        """min_i y_i N(x_i)."""
        return float(self.margins.min())

    @property
    def nonzero_neurons(self) -> int:
        """Number of live neurons."""
        return int(self.live.sum())


def kkt_support(network: ReLUNetwork, dataset: Dataset, tol: CertTolerances) -> KKTSupport:
    """The zero-neuron, active-margin and kink-pair rules of :class:`CertTolerances` applied.

    live_j iff sqrt(v_j^2 + ||(w_j, b_j)||^2) > tol.zero_neuron ||theta||; active_i iff
    y_i N(x_i) <= 1 + tol.active; (i, j) is a kink pair iff j is live and
    |z_ij| <= tol.kink ||(w_j, b_j)|| ||x~_i||. The inputs are trusted (validated by the caller).
    """
    X, y = dataset.X, dataset.y.astype(float)
    Xt = np.column_stack([X, np.ones(dataset.m)])
    Z = network.preactivations(X)
    margins = network.accurate_margins(X, y, Z, near=1e-3)  # compared with 1 + tolerances
    norm_theta = float(np.linalg.norm(network.theta))
    sizes = np.sqrt(network.v**2 + network.neuron_norms() ** 2)
    live = sizes > tol.zero_neuron * norm_theta
    active = np.flatnonzero(margins <= 1.0 + tol.active)
    pairs = kink_pairs(Z, network, Xt, tol.kink, live)
    return KKTSupport(Xt, Z, margins, norm_theta, live, active, pairs)


@dataclass(frozen=True, eq=False)
class _System:
    """Scaled linear KKT system  A_lam lam' + A_mu mu' + r = theta / ||theta||  (MATH.md section 2).

    Unknowns are scaled, lam_i = c_i lam'_i and mu_ij = c_i mu'_ij, so every column has about unit
    size and the LP is well conditioned whatever the scale of theta. The scales are powers of two,
    so lam = c lam' is exact in both directions and the reported multipliers are the solved ones.
    ``A_ld``, ``M_ld``, ``theta_ld``: the same system unscaled in long double (64-bit mantissa),
    in which :func:`_residual` evaluates r: near-optimal networks of large m have multipliers
    ~1e9 whose terms cancel to O(1), so a float64 evaluation of r errs by ~1e-7 relative.
    """

    A_lam: sparse.csr_matrix  # (N, na)
    A_mu: sparse.csr_matrix  # (N, P)
    rhs: np.ndarray  # (N,)
    active: np.ndarray  # dataset indices of the points that may carry lambda
    pairs: np.ndarray  # (P, 2) (i, j) kink pairs
    # (P,) column of lam' that bounds each mu' (-1: point not active, so lambda_i = 0)
    pair_col: np.ndarray
    sigma: np.ndarray  # (P,) s_j y_i
    c: np.ndarray  # (na,) column scales of lambda (powers of two)
    cmu: np.ndarray  # (P,) column scales of mu (powers of two)
    norm_theta: float
    A_ld: sparse.csr_matrix  # (N, na) unscaled h_i, long double
    M_ld: sparse.csr_matrix  # (N, P) unscaled kink columns, long double
    theta_ld: np.ndarray  # (N,) theta in row order, long double


def _pow2_scale(num: float, den: np.ndarray) -> np.ndarray:
    """2^round(log2(num / den)) where den > 0, else 1: an exact, roughly normalising scale."""
    safe = np.where(den > 0, den, num)
    return np.where(den > 0, np.exp2(np.round(np.log2(num / safe))), 1.0)


def _build_system(
    net: ReLUNetwork,
    Xt: np.ndarray,
    y: np.ndarray,
    Z: np.ndarray,
    active: np.ndarray,
    pairs: np.ndarray,
) -> _System:
    """The stationarity equations of MATH.md section 2 as a sparse linear system.

    Rows: v_j (j = 1..n), then (w_j, b_j) neuron by neuron. Column i (active point): h_i, i.e.
    y_i relu(z_ij) in row v_j and y_i v_j x~_i in the rows of (w_j, b_j) when z_ij > 0 off the
    kink pairs. Column p (kink pair (i, j)): y_i v_j x~_i in the rows of (w_j, b_j). Which entries
    are nonzero is decided on the float64 z_ij (as everywhere else); their values are computed in
    long double (z_ij of a neuron with |(w_j, b_j)| ~ 3e4 loses ~1e-12 absolute in float64, which
    multipliers ~1e9 turn into a ~1e-7 relative residual).
    """
    LD = np.longdouble
    n, d1 = net.n, Xt.shape[1]
    N = n * (1 + d1)
    na = active.size
    norm_theta = float(np.linalg.norm(net.theta))
    is_pair = np.zeros(Z.shape, dtype=bool)
    if pairs.size:
        is_pair[pairs[:, 0], pairs[:, 1]] = True
    v_ld = net.v.astype(LD)
    Xa = Xt[active].astype(LD)
    ya = y[active]
    pos = Z[active] > 0
    # v rows: y_i relu(z_ij), z_ij recomputed in long double from the float data and weights
    kv, jv = np.nonzero(pos)
    zl = (Xa[kv] * np.column_stack([net.W, net.b])[jv].astype(LD)).sum(axis=1)
    vals_v = ya[kv] * np.maximum(zl, 0)
    # (w_j, b_j) rows: y_i v_j x~_i where z_ij > 0 off the kink pairs (kinks go through mu)
    kw, jw = np.nonzero(pos & ~is_pair[active] & (net.v != 0)[None, :])
    rows_w = (n + jw[:, None] * d1 + np.arange(d1)[None, :]).ravel()
    vals_w = ((ya[kw] * v_ld[jw])[:, None] * Xa[kw]).ravel()
    rows = np.concatenate([jv, rows_w])
    cols = np.concatenate([kv, np.repeat(kw, d1)])
    vals = np.concatenate([vals_v, vals_w])
    A_ld = sparse.csr_matrix((vals, (rows, cols)), shape=(N, na), dtype=LD)
    P = pairs.shape[0]
    pi, pj = (pairs[:, 0], pairs[:, 1]) if P else (np.zeros(0, int), np.zeros(0, int))
    mrows = (n + pj[:, None] * d1 + np.arange(d1)[None, :]).ravel()
    mvals = ((y[pi] * v_ld[pj])[:, None] * Xt[pi].astype(LD)).ravel()
    M_ld = sparse.csr_matrix((mvals, (mrows, np.repeat(np.arange(P), d1))), shape=(N, P), dtype=LD)
    # column scale: the size of h_i (strict part plus its kink columns) relative to ||theta||
    vf = vals.astype(float)
    colnorm = np.sqrt(np.bincount(cols, weights=vf * vf, minlength=na))
    pos_of = {int(i): k for k, i in enumerate(active)}
    pair_col = np.array([pos_of.get(int(i), -1) for i in pi], dtype=int)
    mf = mvals.astype(float)
    mn = np.sqrt(np.bincount(np.repeat(np.arange(P), d1), weights=mf * mf, minlength=P))
    on = pair_col >= 0
    np.maximum.at(colnorm, pair_col[on], mn[on])
    c = _pow2_scale(norm_theta, colnorm)
    # mu of a pair is scaled like lambda of its point (so mu' <= lam' keeps its form); pairs on
    # inactive points (lambda_i = 0, only relevant for the adjacent-cell LPs) get their own scale
    cmu = np.where(on, c[np.maximum(pair_col, 0)] if na else 1.0, _pow2_scale(norm_theta, mn))
    A_lam = sparse.csr_matrix((vf * c[cols] / norm_theta, (rows, cols)), shape=(N, na), dtype=float)
    A_mu = sparse.csr_matrix(
        (mf * np.repeat(cmu, d1) / norm_theta, (mrows, np.repeat(np.arange(P), d1))),
        shape=(N, P),
        dtype=float,
    )
    sigma = np.sign(net.v[pj]) * y[pi] if P else np.zeros(0)
    theta = np.concatenate([net.v, np.column_stack([net.W, net.b]).ravel()])
    return _System(
        A_lam,
        A_mu,
        theta / norm_theta,
        active,
        pairs,
        pair_col,
        sigma,
        c,
        cmu.astype(float),
        norm_theta,
        A_ld,
        M_ld,
        theta.astype(LD),
    )


def _mode_rows(sys_: _System, modes: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray, list]:
    """Inequalities  A_ub [lam', mu'] <= 0  and mu' bounds for each pair's mode.

    Mode 0 ("clarke"): 0 <= mu <= lam_i.  Mode 1 ("exclude" point i from the neuron's cell):
    sigma mu <= 0.  Mode 2 ("include"): sigma (mu - lam_i) >= 0.  (sigma = s_j y_i; MATH.md F3/F4:
    the cell's normal-cone multiplier is -sigma mu resp. sigma (mu - lam_i) and must be >= 0.)
    """
    na, P = sys_.A_lam.shape[1], sys_.pairs.shape[0]
    rows, cols, vals = [], [], []
    bounds = []
    r = 0
    for p in range(P):
        s, col = sys_.sigma[p], sys_.pair_col[p]
        if (
            col < 0
        ):  # lambda_i = 0: Clarke forces mu = 0, a cell only fixes the sign of the cone multiplier
            bounds.append(
                (0, 0)
                if modes[p] == 0
                else ((None, 0) if (s > 0) == (modes[p] == 1) else (0, None))
            )
            continue
        if modes[p] == 0:
            bounds.append((0, None))
            rows += [r, r]
            cols += [na + p, col]
            vals += [1.0, -1.0]
            r += 1
        elif modes[p] == 1:
            bounds.append((None, 0) if s > 0 else (0, None))
        else:  # -sigma mu + sigma lam <= 0
            bounds.append((None, None))
            rows += [r, r]
            cols += [na + p, col]
            vals += [-s, s]
            r += 1
    A_ub = sparse.csr_matrix((vals, (rows, cols)), shape=(r, na + P))
    return A_ub, np.zeros(r), bounds


def _solve_lp(sys_: _System, modes: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """min ||r||_1 over the KKT system with the given pair modes: (lam', mu', scaled ||r||_1).

    The float64 matrix has entries rounded to 2^-53 relative, which multipliers ~1e9 that cancel
    turn into row errors ~1e-7: the LP is then optimal only for a perturbed system (measured at
    m = 2000: its own L1 9.2e-7, the true one 2.3e-6; HiGHS tolerances of 1e-10 give the same
    point). :func:`_polish` corrects it with long-double residuals.
    """
    N, na = sys_.A_lam.shape
    P = sys_.pairs.shape[0]
    I = sparse.identity(N, format="csr")
    A_eq = sparse.hstack([sys_.A_lam, sys_.A_mu, I, -I], format="csr")
    A_ub, b_ub, mu_bounds = _mode_rows(sys_, modes)
    A_ub = sparse.hstack([A_ub, sparse.csr_matrix((A_ub.shape[0], 2 * N))], format="csr")
    cost = np.concatenate([np.zeros(na + P), np.ones(2 * N)])
    bounds = [(0, None)] * na + mu_bounds + [(0, None)] * (2 * N)
    res = linprog(
        cost,
        A_ub=A_ub if A_ub.shape[0] else None,
        b_ub=b_ub if A_ub.shape[0] else None,
        A_eq=A_eq,
        b_eq=sys_.rhs,
        bounds=bounds,
        method="highs",
    )
    if res.status != 0:
        raise SolverError(f"HiGHS failed on the KKT multiplier LP: {res.message}")
    x = res.x
    return np.maximum(x[:na], 0.0), x[na : na + P], float(res.fun)


def _residual(sys_: _System, lam_s: np.ndarray, mu_s: np.ndarray) -> np.ndarray:
    """Scaled residual r = (theta - A lam - M mu) / ||theta||, lam = c lam', mu = cmu mu'.

    Evaluated in long double on the unscaled system (c, cmu are powers of two, so lam and mu are
    exactly the multipliers certify reports) and rounded to float64 at the end: with lambda ~1e9
    cancelling to O(1) a float64 evaluation errs by ~1e-7 relative (MATH.md section 5).
    """
    LD = np.longdouble
    lam = (sys_.c * np.asarray(lam_s, dtype=float)).astype(LD)
    r = sys_.theta_ld - sys_.A_ld @ lam
    if mu_s.size:
        r = r - sys_.M_ld @ (sys_.cmu * np.asarray(mu_s, dtype=float)).astype(LD)
    return (r / LD(sys_.norm_theta)).astype(float)


def _pair_bounds(
    sys_: _System, modes: np.ndarray, lam_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of each mu' given lam' and the pair modes (see :func:`_mode_rows`)."""
    col = sys_.pair_col
    li = np.where(col >= 0, lam_s[np.maximum(col, 0)] if lam_s.size else 0, 0.0)
    lo_k, hi_k = _pair_kinds(sys_, modes, np.ones(lam_s.size, dtype=bool))
    lo = np.where(lo_k == 0, -np.inf, np.where(lo_k == 1, 0.0, li))
    hi = np.where(hi_k == 0, np.inf, np.where(hi_k == 1, 0.0, li))
    return lo, hi


def _project(sys_: _System, modes: np.ndarray, lam_s: np.ndarray, mu_s: np.ndarray):
    """Clip lam' >= 0 and each mu' into its mode's bounds (removes the solvers' rounding)."""
    lam_s = np.maximum(lam_s, 0.0)
    if not mu_s.size:
        return lam_s, mu_s
    lo, hi = _pair_bounds(sys_, modes, lam_s)
    return lam_s, np.minimum(np.maximum(mu_s, lo), hi)


def _pair_kinds(
    sys_: _System, modes: np.ndarray, lam_free: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Kind of each mu' bound of :func:`_pair_bounds`: 0 none, 1 the constant 0, 2 lam'_i.

    A bound lam'_i whose lam'_i is fixed at 0 (or whose point is inactive) is the constant 0.
    """
    col = sys_.pair_col
    P = col.size
    has = (col >= 0) & (lam_free[np.maximum(col, 0)] if lam_free.size else False)
    lam_kind = np.where(has, 2, 1)
    lo, hi = np.zeros(P, dtype=int), np.zeros(P, dtype=int)
    pos = sys_.sigma > 0
    clarke, excl, incl = modes == 0, modes == 1, modes == 2
    lo[clarke], hi[clarke] = 1, lam_kind[clarke]
    hi[excl & pos], lo[excl & ~pos] = 1, 1
    lo[incl & pos], hi[incl & ~pos] = lam_kind[incl & pos], lam_kind[incl & ~pos]
    return lo, hi


def _max_step(
    lam: np.ndarray,
    mu: np.ndarray,
    dl: np.ndarray,
    dm: np.ndarray,
    free_lam: np.ndarray,
    free_p: np.ndarray,
    kinds: tuple[np.ndarray, np.ndarray],
    col: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Largest alpha in [0, 1] keeping lam' + alpha dl, mu' + alpha dm feasible.

    Returns alpha and the blocking variables: lam indices, pair indices hitting their lower bound,
    pair indices hitting their upper bound (empty when alpha = 1 is feasible).
    """
    colc = np.maximum(col, 0)
    lcol = lam[colc] if lam.size else np.zeros(col.size)
    dcol = dl[colc] if dl.size else np.zeros(col.size)
    steps, owners = [], []
    neg = free_lam & (dl < 0)
    steps.append(lam[neg] / -dl[neg])
    owners.append(("lam", np.flatnonzero(neg)))
    for side, kind in (("lo", kinds[0]), ("hi", kinds[1])):
        # g(x) >= 0 with g = mu - bound (lower) or bound - mu (upper); bound = 0 or lam'_i
        bound = np.where(kind == 2, lcol, 0.0)
        dbound = np.where(kind == 2, dcol, 0.0)
        g, dg = (mu - bound, dm - dbound) if side == "lo" else (bound - mu, dbound - dm)
        sel = free_p & (kind > 0) & (dg < 0)
        steps.append(np.maximum(g[sel], 0.0) / -dg[sel])
        owners.append((side, np.flatnonzero(sel)))
    allsteps = np.concatenate(steps)
    alpha = float(min(1.0, allsteps.min(initial=np.inf)))
    if alpha >= 1.0:
        empty = np.zeros(0, dtype=int)
        return 1.0, empty, empty, empty
    hit = [
        idx[st <= alpha * (1 + 1e-12) + 1e-300] for st, (_, idx) in zip(steps, owners, strict=True)
    ]
    return alpha, hit[0], hit[1], hit[2]


def _polish(
    sys_: _System,
    modes: np.ndarray,
    lam_s: np.ndarray,
    mu_s: np.ndarray,
    rounds: int = 8,
    refine: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """Active-set least squares with iterative refinement, from an LP solution (MATH.md section 5).

    The LP is optimal only for its rounded float64 system (:func:`_solve_lp`). Keep its support
    lam'_i > 0 (relative to 1e-13 max lam'), but start every mu' free (the LP's bound choices for
    mu' come from the rounded system). On that support, minimise ||r||_2 by iterative
    refinement: r is evaluated in long double (:func:`_residual`) and the correction
    min ||r - B dz|| solved with one factorisation of B (:func:`_ls_solver`), until r stops
    halving. A correction that would leave the bounds
    is cut at the first bound it meets (Lawson-Hanson), the blocking variables are fixed there
    (lam' = 0; mu' = 0 or tied) and B is refactorised; at most ``rounds`` factorisations.
    Why refinement: B is ill-conditioned when opposite-label points are very close (gaps 2.5e-9
    give cond ~3e9; the multipliers of the pair are ~1e9 and cancel), so one solve in float64
    stops at ~1e-7, while each refinement step gains ~cond * 2^-53 of the remaining residual.
    """
    na, P = lam_s.size, mu_s.size
    col = sys_.pair_col
    colc = np.maximum(col, 0)
    lam = np.maximum(np.asarray(lam_s, dtype=float), 0.0)
    mu = np.asarray(mu_s, dtype=float).copy()
    # support: lam' clearly above 0 (the old 1e-6 max lam' dropped 248 needed multipliers
    # ranging down to 6e-10 max lam' at m = 2000)
    lam_free = lam > 1e-13 * float(np.max(lam, initial=0.0))
    # every mu' starts free: the LP's choice of which mu' sit on a bound is made on its rounded
    # system, and freezing it stalled the polish at 1.3e-6 (m = 2000, p = 0.4; all free: 2.9e-8)
    state = np.full(P, 2, dtype=int)  # 0 = fixed at 0, 1 = tied to lam_i (mu = lam_i), 2 = free
    A_lam, A_mu = sys_.A_lam.tocsc(), sys_.A_mu.tocsc()
    for _ in range(rounds):
        lo_k, hi_k = _pair_kinds(sys_, modes, lam_free)
        state[(state == 1) & (lo_k != 2) & (hi_k != 2)] = 0  # tied to a lam that left
        state[(lo_k == 1) & (hi_k == 1)] = 0  # 0 <= mu <= 0
        lam[~lam_free] = 0.0
        tied = state == 1
        mu[state == 0] = 0.0
        mu[tied] = lam[col[tied]]
        tied_p = np.flatnonzero(tied)
        # a tied mu = lam_i adds its column to lam_i's: B = A_lam + A_mu T
        T = sparse.csc_matrix((np.ones(tied_p.size), (tied_p, col[tied_p])), shape=(P, na))
        B = (A_lam + A_mu @ T) if P else A_lam
        fl, fp = np.flatnonzero(lam_free), np.flatnonzero(state == 2)
        if not fl.size and not fp.size:
            break
        solve = _ls_solver(sparse.hstack([B[:, fl], A_mu[:, fp]], format="csc"))
        r = _residual(sys_, lam, mu)
        rn = float(np.linalg.norm(r))
        changed = False
        for _ in range(refine):
            if rn == 0.0:
                break
            dz = solve(r)
            dl, dm = np.zeros(na), np.zeros(P)
            dl[fl], dm[fp] = dz[: fl.size], dz[fl.size :]
            dm[tied] = dl[col[tied]]
            alpha, h_lam, h_lo, h_hi = _max_step(
                lam, mu, dl, dm, lam_free, state == 2, (lo_k, hi_k), col
            )
            lam_n, mu_n = lam + alpha * dl, mu + alpha * dm
            lam_n[h_lam] = 0.0
            for idx, kind in ((h_lo, lo_k), (h_hi, hi_k)):  # snap onto the bound met
                mu_n[idx] = np.where(kind[idx] == 2, lam_n[colc[idx]], 0.0)
            r_n = _residual(sys_, lam_n, mu_n)
            rn_n = float(np.linalg.norm(r_n))
            hits = h_lam.size + h_lo.size + h_hi.size > 0
            if rn_n >= rn and not hits:  # refinement has converged
                break
            lam, mu, r, rn_old, rn = lam_n, mu_n, r_n, rn, rn_n
            if hits:
                lam_free[h_lam] = False
                for idx, kind in ((h_lo, lo_k), (h_hi, hi_k)):
                    state[idx] = np.where(kind[idx] == 2, 1, 0)
                changed = True
                break
            if rn > 0.5 * rn_old:  # less than a halving: the rounding floor is reached
                break
        if not changed:
            break
    return lam, mu


_DENSE_QR = 8_000_000  # entries of the polish system up to which dense pivoted QR is used


def _ls_solver(A: sparse.csc_matrix):
    """A function b -> argmin ||A x - b||_2, factorising A once (for iterative refinement).

    Up to ``_DENSE_QR`` entries: Householder QR with column pivoting (LAPACK geqp3), rank cut at
    |R_kk| <= max(N, k) 2^-52 |R_11| (basic solution). It is backward stable whatever cond(A);
    at m = 2000 (2934 x 1959) it takes a few seconds. Larger systems: sparse LU of the normal
    equations A^T A (fast, but accurate only while cond(A)^2 2^-53 < 1; the caller's refinement
    with long-double residuals then recovers what it can). Callers keep the polished multipliers
    only if their residual beats the LP's, so an inaccurate solve can never worsen a verdict.
    """
    from scipy.linalg import lapack, qr, solve_triangular
    from scipy.sparse.linalg import splu

    N, k = A.shape
    if N * k <= _DENSE_QR or k == 0:
        (qr_raw, tau), R, piv = qr(A.toarray(), mode="raw", pivoting=True, check_finite=False)
        dg = np.abs(np.diag(R))
        rank = int(np.sum(dg > dg[0] * max(N, k) * np.finfo(float).eps)) if dg.size else 0
        lwork = max(1, int(lapack.dormqr("L", "T", qr_raw, tau, np.zeros((N, 1)), -1)[1][0]))
        Rr = R[:rank, :rank]

        def solve(b: np.ndarray) -> np.ndarray:
            x = np.zeros(k)
            if rank:
                qtb, _, info = lapack.dormqr("L", "T", qr_raw, tau, b[:, None].copy(), lwork)
                x[piv[:rank]] = solve_triangular(Rr, qtb[:rank, 0], check_finite=False)
            return x

        return solve
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular-matrix warnings: the residual decides
        try:
            lu = splu((A.T @ A).tocsc())
        except RuntimeError:  # exactly singular A^T A: the dense rank-revealing solve
            x_of = np.linalg.pinv(A.toarray())
            return lambda b: x_of @ b

    def solve_ne(b: np.ndarray) -> np.ndarray:
        x = lu.solve(A.T @ b)
        return x if np.all(np.isfinite(x)) else np.zeros(k)

    return solve_ne


def _polished(
    sys_: _System, modes: np.ndarray, lam_s: np.ndarray, mu_s: np.ndarray, stat: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`_polish` from (lam', mu') with L2 residual ``stat``; the better of the two points."""
    lam_p, mu_p = _project(sys_, modes, *_polish(sys_, modes, lam_s, mu_s))
    stat_p = float(np.linalg.norm(_residual(sys_, lam_p, mu_p)))
    return (lam_p, mu_p, stat_p) if stat_p < stat else (lam_s, mu_s, stat)


# The fallback after a failed multiplier LP is bounded by the size of the system: above this many
# stored entries of [A_lam, A_mu] the least-squares start and the L2 program are skipped. Where
# HiGHS fails the system is ill-conditioned, and there both are slow and inconclusive: on 1000
# points in two clusters of width 1e-4 (0.89e6 entries) the SOCP took 20-40 s and ended "optimal"
# at 0.99999993 from lambda = 0 but at 0.9999755 from the R-value dual LP's lambda (the same convex
# program), i.e. its tolerances cannot exclude multipliers ~1e9 that cancel.
_FALLBACK_MAX_ENTRIES = 200_000


@dataclass(frozen=True, eq=False)
class _Search:
    """Outcome of the multiplier search on one system (Clarke or an adjacent cell).

    ``lam``, ``mu``: the best scaled multipliers found; ``stat``: their L2 relative residual
    (evaluated, :func:`_residual`); ``lp_l1``: the LP's own L1 optimum (None if the LP failed);
    ``proven``: the minimum residual over ALL valid multipliers is proven > the stationarity
    tolerance (by the LP optimum, L2 >= L1 / sqrt(N), or by the L2 program, see
    :func:`_l2_search`); False whenever ``stat`` is within tolerance. ``failures``: messages of
    the solvers that failed; ``notes``: what the search did beyond the LP.
    """

    lam: np.ndarray
    mu: np.ndarray
    stat: float
    lp_l1: float | None
    proven: bool = False
    failures: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def as_tuple(self, sys_: _System) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(lam', mu', L1, L2) as :func:`_best_multipliers` returns them."""
        return self.lam, self.mu, float(np.abs(_residual(sys_, self.lam, self.mu)).sum()), self.stat


def _entries(sys_: _System) -> int:
    return int(sys_.A_lam.nnz + sys_.A_mu.nnz)


def _lp_search(sys_: _System, modes: np.ndarray, stat_tol: float) -> _Search:
    """The multiplier LP (:func:`_solve_lp`), projected and polished; on failure the fallback.

    Fallback when HiGHS fails (MATH.md section 5: ill-conditioned systems): the better of
    lambda = mu = 0 (residual 1) and, if the system has at most ``_FALLBACK_MAX_ENTRIES`` entries,
    the least-squares solution over every column projected onto the sign constraints and
    polished (:func:`_polished`). ``_polish`` alone cannot start from zero: it keeps the support
    of its start. Nothing is proven about the minimum then (``proven`` = False).
    """
    try:
        lam_s, mu_s, r1 = _solve_lp(sys_, modes)
    except SolverError as e:
        return _fallback_search(sys_, modes, str(e))
    lam_s, mu_s = _project(sys_, modes, lam_s, mu_s)
    stat = float(np.linalg.norm(_residual(sys_, lam_s, mu_s)))
    # Reported multipliers are float64: rounding lam'_i moves r by up to 2^-53 |lam'_i| (unit
    # columns), so below a few times that the polish cannot gain (measured: 2.9e-8 at m = 2000,
    # where the same support with long-double multipliers reaches 6e-11) and its QR is skipped.
    representable = 4 * 2.0**-53 * float(np.max(np.abs(np.r_[lam_s, mu_s]), initial=0.0))
    if stat > representable:
        lam_s, mu_s, stat = _polished(sys_, modes, lam_s, mu_s, stat)
    N = sys_.rhs.size
    # the LP optimum proves every L2 residual >= L1 / sqrt(N)
    proven = stat > stat_tol and r1 / np.sqrt(N) > stat_tol
    return _Search(lam_s, mu_s, stat, r1, proven)


def _fallback_search(sys_: _System, modes: np.ndarray, failure: str) -> _Search:
    """Best multipliers without the LP (see :func:`_lp_search`); nothing proven."""
    na, P = sys_.A_lam.shape[1], sys_.pairs.shape[0]
    lam_s, mu_s = np.zeros(na), np.zeros(P)
    stat = float(np.linalg.norm(_residual(sys_, lam_s, mu_s)))
    notes = [f"multipliers: {failure}; fell back to other starts"]
    if na + P and _entries(sys_) <= _FALLBACK_MAX_ENTRIES:
        z = _ls_solver(sparse.hstack([sys_.A_lam, sys_.A_mu], format="csc"))(sys_.rhs)
        lam_c, mu_c = _project(sys_, modes, z[:na], z[na:])
        stat_c = float(np.linalg.norm(_residual(sys_, lam_c, mu_c)))
        lam_c, mu_c, stat_c = _polished(sys_, modes, lam_c, mu_c, stat_c)
        if stat_c < stat:
            lam_s, mu_s, stat = lam_c, mu_c, stat_c
            notes.append("multipliers: least-squares start, projected and polished")
    elif na + P:
        notes.append(
            f"multipliers: least-squares start skipped ({_entries(sys_)} entries > "
            f"{_FALLBACK_MAX_ENTRIES})"
        )
    return _Search(lam_s, mu_s, stat, None, False, (failure,), tuple(notes))


def _l2_socp(
    sys_: _System, modes: np.ndarray, ref: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, str]:
    """min ||residual||_2 over the multiplier polytope (Clarabel, around ``ref``).

    Returns lam', mu' (projected onto the sign constraints) and the solver status; raises
    SolverError if Clarabel fails or ends neither "optimal" nor "optimal_inaccurate".
    """
    import cvxpy as cp

    dlam, dmu, expr, cons = _polytope_cvx(sys_, modes, None, ref)
    prob = cp.Problem(cp.Minimize(cp.norm2(expr)), cons)
    _solve_cvx(prob)
    lam2 = ref[0] + np.asarray(dlam.value, dtype=float)
    mu2 = ref[1] + (np.asarray(dmu.value, dtype=float) if dmu is not None else 0.0)
    lam2, mu2 = _project(sys_, modes, lam2, mu2)
    return lam2, mu2, str(prob.status)


def _euler_bound(sys_: _System, net: ReLUNetwork, Z: np.ndarray, margins: np.ndarray, s: float):
    """An upper bound on sum_i lambda_i over Clarke multipliers with relative residual <= s.

    With R = theta - sum_i lambda_i h_i (mu) and <theta, R> <= ||theta||^2 s: the v- and
    (w, b)-rows of h_i each give y_i v_j relu(z_ij) against theta (2-homogeneity), except on a
    kink pair, whose (w, b) part is y_i v_j mu_ij z_ij instead of lambda_i y_i v_j relu(z_ij);
    with 0 <= mu_ij <= lambda_i both differ by at most lambda_i delta_i, delta_i =
    sum_{j: (i, j) pair} |v_j z_ij|. So sum_i lambda_i (y_i N(x_i) - delta_i) <= 1/2||theta||^2
    (1 + s), and sum lambda <= 1/2||theta||^2 (1 + s) / kappa with kappa = min over active i of
    y_i N(x_i) - delta_i. None if kappa <= 0 (no bound).
    """
    act = sys_.active
    delta = np.zeros(Z.shape[0])
    if sys_.pairs.size:
        pi, pj = sys_.pairs[:, 0], sys_.pairs[:, 1]
        np.add.at(delta, pi, np.abs(net.v[pj] * Z[pi, pj]))
    kappa = float(np.min(margins[act] - delta[act], initial=np.inf))
    if not kappa > 0:
        return None
    return 0.5 * sys_.norm_theta**2 * (1.0 + s) / kappa


def _dual_proves_above(
    sys_: _System, lam_s: np.ndarray, mu_s: np.ndarray, stat_tol: float, lam_sum_max: float
) -> bool:
    """Is every Clarke multiplier's relative residual provably > ``stat_tol``? (weak duality)

    For y = r / ||r|| (r the residual of (lam', mu')) and any valid (lam', mu') with
    0 <= mu'_p <= lam'_i: ||b - A lam' - M mu'|| >= <y, b> - sum_i lam'_i gain_i with
    gain_i = <a_i, y> + sum_{pairs p on i} max(0, <m_p, y>) (mu' at the bound that helps most).
    Every multiplier with residual <= ``stat_tol`` has sum lambda <= ``lam_sum_max``
    (:func:`_euler_bound`), so the minimum exceeds ``stat_tol`` if
    <y, b> - lam_sum_max max_i max(0, gain_i) / c_i > stat_tol. Products in long double on the
    unscaled system. At a solver's optimum the gains are ~0 up to its tolerance, so this fails
    (no proof) exactly when the multipliers that could cancel are too large for that tolerance.
    """
    LD = np.longdouble
    r = _residual(sys_, lam_s, mu_s).astype(LD)
    nr = np.sqrt((r * r).sum())
    if not nr > 0:
        return False
    y = r / nr
    nt = LD(sys_.norm_theta)
    b_y = float((sys_.theta_ld / nt) @ y)
    g_lam = (sys_.A_ld.T @ y) / nt  # per unit of unscaled lambda_i
    if sys_.pairs.size:
        g_mu = (sys_.M_ld.T @ y) / nt
        on = sys_.pair_col >= 0  # pairs on inactive points have mu = 0 in the Clarke system
        np.add.at(g_lam, sys_.pair_col[on], np.maximum(g_mu[on], 0))
    worst = float(np.max(np.maximum(g_lam.astype(float), 0.0), initial=0.0))
    return b_y - lam_sum_max * worst > stat_tol


def _l2_search(
    sys_: _System,
    modes: np.ndarray,
    stat_tol: float,
    found: _Search,
    lam_sum_max: float | None = None,
) -> _Search:
    """The L2 program after the LP (or its fallback) when the residual is above tolerance.

    The LP minimises the L1 norm; its L2 residual can exceed the best L2 residual by up to
    sqrt(N). When the L2 residual is above ``stat_tol`` and not already proven minimal, the L2
    problem itself is solved (:func:`_l2_socp`), so a verdict never hinges on the choice of
    norm. Its answer proves the minimum > ``stat_tol`` if Clarabel says "optimal" and, on the
    Clarke system (all ``modes`` 0, ``lam_sum_max`` given), weak duality confirms it
    (:func:`_dual_proves_above`). After a failed LP the program is skipped on systems of more
    than ``_FALLBACK_MAX_ENTRIES`` entries (see there).
    """
    if found.stat <= stat_tol or found.proven:
        return found
    notes, failures = list(found.notes), list(found.failures)
    if found.lp_l1 is None and _entries(sys_) > _FALLBACK_MAX_ENTRIES:
        notes.append(
            f"multipliers: L2 program skipped after the LP failure ({_entries(sys_)} entries > "
            f"{_FALLBACK_MAX_ENTRIES}: slow and inconclusive on such systems)"
        )
        return dataclasses.replace(found, notes=tuple(notes))
    try:
        lam2, mu2, status = _l2_socp(sys_, modes, (found.lam, found.mu))
    except SolverError as e:
        # The SOCP only tightens the L2 residual; without it the residual found is still a
        # valid (larger) upper bound on the best one, but the minimum is not proven
        failures.append(str(e))
        return dataclasses.replace(found, failures=tuple(failures), notes=tuple(notes))
    stat2 = float(np.linalg.norm(_residual(sys_, lam2, mu2)))
    lam_s, mu_s, stat = found.lam, found.mu, found.stat
    if stat2 < stat:
        lam_s, mu_s, stat = lam2, mu2, stat2
    proven = status == "optimal" and stat > stat_tol
    if proven and not np.any(modes):
        proven = lam_sum_max is not None and _dual_proves_above(
            sys_, lam_s, mu_s, stat_tol, lam_sum_max
        )
        if not proven:
            notes.append(
                "multipliers: the L2 program's optimum is not confirmed by weak duality "
                "(multipliers as large as 1/2||theta||^2 could cancel below its tolerance)"
            )
    elif status != "optimal" and stat > stat_tol:
        failures.append(f"the L2 multiplier program ended {status}")
    return dataclasses.replace(
        found,
        lam=lam_s,
        mu=mu_s,
        stat=stat,
        proven=proven,
        failures=tuple(failures),
        notes=tuple(notes),
    )


def _best_multipliers(
    sys_: _System, modes: np.ndarray, stat_tol: float
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Multipliers of least stationarity residual: (lam', mu', their L1 and L2 relative residuals).

    :func:`_search_cell` without its proof flag (kept for ``benchmarks/bench_certify.py``; the
    verdicts use :func:`_search_cell`, whose ``proven`` separates ``not_kkt`` from ``undecided``).
    """
    return _search_cell(sys_, modes, stat_tol).as_tuple(sys_)


def _search_cell(sys_: _System, modes: np.ndarray, stat_tol: float) -> _Search:
    """:func:`_lp_search` then :func:`_l2_search` on the system with the given pair modes."""
    return _l2_search(sys_, modes, stat_tol, _lp_search(sys_, modes, stat_tol))


# ------------------------------------------------------------- 1-D blocks: rho, polytope programs


@dataclass(frozen=True, eq=False)
class _Blocks1D:
    """All free 1-D blocks, with z_k = s_k g_k(lambda) written through prefix sums (O(m + K)).

    g_k(lambda) = C[stop_k] - C[start_k] with C the prefix sums of lambda_i y_i x~_i over the sorted
    points (MATH.md section 4), so programs over all blocks stay sparse.
    """

    blocks: list[Block]
    sample: SortedSample
    sign: np.ndarray  # (K,)
    start: np.ndarray  # (K,) first sorted index of A_k
    stop: np.ndarray  # (K,) one past the last
    Wmat: sparse.csr_matrix  # (m, na): lambda_i y_i in sorted order = Wmat @ lam'
    directions: tuple[np.ndarray, np.ndarray]


def _blocks_1d(dataset: Dataset, sys_: _System) -> _Blocks1D:
    sample = SortedSample.from_dataset(dataset)
    m = sample.m
    blocks = all_blocks(m)
    rank = np.empty(m, dtype=int)
    rank[sample.order] = np.arange(m)
    na = sys_.active.size
    srank = rank[sys_.active]
    Wmat = sparse.csr_matrix((sample.y[srank] * sys_.c, (srank, np.arange(na))), shape=(m, na))
    sl = [b.active(m) for b in blocks]
    return _Blocks1D(
        blocks,
        sample,
        np.array([b.sign for b in blocks], dtype=float),
        np.array([t.start for t in sl]),
        np.array([t.stop for t in sl]),
        Wmat,
        block_directions(blocks, sample),
    )


def _z_np(b1: _Blocks1D, lam_s: np.ndarray) -> np.ndarray:
    """z_k = s_k g_k(lambda) for all blocks, shape (K, 2); prefix sums in extended precision."""
    w = (b1.Wmat @ lam_s).astype(np.longdouble)
    x = b1.sample.x.astype(np.longdouble)
    c1 = np.concatenate([[0.0], np.cumsum(w * x)])
    c0 = np.concatenate([[0.0], np.cumsum(w)])
    z = np.column_stack([c1[b1.stop] - c1[b1.start], c0[b1.stop] - c0[b1.start]])
    return (b1.sign[:, None] * z).astype(float)


def _z_cvx(b1: _Blocks1D, ks: np.ndarray, dlam, z0: np.ndarray) -> tuple[Any, list]:
    """(len(ks), 2) expression z0[ks] + s_k g_k(dlam') and the prefix-sum constraints it needs."""
    import cvxpy as cp

    m = b1.sample.m
    w = b1.Wmat @ dlam
    C = cp.Variable((m + 1, 2))
    cons = [
        C[0, :] == 0,
        C[1:, 0] - C[:-1, 0] == cp.multiply(b1.sample.x, w),
        C[1:, 1] - C[:-1, 1] == w,
    ]
    sel = sparse.csr_matrix(
        (
            np.concatenate([b1.sign[ks], -b1.sign[ks]]),
            (np.tile(np.arange(ks.size), 2), np.concatenate([b1.stop[ks], b1.start[ks]])),
        ),
        shape=(ks.size, m + 1),
    )
    return z0[ks] + sel @ C, cons


def _lam_sorted(sys_: _System, b1: _Blocks1D, lam_s: np.ndarray) -> np.ndarray:
    full = np.zeros(b1.sample.m)
    full[sys_.active] = sys_.c * lam_s
    return b1.sample.sort(full)


def _polytope_cvx(
    sys_: _System, modes: np.ndarray, r1_bound: float | None, ref: tuple[np.ndarray, np.ndarray]
):
    """Variables (dlam', dmu') and constraints of the multiplier polytope around ``ref``.

    lam' = ref_lam + dlam', mu' = ref_mu + dmu' satisfy the mode sign constraints and, unless
    ``r1_bound`` is None, ||residual||_1 <= r1_bound. Writing the unknowns as corrections of a
    good solution keeps the programs well scaled (lambda can be ~1e9 while residuals are O(1)).
    """
    import cvxpy as cp

    lam0, mu0 = ref
    na, P = sys_.A_lam.shape[1], sys_.pairs.shape[0]
    dlam = cp.Variable(na)
    cons = [lam0 + dlam >= 0]
    r0 = _residual(sys_, lam0, mu0)
    expr = r0 - sys_.A_lam @ dlam
    dmu = None
    if P:
        dmu = cp.Variable(P)
        expr = expr - sys_.A_mu @ dmu
        A_ub, _, bnds = _mode_rows(sys_, modes)
        if A_ub.shape[0]:
            x0 = np.concatenate([lam0, mu0])
            cons.append(A_ub @ cp.hstack([dlam, dmu]) <= -(A_ub @ x0))
        for p, (lo, hi) in enumerate(bnds):
            if lo is not None:
                cons.append(dmu[p] >= lo - mu0[p])
            if hi is not None:
                cons.append(dmu[p] <= hi - mu0[p])
    if r1_bound is not None:
        cons.append(cp.norm1(expr) <= r1_bound)
    return dlam, dmu, expr, cons


def _solve_cvx(prob) -> None:
    import cvxpy as cp

    try:
        with warnings.catch_warnings():  # "optimal_inaccurate" is handled by the caller's checks
            warnings.simplefilter("ignore", UserWarning)
            prob.solve(solver=cp.CLARABEL)
    except cp.error.SolverError as e:  # pragma: no cover - solver breakdown
        raise SolverError(f"Clarabel failed on a multiplier-polytope program: {e}") from None
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise SolverError(f"multiplier-polytope program ended with status {prob.status}")


def _rho_le(b1: _Blocks1D, ks: np.ndarray, Z, t) -> list:
    """Constraints rho_k <= t for the rows z_k of the (len(ks), 2) cvxpy expression Z.

    By Moreau, rho_k(z) = ||Proj_cone(z)|| = dist(z, polar cone), and the polar of the wedge spanned
    by the unit edges e1, e2 is {p : <p, e1> <= 0, <p, e2> <= 0}. So rho_k(z) <= t iff some w with
    ||w|| <= t has <z - w, e1> <= 0 and <z - w, e2> <= 0. (Writing the polar as -G^T a instead is
    badly conditioned: the wedges between close data points are thin and a would be huge.)
    """
    import cvxpy as cp

    E1, E2 = b1.directions[0][ks], b1.directions[1][ks]
    W = cp.Variable((ks.size, 2))
    D = Z - W
    tt = t * np.ones(ks.size) if isinstance(t, cp.Expression) else np.full(ks.size, float(t))
    return [
        cp.SOC(tt, W, axis=1),
        cp.sum(cp.multiply(D, E1), axis=1) <= 0,
        cp.sum(cp.multiply(D, E2), axis=1) <= 0,
    ]


def _min_max_rho(
    sys_: _System,
    b1: _Blocks1D,
    modes: np.ndarray,
    r1_bound: float,
    ref: tuple[np.ndarray, np.ndarray],
    ks: np.ndarray | None = None,
) -> np.ndarray:
    """argmin over the multiplier polytope of max_{k in ks} rho_k (all blocks by default): lam'."""
    import cvxpy as cp

    dlam, _, _, cons = _polytope_cvx(sys_, modes, r1_bound, ref)
    t = cp.Variable()
    ks = np.arange(len(b1.blocks)) if ks is None else np.asarray(ks)
    Z, zc = _z_cvx(b1, ks, dlam, _z_np(b1, ref[0]))
    prob = cp.Problem(cp.Minimize(t), [*cons, *zc, *_rho_le(b1, ks, Z, t)])
    _solve_cvx(prob)
    return np.maximum(ref[0] + np.asarray(dlam.value, dtype=float), 0.0)


def _max_dual(sys_: _System, b1: _Blocks1D, lam0: np.ndarray, objective: float) -> np.ndarray:
    """argmax sum lambda s.t. rho_k(lambda) <= 1 for all blocks, lambda >= 0 on the active points.

    Any such lambda gives sum lambda <= min (P) (weak duality of (C_all), MATH.md section 3); at a
    global optimum complementary slackness puts the dual optimum on the active points, so the bound
    closes. g_k(lambda) cancels from |lambda| ~ 1/2||theta||^2 down to O(1) (MATH.md section 5), so
    the program is written for the correction delta = lambda - lam0 around the KKT multipliers,
    with s_k g_k(lam0) evaluated beforehand in extended precision. Returns scaled lam'.
    """
    import cvxpy as cp

    ks = np.arange(len(b1.blocks))
    delta = cp.Variable(lam0.size)
    Z, zc = _z_cvx(b1, ks, delta, _z_np(b1, lam0))
    cons = [*zc, *_rho_le(b1, ks, Z, 1.0), lam0 + delta >= 0]
    weights = sys_.c / objective  # sum lambda ~ 1/2||theta||^2 near a KKT point: O(1) objective
    prob = cp.Problem(cp.Maximize(weights @ delta), cons)
    _solve_cvx(prob)
    return np.maximum(lam0 + np.asarray(delta.value, dtype=float), 0.0)


def _bound_of(
    b1: _Blocks1D, lam_sorted: np.ndarray, rho_claimed: float = 0.0
) -> tuple[float, float]:
    """(sum lambda / max(1, max_k rho_k), max_k rho_k) with rho from :func:`patterns.rho`.

    ``rho_claimed`` (a solver's own evaluation of max_k rho_k) is taken into account too: the
    larger value is used, so the bound needs both evaluations to agree that rho is small.
    """
    lam_sorted = np.maximum(lam_sorted, 0.0)
    mr = max(float(rho(b1.blocks, b1.sample, lam_sorted, b1.directions).max()), rho_claimed)
    return float(lam_sorted.sum()) / max(1.0, mr), mr


def _with_dual_start(sys_, b1, net, Z, modes, search, stat_tol, notes):
    """(``search``, or if its residual is lower :func:`_polished` from the R-value dual LP's
    lambda (:func:`_r_dual_lambda`; points outside the active set dropped) with each kink pair's
    mu at its side's value (lambda_i if z_ij > 0, else 0); that LP's (lambda, max rho), or None if
    it failed). A residual still above ``stat_tol`` stays proven only if ``search``'s was.

    Measured on 500 pairs of points 1e-6 apart (m = 1000, objective 1.1e9): the LP start polishes
    to 2.5e-6 (not_kkt), this start to 1.3e-9; from the same lambda with every mu = 0 the polish
    stalls at 1.5e-3.
    """
    try:
        dual = _r_dual_lambda(sys_, b1, net)
    except SolverError as e:
        notes.append(f"multipliers: the R-value dual LP start was not used: {e}")
        return search, None
    lam = b1.sample.unsort(dual[0])
    pi, pj = (sys_.pairs[:, 0], sys_.pairs[:, 1]) if sys_.pairs.size else ([], [])
    side = np.where(Z[pi, pj] > 0, lam[pi], 0.0) / sys_.cmu if sys_.pairs.size else np.zeros(0)
    lam_c, mu_c = _project(sys_, modes, lam[sys_.active] / sys_.c, side)
    stat_c = float(np.linalg.norm(_residual(sys_, lam_c, mu_c)))
    lam_c, mu_c, stat_c = _polished(sys_, modes, lam_c, mu_c, stat_c)
    if stat_c >= search.stat:
        return search, dual
    notes.append("multipliers: polished from the R-value dual LP's lambda (better than the LP's)")
    proven = search.proven and stat_c > stat_tol
    return dataclasses.replace(search, lam=lam_c, mu=mu_c, stat=stat_c, proven=proven), dual


def r_dual_lp(sample: SortedSample, active: np.ndarray, net: ReLUNetwork, rounds: int = 8):
    """The R-value dual LP (:func:`kktsolver.scale.dual_lp`) on the sorted points ``active`` plus
    both ends of the sample, with the network's kinks inside the data range as candidates; returns
    its :class:`kktsolver.scale.RDual`. Shared by this module's dense path and
    :mod:`kktsolver.certify_large`."""
    from .scale import dual_lp

    m = sample.m
    pts = np.unique(np.r_[0, active, m - 1])
    w = net.W[:, 0]
    t = -net.b[w != 0] / w[w != 0]
    t = t[(t > sample.x[0]) & (t < sample.x[-1])]
    if pts.size < 3:  # the R-value LP needs an interior point (its cost is 0 otherwise)
        raise SolverError("fewer than 3 points (active ones and both ends of the sample)")
    try:
        with np.errstate(all="ignore"):
            rd, _ = dual_lp(sample, pts, t, rounds=rounds)
    except (ValueError, IndexError, ZeroDivisionError, FloatingPointError) as e:
        raise SolverError(f"R-value dual LP: {e}") from None
    return rd


def _r_dual_lambda(sys_: _System, b1: _Blocks1D, net: ReLUNetwork) -> tuple[np.ndarray, float]:
    """lambda (sorted order) of :func:`r_dual_lp` on the active points and its own max rho (see
    :func:`_r_dual_bound`)."""
    m = b1.sample.m
    rank = np.empty(m, dtype=int)
    rank[b1.sample.order] = np.arange(m)
    rd = r_dual_lp(b1.sample, rank[sys_.active], net)
    lam = np.zeros(m)
    lam[rd.points] = rd.lam
    return lam, float(rd.max_rho)


def _r_dual_bound(
    sys_: _System,
    b1: _Blocks1D,
    net: ReLUNetwork,
    lam_s: np.ndarray,
    objective: float,
    dual: tuple[np.ndarray, float] | None = None,
) -> tuple[float, float]:
    """Lower bound from :func:`kktsolver.scale.dual_lp`: the dual of (C_all) in R-values (HiGHS).

    Points: the active ones plus both ends of the sample (R vanishes outside the selected range);
    candidate kinks: the network's kinks inside the data range. The LP's unknowns are O(1) even
    when lambda ~ 1e9, which the SOCP of :func:`_max_dual` is not (it loses ~1e-3 of the bound at
    m = 1000). It imposes sum lambda_i y_i x~_i = 0, so on samples whose optimum has a costly
    linear part (e.g. all labels equal) it is weak, and :func:`_socp_dual_bound` follows.
    ``dual``: that LP's (lambda, max rho) if already computed.
    """
    lam, rho_claimed = _r_dual_lambda(sys_, b1, net) if dual is None else dual
    return _bound_of(b1, lam, rho_claimed)


def _socp_dual_bound(
    sys_: _System, b1: _Blocks1D, net: ReLUNetwork, lam_s: np.ndarray, objective: float
) -> tuple[float, float]:
    """Lower bound from :func:`_max_dual` (Clarabel), rho recomputed by :func:`patterns.rho`.

    The program does not depend on the reference lam0 (only its numerics do). At multipliers that
    are already dual optimal to ~1e-10 (max rho_k = 1 to that accuracy) Clarabel can stall
    ("InsufficientProgress", measured at m = 1000 with the polished KKT multipliers); the retry
    starts from lam0 (1 - 1e-6), strictly inside the feasible set.
    """
    try:
        lam = _max_dual(sys_, b1, lam_s, objective)
    except SolverError:
        lam = _max_dual(sys_, b1, lam_s * (1 - 1e-6), objective)
    return _bound_of(b1, _lam_sorted(sys_, b1, lam))


def _rho_all(sys_: _System, b1: _Blocks1D, lam_s: np.ndarray) -> np.ndarray:
    return rho(b1.blocks, b1.sample, _lam_sorted(sys_, b1, lam_s), b1.directions)


def _best_direction(b1: _Blocks1D, k: int, z: np.ndarray) -> np.ndarray:
    """Unit u in cone_k maximising <u, z> (z = s_k g_k): the projection of z onto the 2-D wedge."""
    E1, E2 = b1.directions[0][k], b1.directions[1][k]
    G = cone_constraints(b1.blocks[k], b1.sample)[0]
    if np.all(G @ z >= 0):
        p = z
    else:
        p = max((max(0.0, float(z @ e)) * e for e in (E1, E2)), key=np.linalg.norm)
    nrm = np.linalg.norm(p)
    return p / nrm if nrm > 0 else p


# --------------------------------------------------------------------------- exact check


def _q(x: float):
    from flint import fmpq

    return fmpq(*float(x).as_integer_ratio())


def _round_up(q) -> float:
    """Smallest float found >= the rational q (proven by exact comparison)."""
    f = float(q)
    while _q(f) < q:
        f = float(np.nextafter(f, np.inf))
    return f


def _round_down(q) -> float:
    f = float(q)
    while _q(f) > q:
        f = float(np.nextafter(f, -np.inf))
    return f


def _sqrt_up(q) -> float:
    """A float r with r^2 >= q >= 0, proven."""
    f = float(np.sqrt(float(q)))
    while _q(f) * _q(f) < q:
        f = float(np.nextafter(f, np.inf))
    return f


def _exact_signs(
    X: np.ndarray, W: np.ndarray, b: np.ndarray, Xq: list, Wq: list, bq: list, exact_cols: set
) -> tuple[np.ndarray, np.ndarray]:
    """Proven signs of z_ij = <w_j, x_i> + b_j: (z > 0, z == 0) as (m, n) boolean arrays.

    The float z (any summation order, with or without FMA) is within
    gamma_{d+1} (sum_c |w_jc x_ic| + |b_j|), gamma_k = k u / (1 - k u), u = 2^-53, of the exact
    value, so its sign is proven wherever |z| exceeds twice that bound; the other entries, and
    every entry of the columns in ``exact_cols`` (snapped biases, not floats), are decided in
    rational arithmetic.
    """
    from flint import fmpq

    m, d = X.shape
    Z = X @ W.T + b
    u = 2.0**-53
    gamma = (d + 1) * u / (1 - (d + 1) * u)
    # (+ an absolute term for underflow: each of the d + 1 operations errs by <= 2^-1074 more)
    bound = 2.0 * (gamma * (np.abs(X) @ np.abs(W).T + np.abs(b)) + (d + 1) * 2.0**-1074)
    unsure = np.abs(Z) <= bound
    if exact_cols:
        unsure[:, sorted(exact_cols)] = True
    pos, zero = Z > 0, np.zeros(Z.shape, dtype=bool)
    zq = fmpq(0)
    for i, j in zip(*np.nonzero(unsure), strict=True):
        z = sum((Wq[j][c] * Xq[i][c] for c in range(d)), bq[j])
        pos[i, j], zero[i, j] = z > zq, z == zq
    return pos, zero


def _fmat(rows: int, cols: int, entries: list):
    from flint import fmpq_mat

    return fmpq_mat(rows, cols, entries)


def _exact_check(
    net: ReLUNetwork,
    X: np.ndarray,
    y: np.ndarray,
    lam: np.ndarray,
    mu: list[tuple[int, int, float]],
    active: np.ndarray,
) -> ExactCheck:
    """Rational recomputation of margins and the stationarity residual (see :class:`ExactCheck`).

    Every quantity is a rational function of the exact data, weights and multipliers; the
    activation signs come from :func:`_exact_signs` (proven), and the sums are exact matrix
    products (python-flint ``fmpq_mat``), using z_ij [z_ij > 0] = <(w_j, b_j), x~_i> [z_ij > 0]:

    * N(x_i) = <x~_i, sum_j [z_ij > 0] U_j>, U_j = v_j (w_j, b_j) (a 0/1 matrix times U);
    * with c_i = lambda_i y_i and S_j = sum_i c_i [z_ij > 0] x~_i, the v_j row of the residual is
      v_j - <(w_j, b_j), S_j> and the (w_j, b_j) rows are
      (w_j, b_j) - v_j (S_j + sum_i y_i mu_ij x~_i) (mu only where z_ij = 0 exactly).
    """
    from flint import fmpq

    t0 = time.perf_counter()
    m, d = X.shape
    n = net.n
    zero = fmpq(0)
    Xq = [[_q(v) for v in row] for row in X]
    Wq = [[_q(v) for v in row] for row in net.W]
    vq = [_q(v) for v in net.v]
    bq = [_q(v) for v in net.b]
    Xtq = [[*row, fmpq(1)] for row in Xq]
    sgn = [1 if yi > 0 else -1 for yi in y]

    # snap: a neuron carrying a mu gets the bias putting its kink exactly on the (first) such point
    bsn = list(bq)
    snapped: dict[int, int] = {}
    for i, j, _ in mu:
        if j not in snapped:
            snapped[j] = i
            bsn[j] = -sum((Wq[j][c] * Xq[i][c] for c in range(d)), zero)
    pos0, _ = _exact_signs(X, net.W, net.b, Xq, Wq, bq, set())
    pos, is0 = pos0, None
    if snapped:
        bsn_f = np.array([float(t) for t in bsn])
        pos, is0 = _exact_signs(X, net.W, bsn_f, Xq, Wq, bsn, set(snapped))

    def margins(mask: np.ndarray, bias: list) -> list:
        U = _fmat(n, d + 1, [vq[j] * t for j in range(n) for t in (*Wq[j], bias[j])])
        PU = _fmat(m, n, mask.astype(int).ravel().tolist()) * U
        return [sgn[i] * sum((PU[i, c] * Xtq[i][c] for c in range(d + 1)), zero) for i in range(m)]

    marg = margins(pos0, bq)
    marg_s = margins(pos, bsn) if snapped else marg
    lamq = [zero] * m
    for i in active:
        if lam[i] > 0:
            lamq[i] = _q(lam[i])
    rows = [i for i in range(m) if lamq[i] != 0]
    # S = P_A^T diag(c) Xt_A, n x (d + 1)
    if rows:
        CX = _fmat(len(rows), d + 1, [sgn[i] * lamq[i] * t for i in rows for t in Xtq[i]])
        PT = _fmat(n, len(rows), pos[rows].T.astype(int).ravel().tolist())
        S = PT * CX
        G = [[S[j, c] for c in range(d + 1)] for j in range(n)]
    else:
        G = [[zero] * (d + 1) for _ in range(n)]
    for i, j, val in mu:
        if snapped.get(j) == i and is0[i, j] and lamq[i] != 0:  # Clarke weight at an exact zero
            w = min(max(_q(val), zero), lamq[i])
            for c in range(d + 1):
                G[j][c] += sgn[i] * w * Xtq[i][c]
    r2 = zero
    t2 = zero
    for j in range(n):
        wb = [*Wq[j], bsn[j]]
        # v_j row: v_j - sum_i c_i relu(z_ij) = v_j - <(w_j, b_j), S_j> (S_j: strict part only)
        Sj = [S[j, c] for c in range(d + 1)] if rows else [zero] * (d + 1)
        rv = vq[j] - sum((wb[c] * Sj[c] for c in range(d + 1)), zero)
        r2 += rv * rv
        t2 += vq[j] * vq[j]
        for c in range(d + 1):
            e = wb[c] - vq[j] * G[j][c]
            r2 += e * e
            t2 += wb[c] * wb[c]
    snap2 = sum(((bsn[j] - bq[j]) ** 2 for j in range(n)), zero)
    th2 = sum((vq[j] ** 2 + bq[j] ** 2 + sum((w * w for w in Wq[j]), zero) for j in range(n)), zero)
    lam_sum = sum(lamq, zero)
    cs = None
    if lam_sum > 0:
        cs_q = sum(((lamq[i] * abs(marg_s[i] - 1)) for i in rows), zero) / lam_sum
        cs = _round_up(cs_q)
    return ExactCheck(
        min_margin_lower=_round_down(min(marg)),
        min_margin_snapped_lower=_round_down(min(marg_s)),
        stationarity_upper=_sqrt_up(r2 / t2) if t2 > 0 else None,
        snap_distance_upper=_sqrt_up(snap2 / th2) if th2 > 0 else 0.0,
        complementary_slackness_upper=cs,
        snapped_neurons=len(snapped),
        seconds=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- public entry point

#: 1-D problems with m * n above this (entries of the dense preactivation matrix) go to the
#: structured path of :mod:`kktsolver.certify_large` (unless ``exact``): O((m + n) log m) per
#: product instead of a dense system (m = 1e4, n = 1811: 1.8e7 entries, 216 s dense). Every
#: problem of tests/test_certify.py is below it (largest m * n = 45600) and keeps the dense path.
STRUCTURED_MIN_ENTRIES = 4_000_000


def _validate(network: Any, dataset: Any, width: int | None, tol: Any) -> int:
    require_compatible(network, dataset)
    require_instance(tol, CertTolerances, "tol")
    if width is None:
        return network.n
    if isinstance(width, bool) or int(width) != width or width < 1:
        raise InputError(f"width must be a positive integer, got {width!r}")
    return int(width)


def certify(
    network: ReLUNetwork,
    dataset: Dataset,
    width: int | None = None,
    tol: CertTolerances = CertTolerances(),
    exact: bool = False,
) -> Certificate:
    """Decide whether ``network`` is a KKT point / local / global minimum of (P) on ``dataset``.

    Parameters
    ----------
    network : ReLUNetwork
        The candidate theta = (v, W, b).
    dataset : Dataset
        The sample; multipliers are returned in its order.
    width : int, optional
        Width of the user's architecture (default: ``network.n``). Must be at least the number of
        nonzero neurons; width - #nonzero neurons is the number of spare zero neurons (MATH.md F4).
    tol : CertTolerances
        All thresholds (reported back in the certificate).
    exact : bool
        Also recompute margins and the stationarity residual in rational arithmetic
        (:class:`ExactCheck`); the verdict then uses the proven numbers.

    Returns
    -------
    Certificate
        Verdict with evidence; see the module docstring for what each verdict proves.

    Notes
    -----
    The multipliers solve  min ||theta - sum_i lambda_i h_i(mu)||_1  s.t. lambda >= 0, lambda_i = 0
    unless y_i N(x_i) <= 1 + tol.active, 0 <= mu_ij <= lambda_i on kink pairs (HiGHS), where
    h_i = (y_i relu(z_ij))_j in the v-coordinates and, per neuron, y_i v_j [z_ij > 0] x~_i in the
    (w_j, b_j) coordinates, the kink pairs contributing y_i v_j mu_ij x~_i instead.
    """
    t0 = time.perf_counter()
    width = _validate(network, dataset, width, tol)
    if dataset.d == 1 and not exact and dataset.m * network.n > STRUCTURED_MIN_ENTRIES:
        from .certify_large import certify_structured  # 1-D prefix-sum path (its docstring)

        return certify_structured(network, dataset, width, tol, t0)
    X, y = dataset.X, dataset.y.astype(float)
    m = dataset.m
    net = network
    sup = kkt_support(net, dataset, tol)
    Xt, Z, margins, norm_theta = sup.Xt, sup.Z, sup.margins, sup.norm_theta
    min_margin = sup.min_margin
    objective = net.objective()
    nnz = sup.nonzero_neurons
    if width < nnz:
        raise InputError(f"width {width} is smaller than the network's {nnz} nonzero neurons")
    spare = width - nnz
    notes: list[str] = []
    common = dict(
        min_margin=min_margin, objective=objective, width=width, nonzero_neurons=nnz, tolerances=tol
    )
    if norm_theta == 0:
        return Certificate(
            verdict="infeasible",
            multipliers=np.zeros(m),
            notes=["theta = 0 computes N = 0"],
            seconds=time.perf_counter() - t0,
            **common,
        )

    active, pairs = sup.active, sup.pairs
    sys_ = _build_system(net, Xt, y, Z, active, pairs)
    P = pairs.shape[0]
    clarke = np.zeros(P, dtype=int)
    search = _lp_search(sys_, clarke, tol.stationarity)
    b1 = _blocks_1d(dataset, sys_) if dataset.d == 1 and active.size else None
    dual = None  # the R-value dual LP's (lambda, max rho), if the multiplier search ran it
    if search.stat > tol.stationarity and b1 is not None and m > 1:
        # in 1-D the dual optimum is a KKT multiplier of every global minimiser (strong duality),
        # so the polish also starts from the R-value dual LP's lambda (before the L2 program,
        # which it often makes unnecessary)
        search, dual = _with_dual_start(sys_, b1, net, Z, clarke, search, tol.stationarity, notes)
    lam_sum_max = _euler_bound(sys_, net, Z, margins, tol.stationarity)
    if search.proven and not _dual_proves_above(
        sys_, search.lam, search.mu, tol.stationarity, lam_sum_max
    ):
        # the LP's proof trusts HiGHS's L1 optimum; on 1000 points in pairs 1e-6 apart
        # (multipliers ~2.6e6) it "proved" 1.7e-6 while multipliers with 6.7e-9 exist
        # (certify_large finds them). A not_kkt needs weak duality too; else the L2 program runs
        search = dataclasses.replace(
            search,
            proven=False,
            notes=(
                *search.notes,
                "multipliers: the LP's L1 optimum is not confirmed by weak duality",
            ),
        )
    search = _l2_search(sys_, clarke, tol.stationarity, search, lam_sum_max)
    notes[:0] = search.notes
    lam_s, mu_s, r1, stat = search.as_tuple(sys_)
    lam = np.zeros(m)
    lam[active] = sys_.c * lam_s
    mu_vals = sys_.cmu * mu_s
    mus = [
        (int(i), int(j), float(mu_vals[p]))
        for p, (i, j) in enumerate(pairs)
        if sys_.pair_col[p] >= 0
    ]
    r_abs = norm_theta * stat
    lam_sum = float(lam.sum())
    cs = float(lam @ np.abs(margins - 1.0) / lam_sum) if lam_sum > 0 else None
    balance = float(np.max(np.abs(np.abs(net.v) - net.neuron_norms())) / norm_theta)
    euler = abs(objective - lam_sum) / objective
    lyu_delta = float(lam @ (margins - 1.0))

    exact_check = None
    if exact:
        exact_check = _exact_check(net, X, y, lam, [t for t in mus if lam[t[0]] > 0], active)
        min_margin_v = exact_check.min_margin_lower
        stat_v = exact_check.stationarity_upper
        if exact_check.snapped_neurons:
            notes.append(
                f"exact: stationarity proven for theta' = theta with "
                f"{exact_check.snapped_neurons} bias(es) snapped onto data points, "
                f"||theta' - theta|| / ||theta|| <= {exact_check.snap_distance_upper:.3g}"
            )
    else:
        min_margin_v, stat_v = min_margin, stat
    feasible = min_margin_v >= 1.0 - tol.feasibility
    is_kkt = feasible and stat_v is not None and stat_v <= tol.stationarity

    lower_bound = rel_gap = max_rho = None
    r1_bound = r1 + tol.stationarity
    if b1 is not None:
        rh = _rho_all(sys_, b1, lam_s)
        max_rho = float(rh.max())
        lower_bound = lam_sum / max(1.0, max_rho)
        # (m = 1: the single cone is a half-plane, which the edge form of _rho_le does not cover)
        if feasible and (objective - lower_bound) / objective > tol.gap and dataset.m > 1:
            r_dual = functools.partial(_r_dual_bound, dual=dual)  # the LP above, not again
            for name, tighten in (("R-value dual LP", r_dual), ("SOCP", _socp_dual_bound)):
                try:
                    lb2, rho2 = tighten(sys_, b1, net, lam_s, objective)
                except SolverError as e:  # the bound found so far stays valid
                    notes.append(f"lower bound: {name} not used: {e}")
                    continue
                if lb2 > lower_bound:
                    lower_bound, max_rho = lb2, rho2
                if (objective - lower_bound) / objective <= tol.gap:
                    break
    elif dataset.d > 1:
        notes.append("lower bound: not available for d > 1 (blocks of R^d are not enumerated)")
    if lower_bound is not None and feasible:
        rel_gap = (objective - lower_bound) / objective

    near_global = None if rel_gap is None else bool(rel_gap <= tol.gap)
    witness = None
    if not feasible:
        verdict = "infeasible"
    elif not is_kkt and stat > tol.stationarity and not search.proven:
        verdict = "undecided"
        failed = "; ".join(search.failures) or "no solver failed, but its optimum is not proven"
        notes.append(
            f"undecided: the best multipliers found leave residual {stat:.3g} > "
            f"{tol.stationarity:g}, and no multiplier search proved that none do better "
            f"({failed})"
        )
        notes.append(_residual_note(sys_, lam_s, mu_s, net, objective))
    elif not is_kkt:
        verdict = "not_kkt"
        notes.append(_residual_note(sys_, lam_s, mu_s, net, objective))
        if near_global:
            notes.append(
                f"near_global: the value is certified within {tol.gap:g} (relative) of min (P), "
                "but the network is not a KKT point: a global minimiser of the value up to the "
                "gap, not a stationary point"
            )
    elif near_global:
        verdict = "global_min"
    else:
        verdict, witness = _local_analysis(
            sys_, b1, net, dataset, spare, tol, r1_bound, (lam_s, mu_s), notes
        )
    if verdict == "undecided" and dataset.d == 1 and not exact:
        # another multiplier search: the structured path's polish in R-values (certify_large);
        # on 1000 points in pairs 1e-6 apart it found residual 6.7e-9 where this search left 1.7e-6
        from .certify_large import certify_structured

        other = certify_structured(network, dataset, width, tol, t0)
        if other.verdict == "global_min":
            return dataclasses.replace(
                other,
                notes=[
                    *notes,
                    "the dense multiplier search was undecided; the structured path "
                    "(kktsolver.certify_large) found the multipliers reported here",
                    *other.notes,
                ],
                seconds=time.perf_counter() - t0,
            )

    return Certificate(
        verdict=verdict,
        multipliers=lam,
        mu=mus,
        stationarity_residual=stat_v,
        complementary_slackness=cs,
        balance_residual=balance,
        euler_residual=euler,
        lyu_li_eps=float(r_abs),
        lyu_li_delta=lyu_delta,
        lower_bound=lower_bound,
        relative_gap=rel_gap,
        max_rho=max_rho,
        near_global=near_global,
        pinned_kinks=P,
        witness=witness,
        exact=exact_check,
        notes=notes,
        seconds=time.perf_counter() - t0,
        **{**common, "min_margin": min_margin if not exact else min_margin_v},
    )


def _residual_note(
    sys_: _System,
    lam_s: np.ndarray,
    mu_s: np.ndarray,
    net: ReLUNetwork,
    objective: float,
    cover: float = 0.9,
) -> str:
    """Which neurons carry the stationarity residual, and what they are worth in the objective.

    The residual of neuron j is its rows (v_j, w_j, b_j) of theta - sum lambda_i h_i for the best
    multipliers. A non-KKT network whose residual sits on a few neurons of negligible cost share
    (their 1/2 (v_j^2 + ||(w_j, b_j)||^2) / (1/2||theta||^2)) is near a KKT point; one whose large
    neurons carry it is not.
    """
    r = _residual(sys_, lam_s, mu_s)
    n, d1 = net.n, net.d + 1
    per = r[:n] ** 2 + (r[n:] ** 2).reshape(n, d1).sum(axis=1)
    total = float(per.sum())
    order = np.argsort(-per)
    k = int(np.searchsorted(np.cumsum(per[order]), cover * total)) + 1 if total > 0 else 0
    top = order[: min(k, 5)]
    share = (net.v[top] ** 2 + net.neuron_norms()[top] ** 2).sum() / (2 * objective)
    frac = float(per[top].sum() / total) if total > 0 else 0.0
    return (
        f"residual: neurons {top.tolist()} carry {frac:.0%} of the squared stationarity residual "
        f"and {share:.2g} of 1/2||theta||^2"
    )


def _local_analysis(
    sys_: _System,
    b1: _Blocks1D | None,
    net: ReLUNetwork,
    dataset: Dataset,
    spare: int,
    tol: CertTolerances,
    r1_bound: float,
    clarke_ref: tuple[np.ndarray, np.ndarray],
    notes: list[str],
) -> tuple[str, Witness | None]:
    """MATH.md F4 at a KKT point not certified global: local_min, kkt (+ witness) or undecided."""
    P = sys_.pairs.shape[0]
    if P == 0 and spare == 0:
        return "local_min", None
    if dataset.d > 1 or dataset.m == 1:
        notes.append(
            "local minimality undecided: d > 1 (or m = 1) with spare neurons or kinks on data "
            "points"
        )
        return "kkt_undecided", None
    # Pinned pairs with sigma = s_j y_i = -1 (or on a point with lambda_i = 0): the Clarke box is
    # the intersection of both cells' sign conditions, so keeping them in Clarke mode gives a
    # multiplier set contained in every adjacent cell's. Only the sigma = +1 pairs are enumerated
    # first; the others only when a reduced cell fails and a witness in a full cell is needed.
    plus = [p for p in range(P) if sys_.pair_col[p] >= 0 and sys_.sigma[p] > 0]
    rest = [p for p in range(P) if p not in plus]
    if spare == 0 and not plus:  # the Clarke solution already satisfies every adjacent cell
        return "local_min", None
    if len(plus) > tol.max_cells_log2:
        notes.append(
            f"local minimality undecided: {len(plus)} pinned kinks to combine exceed "
            f"2^{tol.max_cells_log2} adjacent cells"
        )
        return "kkt_undecided", None

    reasons: set[str] = set()  # why a check ended 'undecided'

    def check(modes: np.ndarray) -> Witness | str:
        """'ok', 'undecided', 'fail' (a reduced cell failed) or a Witness (a full cell failed)."""
        full = not np.any(modes == 0)
        if P:
            found = _search_cell(sys_, modes, tol.stationarity)
            lam_c, mu_c, r1c, stat_c = found.as_tuple(sys_)
            if stat_c > tol.stationarity:
                if not full:
                    return "fail"
                if not found.proven:  # no Witness without a proven residual
                    reasons.add(
                        "an adjacent cell's multiplier search failed and its best residual "
                        f"{stat_c:.3g} is above tolerance ("
                        + ("; ".join(found.failures) or "optimum not proven")
                        + ")"
                    )
                    return "undecided"
                return Witness(kind="cell", cell=_cell_desc(sys_, modes), residual=stat_c)
            bound, ref = r1c + tol.stationarity, (lam_c, mu_c)
        else:
            bound, ref = r1_bound, clarke_ref
        if spare == 0:
            return "ok"
        res = _spare_analysis(sys_, b1, modes, bound, ref, spare, tol)
        if isinstance(res, Witness):
            if not full:
                return "fail"
            return dataclasses.replace(res, cell=_cell_desc(sys_, modes)) if P else res
        if not res:
            reasons.add(">= 2 spare neurons, non-unique multipliers, no single violated block")
        return "ok" if res else "undecided"

    undecided = False
    try:
        for choice in itertools.product((1, 2), repeat=len(plus)):
            modes = np.zeros(P, dtype=int)
            modes[plus] = choice
            res = check(modes)
            if isinstance(res, Witness):
                return "kkt", res
            if res == "fail":
                if len(plus) + len(rest) > tol.max_cells_log2:
                    notes.append("local minimality undecided: too many adjacent cells to combine")
                    return "kkt_undecided", None
                for ext in itertools.product((1, 2), repeat=len(rest)):
                    full = modes.copy()
                    full[rest] = ext
                    res = check(full)
                    if isinstance(res, Witness):
                        return "kkt", res
                    undecided |= res == "undecided"
            undecided |= res == "undecided"
    except SolverError as e:
        notes.append(f"local minimality undecided: {e}")
        return "kkt_undecided", None
    if undecided:
        notes.extend(f"local minimality undecided: {r}" for r in sorted(reasons))
        return "kkt_undecided", None
    return "local_min", None


def _cell_desc(sys_: _System, modes: np.ndarray) -> list[dict[str, Any]]:
    return [
        {"neuron": int(j), "point": int(i), "side": "exclude" if modes[p] == 1 else "include"}
        for p, (i, j) in enumerate(sys_.pairs)
    ]


def _spare_analysis(
    sys_: _System,
    b1: _Blocks1D,
    modes: np.ndarray,
    bound: float,
    ref: tuple[np.ndarray, np.ndarray],
    spare: int,
    tol: CertTolerances,
) -> Witness | bool | None:
    """Blocks a spare neuron could open: a Witness, True (no descent) or None (undecided)."""
    lam0 = _min_max_rho(sys_, b1, modes, bound, ref)
    rh = _rho_all(sys_, b1, lam0)
    if rh.max() <= 1.0 + tol.rho:
        return True
    for k in np.argsort(-rh):
        if rh[k] <= 1.0 + tol.rho:
            break
        lam_k = _min_max_rho(sys_, b1, modes, bound, ref, np.array([k]))
        rk = float(_rho_all(sys_, b1, lam_k)[k])
        if rk > 1.0 + tol.rho:
            blk = b1.blocks[int(k)]
            z = _z_np(b1, lam_k)[k]
            sl = blk.active(b1.sample.m)
            return Witness(
                kind="block",
                block=blk,
                active_points=sorted(int(i) for i in b1.sample.order[sl]),
                rho=rk,
                direction=_best_direction(b1, int(k), z).tolist(),
            )
    return True if spare == 1 else None
