"""Activation patterns ("blocks") of 1-D ReLU neurons on sorted data, their cones, dual norms rho_k.

MATH.md sections 3-4: a block is an activation set with an output sign; in 1-D every nonempty
activation set is a suffix, a prefix or everything; its pattern cone is cut out by two inequalities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .data import Dataset
from .network import ReLUNetwork, compensated_cumsum

__all__ = [
    "SortedSample",
    "Block",
    "all_blocks",
    "cone_constraints",
    "block_directions",
    "prefix_sums",
    "rho",
    "block_of_neuron",
    "balanced_neurons",
    "neuron_from_u",
    "network_from_blocks",
    "block_margin_matrix",
]

Direction = Literal["right", "left", "all"]


@dataclass(frozen=True, eq=False)
class SortedSample:
    """A 1-D dataset sorted increasingly: x[0] < ... < x[m-1], with x = dataset.x[order].

    ``xt`` holds the lifted points x~_i = (x_i, 1). Multipliers computed on the sorted sample are
    mapped back to the dataset's own order with :meth:`unsort`.
    """

    x: np.ndarray
    y: np.ndarray
    order: np.ndarray

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> SortedSample:
        """Sort a 1-D dataset (raises DatasetError for d != 1)."""
        order = dataset.order
        x = dataset.x[order]
        return cls(x, dataset.y[order].astype(float), order)

    @property
    def m(self) -> int:
        return int(self.x.size)

    @property
    def xt(self) -> np.ndarray:
        """Lifted points x~_i = (x_i, 1), shape (m, 2)."""
        return np.column_stack([self.x, np.ones_like(self.x)])

    def unsort(self, values: np.ndarray) -> np.ndarray:
        """Map a per-point vector from sorted order back to the dataset's order."""
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def sort(self, values: np.ndarray) -> np.ndarray:
        """Map a per-point vector from the dataset's order to sorted order."""
        return np.asarray(values)[self.order]


@dataclass(frozen=True, order=True)
class Block:
    """One 1-D activation pattern with an output sign (indices refer to the sorted sample).

    =========  ============================  =======================================  =============
    direction  active set A                  cone on u = (a, c), a = |v| w, c = |v| b  pinned: kink
    =========  ============================  =======================================  =============
    "right"    {gap, ..., m-1}, 1<=gap<=m-1  a x_gap + c >= 0, a x_{gap-1} + c <= 0    on x_{gap-1}
    "left"     {0, ..., gap-1}, 1<=gap<=m-1  a x_{gap-1} + c >= 0, a x_gap + c <= 0    on x_gap
    "all"      {0, ..., m-1}, gap = 0        a x_0 + c >= 0, a x_{m-1} + c >= 0        (never)
    =========  ============================  =======================================  =============

    A pinned block (MATH.md F3) has its kink exactly on the data point named in the last column: its
    cone is the ray u = a (1, -x_{gap-1}) (right) or u = a (-1, x_gap) (left), a >= 0. That point is
    then the one whose Clarke weight mu lies in [0, lambda_i].
    """

    direction: Direction
    gap: int
    sign: int
    pinned: bool = False

    def __post_init__(self) -> None:
        if self.direction not in ("right", "left", "all"):
            raise ValueError(f"unknown block direction {self.direction!r}")
        if self.sign not in (1, -1):
            raise ValueError(f"block sign must be +1 or -1, got {self.sign!r}")
        if self.direction == "all" and (self.gap != 0 or self.pinned):
            raise ValueError("the all-active block has gap 0 and is never pinned")

    def active(self, m: int) -> slice:
        """The active set as a slice of the sorted sample."""
        if self.direction == "right":
            return slice(self.gap, m)
        if self.direction == "left":
            return slice(0, self.gap)
        return slice(0, m)

    def pinned_index(self) -> int | None:
        """Sorted index of the data point carrying the kink of a pinned block, else None."""
        if not self.pinned:
            return None
        return self.gap - 1 if self.direction == "right" else self.gap

    def validate(self, m: int) -> None:
        """Raise ValueError unless the block is a nonempty pattern for m sorted points."""
        if self.direction != "all" and not 1 <= self.gap <= m - 1:
            raise ValueError(f"{self} needs 1 <= gap <= m - 1 = {m - 1}")


