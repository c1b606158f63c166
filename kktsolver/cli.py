"""The ``kktsolver`` command line: one subcommand per module in :mod:`kktsolver.commands`.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
this file discovers them, so adding a command never edits a shared list.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import commands
from .errors import InputError, KKTSolverError

__all__ = ["main", "to_jsonable", "print_json"]


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and dataclass-like objects into plain JSON values.

    Non-finite floats become None (JSON has no NaN), so the output is always strict JSON.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    return obj


def print_json(obj: Any, file=None) -> None:
    """Print exactly one JSON object on one line (stdout by default)."""
    print(json.dumps(to_jsonable(obj), allow_nan=False), file=file or sys.stdout, flush=True)


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="kktsolver",
        description="Compute, certify and compare KKT points of the max-margin problem "
        "min 1/2||theta||^2 s.t. y_i N_theta(x_i) >= 1 for two-layer ReLU networks.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"kktsolver {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns 0 on success, 2 for bad input, 1 for failures."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except InputError as e:
        print(f"kktsolver {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KKTSolverError as e:
        print(f"kktsolver {args.command}: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"kktsolver {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
