"""``kktsolver certify``: is a network a KKT point, a local or a global minimum of (P) on a dataset?

Prints the verdict with its evidence (residuals, certified interval, witness); see
:mod:`kktsolver.certify` and docs/certify.md.
"""

from __future__ import annotations

import argparse

from ..certify import CertTolerances, certify
from ..cli import print_json
from ..data import load_dataset
from ..network import load_network
from ._common import require_matching_files

NAME = "certify"
HELP = (
    "Certify a network on a dataset: multipliers by LP, residuals, the interval "
    "[lower bound, 1/2||theta||^2] (1-D) and a verdict in {infeasible, not_kkt, undecided, kkt, "
    "kkt_undecided, local_min, global_min} (undecided: the multiplier search failed and "
    "stationarity is not decided; kkt_undecided: KKT, local minimality not decided); "
    "near_global says whether the value is certified within --tol-gap of the optimum, also for "
    "a not_kkt network. See docs/certify.md."
)

_TOL_FLAGS = ("feasibility", "active", "kink", "stationarity", "gap", "rho")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset file (.csv or .npz)")
    parser.add_argument("--network", required=True, help="network JSON file {'v', 'W', 'b'}")
    parser.add_argument(
        "--width",
        type=int,
        default=None,
        help="width of the architecture (default: the network's own); spare zero neurons "
        "decide local minimality (MATH.md F4)",
    )
    parser.add_argument(
        "--exact",
        action="store_true",
        help="recompute margins and the stationarity residual in rational arithmetic",
    )
    defaults = CertTolerances()
    for name in _TOL_FLAGS:
        parser.add_argument(
            f"--tol-{name}",
            type=float,
            default=getattr(defaults, name),
            metavar="X",
            help=f"tolerance '{name}' (default {getattr(defaults, name):g}; see docs/certify.md)",
        )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.data)
    net = load_network(args.network)
    require_matching_files(net, args.network, dataset, args.data)
    tol = CertTolerances(**{name: getattr(args, f"tol_{name}") for name in _TOL_FLAGS})
    cert = certify(net, dataset, width=args.width, tol=tol, exact=args.exact)
    if args.json:
        print_json({"data": str(args.data), "network": str(args.network), **cert.to_dict()})
        return 0
    print(f"verdict:               {cert.verdict}")
    print(f"objective 1/2|theta|^2: {cert.objective:.12g}")
    lb = "n/a (d > 1)" if cert.lower_bound is None else f"{cert.lower_bound:.12g}"
    gap = "" if cert.relative_gap is None else f"  (relative gap {cert.relative_gap:.3g})"
    print(f"lower bound:           {lb}{gap}")
    if cert.near_global is not None:
        print(f"near global:           {cert.near_global} (value within --tol-gap of min (P))")
    print(f"min margin:            {cert.min_margin:.12g}")
    stat = "n/a" if cert.stationarity_residual is None else f"{cert.stationarity_residual:.3g}"
    print(f"stationarity residual: {stat}{'  (proven)' if cert.exact else ''}")
    if cert.euler_residual is not None:
        print(f"Euler residual:        {cert.euler_residual:.3g}")
    print(f"width:                 {cert.width} ({cert.nonzero_neurons} nonzero neurons)")
    print(f"pinned kinks:          {cert.pinned_kinks}")
    if cert.witness is not None:
        print(f"witness:               {cert.witness.to_dict()}")
    for note in cert.notes:
        print(f"note: {note}")
    print(f"time:                  {cert.seconds:.3f} s")
    return 0