def all_blocks(m: int, pinned: bool = False) -> list[Block]:
    """Every nonempty 1-D block for m sorted points, both signs: 2 (2m - 1) blocks.

    With ``pinned=True`` the 2 (2m - 2) pinned blocks (kink on a data point) are appended; they lie
    on the boundaries of the free cells, so the global problem does not need them, but KKT
    enumeration does.
    """
    out: list[Block] = []
    for s in (1, -1):
        out.append(Block("all", 0, s))
        for g in range(1, m):
            out.append(Block("right", g, s))
            out.append(Block("left", g, s))
    if pinned:
        for s in (1, -1):
            for g in range(1, m):
                out.append(Block("right", g, s, True))
                out.append(Block("left", g, s, True))
    return out


def cone_constraints(block: Block, sample: SortedSample) -> tuple[np.ndarray, np.ndarray]:
    """Rows (G, E) with the pattern cone of ``block`` = {u in R^2 : G u >= 0, E u = 0}.

    G has two rows for a free block (the two data points bounding its gap, MATH.md section 4), one
    for a pinned block; E is empty for a free block and one row for a pinned block.
    """
    xt, m = sample.xt, sample.m
    block.validate(m)
    empty = np.zeros((0, 2))
    if block.direction == "all":
        return np.vstack([xt[0], xt[m - 1]]), empty
    g = block.gap
    if block.direction == "right":
        inside, outside = xt[g], xt[g - 1]
    else:
        inside, outside = xt[g - 1], xt[g]
    if block.pinned:
        return inside[None, :], outside[None, :]
    return np.vstack([inside, -outside]), empty


def block_directions(blocks: list[Block], sample: SortedSample) -> tuple[np.ndarray, np.ndarray]:
    """Unit edge directions (E1, E2), each shape (K, 2), of each block's cone.

    A free cone {G u >= 0} in R^2 is the wedge spanned by two rays; a pinned cone is one ray.
    For m = 1 the all-active cone is a half-plane: both rows are NaN there and :func:`rho` treats it
    separately.
    """
    K = len(blocks)
    E1, E2 = np.empty((K, 2)), np.empty((K, 2))
    for k, blk in enumerate(blocks):
        G, E = cone_constraints(blk, sample)
        if E.shape[0]:
            r = np.array([E[0, 1], -E[0, 0]])  # perpendicular to the equality row
            if G[0] @ r < 0:
                r = -r
            E1[k] = E2[k] = r / np.linalg.norm(r)
            continue
        a1, a2 = G
        r1 = np.array([a1[1], -a1[0]])  # on the line a1.u = 0, oriented into a2.u >= 0
        r2 = np.array([a2[1], -a2[0]])
        s1, s2 = a2 @ r1, a1 @ r2
        if s1 == 0 or s2 == 0:  # parallel rows: half-plane
            E1[k] = E2[k] = np.nan
            continue
        r1 = r1 if s1 > 0 else -r1
        r2 = r2 if s2 > 0 else -r2
        E1[k], E2[k] = r1 / np.linalg.norm(r1), r2 / np.linalg.norm(r2)
    return E1, E2


