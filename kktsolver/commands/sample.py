"""``kktsolver sample``: certified KKT classes of (P) sampled on a 1-D dataset (any m), streamed
per line.

Strategies: random block sets, local moves of kinks, activation patterns of short gradient-descent
runs.
"""

from __future__ import annotations

import argparse

from ..data import load_dataset
from ..enumeration import STRATEGIES, sample_kkt
from ._common import add_common, add_data_argument, stream

NAME = "sample"
HELP = (
    "Sample distinct certified KKT classes of the max-margin problem on a 1-D dataset with a "
    "search strategy (random block sets, local kink moves, or gradient-flow activation patterns)."
)

#: sample_kkt keywords taken from the command line as they are
_OPTIONS = ("seed", "time_budget", "max_attempts", "width", "gd_width", "gd_init_scale", "gd_steps")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser)
    parser.add_argument("--n", type=int, required=True, help="stop after N distinct KKT classes")
    parser.add_argument(
        "--strategy", choices=STRATEGIES, required=True, help="how block sets are proposed"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
    options = {k: getattr(args, k) for k in _OPTIONS}
    classes = sample_kkt(load_dataset(args.data), args.n, args.strategy, progress=True, **options)
    return stream(classes, args.json)
