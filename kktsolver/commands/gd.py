"""``kktsolver gd``: train a two-layer ReLU net by full-batch GD, then solve its limit cell exactly.

Prints the final iterate (rescaled to margin 1) next to the exact KKT point of its activation cell.
"""

from __future__ import annotations

import argparse
import time

from ..cli import print_json
from ..data import load_dataset
from ..errors import InputError

NAME = "gd"
HELP = (
    "Gradient-descent baseline: train by full-batch GD on the exp or logistic loss, then solve the "
    "convex problem of the final activation cell exactly and compare (angle, objective, clean "
    "error)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="dataset file (.csv or .npz), 1-D for the limit point")
    parser.add_argument("--width", type=int, required=True, help="number of neurons n")
    parser.add_argument("--steps", type=int, required=True, help="number of GD steps T")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    parser.add_argument("--lr", type=float, default=0.1, help="step size (default 0.1)")
    parser.add_argument(
        "--loss", choices=("exp", "logistic"), default="exp", help="training loss (default exp)"
    )
    parser.add_argument(
        "--init-scale", type=float, default=0.5, help="initialisation scale (default 0.5)"
    )
    parser.add_argument(
        "--normalized", action="store_true", help="loss-based step size lr / (L max(1, log 1/L))"
    )
    parser.add_argument(
        "--adaptive",
        action="store_true",
        help="grow the rate x1.1 on success, halve (>= lr) on failure",
    )
    parser.add_argument(
        "--record-every", type=int, default=None, help="record every K steps (default steps // 50)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..gd import limit_point, train

    dataset = load_dataset(args.data)
    if args.width < 1:
        raise InputError(f"--width must be a positive integer, got {args.width}")
    t0 = time.perf_counter()
    traj = train(
        dataset,
        args.width,
        loss=args.loss,
        init_scale=args.init_scale,
        lr=args.lr,
        steps=args.steps,
        seed=args.seed,
        normalized=args.normalized,
        adaptive=args.adaptive,
        record_every=args.record_every,
        progress=False if args.no_progress else None,
    )
    seconds = time.perf_counter() - t0
    note = None
    lim = None
    if dataset.d != 1:
        note = "the limit point is computed in 1-D only"
    elif not traj.normalized_margin[-1] > 0:
        note = (
            f"GD did not separate the data in {int(traj.steps[-1])} steps (min margin <= 0), so "
            "there is no limit cell yet: train longer, change --lr/--seed/--width"
        )
    else:
        lim = limit_point(traj)
    final = {
        "objective": traj.objective[-1],
        "normalized_margin": traj.normalized_margin[-1],
        "stationarity_residual": traj.stationarity_residual[-1],
        "clean_error": traj.clean_error[-1],
        "steps": int(traj.steps[-1]),
        "seconds": seconds,
        "gd_seconds": traj.seconds,
        "loss": traj.loss[-1],
        "stopped": traj.stopped,
        "network": traj.network.to_dict(),
    }
    limit = None
    if lim is not None:
        limit = {
            "objective": lim.objective,
            "verdict": lim.verdict,
            "clean_error": lim.clean_error,
            "angle": lim.angle,
            "stationarity_residual": lim.certificate.stationarity_residual,
            "seconds": lim.seconds,
            "network": lim.network.to_dict(),
        }
    if args.json:
        print_json({"final": final, "limit_point": limit, "note": note, "config": traj.config})
        return 0
    _print_table(final, limit, note)
    return 0


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _print_table(final: dict, limit: dict | None, note: str | None) -> None:
    print(f"GD: {final['steps']} steps in {final['seconds']:.2f} s (stopped: {final['stopped']})")
    rows = [
        ("objective 1/2||theta||^2 (margin 1)", final["objective"], limit and limit["objective"]),
        (
            "stationarity residual",
            final["stationarity_residual"],
            limit and limit["stationarity_residual"],
        ),
        ("clean error", final["clean_error"], limit and limit["clean_error"]),
        ("normalized margin", final["normalized_margin"], None),
        ("verdict", None, limit and limit["verdict"]),
        ("angle to GD direction (rad)", None, limit and limit["angle"]),
    ]
    print(f"{'':38s} {'GD (rescaled)':>16s} {'exact limit cell':>18s}")
    for name, a, b in rows:
        print(f"{name:38s} {_fmt(a):>16s} {_fmt(b):>18s}")
    if note:
        print(f"note: {note}")