def prefix_sums(sample: SortedSample, weights: np.ndarray) -> np.ndarray:
    """c[g] = sum_{i < g} weights_i x~_i for g = 0 .. m, shape (m + 1, 2), in long double.

    With multipliers ~1e9 that cancel (weights = lambda y), the sums reach ~ the objective while
    the quantities built from their differences (g_k, R values) are O(1): float64 sums err by
    ~eps sum |lambda| ~ 1e-7 there (measured: certify's bound 4.4e-8 below the optimum at
    m = 2000, objective 1.7e9, before its block sums used these).
    """
    ld = np.longdouble
    terms = np.asarray(weights, dtype=ld)[:, None] * sample.xt.astype(ld)
    return np.vstack([np.zeros((1, 2), dtype=ld), compensated_cumsum(terms, axis=0)])


def _block_sums(blocks: list[Block], sample: SortedSample, weights: np.ndarray) -> np.ndarray:
    """g_k = sum_{i in A_k} weights_i x~_i for every block, from :func:`prefix_sums`: (K, 2)."""
    m = sample.m
    c = prefix_sums(sample, weights)
    start = np.array([blk.active(m).start for blk in blocks], dtype=int)
    stop = np.array([blk.active(m).stop for blk in blocks], dtype=int)
    return np.asarray(c[stop] - c[start], dtype=float).reshape(len(blocks), 2)


