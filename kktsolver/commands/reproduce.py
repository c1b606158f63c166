"""``kktsolver reproduce``: run the reproduction sweep (resumable); write report.md, figures, store.

The main job of the package; ``--quick`` runs the tiny grid the test suite uses end to end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..cli import print_json
from ..errors import InputError

NAME = "reproduce"
HELP = (
    "Reproduce the 1-D predictions: sweep p, m, seeds; global optimum, sampled and extreme KKT "
    "points, enumeration; write report.md, figures and results.sqlite (rerun resumes)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kktsolver reproduce``."""
    parser.add_argument(
        "--out",
        default="kktsolver-report",
        type=Path,
        help="output folder (default: ./kktsolver-report/)",
    )
    parser.add_argument(
        "--grid",
        type=Path,
        default=None,
        help="TOML grid file (default: the embedded data/reproduce.toml)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the tiny embedded grid (under a minute; what the tests run)",
    )
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        help="worker processes (default: number of CPUs; 1 runs in this process)",
    )
    parser.add_argument(
        "--executor",
        choices=("process", "serial", "dask"),
        default="process",
        help="local process pool (default), serial, or an existing Dask cluster",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="Dask scheduler address for --executor dask, e.g. tcp://10.0.0.5:8786",
    )
    parser.add_argument("--no-report", action="store_true", help="only fill the store")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    """Expand the grid, run the missing units, write the report; exit 1 if some units failed."""
    from .. import __version__
    from ..experiments import expand_units, load_config, run_sweep
    from ..report import write_report
    from ..store import ResultsStore

    if args.grid is not None and args.quick:
        raise InputError("give either --grid FILE or --quick, not both")
    if args.executor == "dask" and not args.scheduler:
        raise InputError("--executor dask needs --scheduler ADDRESS")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a folder")
    cfg = load_config(args.grid, quick=args.quick)
    units = expand_units(cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with ResultsStore(args.out / "results.sqlite") as store:
        store.set_meta("grid", cfg.to_dict())
        try:
            summary = run_sweep(
                units,
                store,
                executor=args.executor,
                jobs=args.jobs,
                scheduler=args.scheduler,
                progress=not args.no_progress,
            )
        except KeyboardInterrupt:
            n = store.count("units")
            print(
                f"kktsolver reproduce: interrupted; {n} units are safely stored in "
                f"{args.out / 'results.sqlite'}; rerun the same command to resume",
                file=sys.stderr,
            )
            raise
        print(
            f"kktsolver reproduce: {summary.n_units} units: {summary.n_skipped} already stored, "
            f"{summary.n_done} computed, {summary.n_failed} failed, "
            f"{summary.n_rows_added} rows added in {summary.seconds:.1f} s",
            file=sys.stderr,
        )
        for f in summary.failures[:10]:
            print(f"  failed: {f}", file=sys.stderr)
        report = None
        if not args.no_report:
            text = _grid_text(args.grid, args.quick)
            info = {
                "sweep_seconds": summary.seconds,
                "executor": summary.executor,
                "jobs": summary.jobs,
                "version": __version__,
                "grid_name": cfg.name,
            }
            report = write_report(store, args.out, grid_text=text, run_info=info)
            print(f"kktsolver reproduce: report written to {report}", file=sys.stderr)
    if args.json:
        print_json(
            {
                **summary.to_dict(),
                "report": str(report) if report else None,
                "store": str(args.out / "results.sqlite"),
                "total_seconds": time.perf_counter() - t0,
            }
        )
    return 1 if summary.n_failed else 0


def _grid_text(grid: Path | None, quick: bool) -> str:
    from importlib import resources

    if grid is not None:
        return grid.read_text()
    name = "reproduce-quick.toml" if quick else "reproduce.toml"
    return resources.files("kktsolver._data").joinpath(name).read_text()
