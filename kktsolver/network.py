"""Two-layer ReLU networks N(x) = sum_j v_j relu(<w_j, x> + b_j), their JSON format and 1-D form.

Networks are immutable values; every transformation returns a new network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Dataset, as_float_array, read_json, set_frozen
from .errors import InputError, require_instance

__all__ = [
    "ReLUNetwork",
    "NetworkError",
    "PiecewiseLinear",
    "load_network",
    "save_network",
    "require_compatible",
]


class NetworkError(InputError):
    """Raised for malformed network parameters or files."""


@dataclass(frozen=True, eq=False)
class ReLUNetwork:
    """N_theta(x) = sum_j v_j relu(<w_j, x> + b_j), theta = (v, W, b), no output bias.

    Parameters
    ----------
    v : array_like, shape (n,)
        Output weights.
    W : array_like, shape (n, d)
        Input weights, one row per neuron (a vector of length n is read as d = 1).
    b : array_like, shape (n,)
        Biases.
    """

    v: np.ndarray
    W: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        v = as_float_array(self.v, "v", NetworkError).reshape(-1)
        W = as_float_array(self.W, "W", NetworkError)
        b = as_float_array(self.b, "b", NetworkError).reshape(-1)
        if W.ndim == 1:  # a flat W is the 1-D case: one weight per neuron
            W = W[:, None]
        if W.ndim != 2:
            raise NetworkError(f"W must have shape (n, d), got {W.shape}")
        n = v.size
        if n == 0:
            raise NetworkError("the network has no neurons (empty v)")
        if W.shape[1] == 0:
            raise NetworkError("W has zero columns: the input dimension d must be at least 1")
        if W.shape[0] != n or b.size != n:
            raise NetworkError(
                f"inconsistent widths: v has {n} entries, W has {W.shape[0]} rows, b has {b.size} "
                "(W must be n x d, one row per neuron)"
            )
        for name, arr in (("v", v), ("W", W), ("b", b)):
            bad = np.argwhere(~np.isfinite(arr))
            if bad.size:
                raise NetworkError(f"non-finite value in {name} at index {tuple(bad[0].tolist())}")
        set_frozen(self, v=v, W=W, b=b)

    # ------------------------------------------------------------------ basic properties
    @property
    def n(self) -> int:
        """Width (number of neurons)."""
        return int(self.v.size)

    @property
    def d(self) -> int:
        """Input dimension."""
        return int(self.W.shape[1])

    @property
    def theta(self) -> np.ndarray:
        """Flat parameter vector (v, W row-major, b) of length n (d + 2)."""
        return np.concatenate([self.v, self.W.ravel(), self.b])

    @classmethod
    def from_theta(cls, theta: np.ndarray, n: int, d: int) -> ReLUNetwork:
        """Inverse of :attr:`theta`: theta = (v, W row-major, b) with n neurons in dimension d."""
        if int(n) != n or int(d) != d or n < 1 or d < 1:
            raise NetworkError(f"width n and dimension d must be positive integers, got {n}, {d}")
        n, d = int(n), int(d)
        theta = as_float_array(theta, "theta", NetworkError).ravel()
        if theta.size != n * (d + 2):
            raise NetworkError(
                f"theta has {theta.size} entries, expected n (d + 2) = {n * (d + 2)}"
            )
        return cls(theta[:n], theta[n : n + n * d].reshape(n, d), theta[n + n * d :])

    def objective(self) -> float:
        """1/2 ||theta||^2 = 1/2 sum_j (v_j^2 + ||w_j||^2 + b_j^2)."""
        return 0.5 * float(self.v @ self.v + np.sum(self.W * self.W) + self.b @ self.b)

    def _check_inputs(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim <= 1 and self.d == 1:
            X = X.reshape(-1, 1)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise NetworkError(f"inputs of shape {X.shape} do not match the network's d = {self.d}")
        return X

    def preactivations(self, X: np.ndarray) -> np.ndarray:
        """z_ij = <w_j, x_i> + b_j, shape (m, n)."""
        X = self._check_inputs(X)
        return X @ self.W.T + self.b

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """N(x) for each row of X (or each entry of a 1-D vector when d = 1), shape (m,)."""
        return np.maximum(self.preactivations(X), 0.0) @ self.v

    def margins(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """y_i N(x_i) in float64 (see :meth:`accurate_margins` for cancelling neurons)."""
        return np.asarray(y, dtype=float) * self(X)

    def accurate_margins(
        self,
        X: np.ndarray,
        y: np.ndarray,
        Z: np.ndarray | None = None,
        chunk: int = 256,
        near: float | None = None,
    ) -> np.ndarray:
        """y_i N(x_i), correctly rounded where float64 could be off by > 1e-10.

        ``near``: only rows whose float64 margin could be within ``near`` of 1 are recomputed
        (the others keep their float64 value, off by at most the bound below): callers that only
        compare margins with 1 + small tolerances need no more (m = 1e4 with 1806 neurons:
        every row exact took 7.1 s).

        Large-m optima have neurons with slopes ~1e9 whose contributions cancel to margins ~1, so
        the float64 sum can be off by ~1e-6 (measured: margin 1 - 6.8e-7 in float64 for a network
        whose exact margins are >= 1 + 6.0e-8, m = 2000, objective 1.7e9). The cancellation starts
        inside z_ij = <w_j, x_i> + b_j, so a row is recomputed when eps times
        sum_j |v_j| (|<w_j, x_i>| + |b_j|) over its active neurons could exceed 1e-10 (the sum of
        |v_j relu(z_ij)| alone missed a row at 1 - 1.0e-9 in float64, exactly 1 + 3.4e-10 in
        rational arithmetic: two clusters of width 1e-2, m = 500). Recomputed rows have no
        rounding error before the final one: every product v_j w_jk x_ik and v_j b_j is split
        into float64 pairs that sum to it exactly (:func:`_exact_products`) and the row is summed
        by ``math.fsum`` (exact, then rounded once). Only the sign of z_ij (which neurons are
        active) comes from a long double sum; it can be wrong only where
        |z_ij| < 1e-19 |w_j x_i|, which changes the margin by less than |v_j| times that.
        ``Z``: the float64 pre-activations, if the caller has them. Cost: 1.2 s for m = 2000,
        n = 1000 with every row recomputed.
        """
        import math

        X = self._check_inputs(X)
        y = np.asarray(y, dtype=float)
        Z = self.preactivations(X) if Z is None else Z
        relu = np.maximum(Z, 0.0)
        margins = y * (relu @ self.v)
        # float64 errs by ~eps |v_j| (|<w_j, x_i>| + |b_j|) per active neuron BEFORE the
        # cancellation in z_ij (measured 1e-9 where sum_j |v_j relu(z_ij)| was only 6.7e4)
        mag = np.abs(X) @ np.abs(self.W).T + np.abs(self.b)
        scale = ((Z > 0) * mag) @ np.abs(self.v) + mag.max(axis=1, initial=0.0)
        bound = scale * 1e-15
        redo = bound > 1e-10
        if near is not None:
            redo &= np.abs(margins - 1.0) <= near + bound
        redo = np.flatnonzero(redo)
        if redo.size:
            ld = np.longdouble
            W, b = self.W.astype(ld), self.b.astype(ld)
            for start in range(0, redo.size, chunk):
                rows = redo[start : start + chunk]
                on = (X[rows].astype(ld) @ W.T + b) > 0
                parts = _exact_products(self.v, self.W, self.b, X[rows])  # (rows, n, terms)
                for r, i in enumerate(rows):
                    margins[i] = y[i] * math.fsum(parts[r][on[r]].ravel())
        return margins

    # ------------------------------------------------------------------ transformations
    def neuron_norms(self) -> np.ndarray:
        """||(w_j, b_j)|| for each neuron."""
        return np.sqrt(np.sum(self.W * self.W, axis=1) + self.b * self.b)

    def balanced(self) -> ReLUNetwork:
        """Rescale each neuron to |v_j| = ||(w_j, b_j)|| without changing the function.

        relu is positively homogeneous, so (v, w, b) -> (v / c, c w, c b) with c > 0 keeps v relu(.)
        unchanged; c = sqrt(|v_j| / ||(w_j, b_j)||) balances. Neurons with v_j = 0 or (w_j, b_j) = 0
        compute zero and are set entirely to zero (the balanced, norm-minimising choice).
        """
        av = np.abs(self.v)
        nw = self.neuron_norms()
        live = (av > 0) & (nw > 0)
        c = np.zeros_like(av)
        c[live] = np.sqrt(av[live] / nw[live])
        v = np.where(live, self.v / np.where(live, c, 1.0), 0.0)
        return ReLUNetwork(v, self.W * c[:, None], self.b * c)

    def is_balanced(self, rtol: float = 1e-9) -> bool:
        """Whether | |v_j| - ||(w_j, b_j)|| | <= rtol * max(|v_j|, ||(w_j, b_j)||) for every j."""
        av, nw = np.abs(self.v), self.neuron_norms()
        return bool(np.all(np.abs(av - nw) <= rtol * np.maximum(av, nw)))

    def scaled(self, c: float) -> ReLUNetwork:
        """The network c theta; it computes c^2 N (2-homogeneity)."""
        return ReLUNetwork(c * self.v, c * self.W, c * self.b)

    def pruned(self, atol: float = 0.0) -> ReLUNetwork:
        """Drop neurons with |v_j| ||(w_j, b_j)|| <= atol and neurons that are zero on all of R^d.

        A neuron with w_j = 0 and b_j <= 0 computes relu(b_j) = 0 everywhere, whatever v_j, so it is
        dropped as well. For atol = 0 the function is unchanged. A network whose neurons are all
        zero keeps one zero neuron so that it stays a valid network.
        """
        dead = ~np.any(self.W != 0, axis=1) & (self.b <= 0)
        keep = (np.abs(self.v) * self.neuron_norms() > atol) & ~dead
        if not keep.any():
            return ReLUNetwork(np.zeros(1), np.zeros((1, self.d)), np.zeros(1))
        return ReLUNetwork(self.v[keep], self.W[keep], self.b[keep])

    def merged(self, rtol: float = 1e-12) -> ReLUNetwork:
        """Merge neurons whose (w_j, b_j) are positive multiples of each other, v_j of equal sign.

        Two such neurons have the same activation pattern on all of R^d, and
        v_j relu(<w_j, x> + b_j) = s_j m_j relu(<e_j, x~>) with m_j = |v_j| ||(w_j, b_j)|| and
        e_j = (w_j, b_j) / ||(w_j, b_j)||. A group with common (e, s) becomes one balanced neuron
        v = s sqrt(M), (w, b) = sqrt(M) e, M = sum of its m_j: the function is unchanged and
        1/2||theta||^2 becomes sum M <= sum_j (v_j^2 + ||(w_j, b_j)||^2) / 2 (AM-GM), so it does not
        increase. Directions count as equal when their unit vectors differ by at most ``rtol`` in
        norm. Zero neurons are dropped (:meth:`pruned`). The result is balanced.
        """
        net = self.pruned()
        norms = net.neuron_norms()
        if not np.any(norms > 0):
            return net  # the single zero neuron kept by pruned()
        dirs = np.column_stack([net.W, net.b]) / norms[:, None]
        mass = np.abs(net.v) * norms
        sign = np.sign(net.v)
        # greedy grouping: each neuron joins the first earlier leader within rtol (one vectorised
        # distance computation per neuron, so wide interior-point outputs stay cheap)
        lead: list[int] = []
        total: list[float] = []
        for j in range(net.n):
            if lead:
                L = np.asarray(lead)
                near = (sign[L] == sign[j]) & (np.linalg.norm(dirs[L] - dirs[j], axis=1) <= rtol)
                hit = np.flatnonzero(near)
                if hit.size:
                    total[hit[0]] += mass[j]
                    continue
            lead.append(j)
            total.append(float(mass[j]))
        r = np.sqrt(np.asarray(total))
        return ReLUNetwork(sign[lead] * r, dirs[lead, :-1] * r[:, None], dirs[lead, -1] * r)

    def permuted(self, perm: np.ndarray) -> ReLUNetwork:
        """Neurons reordered by ``perm`` (the problem is invariant under this)."""
        perm = np.asarray(perm)
        if perm.shape != (self.n,) or not np.array_equal(np.sort(perm), np.arange(self.n)):
            raise NetworkError(f"perm must be a permutation of 0..{self.n - 1}")
        return ReLUNetwork(self.v[perm], self.W[perm], self.b[perm])

    def padded(self, width: int) -> ReLUNetwork:
        """Append zero neurons up to ``width`` (a no-op if already that wide)."""
        extra = width - self.n
        if extra < 0:
            raise NetworkError(f"cannot pad a width-{self.n} network to width {width}")
        z = np.zeros(extra)
        return ReLUNetwork(
            np.concatenate([self.v, z]),
            np.vstack([self.W, np.zeros((extra, self.d))]),
            np.concatenate([self.b, z]),
        )

    # ------------------------------------------------------------------ 1-D form
    def piecewise_linear(self) -> PiecewiseLinear:
        """The 1-D function as sorted kinks with the slope and intercept of each piece."""
        if self.d != 1:
            raise NetworkError(f"piecewise-linear form needs d = 1, the network has d = {self.d}")
        return PiecewiseLinear.from_network(self)

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, list]:
        """The JSON form {"v": [...], "W": [[...], ...], "b": [...]} (W is n x d)."""
        return {"v": self.v.tolist(), "W": self.W.tolist(), "b": self.b.tolist()}

    @classmethod
    def from_dict(cls, obj: dict) -> ReLUNetwork:
        """Inverse of :meth:`to_dict`; W may be n x d nested lists or, in 1-D, a flat list.

        Other keys (a user's own metadata) are ignored.
        """
        if not isinstance(obj, dict):
            raise NetworkError("a network must be a JSON object with keys 'v', 'W', 'b'")
        missing = [k for k in ("v", "W", "b") if k not in obj]
        if missing:
            raise NetworkError(f"network is missing key(s) {missing}; expected 'v', 'W', 'b'")
        return cls(obj["v"], obj["W"], obj["b"])

    def __repr__(self) -> str:
        return f"ReLUNetwork(n={self.n}, d={self.d}, objective={self.objective():.6g})"


@dataclass(frozen=True, eq=False)
class PiecewiseLinear:
    """A continuous piecewise-linear function of one variable.

    ``kinks`` (sorted, length K, possibly repeated or infinite) split R into K + 1 pieces; on
    piece k (between kinks[k-1] and kinks[k], with -inf and +inf at the ends) the function is
    slopes[k] * x + intercepts[k]. Slopes and intercepts are cumulative sums of v_j w_j and v_j b_j,
    never derived from values at kinks, so a kink far outside the interval of interest (tiny
    |w_j|) does not spoil the pieces inside it.
    """

    kinks: np.ndarray
    slopes: np.ndarray
    intercepts: np.ndarray

    @classmethod
    def from_network(cls, net: ReLUNetwork) -> PiecewiseLinear:
        """Kinks t_j = -b_j / w_j of neurons with w_j != 0; constant neurons shift the intercept.

        At x -> -inf the active neurons are those with w_j < 0 (plus w_j = 0 < b_j everywhere);
        crossing t_j from left to right switches a neuron with w_j > 0 on and one with w_j < 0 off.
        A kink may overflow to +-inf for tiny |w_j|; it then simply never bounds a finite piece.
        """
        w, b, v = net.W[:, 0], net.b, net.v
        const = (w == 0) & (b > 0)
        neg = w < 0
        slope_left = float(np.sum(v[neg] * w[neg]))
        icpt_left = float(np.sum(v[const] * b[const]) + np.sum(v[neg] * b[neg]))
        moving = w != 0
        with np.errstate(over="ignore"):
            t = -b[moving] / w[moving]
        order = np.argsort(t, kind="stable")
        t, wm, bm, vm = t[order], w[moving][order], b[moving][order], v[moving][order]
        ds = np.where(wm > 0, vm * wm, -vm * wm)
        di = np.where(wm > 0, vm * bm, -vm * bm)
        slopes = slope_left + np.concatenate([[0.0], np.cumsum(ds)])
        intercepts = icpt_left + np.concatenate([[0.0], np.cumsum(di)])
        return cls(t, slopes, intercepts)

    @classmethod
    def from_kinks(
        cls, kinks: np.ndarray, slope_changes: np.ndarray, left: np.ndarray, dtype: type = float
    ) -> PiecewiseLinear:
        """f(x) = left[0] x + left[1] + sum_k slope_changes[k] relu(x - kinks[k]), kinks sorted:
        slopes and intercepts are cumulative sums of d_k and -d_k t_k.

        ``dtype`` np.longdouble keeps slopes and intercepts (and so every evaluation) in extended
        precision: with |d_k| ~ 1e9 .. 1e10 the float64 sums cancel to values ~1 with errors
        ~1e-6, which read as violated margins.
        """
        t = np.asarray(kinks, dtype=dtype)
        d = np.asarray(slope_changes, dtype=dtype)
        zero = np.zeros(1, dtype=dtype)
        slopes = dtype(left[0]) + np.concatenate([zero, compensated_cumsum(d)])
        intercepts = dtype(left[1]) - np.concatenate([zero, compensated_cumsum(d * t)])
        return cls(t, slopes, intercepts)

    @property
    def slope_changes(self) -> np.ndarray:
        """The jump of the slope at each kink (from left to right)."""
        return np.diff(self.slopes)

    def slope(self, x: np.ndarray) -> np.ndarray:
        """The slope of the piece containing each x (the right piece at a kink: f'(x+))."""
        return self.slopes[np.searchsorted(self.kinks, np.asarray(x, dtype=float), side="right")]

    @property
    def n_pieces(self) -> int:
        """Number of linear pieces (len(kinks) + 1)."""
        return int(self.slopes.size)

    @property
    def values(self) -> np.ndarray:
        """N(t_k) at each kink, from the piece on its left (NaN or inf at an infinite kink)."""
        with np.errstate(invalid="ignore", over="ignore"):
            return self.slopes[:-1] * self.kinks + self.intercepts[:-1]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Evaluate on the piece containing each x (the right piece at a kink; N is continuous)."""
        x = np.asarray(x, dtype=float)
        k = np.searchsorted(self.kinks, x, side="right")
        return self.slopes[k] * x + self.intercepts[k]

    def to_dict(self) -> dict[str, list]:
        """Plain lists {"kinks", "slopes", "intercepts"} (infinite kinks become None in JSON)."""
        return {
            "kinks": self.kinks.tolist(),
            "slopes": self.slopes.tolist(),
            "intercepts": self.intercepts.tolist(),
        }


def require_compatible(
    network: object, dataset: object, names: tuple[str, str] = ("network", "dataset")
) -> None:
    """Raise `InputError` unless ``network`` is a ReLUNetwork and ``dataset`` a Dataset of the same
    input dimension d; ``names`` are how the message calls them (argument or file names)."""
    net = require_instance(network, ReLUNetwork, names[0])
    require_instance(
        dataset,
        Dataset,
        names[1],
        d=net.d,
        why=f"{names[0]} takes inputs of dimension d = {net.d}",
    )


def save_network(net: ReLUNetwork, path: str | Path) -> Path:
    """Write the JSON network format (docs/formats.md); floats are written exactly (repr)."""
    path = Path(path)
    try:
        path.write_text(json.dumps(net.to_dict(), indent=1) + "\n")
    except OSError as e:
        raise NetworkError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def load_network(path: str | Path) -> ReLUNetwork:
    """Read the JSON network format; errors name the file (and the line for invalid JSON)."""
    path = Path(path)
    if not path.is_file():
        raise NetworkError(f"{path}: no such file")
    obj = read_json(path, NetworkError)
    try:
        return ReLUNetwork.from_dict(obj)
    except NetworkError as e:
        raise NetworkError(f"{path}: {e}") from None


def compensated_cumsum(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """np.cumsum with each partial sum correct to ~1 ulp instead of ~sqrt(k) ulps (same dtype).

    Every step s_k = fl(s_{k-1} + a_k) of the plain cumulative sum loses an error that TwoSum
    recovers exactly from s_{k-1}, a_k and s_k (round to nearest, any binary format), so the
    errors are computed after the fact, vectorised, and their own (tiny) cumulative sum added.
    Measured: prefix sums of slope changes ~7e9 in long double erred by ~1e-8 in margins ~1 (two
    clusters of width 1e-3, m = 1000), which then read as a relative gap of 6.6e-8.
    """
    a = np.asarray(a)
    s = np.cumsum(a, axis=axis)
    prev = np.concatenate(
        [np.zeros_like(np.take(s, [0], axis=axis)), np.delete(s, -1, axis=axis)], axis=axis
    )
    bb = s - prev
    err = (prev - (s - bb)) + (a - bb)
    return s + np.cumsum(err, axis=axis)


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp split a = hi + lo exactly, hi and lo with at most 26 significant bits each."""
    c = 134217729.0 * a  # 2^27 + 1
    hi = c - (c - a)
    return hi, a - hi


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a * b = p + e exactly in float64 (Dekker's algorithm; no fused multiply-add needed)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _exact_products(v: np.ndarray, W: np.ndarray, b: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Float64 terms (rows, n, 4d + 2) whose exact sum over the last axis is v_j (<w_j, x_i> + b_j).

    w_jk x_ik = p + e exactly, then v_j p, v_j e and v_j b_j each split again the same way.
    """
    p, e = _two_product(W[None, :, :], X[:, None, :])  # (rows, n, d)
    vv = v[None, :, None]
    terms = [*_two_product(vv, p), *_two_product(vv, e)]
    terms += [
        t[..., None] for t in _two_product(v[None, :], np.broadcast_to(b, (X.shape[0], b.size)))
    ]
    return np.concatenate(terms, axis=2)
