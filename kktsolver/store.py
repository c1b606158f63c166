"""SQLite results store of the reproduction sweep: one row per (instance, method, KKT point).

Resumable and safe under concurrency: WAL journal, one transaction per unit, unique keys.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["ResultsStore", "UnitRecord", "RESULT_COLUMNS", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

# Columns of the ``results`` table: (name, SQL type). Every parameter of the unit that produced the
# row is repeated so that a row reads on its own (the full unit configuration is in ``units``).
RESULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("row_key", "TEXT PRIMARY KEY"),  # sha256 of (unit_key, idx)
    ("unit_key", "TEXT NOT NULL"),  # sha256 of the unit's canonical configuration
    (
        "instance_key",
        "TEXT NOT NULL",
    ),  # sha256 of the dataset's configuration (m, p, seed, interval)
    ("idx", "INTEGER NOT NULL"),  # index of the KKT point within its unit
    ("method", "TEXT NOT NULL"),  # global | sample | extreme | enumerate (or a test method)
    ("strategy", "TEXT"),  # sampling strategy, extreme target, ...
    ("m", "INTEGER"),
    ("p", "REAL"),
    ("seed", "INTEGER"),
    ("interval_a", "REAL"),
    ("interval_b", "REAL"),
    ("n_negative", "INTEGER"),  # number of flipped (noisy) labels in the instance
    ("width", "INTEGER"),  # width at which the verdict was decided
    ("verdict", "TEXT"),  # certify.VERDICTS (infeasible | not_kkt | undecided | kkt | ...)
    ("clean_error", "REAL"),  # Pr_x[N(x) <= 0], exact in 1-D
    ("objective", "REAL"),  # 1/2 ||theta||^2
    ("lower_bound", "REAL"),  # certified lower bound on min (P), when known
    ("relative_gap", "REAL"),
    ("min_margin", "REAL"),
    ("n_neurons", "INTEGER"),
    ("function_id", "TEXT"),
    ("complete", "INTEGER"),  # enumeration: 1 if provably complete
    ("network", "TEXT"),  # JSON {"v", "W", "b"}
    ("extra", "TEXT"),  # JSON: anything else the method reported
    ("unit_seconds", "REAL"),  # wall time of the whole unit
    ("created_at", "REAL"),
)
_COLUMN_NAMES = tuple(c for c, _ in RESULT_COLUMNS)


@dataclass(frozen=True)
class UnitRecord:
    """What the ``units`` table holds for one finished (or failed) unit of work."""

    unit_key: str
    method: str
    config: dict[str, Any]
    status: str  # "done" | "failed"
    n_rows: int
    seconds: float
    error: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (without the rows)."""
        return {
            "unit_key": self.unit_key,
            "method": self.method,
            "config": self.config,
            "status": self.status,
            "n_rows": self.n_rows,
            "seconds": self.seconds,
            "error": self.error,
        }


