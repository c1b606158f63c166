"""``kktsolver error``: the clean test error Pr[N(x) <= 0] of a network read from a JSON file.

Exact in 1-D (Uniform[a, b]); ``--monte-carlo N`` adds a sampled estimate with a 95% CI (any d).
"""

from __future__ import annotations

import argparse

import numpy as np

from ..clean_error import clean_error, clean_error_mc
from ..cli import print_json
from ..data import interval_or_support, load_dataset
from ..errors import InputError
from ..network import load_network
from ._common import add_interval_argument, require_matching_files

NAME = "error"
HELP = (
    "Clean test error Pr[N(x) <= 0] of a network (target f* = +1): exact in 1-D for "
    "x ~ Uniform[A, B], Monte Carlo with a 95 percent confidence interval in any dimension."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", required=True, help="network JSON file {'v', 'W', 'b'}")
    add_interval_argument(
        parser, "1-D input law Uniform[A, B] (default: the --data file's support, else 0 1)"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="optional dataset (.csv/.npz): also report its margins y_i N(x_i); its recorded "
        "support is the default interval",
    )
    parser.add_argument(
        "--monte-carlo",
        type=int,
        default=None,
        metavar="N",
        help="also estimate the error from N random inputs (required for d > 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="Monte Carlo seed (default 0)")
    parser.add_argument(
        "--distribution",
        choices=("uniform", "sphere", "gaussian"),
        default=None,
        help="Monte Carlo input law (default: uniform on the interval in 1-D, sphere for d > 1)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    net = load_network(args.network)
    dataset = load_dataset(args.data) if args.data is not None else None
    if dataset is not None:
        require_matching_files(net, args.network, dataset, args.data)
    interval = interval_or_support(args.interval, dataset)
    if net.d != 1 and args.monte_carlo is None:
        raise InputError(
            f"the network has d = {net.d}: the exact clean error is 1-D only; "
            "pass --monte-carlo N for a sampled estimate"
        )
    exact = clean_error(net, interval) if net.d == 1 else None
    out: dict = {
        "clean_error": exact,
        "interval": list(interval) if net.d == 1 else None,
        "network": str(args.network),
        "width": net.n,
        "d": net.d,
    }
    if args.monte_carlo is not None:
        out["monte_carlo"] = clean_error_mc(
            net, args.monte_carlo, args.seed, args.distribution, interval, progress=None
        ).to_dict()
    if dataset is not None:
        margins = net.margins(dataset.X, dataset.y)
        out["train"] = {
            "data": str(args.data),
            "m": dataset.m,
            "min_margin": float(np.min(margins)),
            "n_misclassified": int(np.count_nonzero(margins <= 0)),
        }
    if args.json:
        print_json(out)
        return 0
    if exact is not None:
        a, b = interval
        print(f"clean error (exact, x ~ Uniform[{a:g}, {b:g}]): {exact:.10g}")
    if "monte_carlo" in out:
        mc = out["monte_carlo"]
        print(
            f"clean error (Monte Carlo, {mc['n_samples']} samples, {mc['distribution']}, "
            f"seed {mc['seed']}): {mc['estimate']:.6g}  95% CI [{mc['ci_low']:.6g}, "
            f"{mc['ci_high']:.6g}]"
        )
    if "train" in out:
        t = out["train"]
        print(
            f"training data {t['data']}: m = {t['m']}, min margin {t['min_margin']:.6g}, "
            f"{t['n_misclassified']} misclassified"
        )
    return 0
