"""Labelled datasets for the max-margin problem: validation, generators and CSV/NPZ files.

A :class:`Dataset` is validated once at construction; the numerical core downstream trusts it.
"""

from __future__ import annotations

import csv
import json
import math
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
    "clustered_1d",
    "load_dataset",
    "save_dataset",
    "sidecar_path",
    "as_float_array",
    "check_interval",
    "interval_or_support",
    "check_seed",
    "positive_int",
    "read_json",
    "set_frozen",
]


class DatasetError(InputError):
    """Raised for data that cannot define a max-margin problem (the message names the culprit).

    ``indices`` holds the offending point indices when there are any, so that a file reader can
    translate them into line numbers.
    """

    def __init__(self, message: str, indices: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.indices = tuple(int(i) for i in indices)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled sample S = {(x_i, y_i)}, x_i in R^d, y_i in {-1, +1}.

    Parameters
    ----------
    X : array_like, shape (m, d) or (m,)
        Inputs; a 1-D array is read as m points in dimension one. Copied, then read-only.
    y : array_like, shape (m,)
        Labels, each exactly +1 or -1 (stored as int8).
    meta : mapping, optional
        Free-form metadata (generator, p, seed, input distribution and its ``support``).

    Notes
    -----
    In dimension one two equal inputs with different labels make (P) infeasible (no network
    interpolates them) and raise :class:`DatasetError` naming both indices; equal inputs with equal
    labels are merged (first occurrence kept) with a warning, and the dropped indices are recorded
    in ``meta["merged_indices"]``. The original order is kept otherwise; 1-D solvers sort internally
    (:attr:`order`).
    """

    X: np.ndarray
    y: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        X = as_float_array(self.X, "X", DatasetError)
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
            i = int(bad[0])
            raise DatasetError(f"non-finite input at index {i}: {X[i].tolist()}", (i,))
        try:
            y_float = y.astype(float)
        except (TypeError, ValueError):
            raise DatasetError("labels must be the numbers +1 or -1") from None
        bad = np.flatnonzero(~np.isin(y_float, (-1.0, 1.0)))
        if bad.size:
            i = int(bad[0])
            raise DatasetError(
                f"label at index {i} is {y[i].item()!r}; labels must be +1 or -1", (i,)
            )
        y = y_float.astype(np.int8)
        if self.meta is None:
            meta: dict[str, Any] = {}
        elif isinstance(self.meta, Mapping):
            meta = dict(self.meta)
        else:
            raise DatasetError(f"meta must be a mapping, got {type(self.meta).__name__}")
        if X.shape[1] == 1:
            X, y, meta = _merge_duplicates_1d(X, y, meta)
        set_frozen(self, X=X, y=y, meta=meta)

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
        neg = int((self.y < 0).sum())
        return f"Dataset(m={self.m}, d={self.d}, generator={gen!r}, negatives={neg})"


def set_frozen(obj: Any, **values: Any) -> None:
    """Store validated values on a frozen dataclass from its ``__post_init__``.

    NumPy arrays are made read-only first, so that the container is immutable in fact and not only
    in its attributes (``object.__setattr__``: a frozen dataclass refuses plain assignment).
    """
    for name, val in values.items():
        if isinstance(val, np.ndarray):
            val.setflags(write=False)
        object.__setattr__(obj, name, val)


def as_float_array(a: Any, name: str, error: type[InputError] = InputError) -> np.ndarray:
    """A fresh float64 copy of ``a``; complex, ragged or non-numeric input raises ``error``.

    A copy, so that a validated, read-only container never aliases (or freezes) the caller's array.
    """
    try:
        is_complex = np.iscomplexobj(a)
        arr = None if is_complex else np.array(a, dtype=float)
    except (TypeError, ValueError) as e:
        raise error(f"{name} must be a numeric array ({e})") from None
    if is_complex:
        raise error(f"{name} must be real, got complex values")
    return arr


def _merge_duplicates_1d(
    X: np.ndarray, y: np.ndarray, meta: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    x = X[:, 0]
    order = np.argsort(x, kind="stable")
    xs = x[order]
    same = np.flatnonzero(xs[1:] == xs[:-1])
    if same.size == 0:
        return X, y, meta
    # equal labels are transitive along a run of equal x, so adjacent pairs suffice
    for k in same:
        i, j = int(order[k]), int(order[k + 1])
        if y[i] != y[j]:
            i, j = min(i, j), max(i, j)
            raise DatasetError(
                f"points {i} and {j} both have x = {float(x[i])!r} but labels {int(y[i]):+d} and "
                f"{int(y[j]):+d}: no network can interpolate them, so (P) is infeasible",
                (i, j),
            )
    drop = np.sort(order[same + 1])  # stable sort: the first occurrence of each run is kept
    keep = np.setdiff1d(np.arange(x.size), drop)
    warnings.warn(
        f"merged {drop.size} duplicate input(s) with equal labels (indices {drop[:10].tolist()}"
        f"{'...' if drop.size > 10 else ''})",
        stacklevel=4,
    )
    meta = {**meta, "merged_indices": drop.tolist()}
    return X[keep], y[keep], meta


# --------------------------------------------------------------------------- generators


def _check_p(p: float) -> float:
    try:
        q = float(p)
    except (TypeError, ValueError):
        q = math.nan
    if not 0.0 <= q < 0.5:  # also rejects NaN
        raise DatasetError(f"flip probability p must lie in [0, 1/2), got {p!r}")
    return q


def positive_int(value: Any, what: str, error: type[InputError] = InputError) -> int:
    """``value`` as an int if it is a positive integer (200 or 200.0), else raise ``error``.

    Bools, fractions, strings and non-finite numbers are rejected; ``what`` names the argument.
    """
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.number))
    if not ok or not np.isfinite(value) or value != int(value) or value < 1:
        raise error(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def check_seed(seed: Any, error: type[InputError] = InputError) -> int | None:
    """``seed`` as an int (or None), else raise ``error``.

    Only non-negative integers: the seed recorded in metadata must reproduce the draw.
    """
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise error(f"seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def _check_m(m: int) -> int:
    return positive_int(m, "sample size m", DatasetError)


def check_interval(interval: Any) -> tuple[float, float]:
    """Validate an interval [a, b] with a < b, both finite; returns it as two floats."""
    try:
        a, b = (float(t) for t in interval)
    except (TypeError, ValueError):
        raise InputError(f"interval must be two numbers a < b, got {interval!r}") from None
    if not (np.isfinite(a) and np.isfinite(b) and a < b):
        raise InputError(f"interval must satisfy a < b with both finite, got [{a}, {b}]")
    return a, b


def interval_or_support(
    interval: Any = None, dataset: Dataset | None = None
) -> tuple[float, float]:
    """The input interval [a, b] of a clean error: ``interval`` if given, else the dataset's
    recorded :attr:`Dataset.support`, else [0, 1]; validated by :func:`check_interval`."""
    if interval is None and dataset is not None:
        interval = dataset.support
    return check_interval((0.0, 1.0) if interval is None else interval)


def _seed_setting(X: np.ndarray, rng: np.random.Generator, generator: str, **meta: Any) -> Dataset:
    """Inputs X labelled y_i = +1, flipped to -1 with probability ``meta["p"]``.

    The flips are drawn from ``rng`` after X (one uniform per point), so a seed reproduces both.
    The metadata records ``generator``, ``m`` and then ``meta`` (p, seed, input law).
    """
    m = X.shape[0]
    y = np.where(rng.random(m) < meta["p"], -1, 1)
    return Dataset(X, y, {"generator": generator, "m": m, **meta})


def noisy_constant_1d(
    m: int, p: float, seed: int | None = None, interval: tuple[float, float] = (0.0, 1.0)
) -> Dataset:
    """Seed setting in 1-D: x_i ~ Uniform(interval), y_i = +1 flipped with probability p.

    The target is f*(x) = +1, so the clean test error of a network N is Pr[N(x) <= 0].
    The inputs are drawn before the flips, from ``np.random.default_rng(seed)``.
    """
    m, p, seed = _check_m(m), _check_p(p), check_seed(seed, DatasetError)
    try:
        a, b = check_interval(interval)
    except InputError as e:
        raise DatasetError(str(e)) from None
    rng = np.random.default_rng(seed)
    x = rng.uniform(a, b, size=m)
    return _seed_setting(
        x[:, None], rng, "noisy_constant_1d", p=p, seed=seed, distribution="uniform", support=[a, b]
    )


def clustered_1d(
    m: int,
    p: float,
    width: float,
    seed: int | None = None,
    centres: tuple[float, ...] = (0.3, 0.7),
) -> Dataset:
    """Adversarial 1-D set: m points in clusters [c, c + width] (split evenly, in the order of
    ``centres``, uniform inside), y_i = +1 flipped with probability p.

    Opposite labels inside a cluster are ~width / m apart, so the optimum grows like m / width
    (MATH.md section 5): width 1e-2 at m = 1000 gives an objective ~2e9, width 1e-4 ~5e10.
    """
    m, p, seed = _check_m(m), _check_p(p), check_seed(seed, DatasetError)
    width = float(width)
    if not (np.isfinite(width) and width > 0):
        raise DatasetError(f"width must be a positive finite number, got {width!r}")
    cs = [float(c) for c in centres]
    if not cs or not all(np.isfinite(cs)):
        raise DatasetError(f"centres must be finite numbers, got {centres!r}")
    rng = np.random.default_rng(seed)
    sizes = np.diff(np.linspace(0, m, len(cs) + 1).round().astype(int))
    x = np.concatenate([c + width * rng.random(k) for c, k in zip(cs, sizes, strict=True)])
    return _seed_setting(
        x[:, None],
        rng,
        "clustered_1d",
        p=p,
        seed=seed,
        width=width,
        centres=cs,
        support=[min(cs), max(cs) + width],
    )


def noisy_constant(
    m: int, d: int, p: float, seed: int | None = None, distribution: str = "sphere"
) -> Dataset:
    """Seed setting in R^d: x_i uniform on the unit sphere or Gaussian, y_i = +1 flipped w.p. p.

    "gaussian" draws standard normal vectors; "sphere" divides them by their norm.
    """
    m, p, seed = _check_m(m), _check_p(p), check_seed(seed, DatasetError)
    d = positive_int(d, "dimension d", DatasetError)
    if distribution not in ("sphere", "gaussian"):
        raise DatasetError(f"distribution must be 'sphere' or 'gaussian', got {distribution!r}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, d))
    if distribution == "sphere":
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    return _seed_setting(X, rng, "noisy_constant", d=d, p=p, seed=seed, distribution=distribution)


# --------------------------------------------------------------------------- files


def sidecar_path(path: str | Path) -> Path:
    """The metadata sidecar ``<file>.meta.json`` of a dataset file."""
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


def _format(path: Path) -> str:
    fmt = path.suffix.lower()
    if fmt not in (".csv", ".npz"):
        raise DatasetError(f"{path}: unknown dataset format {path.suffix!r} (use .csv or .npz)")
    return fmt


def save_dataset(dataset: Dataset, path: str | Path) -> Path:
    """Write a dataset as CSV (header ``x,y`` or ``x1,...,xd,y``) or NPZ (``X``, ``y``).

    Metadata goes to the JSON sidecar ``<path>.meta.json``. CSV floats are written with ``repr``
    (shortest exact decimal) so a round trip is exact; NPZ stores float64 X and int8 y.
    """
    path = Path(path)
    fmt = _format(path)
    try:
        if fmt == ".npz":
            with path.open("wb") as fh:  # a file handle: np.savez must not append ".npz" itself
                np.savez(fh, X=dataset.X, y=dataset.y)
        else:
            header = ["x"] if dataset.d == 1 else [f"x{j + 1}" for j in range(dataset.d)]
            with path.open("w", newline="") as fh:
                w = csv.writer(fh, lineterminator="\n")
                w.writerow([*header, "y"])
                for xi, yi in zip(dataset.X, dataset.y, strict=True):
                    w.writerow([*(repr(float(v)) for v in xi), int(yi)])
        sidecar_path(path).write_text(json.dumps(dict(dataset.meta), indent=2, default=str) + "\n")
    except OSError as e:
        raise DatasetError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def load_dataset(path: str | Path) -> Dataset:
    """Read a dataset written by :func:`save_dataset` (or by hand in the same format).

    Errors name the file and, for CSV, the line (1-based, the header is line 1).
    """
    path = Path(path)
    fmt = _format(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    meta = _read_sidecar(sidecar_path(path))
    lines = None
    if fmt == ".npz":
        X, y = _read_npz(path)
    else:
        X, y, lines = _read_csv(path)
    try:
        return Dataset(X, y, meta)
    except DatasetError as e:
        where = ""
        if lines is not None and e.indices:
            nums = [str(lines[i]) for i in e.indices]
            where = f", line{'s' if len(nums) > 1 else ''} {' and '.join(nums)}"
        raise DatasetError(f"{path}{where}: {e}", e.indices) from None


def read_json(path: Path, error: type[InputError] = InputError, what: str = "") -> Any:
    """The parsed JSON of a UTF-8 file; ``error`` names the file (and the line of a syntax error).

    ``what`` ("metadata") is put into the messages: "<path>, line 3: invalid JSON metadata (...)".
    """
    label = f" {what}" if what else ""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise error(f"{path}, line {e.lineno}: invalid JSON{label} ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read{label} ({e})") from None


def _read_sidecar(side: Path) -> dict[str, Any]:
    if not side.exists():
        return {}
    meta = read_json(side, DatasetError, "metadata")
    if not isinstance(meta, dict):
        raise DatasetError(f"{side}: metadata must be a JSON object, got {type(meta).__name__}")
    return meta


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            X = z["X"] if "X" in names else None
            y = z["y"] if "y" in names else None
    except (OSError, ValueError, EOFError) as e:
        # np.load raises ValueError for pickled object arrays and OSError for non-NPZ content
        raise DatasetError(f"{path}: not a readable NPZ file ({e})") from None
    if X is None or y is None:
        raise DatasetError(
            f"{path}: an NPZ dataset needs arrays 'X' and 'y', found {sorted(names)}"
        )
    return X, y


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, list[int]]:
    try:
        # utf-8-sig: spreadsheet programs prepend a byte-order mark
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: cannot read CSV ({e})") from None
    if not rows:
        raise DatasetError(f"{path}: empty file (expected a header 'x,y' or 'x1,...,xd,y')")
    header = [h.strip() for h in rows[0]]
    d = len(header) - 1
    expected = [f"x{j + 1}" for j in range(d)]
    ok = d >= 1 and header[-1] == "y" and (header[:-1] == expected or header[:-1] == ["x"])
    if not ok:
        raise DatasetError(
            f"{path}, line 1: header {','.join(header)!r} should be 'x,y' (1-D) or 'x1,...,xd,y'"
        )
    X = np.empty((len(rows) - 1, d))
    y = np.empty(len(rows) - 1)
    lines: list[int] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue  # blank lines are allowed (e.g. a trailing newline)
        if len(row) != d + 1:
            raise DatasetError(f"{path}, line {lineno}: expected {d + 1} fields, got {len(row)}")
        vals = []
        for col, cell in zip(header, row, strict=True):
            try:
                vals.append(float(cell))
            except ValueError:
                raise DatasetError(
                    f"{path}, line {lineno}: field {col!r} is {cell!r}, not a number"
                ) from None
        if not np.all(np.isfinite(vals)):
            raise DatasetError(f"{path}, line {lineno}: non-finite value in {row}")
        if vals[-1] not in (-1.0, 1.0):
            raise DatasetError(f"{path}, line {lineno}: label {row[-1]!r} must be +1 or -1")
        n = len(lines)
        X[n], y[n] = vals[:-1], vals[-1]
        lines.append(lineno)
    if not lines:
        raise DatasetError(f"{path}: no data rows after the header")
    return X[: len(lines)], y[: len(lines)], lines
