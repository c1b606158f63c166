"""Helpers shared by the commands: common options, the file-compatibility check and the streaming
printer of KKT classes (the leading underscore keeps ``cli`` from treating this as a command).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..cli import print_json
from ..network import require_compatible

if TYPE_CHECKING:  # only an annotation: ``data`` and ``error`` need not import the enumeration
    from ..data import Dataset
    from ..enumeration import KKTStream
    from ..network import ReLUNetwork


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """The positional 1-D dataset argument."""
    parser.add_argument("data", help="1-D dataset (.csv with header x,y, or .npz)")


def add_interval_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--interval A B``: the 1-D input interval (two floats; None when not given)."""
    parser.add_argument(
        "--interval", type=float, nargs=2, metavar=("A", "B"), default=None, help=help_text
    )


def require_matching_files(
    network: ReLUNetwork, network_path: str, dataset: Dataset, data_path: str
) -> None:
    """InputError naming both files unless the network takes inputs of the dataset's dimension."""
    require_compatible(network, dataset, (f"the network {network_path}", str(data_path)))


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options of ``enumerate`` and ``sample``: ``--time-budget``, ``--width``, ``--json``."""
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds (an enumeration is then marked incomplete)",
    )
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


def _line(cls) -> str:
    return (
        f"class {cls.class_id:4d}  function {cls.function_id:4d}  "
        f"objective {cls.objective:.10g}  clean error {cls.clean_error:.6f}  "
        f"{cls.verdict:13s} neurons {cls.n_neurons:3d}  "
        f"kinks {', '.join(f'{t:.4g}' for t in cls.kinks)}"
    )


def stream(classes: KKTStream, as_json: bool) -> int:
    """Print each class as it is found (flushed), then the summary; Ctrl-C still prints the
    summary and returns 130."""
    status = 0
    try:
        for cls in classes:
            if as_json:
                print_json(cls.to_dict())
            else:
                print(_line(cls), flush=True)
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