class ResultsStore:
    """A results database file (SQLite in WAL mode), safe to share between concurrent runs.

    Parameters
    ----------
    path : str or Path
        The ``.sqlite`` file; created with its tables if missing.
    timeout : float
        Seconds a writer waits for another writer's lock before failing (SQLite busy timeout).

    Notes
    -----
    A unit's rows and its ``units`` record are written in one ``BEGIN IMMEDIATE`` transaction, so
    a crash leaves either the whole unit or nothing. Rows are keyed by a hash of the unit
    configuration and the point's index and written with ``INSERT OR IGNORE``: two runs computing
    the same unit store it once.
    """

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a directory, expected a .sqlite file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._con.row_factory = sqlite3.Row
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._create()
        except sqlite3.DatabaseError as e:
            raise InputError(f"{self.path}: not a usable results store ({e})") from None

    # ------------------------------------------------------------------ schema
    def _create(self) -> None:
        cols = ",\n  ".join(f"{n} {t}" for n, t in RESULT_COLUMNS)
        with self._transaction():
            self._con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS units ("
                " unit_key TEXT PRIMARY KEY, method TEXT NOT NULL, config TEXT NOT NULL,"
                " status TEXT NOT NULL, n_rows INTEGER NOT NULL, seconds REAL, error TEXT,"
                " finished_at REAL)"
            )
            self._con.execute(
                f"CREATE TABLE IF NOT EXISTS results (\n  {cols},\n  UNIQUE(unit_key, idx))"
            )
            self._con.execute("CREATE INDEX IF NOT EXISTS results_unit ON results(unit_key)")
            self._con.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        got = self.meta().get("schema_version")
        if got != str(SCHEMA_VERSION):
            raise InputError(
                f"{self.path}: results store has schema version {got}, this kktsolver writes "
                f"version {SCHEMA_VERSION}; use a new --out folder"
            )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # BEGIN IMMEDIATE takes the write lock up front: a concurrent writer waits (busy timeout)
        # instead of failing half-way through a unit.
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (the file stays)."""
        self._con.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def write_unit(self, record: UnitRecord) -> int:
        """Store a finished unit and its rows atomically; returns the number of rows inserted.

        A ``done`` unit already present is left untouched (its rows are not duplicated). A
        ``failed`` record replaces an earlier failure (so a rerun retries failed units and records
        the latest error) but never overwrites a ``done`` one.
        """
        now = time.time()
        inserted = 0
        with self._transaction():
            row = self._con.execute(
                "SELECT status FROM units WHERE unit_key = ?", (record.unit_key,)
            ).fetchone()
            if row is not None and row["status"] == "done":
                return 0
            if record.status == "done":
                placeholders = ",".join("?" * len(_COLUMN_NAMES))
                cols = ",".join(_COLUMN_NAMES)
                sql = f"INSERT OR IGNORE INTO results ({cols}) VALUES ({placeholders})"
                for r in record.rows:
                    values = [_sql_value(r.get(c)) for c in _COLUMN_NAMES]
                    values[_COLUMN_NAMES.index("created_at")] = now
                    cur = self._con.execute(sql, values)
                    inserted += cur.rowcount
            self._con.execute(
                "INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.unit_key,
                    record.method,
                    json.dumps(record.config, sort_keys=True),
                    record.status,
                    record.n_rows,
                    record.seconds,
                    record.error,
                    now,
                ),
            )
        return inserted

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` in the ``meta`` table (e.g. the sweep configuration)."""
        with self._transaction():
            self._con.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                (key, json.dumps(value, sort_keys=True)),
            )

    # ------------------------------------------------------------------ reading
    def meta(self) -> dict[str, str]:
        """The raw ``meta`` table as a dict of strings."""
        return {r["key"]: r["value"] for r in self._con.execute("SELECT key, value FROM meta")}

    def done_keys(self) -> set[str]:
        """Keys of the units stored with status ``done`` (a rerun skips them)."""
        cur = self._con.execute("SELECT unit_key FROM units WHERE status = 'done'")
        return {r[0] for r in cur}

    def units(self, status: str | None = None) -> list[dict[str, Any]]:
        """Unit records as dicts (``config`` decoded), optionally only those with ``status``."""
        sql, args = "SELECT * FROM units", ()
        if status is not None:
            sql, args = sql + " WHERE status = ?", (status,)
        out = []
        for r in self._con.execute(sql + " ORDER BY unit_key", args):
            d = dict(r)
            d["config"] = json.loads(d["config"])
            out.append(d)
        return out

    def rows(
        self, where: str = "", params: Sequence[Any] = (), **equal: Any
    ) -> list[dict[str, Any]]:
        """Result rows as dicts, ordered by (unit_key, idx).

        ``equal`` filters on column equality (``store.rows(method="global", p=0.1)``); ``where`` is
        an extra SQL condition with ``?`` placeholders bound to ``params``.
        """
        conds, args = [], list(params)
        for k, v in equal.items():
            if k not in _COLUMN_NAMES:
                raise InputError(
                    f"unknown results column {k!r}; columns: {', '.join(_COLUMN_NAMES)}"
                )
            conds.append(f"{k} = ?")
            args.append(v)
        if where:
            conds.append(f"({where})")
        sql = "SELECT * FROM results" + (" WHERE " + " AND ".join(conds) if conds else "")
        return [dict(r) for r in self._con.execute(sql + " ORDER BY unit_key, idx", args)]

    def count(self, table: str = "results") -> int:
        """Number of rows of ``results`` or ``units``."""
        if table not in ("results", "units"):
            raise InputError(f"unknown table {table!r}")
        return int(self._con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def integrity_ok(self) -> bool:
        """SQLite's own ``PRAGMA integrity_check`` says ``ok``."""
        return self._con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # ------------------------------------------------------------------ export
    def export_csv(self, folder: str | Path) -> list[Path]:
        """Write ``results.csv`` and ``units.csv`` into ``folder``; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for table in ("results", "units"):
            cur = self._con.execute(f"SELECT * FROM {table} ORDER BY rowid")
            names = [d[0] for d in cur.description]
            path = folder / f"{table}.csv"
            with path.open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(names)
                for row in cur:
                    w.writerow([_csv_value(v) for v in row])
            paths.append(path)
        return paths


def _sql_value(v: Any) -> Any:
    """Python / numpy value -> SQLite value; dicts and lists become JSON text, NaN becomes NULL."""
    if v is None or isinstance(v, (str, bytes)):
        return v
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (Mapping, list, tuple)):
        return json.dumps(v, sort_keys=True)
    try:
        import numpy as np

        if isinstance(v, np.generic):
            v = v.item()
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    if isinstance(v, float) and v != v:
        return None
    return v


def _csv_value(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else ("" if v is None else v)
