"""``kktsolver gd``: train a two-layer ReLU net by full-batch GD, then solve its limit cell exactly.

Prints the final iterate (rescaled to margin 1) next to the exact KKT point of its activation cell.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..cli import print_json
from ..data import load_dataset
from ..errors import InputError
from ..gd import LOSSES, STEP_RULES

NAME = "gd"
HELP = (
    "Gradient-descent baseline: train by full-batch GD on the exp or logistic loss, then solve the "
    "convex problem of the final activation cell exactly and compare (angle, objective, clean "
    "error)."
)

#: (flag, type, default, help) of the numeric options, passed to ``gd.train`` under the same name
_NUMERIC = (
    ("--seed", int, 0, "initialisation seed (default 0)"),
    ("--lr", float, 0.1, "step size, or its numerator with --normalized (default 0.1)"),
    ("--init-scale", float, 0.5, "initialisation scale (default 0.5)"),
    ("--record-every", int, None, "record every K steps (default steps // 50)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="dataset file (.csv or .npz), 1-D for the limit point")
    parser.add_argument("--width", type=int, required=True, help="number of neurons n")
    parser.add_argument("--steps", type=int, required=True, help="number of GD steps T")
    for flag, kind, default, text in _NUMERIC:
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument("--loss", choices=LOSSES, default="exp", help="training loss (default exp)")
    parser.add_argument(
        "--normalized",
        nargs="?",
        const="loss-log",
        default="constant",
        choices=STEP_RULES,
        metavar="RULE",
        help="step size: loss-log = lr / (L max(1, log 1/L)) (the default RULE of --normalized), "
        "loss = lr / L, grad = lr / ||grad L||; without the flag a constant lr",
    )
    parser.add_argument(
        "--adaptive",
        action="store_true",
        help="grow the rate x1.1 on success, halve (>= lr) on failure",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..gd import limit_point, train

    dataset = load_dataset(args.data)
    if args.width < 1:
        raise InputError(f"--width must be a positive integer, got {args.width}")
    names = [flag[2:].replace("-", "_") for flag, *_ in _NUMERIC]  # argparse's dest names
    options = {name: getattr(args, name) for name in names}
    t0 = time.perf_counter()
    traj = train(
        dataset,
        args.width,
        loss=args.loss,
        steps=args.steps,
        normalized=args.normalized,
        adaptive=args.adaptive,
        progress=False if args.no_progress else None,
        **options,
    )
    seconds = time.perf_counter() - t0
    note, lim = None, None
    if dataset.d != 1:
        note = "the limit point is computed in 1-D only"
    elif not traj.normalized_margin[-1] > 0:
        note = (
            f"GD did not separate the data in {int(traj.steps[-1])} steps (min margin <= 0), so "
            "there is no limit cell yet: train longer, change --lr/--seed/--width"
        )
    else:
        lim = limit_point(traj)
    final = _final(traj, seconds)
    limit = None if lim is None else _limit(lim)
    if args.json:
        print_json({"final": final, "limit_point": limit, "note": note, "config": traj.config})
    else:
        _print_table(final, limit, note)
    return 0


def _final(traj: Any, seconds: float) -> dict[str, Any]:
    """The ``final`` object: the last record of the run (objective of the rescaled iterate)."""
    out = {
        key: getattr(traj, key)[-1]
        for key in ("objective", "normalized_margin", "stationarity_residual", "clean_error")
    }
    out.update(
        steps=int(traj.steps[-1]),
        seconds=seconds,
        gd_seconds=traj.seconds,
        loss=traj.loss[-1],
        stopped=traj.stopped,
        network=traj.network.to_dict(),
    )
    return out


def _limit(lim: Any) -> dict[str, Any]:
    """The ``limit_point`` object: the certified exact point of the final cell."""
    out = {key: getattr(lim, key) for key in ("objective", "verdict", "clean_error", "angle")}
    out.update(
        stationarity_residual=lim.certificate.stationarity_residual,
        seconds=lim.seconds,
        network=lim.network.to_dict(),
    )
    return out


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _print_table(final: dict, limit: dict | None, note: str | None) -> None:
    print(f"GD: {final['steps']} steps in {final['seconds']:.2f} s (stopped: {final['stopped']})")
    limit = limit or {}
    rows = [
        ("objective 1/2||theta||^2 (margin 1)", "objective"),
        ("stationarity residual", "stationarity_residual"),
        ("clean error", "clean_error"),
        ("normalized margin", "normalized_margin"),
        ("verdict", "verdict"),
        ("angle to GD direction (rad)", "angle"),
    ]
    print(f"{'':38s} {'GD (rescaled)':>16s} {'exact limit cell':>18s}")
    for name, key in rows:
        print(f"{name:38s} {_fmt(final.get(key)):>16s} {_fmt(limit.get(key)):>18s}")
    if note:
        print(f"note: {note}")
