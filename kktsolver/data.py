"""Labelled datasets for the max-margin problem: validation, generators and CSV/NPZ files.

A :class:`Dataset` is validated once at construction; the numerical core downstream trusts it.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "Dataset",
    "DatasetError",
    "noisy_constant_1d",
    "noisy_constant",
    "load_dataset",
    "save_dataset",
]


class DatasetError(InputError):
    """Raised for data that cannot define a max-margin problem (the message names the culprit)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled sample S = {(x_i, y_i)}, x_i in R^d, y_i in {-1, +1}.

    Parameters
    ----------
    X : array_like, shape (m, d) or (m,)
        Inputs; a 1-D array is read as m points in dimension one.
    y : array_like, shape (m,)
        Labels, each exactly +1 or -1.
    meta : mapping, optional
        Free-form metadata (generator, p, seed, input distribution and its ``support``).

    Notes
    -----
    In dimension one two equal inputs with different labels make (P) infeasible (no network
    interpolates them) and raise :class:`DatasetError` naming both indices; equal inputs with equal
    labels are merged (first occurrence kept) with a warning. The original order is kept otherwise;
    1-D solvers sort internally (:attr:`order`).
    """

    X: np.ndarray
    y: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        X = np.asarray(self.X, dtype=float) if _is_numeric(self.X) else _bad_numeric(self.X, "X")
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise DatasetError(f"X must have shape (m, d), got an array of shape {X.shape}")
        y = np.asarray(self.y)
        if y.ndim != 1:
            raise DatasetError(f"y must be a vector of labels, got an array of shape {y.shape}")
        if X.shape[0] != y.shape[0]:
            raise DatasetError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels")
        if X.shape[0] == 0:
            raise DatasetError("the dataset is empty (m = 0)")
        if X.shape[1] == 0:
            raise DatasetError("the inputs have dimension d = 0")
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        if bad.size:
            raise DatasetError(f"non-finite input at index {int(bad[0])}: {X[bad[0]].tolist()}")
        try:
            y_float = y.astype(float)
        except (TypeError, ValueError):
            raise DatasetError("labels must be the numbers +1 or -1") from None
        bad = np.flatnonzero(~np.isin(y_float, (-1.0, 1.0)))
        if bad.size:
            raise DatasetError(f"label at index {int(bad[0])} is {y[bad[0]]!r}; labels must be +1 or -1")
        y = y_float.astype(np.int8)
        meta = dict(self.meta)
        if X.shape[1] == 1:
            X, y, meta = _merge_duplicates_1d(X, y, meta)
        X.setflags(write=False)
        y.setflags(write=False)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "meta", meta)

    @property
    def m(self) -> int:
        """Number of samples."""
        return int(self.X.shape[0])

    @property
    def d(self) -> int:
        """Input dimension."""
        return int(self.X.shape[1])

    @property
    def x(self) -> np.ndarray:
        """The inputs as a vector (dimension one only)."""
        self.require_1d()
        return self.X[:, 0]

    @property
    def order(self) -> np.ndarray:
        """Indices that sort the inputs increasingly (dimension one only)."""
        return np.argsort(self.x, kind="stable")

    @property
    def support(self) -> tuple[float, float] | None:
        """Support [a, b] of the input distribution in 1-D, if the metadata records one."""
        s = self.meta.get("support")
        return None if s is None else (float(s[0]), float(s[1]))

    def require_1d(self) -> None:
        """Raise :class:`DatasetError` unless the inputs are one-dimensional."""
        if self.d != 1:
            raise DatasetError(f"this operation needs 1-D inputs, the dataset has d = {self.d}")

    def __len__(self) -> int:
        return self.m

    def __repr__(self) -> str:
        gen = self.meta.get("generator", "user")
        return f"Dataset(m={self.m}, d={self.d}, generator={gen!r}, negatives={int((self.y < 0).sum())})"


def _is_numeric(a: Any) -> bool:
    try:
        np.asarray(a, dtype=float)
    except (TypeError, ValueError):
        return False
    return True


def _bad_numeric(a: Any, name: str) -> np.ndarray:
    raise DatasetError(f"{name} must be numeric")


def _merge_duplicates_1d(
    X: np.ndarray, y: np.ndarray, meta: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    x = X[:, 0]
    order = np.argsort(x, kind="stable")
    xs = x[order]
    same = np.flatnonzero(xs[1:] == xs[:-1])
    if same.size == 0:
        return X.copy(), y.copy(), meta
    for k in same:
        i, j = int(order[k]), int(order[k + 1])
        if y[i] != y[j]:
            i, j = min(i, j), max(i, j)
            raise DatasetError(
                f"points {i} and {j} both have x = {x[i]!r} but labels {int(y[i]):+d} and "
                f"{int(y[j]):+d}: no network can interpolate them, so (P) is infeasible"
            )
    drop = np.sort(order[same + 1])
    keep = np.setdiff1d(np.arange(x.size), drop)
    warnings.warn(
        f"merged {drop.size} duplicate input(s) with equal labels (indices {drop[:10].tolist()}"
        f"{'...' if drop.size > 10 else ''})",
        stacklevel=4,
    )
    meta = {**meta, "merged_indices": drop.tolist()}
    return X[keep].copy(), y[keep].copy(), meta


# --------------------------------------------------------------------------- generators


def _check_p(p: float) -> float:
    p = float(p)
    if not 0.0 <= p < 0.5:
        raise DatasetError(f"flip probability p must lie in [0, 1/2), got {p}")
    return p


def _check_m(m: int) -> int:
    if int(m) != m or m < 1:
        raise DatasetError(f"sample size m must be a positive integer, got {m!r}")
    return int(m)


def noisy_constant_1d(
    m: int, p: float, seed: int | None = None, interval: tuple[float, float] = (0.0, 1.0)
) -> Dataset:
    """Seed setting in 1-D: x_i ~ Uniform(interval), y_i = +1 flipped with probability p.

    The target is f*(x) = +1, so the clean test error of a network N is Pr[N(x) <= 0].
    """
    m, p = _check_m(m), _check_p(p)
    a, b = float(interval[0]), float(interval[1])
    if not (np.isfinite(a) and np.isfinite(b) and a < b):
        raise DatasetError(f"interval must satisfy a < b (finite), got {interval}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(a, b, size=m)
    y = np.where(rng.random(m) < p, -1, 1)
    meta = {
        "generator": "noisy_constant_1d",
        "p": p,
        "seed": seed,
        "distribution": "uniform",
        "support": [a, b],
    }
    return Dataset(x[:, None], y, meta)


def noisy_constant(
    m: int, d: int, p: float, seed: int | None = None, distribution: str = "sphere"
) -> Dataset:
    """Seed setting in R^d: x_i uniform on the unit sphere or standard Gaussian, labels +1 flipped w.p. p."""
    m, p = _check_m(m), _check_p(p)
    if int(d) != d or d < 1:
        raise DatasetError(f"dimension d must be a positive integer, got {d!r}")
    if distribution not in ("sphere", "gaussian"):
        raise DatasetError(f"distribution must be 'sphere' or 'gaussian', got {distribution!r}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, int(d)))
    if distribution == "sphere":
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.where(rng.random(m) < p, -1, 1)
    meta = {"generator": "noisy_constant", "p": p, "seed": seed, "distribution": distribution}
    return Dataset(X, y, meta)


# --------------------------------------------------------------------------- files


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def save_dataset(dataset: Dataset, path: str | Path) -> Path:
    """Write a dataset as CSV (header ``x,y`` or ``x1,...,xd,y``) or NPZ (``X``, ``y``).

    Metadata goes to the JSON sidecar ``<path>.meta.json``. Floats are written with ``repr`` so a
    round trip is exact.
    """
    path = Path(path)
    if path.suffix == ".npz":
        np.savez(path, X=dataset.X, y=dataset.y)
    elif path.suffix == ".csv":
        header = ["x"] if dataset.d == 1 else [f"x{j + 1}" for j in range(dataset.d)]
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([*header, "y"])
            for xi, yi in zip(dataset.X, dataset.y, strict=True):
                w.writerow([*(repr(float(v)) for v in xi), int(yi)])
    else:
        raise DatasetError(f"{path}: unknown dataset format {path.suffix!r} (use .csv or .npz)")
    _sidecar(path).write_text(json.dumps(dict(dataset.meta), indent=2, default=str) + "\n")
    return path


def load_dataset(path: str | Path) -> Dataset:
    """Read a dataset written by :func:`save_dataset` (or by hand in the same format).

    Errors name the file and, for CSV, the line.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    meta: dict[str, Any] = {}
    side = _sidecar(path)
    if side.exists():
        try:
            meta = json.loads(side.read_text())
        except json.JSONDecodeError as e:
            raise DatasetError(f"{side}: invalid JSON metadata: {e}") from None
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "X" not in z or "y" not in z:
                    raise DatasetError(f"{path}: an NPZ dataset needs arrays 'X' and 'y'")
                X, y = z["X"], z["y"]
        except (OSError, ValueError) as e:
            raise DatasetError(f"{path}: not a readable NPZ file ({e})") from None
    elif path.suffix == ".csv":
        X, y = _read_csv(path)
    else:
        raise DatasetError(f"{path}: unknown dataset format {path.suffix!r} (use .csv or .npz)")
    try:
        return Dataset(X, y, meta)
    except DatasetError as e:
        raise DatasetError(f"{path}: {e}") from None


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DatasetError(f"{path}: empty file (expected a header 'x,y' or 'x1,...,xd,y')")
    header = [h.strip() for h in rows[0]]
    d = len(header) - 1
    expected = ["x"] if d == 1 else [f"x{j + 1}" for j in range(d)]
    if d < 1 or header != [*expected, "y"] and not (d == 1 and header == ["x1", "y"]):
        raise DatasetError(
            f"{path}, line 1: header {','.join(header)!r} should be 'x,y' or 'x1,...,xd,y'"
        )
    X = np.empty((len(rows) - 1, d))
    y = np.empty(len(rows) - 1)
    n = 0
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != d + 1:
            raise DatasetError(f"{path}, line {lineno}: expected {d + 1} fields, got {len(row)}")
        try:
            vals = [float(c) for c in row]
        except ValueError:
            raise DatasetError(f"{path}, line {lineno}: non-numeric field in {row}") from None
        if not all(np.isfinite(vals)):
            raise DatasetError(f"{path}, line {lineno}: non-finite value in {row}")
        if vals[-1] not in (-1.0, 1.0):
            raise DatasetError(f"{path}, line {lineno}: label {row[-1]!r} must be +1 or -1")
        X[n], y[n] = vals[:-1], vals[-1]
        n += 1
    if n == 0:
        raise DatasetError(f"{path}: no data rows after the header")
    return X[:n], y[:n]
