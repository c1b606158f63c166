"""``kktsolver enumerate``: every vertex KKT class of (P) on a 1-D dataset, streamed one per line.

Options and the streaming printer are shared with ``kktsolver sample`` (``commands._common``).
"""

from __future__ import annotations

import argparse

from ..data import load_dataset
from ..enumeration import enumerate_kkt
from ._common import add_common, add_data_argument, stream

NAME = "enumerate"
HELP = (
    "Enumerate the KKT points of the max-margin problem on a 1-D dataset as (function, objective) "
    "classes, each certified; exact and complete for small m (about m <= 6)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser)
    parser.add_argument(
        "--max-neurons",
        type=int,
        default=None,
        metavar="K",
        help="only KKT points with at most K neurons (default m, which is complete)",
    )
    parser.add_argument(
        "--no-pinned",
        action="store_true",
        help="skip kinks on data points (provably incomplete; for comparison only)",
    )
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    classes = enumerate_kkt(
        load_dataset(args.data),
        max_neurons=args.max_neurons,
        include_pinned=not args.no_pinned,
        time_budget=args.time_budget,
        progress=True,
        width=args.width,
    )
    return stream(classes, args.json)
