"""``kktsolver demo``: the embedded default dataset and the exact clean error of a reference net.

The reference is the "spike" interpolant: N = 1 with a V-shaped dip to -1 on every noisy point.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..clean_error import clean_error
from ..cli import print_json
from ..data import Dataset, check_interval, noisy_constant_1d
from ..errors import InputError
from ..network import ReLUNetwork

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

NAME = "demo"
HELP = (
    "Generate the embedded default dataset (data/demo.toml: m = 200, p = 0.1, seed = 0 on [0, 1]) "
    "and report the exact clean error of the spike interpolant on it."
)

DATASET_KEYS = {"m", "p", "seed", "interval"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=None, help="a TOML file like data/demo.toml (default: the embedded one)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """The ``[dataset]`` table of a demo config (default: the embedded ``demo.toml``).

    Returns ``{"m", "p", "seed", "interval", "source"}``; unknown or missing keys raise InputError.
    """
    if path is None:
        source = "kktsolver._data/demo.toml (embedded)"
        text = resources.files("kktsolver._data").joinpath("demo.toml").read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    try:
        table = tomllib.loads(text).get("dataset")
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{source}: invalid TOML ({e})") from None
    if not isinstance(table, dict):
        raise InputError(f"{source}: needs a [dataset] table with keys {sorted(DATASET_KEYS)}")
    unknown, missing = set(table) - DATASET_KEYS, DATASET_KEYS - set(table)
    if unknown or missing:
        raise InputError(
            f"{source}: [dataset] has unknown key(s) {sorted(unknown)} / missing {sorted(missing)}"
        )
    return {**table, "interval": check_interval(table["interval"]), "source": source}


def spike_network(dataset: Dataset) -> ReLUNetwork:
    """The 1-D interpolant N(x) = 1 - sum_{i : y_i = -1} 2 T_{r_i}(x - x_i), balanced.

    T_r(u) = (relu(u + r) - 2 relu(u) + relu(u - r)) / r is the unit tent of half-width r, and
    r_i = min |x_i - x_k| over positive points x_k: each tent vanishes at every positive point, so
    N(x_k) = 1 there, while N(x_i) <= 1 - 2 = -1 at the noisy points (y_i N(x_i) >= 1 everywhere).
    The constant 1 is the neuron v = 1, w = 0, b = 1. Where tents do not overlap,
    {N <= 0} is {|x - x_i| <= r_i / 2}: length r_i per noisy point. With no positive point
    N = -1; with no noisy point N = 1.
    """
    dataset.require_1d()
    x, y = dataset.x, dataset.y
    pos, neg = x[y > 0], x[y < 0]
    if pos.size == 0:
        return ReLUNetwork([-1.0], [[0.0]], [1.0])
    r = np.min(np.abs(neg[:, None] - pos[None, :]), axis=1)  # > 0: equal x were merged or rejected
    v = np.concatenate([[1.0], np.column_stack([-2 / r, 4 / r, -2 / r]).ravel()])
    w = np.concatenate([[0.0], np.ones(3 * neg.size)])
    b = np.concatenate([[1.0], np.column_stack([r - neg, -neg, -r - neg]).ravel()])
    return ReLUNetwork(v, w, b).balanced()


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    interval = cfg["interval"]
    try:
        dataset = noisy_constant_1d(cfg["m"], cfg["p"], cfg["seed"], interval)
    except InputError as e:
        raise InputError(f"{cfg['source']}: {e}") from None
    net = spike_network(dataset)
    err = clean_error(net, interval)
    n_neg = int((dataset.y < 0).sum())
    out = {
        "config": cfg["source"],
        "dataset": {
            "m": dataset.m,
            "p": cfg["p"],
            "seed": cfg["seed"],
            "interval": list(interval),
            "n_negative": n_neg,
        },
        "reference_network": {
            "name": "spike interpolant",
            "width": net.n,
            "objective": net.objective(),
            "min_margin": float(np.min(net.margins(dataset.X, dataset.y))),
        },
        "clean_error": err,
        "interval": list(interval),
    }
    if args.json:
        print_json(out)
        return 0
    a, b = interval
    print(f"config:  {cfg['source']}")
    print(
        f"dataset: m = {dataset.m}, p = {cfg['p']}, seed = {cfg['seed']}, "
        f"x ~ Uniform[{a:g}, {b:g}], {n_neg} noisy labels"
    )
    ref = out["reference_network"]
    print(
        f"reference: spike interpolant (N = 1 with a V down to -1 on each noisy point), "
        f"width {ref['width']}, 1/2||theta||^2 = {ref['objective']:.6g}, "
        f"min margin {ref['min_margin']:.6g}"
    )
    print(f"clean error Pr[N(x) <= 0] (exact): {err:.10g}")
    return 0
