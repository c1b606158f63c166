"""``kktsolver sample``: certified KKT classes of (P) sampled on a 1-D dataset (any m), streamed
per line.

Strategies: random block sets, local moves of kinks, activation patterns of short gradient-descent
runs.
"""

from __future__ import annotations

import argparse

from ..data import load_dataset
from ..enumeration import STRATEGIES, sample_kkt
from .enumerate import add_common, stream

NAME = "sample"
HELP = (
    "Sample distinct certified KKT classes of the max-margin problem on a 1-D dataset with a "
    "search "
    "strategy (random block sets, local kink moves, or gradient-flow activation patterns)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="1-D dataset (.csv with header x,y, or .npz)")
    parser.add_argument("--n", type=int, required=True, help="stop after N distinct KKT classes")
    parser.add_argument(
        "--strategy", choices=STRATEGIES, required=True, help="how block sets are proposed"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--time-budget", type=float, default=None, metavar="S", help="stop after S seconds"
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        help="stop after this many proposals (default 50 N)",
    )
    parser.add_argument(
        "--gd-width", type=int, default=20, help="gradient_flow: network width (default 20)"
    )
    parser.add_argument(
        "--gd-init-scale",
        type=float,
        default=1.0,
        help="gradient_flow: initialisation scale (default 1)",
    )
    parser.add_argument(
        "--gd-steps", type=int, default=300, help="gradient_flow: GD steps (default 300)"
    )
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.data)
    classes = sample_kkt(
        dataset,
        args.n,
        args.strategy,
        seed=args.seed,
        time_budget=args.time_budget,
        max_attempts=args.max_attempts,
        width=args.width,
        gd_width=args.gd_width,
        gd_init_scale=args.gd_init_scale,
        gd_steps=args.gd_steps,
        progress=True,
    )
    return stream(classes, args.json)
