"""``kktsolver export``: write the results store of a reproduce folder out as CSV files.

Reads ``DIR/results.sqlite`` and writes ``results.csv`` and ``units.csv`` next to it (or to --to).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import print_json
from ..errors import InputError

NAME = "export"
HELP = "Export a reproduce folder's results.sqlite to CSV (results.csv, units.csv)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kktsolver export``."""
    parser.add_argument(
        "folder", type=Path, help="a reproduce output folder (holding results.sqlite)"
    )
    parser.add_argument(
        "--csv", action="store_true", help="write CSV files (the only format so far)"
    )
    parser.add_argument(
        "--to", type=Path, default=None, help="destination folder (default: FOLDER)"
    )
    parser.add_argument("--json", action="store_true", help="print the written paths as JSON")


def run(args: argparse.Namespace) -> int:
    """Write the CSV files; InputError if the folder has no store."""
    from ..store import ResultsStore

    if not args.csv:
        raise InputError("choose an export format: --csv")
    db = args.folder / "results.sqlite" if args.folder.is_dir() else args.folder
    if not db.is_file():
        raise InputError(
            f"{db}: no results store here (run `kktsolver reproduce --out {args.folder}`)"
        )
    with ResultsStore(db) as store:
        paths = store.export_csv(args.to or db.parent)
        n = store.count("results")
    if args.json:
        print_json({"files": [str(p) for p in paths], "rows": n})
    else:
        for p in paths:
            print(p)
    print(f"kktsolver export: {n} result rows written", file=sys.stderr)
    return 0
