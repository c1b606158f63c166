"""Exception hierarchy: bad input (exit status 2 on the command line) versus solver failures (1)."""

from __future__ import annotations

__all__ = ["KKTSolverError", "InputError", "SolverError"]


class KKTSolverError(Exception):
    """Base class of every error kktsolver raises on purpose."""


class InputError(KKTSolverError, ValueError):
    """The user's data, network, configuration or arguments are invalid; the message names the culprit."""


class SolverError(KKTSolverError, RuntimeError):
    """A numerical method failed (solver status, lost accuracy) on valid input."""
