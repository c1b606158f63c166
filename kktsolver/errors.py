"""Exception hierarchy: bad input (exit status 2 on the command line) versus solver failures (1)."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "KKTSolverError",
    "InputError",
    "SolverError",
    "check_int_range",
    "check_tolerances",
    "require_instance",
]


class KKTSolverError(Exception):
    """Base class of every error kktsolver raises on purpose."""


class InputError(KKTSolverError, ValueError):
    """The user's data, network, configuration or arguments are invalid; the message names it."""


class SolverError(KKTSolverError, RuntimeError):
    """A numerical method failed (solver status, lost accuracy) on valid input."""


def require_instance(
    obj: Any, cls: type[T], name: str, *, d: int | None = None, why: str | None = None
) -> T:
    """``obj`` if it is a ``cls`` (with input dimension ``obj.d == d`` when ``d`` is given).

    The boundary check of every public entry point that takes a ``Dataset``, a ``ReLUNetwork`` or
    a tolerance object, so that a wrong argument is an `InputError` naming it ("dataset must be a
    kktsolver.Dataset, got dict") and not an AttributeError deep inside a solver. ``why`` says why
    dimension ``d`` is needed ("dataset has input dimension d = 2, but <why>"); default
    "d = <d> is needed".
    """
    if not isinstance(obj, cls):
        raise InputError(f"{name} must be a kktsolver.{cls.__name__}, got {type(obj).__name__}")
    if d is not None and obj.d != d:
        raise InputError(
            f"{name} has input dimension d = {obj.d}, but {why or f'd = {d} is needed'}"
        )
    return obj


def check_tolerances(
    owner: str,
    values: dict[str, object],
    *,
    positive: bool = False,
) -> None:
    """Raise `InputError` unless every value is a finite real number, >= 0 (or > 0 if `positive`).

    Tolerance dataclasses call this from ``__post_init__`` so that a bad tolerance is reported by
    name (``"CertTolerances.gap must be ..."``) at construction, not as a NaN deep inside a solver.
    """
    bound = "> 0" if positive else ">= 0"
    for name, val in values.items():
        ok = isinstance(val, (int, float)) and not isinstance(val, bool) and val == val
        ok = ok and abs(val) != float("inf") and (val > 0 if positive else val >= 0)
        if not ok:
            raise InputError(f"{owner}.{name} must be a finite number {bound}, got {val!r}")


def check_int_range(owner: str, name: str, val: object, low: int, high: int | None = None) -> None:
    """Raise `InputError` unless `val` is an integer (not a bool) in [low, high] (None: no cap)."""
    ok = isinstance(val, (int, float)) and not isinstance(val, bool) and int(val) == val
    ok = ok and val >= low and (high is None or val <= high)
    if not ok:
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InputError(f"{owner}.{name} must be an integer {span}, got {val!r}")
