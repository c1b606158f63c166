"""``kktsolver data``: draw a seed-setting dataset and write it as CSV or NPZ with its JSON sidecar.

1-D: x ~ Uniform[a, b] (``--interval``); d > 1: sphere or Gaussian (``--d``, ``--distribution``).
"""

from __future__ import annotations

import argparse

from ..cli import print_json
from ..data import noisy_constant, noisy_constant_1d, save_dataset, sidecar_path
from ..errors import InputError
from ._common import add_interval_argument

NAME = "data"
HELP = (
    "Draw a noisy-constant dataset (y = +1 flipped with probability p) and write it to a "
    ".csv or .npz file plus a <file>.meta.json sidecar."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--m", type=int, required=True, help="number of points")
    parser.add_argument("--p", type=float, required=True, help="label-flip probability in [0, 1/2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_interval_argument(parser, "1-D inputs are Uniform[A, B] (default 0 1)")
    parser.add_argument("--d", type=int, default=1, help="input dimension (default 1)")
    parser.add_argument(
        "--distribution",
        choices=("sphere", "gaussian"),
        default=None,
        help="input law for d > 1 (default sphere)",
    )
    parser.add_argument("--out", required=True, help="output file, .csv or .npz")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    if args.d == 1:
        if args.distribution is not None:
            raise InputError("--distribution is for d > 1; in 1-D use --interval A B")
        interval = tuple(args.interval) if args.interval is not None else (0.0, 1.0)
        dataset = noisy_constant_1d(args.m, args.p, args.seed, interval)
    else:
        if args.interval is not None:
            raise InputError("--interval is for d = 1; for d > 1 use --distribution")
        dataset = noisy_constant(args.m, args.d, args.p, args.seed, args.distribution or "sphere")
    path = save_dataset(dataset, args.out)
    n_neg = int((dataset.y < 0).sum())
    if args.json:
        print_json(
            {
                "path": str(path),
                "sidecar": str(sidecar_path(path)),
                "m": dataset.m,
                "d": dataset.d,
                "n_negative": n_neg,
                "meta": dict(dataset.meta),
            }
        )
    else:
        print(f"wrote {dataset.m} points in d = {dataset.d} ({n_neg} flipped to -1) to {path}")
        print(f"metadata: {sidecar_path(path)}")
    return 0
