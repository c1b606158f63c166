"""``kktsolver enumerate``: every vertex KKT class of (P) on a 1-D dataset, streamed one per line.

Shares the streaming printer with ``kktsolver sample`` (:func:`stream`).
"""

from __future__ import annotations

import argparse
import sys

from ..cli import print_json
from ..data import load_dataset
from ..enumeration import KKTStream, enumerate_kkt

NAME = "enumerate"
HELP = (
    "Enumerate the KKT points of the max-margin problem on a 1-D dataset as (function, objective) "
    "classes, each certified; exact and complete for small m (about m <= 6)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="1-D dataset (.csv with header x,y, or .npz)")
    parser.add_argument(
        "--max-neurons",
        type=int,
        default=None,
        metavar="K",
        help="only KKT points with at most K neurons (default m, which is complete)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds (the result is then marked incomplete)",
    )
    parser.add_argument(
        "--no-pinned",
        action="store_true",
        help="skip kinks on data points (provably incomplete; for comparison only)",
    )
    add_common(parser)


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``enumerate`` and ``sample``."""
    parser.add_argument(
        "--width",
        type=int,
        default=None,
        help="architecture width for the local/global verdict (default: each network's own)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per KKT class per line, then a summary line",
    )


def stream(classes: KKTStream, as_json: bool) -> int:
    """Print each class as it is found (flushed), then the summary; Ctrl-C still prints the
    summary."""
    status = 0
    try:
        for cls in classes:
            if as_json:
                print_json(cls.to_dict())
            else:
                print(
                    f"class {cls.class_id:4d}  function {cls.function_id:4d}  "
                    f"objective {cls.objective:.10g}  clean error {cls.clean_error:.6f}  "
                    f"{cls.verdict:13s} neurons {cls.n_neurons:3d}  "
                    f"kinks {', '.join(f'{t:.4g}' for t in cls.kinks)}",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("interrupted: the summary covers the classes printed so far", file=sys.stderr)
        status = 130
    summary = classes.result.summary()
    if as_json:
        print_json(summary)
    else:
        print(
            f"{summary['count']} KKT classes ({summary['n_functions']} functions) in "
            f"{summary['seconds']:.2f} s; complete: {summary['complete']} "
            f"(stopped: {summary['stopped']}; scope: {summary['scope']}); "
            f"verdicts: {summary['verdicts']}"
        )
    return status


def run(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.data)
    classes = enumerate_kkt(
        dataset,
        max_neurons=args.max_neurons,
        include_pinned=not args.no_pinned,
        time_budget=args.time_budget,
        progress=True,
        width=args.width,
    )
    return stream(classes, args.json)
