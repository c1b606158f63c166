"""``kktsolver solve``: the certified global minimum of (P) on a 1-D dataset.

Prints objective, certified lower bound, relative gap, min margin, clean error, width and timings;
optionally writes the network (JSON). See :mod:`kktsolver.global_solver` and docs/global.md.
"""

from __future__ import annotations

import argparse
import sys

from ..cli import print_json
from ..data import load_dataset
from ..errors import InputError

NAME = "solve"
HELP = (
    "Certified global max-margin network of a 1-D dataset (convex program over all activation "
    "patterns, purified, Newton-polished, with a dual lower bound)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="dataset file (.csv or .npz), inputs of dimension one")
    parser.add_argument(
        "--solver",
        default="CLARABEL",
        help="conic solver of the first stage (default CLARABEL; with --formulation cvxpy any "
        "installed cvxpy conic solver, e.g. ECOS)",
    )
    parser.add_argument(
        "--formulation",
        choices=("sparse", "cvxpy"),
        default="sparse",
        help="sparse: Clarabel called directly with O(m) nonzeros (default); cvxpy: a cvxpy model",
    )
    parser.add_argument(
        "--method",
        choices=("auto", "conic", "scale"),
        default="auto",
        help="conic: all-blocks conic program + purify + Newton polish; scale: one banded all-gaps "
        "chain program + dual certificate (large m); auto (default): scale from m = 500 on",
    )
    parser.add_argument(
        "--gap", type=float, default=None, help="target relative gap (default 1e-8)"
    )
    parser.add_argument("--out", default=None, help="write the network to this JSON file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..global_solver import GlobalTolerances, solve_global
    from ..network import save_network

    dataset = load_dataset(args.data)
    if dataset.d != 1:
        raise InputError(
            f"{args.data}: kktsolver solve needs 1-D inputs, the file has d = {dataset.d}"
        )
    # GlobalTolerances validates the gap (InputError names the field)
    tol = GlobalTolerances() if args.gap is None else GlobalTolerances(gap=args.gap)
    res = solve_global(
        dataset, solver=args.solver, formulation=args.formulation, tol=tol, method=args.method
    )
    if args.out:
        save_network(res.network, args.out)
    if args.json:
        d = res.to_dict()
        d["out"] = args.out
        print_json(d)
    else:
        ce = "n/a" if res.clean_error is None else f"{res.clean_error:.6g}"
        print(
            f"status        {res.status}\n"
            f"objective     {res.objective:.15g}   (1/2||theta||^2)\n"
            f"lower bound   {res.lower_bound:.15g}\n"
            f"relative gap  {res.relative_gap:.3e}   (target {tol.gap:g})\n"
            f"min margin    {res.min_margin:.15g}\n"
            f"neurons       {res.n_neurons}\n"
            f"clean error   {ce}\n"
            f"seconds       {res.seconds:.3f}   "
            + " ".join(f"{k}={v:.3f}" for k, v in res.timings.items())
            + (f"\nnetwork       {args.out}" if args.out else ""),
            file=sys.stdout,
        )
    return 0
