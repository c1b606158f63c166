"""Two-layer ReLU networks N(x) = sum_j v_j relu(<w_j, x> + b_j), their JSON format and 1-D form.

Networks are immutable values; every transformation returns a new network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["ReLUNetwork", "NetworkError", "PiecewiseLinear", "load_network", "save_network"]


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
        try:
            v = np.array(self.v, dtype=float).reshape(-1)
            W = np.array(self.W, dtype=float)
            b = np.array(self.b, dtype=float).reshape(-1)
        except (TypeError, ValueError) as e:
            raise NetworkError(f"network parameters must be numeric arrays ({e})") from None
        if W.ndim == 1:
            W = W[:, None]
        if W.ndim != 2:
            raise NetworkError(f"W must have shape (n, d), got {W.shape}")
        n = v.size
        if n == 0:
            raise NetworkError("the network has no neurons (empty v)")
        if W.shape[0] != n or b.size != n:
            raise NetworkError(
                f"inconsistent widths: v has {n} entries, W has {W.shape[0]} rows, b has {b.size}"
            )
        for name, arr in (("v", v), ("W", W), ("b", b)):
            bad = np.argwhere(~np.isfinite(arr))
            if bad.size:
                raise NetworkError(f"non-finite value in {name} at index {tuple(bad[0].tolist())}")
        for arr in (v, W, b):
            arr.setflags(write=False)
        object.__setattr__(self, "v", v)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)

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
        """Inverse of :attr:`theta`."""
        theta = np.asarray(theta, dtype=float).ravel()
        if theta.size != n * (d + 2):
            raise NetworkError(f"theta has {theta.size} entries, expected n (d + 2) = {n * (d + 2)}")
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
        """y_i N(x_i)."""
        return np.asarray(y, dtype=float) * self(X)

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
        """Drop neurons with |v_j| ||(w_j, b_j)|| <= atol (they contribute nothing for atol = 0).

        A network whose neurons are all zero keeps one zero neuron so that it stays a valid network.
        """
        keep = np.abs(self.v) * self.neuron_norms() > atol
        if not keep.any():
            return ReLUNetwork(np.zeros(1), np.zeros((1, self.d)), np.zeros(1))
        return ReLUNetwork(self.v[keep], self.W[keep], self.b[keep])

    def merged(self, rtol: float = 1e-12) -> ReLUNetwork:
        """Merge neurons whose (w_j, b_j) are positive multiples of each other and v_j agree in sign.

        Two such neurons have the same activation pattern on all of R^d; replacing them by one neuron
        along the common direction with the summed product |v| ||(w, b)|| keeps the function and, after
        balancing, does not increase 1/2||theta||^2 (it is sum_j |v_j| ||(w_j, b_j)|| when balanced).
        Zero neurons are dropped. The result is balanced.
        """
        net = self.pruned()
        dirs = np.column_stack([net.W, net.b]) / net.neuron_norms()[:, None]
        mass = np.abs(net.v) * net.neuron_norms()
        sign = np.sign(net.v)
        groups: list[list[int]] = []
        for j in range(net.n):
            for g in groups:
                k = g[0]
                if sign[k] == sign[j] and np.linalg.norm(dirs[k] - dirs[j]) <= rtol:
                    g.append(j)
                    break
            else:
                groups.append([j])
        v, W, b = [], [], []
        for g in groups:
            total = float(mass[g].sum())
            direction = dirs[g[0]]
            r = np.sqrt(total)
            v.append(sign[g[0]] * r)
            W.append(direction[:-1] * r)
            b.append(direction[-1] * r)
        return ReLUNetwork(np.array(v), np.array(W), np.array(b))

    def permuted(self, perm: np.ndarray) -> ReLUNetwork:
        """Neurons reordered by ``perm`` (the problem is invariant under this)."""
        perm = np.asarray(perm)
        return ReLUNetwork(self.v[perm], self.W[perm], self.b[perm])

    def padded(self, width: int) -> ReLUNetwork:
        """Append zero neurons up to ``width`` (a no-op if already that wide)."""
        extra = width - self.n
        if extra < 0:
            raise NetworkError(f"cannot pad a width-{self.n} network to width {width}")
        z = np.zeros(extra)
        return ReLUNetwork(
            np.concatenate([self.v, z]), np.vstack([self.W, np.zeros((extra, self.d))]),
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
        """The JSON form {"v": [...], "W": [[...], ...], "b": [...]}."""
        return {"v": self.v.tolist(), "W": self.W.tolist(), "b": self.b.tolist()}

    @classmethod
    def from_dict(cls, obj: dict) -> ReLUNetwork:
        """Inverse of :meth:`to_dict`; W may be n x d nested lists or, in 1-D, a flat list."""
        if not isinstance(obj, dict):
            raise NetworkError("a network must be a JSON object with keys 'v', 'W', 'b'")
        missing = [k for k in ("v", "W", "b") if k not in obj]
        if missing:
            raise NetworkError(f"network is missing key(s) {missing}; expected 'v', 'W', 'b'")
        return cls(obj["v"], obj["W"], obj["b"])

    def __repr__(self) -> str:
        return f"ReLUNetwork(n={self.n}, d={self.d}, objective={self.objective():.6g})"


@dataclass(frozen=True)
class PiecewiseLinear:
    """A continuous piecewise-linear function of one variable.

    ``kinks`` (sorted, length K) split R into K + 1 pieces; on piece k (between kinks[k-1] and
    kinks[k], with -inf and +inf at the ends) the function is slopes[k] * x + intercepts[k].
    """

    kinks: np.ndarray
    slopes: np.ndarray
    intercepts: np.ndarray

    @classmethod
    def from_network(cls, net: ReLUNetwork) -> PiecewiseLinear:
        """Kinks t_j = -b_j / w_j of neurons with w_j != 0; constant neurons shift the intercept."""
        w, b, v = net.W[:, 0], net.b, net.v
        slope_left = 0.0  # slope and intercept at x -> -inf: neurons with w < 0 are active there
        icpt_left = 0.0
        const = (w == 0) & (b > 0)
        icpt_left += float(np.sum(v[const] * b[const]))
        neg = w < 0
        slope_left += float(np.sum(v[neg] * w[neg]))
        icpt_left += float(np.sum(v[neg] * b[neg]))
        moving = w != 0
        t = -b[moving] / w[moving]
        order = np.argsort(t, kind="stable")
        t, wm, bm, vm = t[order], w[moving][order], b[moving][order], v[moving][order]
        # crossing a kink: a right-facing neuron switches on (+v w, +v b), a left-facing one off
        ds = np.where(wm > 0, vm * wm, -vm * wm)
        di = np.where(wm > 0, vm * bm, -vm * bm)
        slopes = slope_left + np.concatenate([[0.0], np.cumsum(ds)])
        intercepts = icpt_left + np.concatenate([[0.0], np.cumsum(di)])
        return cls(t, slopes, intercepts)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        k = np.searchsorted(self.kinks, x, side="right")
        return self.slopes[k] * x + self.intercepts[k]


def save_network(net: ReLUNetwork, path: str | Path) -> Path:
    """Write the JSON network format (see README, "Network files")."""
    path = Path(path)
    path.write_text(json.dumps(net.to_dict(), indent=1) + "\n")
    return path


def load_network(path: str | Path) -> ReLUNetwork:
    """Read the JSON network format; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise NetworkError(f"{path}: no such file")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise NetworkError(f"{path}, line {e.lineno}: invalid JSON ({e.msg})") from None
    try:
        return ReLUNetwork.from_dict(obj)
    except NetworkError as e:
        raise NetworkError(f"{path}: {e}") from None