def rho(
    blocks: list[Block],
    sample: SortedSample,
    lam: np.ndarray,
    directions: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """rho_k(lambda) = || Proj_{cone_k}(s_k g_k(lambda)) ||, g_k = sum_{i in A_k} lambda_i y_i x~_i.

    This is the dual norm of MATH.md section 3: sup { s_k <u, g_k> : u in cone_k, ||u|| <= 1 }. In a
    2-D wedge the projection of z is z itself when z is inside, else the projection onto the better
    of the two edge rays, so rho_k = ||z|| inside and max(0, <z, e1>, <z, e2>) outside.

    Parameters
    ----------
    lam : ndarray, shape (m,)
        Multipliers in sorted order.
    directions : optional
        Precomputed :func:`block_directions` (reuse it when calling rho many times).
    """
    lam = np.asarray(lam, dtype=float)
    if lam.shape != (sample.m,):
        raise ValueError(f"lambda must have shape ({sample.m},), got {lam.shape}")
    E1, E2 = directions if directions is not None else block_directions(blocks, sample)
    signs = np.array([blk.sign for blk in blocks], dtype=float)
    z = signs[:, None] * _block_sums(blocks, sample, lam * sample.y)
    p1, p2 = np.einsum("kj,kj->k", z, E1), np.einsum("kj,kj->k", z, E2)
    # inside the wedge iff z = alpha e1 + beta e2 with alpha, beta >= 0
    det = E1[:, 0] * E2[:, 1] - E1[:, 1] * E2[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = (z[:, 0] * E2[:, 1] - z[:, 1] * E2[:, 0]) / det
        beta = (E1[:, 0] * z[:, 1] - E1[:, 1] * z[:, 0]) / det
    inside = (det != 0) & (alpha >= 0) & (beta >= 0)
    out = np.where(inside, np.linalg.norm(z, axis=1), np.maximum(0.0, np.maximum(p1, p2)))
    half = np.isnan(E1[:, 0])
    for k in np.flatnonzero(half):  # m = 1: cone {a x_0 + c >= 0} is a half-plane
        G, _ = cone_constraints(blocks[k], sample)
        a = G[0]
        t = min(0.0, float(a @ z[k])) / float(a @ a)
        out[k] = float(np.linalg.norm(z[k] - t * a))
    return out


def block_of_neuron(
    w: float, b: float, v: float, sample: SortedSample, kink_tol: float = 1e-9
) -> Block | None:
    """The block of the 1-D neuron v relu(w x + b) on the sorted sample (None if zero there).

    The kink t = -b / w counts as sitting on data point x_i (a pinned block) when
    |w x_i + b| <= kink_tol * ||(w, b)|| * ||(x_i, 1)||. A neuron active on no data point, or with
    v = 0, returns None.
    """
    m, x = sample.m, sample.x
    if v == 0 or (w == 0 and b <= 0):
        return None
    s = 1 if v > 0 else -1
    if w == 0:
        return Block("all", 0, s)
    z = w * x + b
    scale = kink_tol * np.hypot(w, b) * np.hypot(x, 1.0)
    on_kink = np.flatnonzero(np.abs(z) <= scale)
    if on_kink.size:
        i = int(on_kink[np.argmin(np.abs(z[on_kink]))])
        if w > 0:
            return Block("right", i + 1, s, True) if i + 1 <= m - 1 else None
        return Block("left", i, s, True) if i >= 1 else None
    t = -b / w
    if w > 0:
        g = int(np.searchsorted(x, t, side="right"))
        if g == m:
            return None
        return Block("all", 0, s) if g == 0 else Block("right", g, s)
    g = int(np.searchsorted(x, t, side="left"))
    if g == 0:
        return None
    return Block("all", 0, s) if g == m else Block("left", g, s)


#: float64 values of q tried per neuron by :func:`balanced_neurons` on each side of sqrt(||u||)
ROUNDING_CANDIDATES = 64


def balanced_neurons(
    U: np.ndarray,
    signs: np.ndarray,
    x_scale: float = 1.0,
    candidates: int = ROUNDING_CANDIDATES,
    match: str = "products",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced float64 neurons (v, w, b) = (s q, u / q), q ~ sqrt(||u||), one per row u of U.

    The neuron s relu(<u, x~>) is v relu(w x + b) with |v| = ||(w, b)|| = sqrt(||u||), so
    1/2 (v^2 + w^2 + b^2) = ||u||. In float64 the products v w and v b miss s u by up to an ulp
    each, and a margin sums those misses over every neuron active at its point: about
    eps * sum_k ||u_k||, i.e. 1e-7 of the margin when the objective is 1e9 (docs/scale.md,
    Limits), which then bounds the gap that can be certified. q is free up to balance: a q that is
    k ulps off sqrt(||u||) costs (k eps)^2, relatively, in 1/2||theta||^2. So each neuron takes the
    q among fl(sqrt(||u||)) (1 + k 2^-52), |k| <= ``candidates``, that minimises

        |q fl(alpha / q) - s alpha| * x_scale + |q fl(beta / q) - s beta|

    (the miss of its contribution on |x| <= x_scale; products in extended precision). Measured at
    m = 2000, objective 1.7e9: margins 1 - 4e-8 with candidates = 0 against 1 - 7e-10 with 64. Where
    long double is float64 (some platforms) the misses read as 0 and q stays sqrt(||u||).

    Parameters
    ----------
    U : array_like, shape (n, 2)
        Block vectors u_k = (alpha_k, beta_k); float64 or long double (kept exact until rounded).
    signs : array_like, shape (n,)
        Output signs s_k in {-1, +1}.
    x_scale : float
        Largest |x| the network is evaluated on (weights the slope's miss against the bias's).
    candidates : int
        Number of candidates on each side (0: plain rounding of sqrt(||u||)).
    match : {"products", "kinks"}
        "kinks": minimise only the miss of the kink, |b / w - beta / alpha| (in extended
        precision), for callers that correct the magnitudes separately (:mod:`kktsolver.twins`):
        one quantity to hit, so the best of N candidates misses by ~ulp / N instead of
        ~ulp / sqrt(N).
    """
    if match not in ("products", "kinks"):
        raise ValueError(f"match must be 'products' or 'kinks', got {match!r}")
    ld = np.longdouble
    U = np.asarray(U, dtype=ld).reshape(-1, 2)
    s = np.asarray(signs, dtype=float).reshape(-1)
    norm = np.sqrt(U[:, 0] * U[:, 0] + U[:, 1] * U[:, 1])
    q0 = np.sqrt(norm).astype(float)
    live = q0 > 0
    q0 = np.where(live, q0, 1.0)
    # contiguous columns: the candidate loop is long-double arithmetic on them (m = 1e5 with 512
    # candidates: 1.5 s), and strided operands cost more
    u0, u1 = np.ascontiguousarray(U[:, 0]), np.ascontiguousarray(U[:, 1])
    t0, t1 = u0 * s.astype(ld), u1 * s.astype(ld)  # the neuron's (v w, v b)
    best = np.full(q0.size, np.inf, dtype=ld)
    q, w, b = q0.copy(), np.zeros(q0.size), np.zeros(q0.size)
    for k in sorted(range(-candidates, candidates + 1), key=abs):  # ties keep the smallest |k|
        qk = q0 * (1.0 + k * 2.0**-52)
        qk_ld = qk.astype(ld)
        wk = (u0 / qk_ld).astype(float)
        bk = (u1 / qk_ld).astype(float)
        if match == "kinks":
            wk_ld = wk.astype(ld)
            with np.errstate(divide="ignore", invalid="ignore"):
                miss = np.abs(bk.astype(ld) * u0 - wk_ld * u1)
                miss = np.where(wk != 0, miss / np.abs(wk_ld * u0), np.inf)
        else:
            miss = np.abs(s * qk_ld * wk - t0) * ld(x_scale)
            miss += np.abs(s * qk_ld * bk - t1)
        better = miss < best
        np.copyto(best, miss, where=better)
        np.copyto(q, qk, where=better)
        np.copyto(w, wk, where=better)
        np.copyto(b, bk, where=better)
    zero = ~live
    return np.where(zero, 0.0, s * q), np.where(zero, 0.0, w), np.where(zero, 0.0, b)


def neuron_from_u(block: Block, u: np.ndarray) -> tuple[float, float, float]:
    """Balanced neuron (v, w, b) = (s q, u / q), q ~ sqrt(||u||) (:func:`balanced_neurons`)."""
    v, w, b = balanced_neurons(np.reshape(u, (1, 2)), [block.sign])
    return float(v[0]), float(w[0]), float(b[0])


def network_from_blocks(
    blocks: list[Block],
    U: np.ndarray,
    atol: float = 0.0,
    x_scale: float = 1.0,
    candidates: int = ROUNDING_CANDIDATES,
    match: str = "products",
) -> ReLUNetwork:
    """Balanced network, one neuron per block with ||u_k|| > atol; 1/2||theta||^2 = sum ||u_k||.

    Neurons by :func:`balanced_neurons` (``x_scale``: largest |x| of the data; ``candidates``,
    ``match``: its search); U may be long double, and is rounded to float64 only there.
    """
    U = np.asarray(U)
    U = U.astype(np.longdouble if U.dtype == np.longdouble else float).reshape(len(blocks), 2)
    keep = np.sqrt(np.sum(U.astype(float) ** 2, axis=1)) > atol
    if not np.any(keep):
        return ReLUNetwork(np.zeros(1), np.zeros((1, 1)), np.zeros(1))
    signs = np.array([blk.sign for blk in blocks], dtype=float)[keep]
    v, w, b = balanced_neurons(U[keep], signs, x_scale, candidates, match)
    return ReLUNetwork(v, w[:, None], b)


def block_margin_matrix(blocks: list[Block], sample: SortedSample):
    """Sparse M (m x 2K) with (M vec(U))_i = y_i sum_k s_k [i in A_k] <u_k, x~_i> (sorted order).

    This is the plain O(m K) construction; the global solver uses prefix sums instead.
    """
    from scipy import sparse

    m, xt, y = sample.m, sample.xt, sample.y
    rows, cols, vals = [], [], []
    for k, blk in enumerate(blocks):
        idx = np.arange(m)[blk.active(m)]
        for j in (0, 1):
            rows.append(idx)
            cols.append(np.full(idx.size, 2 * k + j))
            vals.append(blk.sign * y[idx] * xt[idx, j])
    if not rows:
        return sparse.csr_matrix((m, 0))
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(m, 2 * len(blocks)),
    )
