"""Results store and sweep engine: atomic units, no duplicates, resume, concurrency, executors, CSV.

The engine is exercised with a small real unit (a soft-margin linear classifier solved by cvxpy), so
these tests do not depend on the KKT solvers; the end-to-end run with the real ones is in
test_reproduce.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import signal
import sqlite3
import time

import cvxpy as cp
import numpy as np
import pytest

from kktsolver.data import noisy_constant_1d
from kktsolver.errors import InputError
from kktsolver.experiments import (
    SweepConfig,
    execute_unit,
    expand_units,
    register_method,
    run_sweep,
    unit_key,
)
from kktsolver.store import ResultsStore, UnitRecord


def _toy_unit(ds, params, config):
    """Soft-margin linear classifier on (x, 1); one row per noisy point plus one summary row."""
    x, y = ds.x, ds.y.astype(float)
    u = cp.Variable(2)
    xi = cp.Variable(ds.m, nonneg=True)
    prob = cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(u) + params["C"] * cp.sum(xi)),
        [cp.multiply(y, u[0] * x + u[1]) >= 1 - xi],
    )
    prob.solve(solver="CLARABEL")
    rows = [{"objective": float(prob.value), "clean_error": 0.0, "verdict": "toy"}]
    for i in np.flatnonzero(y < 0):
        rows.append({"objective": float(xi.value[i]), "clean_error": float(x[i]), "verdict": "toy"})
    return rows


def _boom_unit(ds, params, config):
    if config["seed"] == 1:
        raise RuntimeError("deliberate failure")
    return [{"objective": 1.0}]


register_method("toy", _toy_unit)
register_method("boom", _boom_unit)


def _config(method="toy", seeds=3, ps=(0.1, 0.3)):
    raw = {
        "grid": {"p": list(ps), "m": [12], "seeds": seeds},
        "custom": {"method": method, "params": {"C": 10.0}},
    }
    return SweepConfig("test.toml", raw)


def _expected_rows(units):
    """Independent count: 1 + number of flipped labels of each dataset."""
    return sum(1 + int((noisy_constant_1d(u["m"], u["p"], u["seed"]).y < 0).sum()) for u in units)


def _content(store):
    """Store rows without timing columns (those legitimately differ between runs)."""
    drop = {"unit_seconds", "created_at"}
    return sorted(tuple((k, v) for k, v in r.items() if k not in drop) for r in store.rows())


def test_units_are_keyed_by_configuration():
    units = expand_units(_config())
    assert len(units) == 2 * 3
    keys = {unit_key(u) for u in units}
    assert len(keys) == len(units)
    u = dict(units[0])
    assert unit_key(dict(reversed(list(u.items())))) == unit_key(u)  # key order does not matter
    u["params"] = {"C": 11.0}
    assert unit_key(u) != unit_key(units[0])


def test_write_unit_is_idempotent_and_failures_do_not_shadow_results(tmp_path):
    units = expand_units(_config(seeds=1))
    rec = execute_unit(units[0])
    assert rec.status == "done" and rec.n_rows == len(rec.rows) >= 1
    with ResultsStore(tmp_path / "r.sqlite") as st:
        assert st.write_unit(rec) == rec.n_rows
        assert st.write_unit(rec) == 0  # same unit again: nothing added
        failed = UnitRecord(rec.unit_key, rec.method, rec.config, "failed", 0, 0.0, "late failure")
        st.write_unit(failed)  # a failure never replaces a done unit
        assert st.units()[0]["status"] == "done"
        assert st.count() == rec.n_rows and st.integrity_ok()
        # the other way round: a failure is replaced when the unit later succeeds
        rec2 = execute_unit(units[1])
        st.write_unit(UnitRecord(rec2.unit_key, "toy", rec2.config, "failed", 0, 0.0, "transient"))
        assert rec2.unit_key not in st.done_keys()
        assert st.write_unit(rec2) == rec2.n_rows
        assert rec2.unit_key in st.done_keys()


def test_serial_sweep_stores_expected_rows_and_rerun_adds_none(tmp_path):
    units = expand_units(_config())
    with ResultsStore(tmp_path / "r.sqlite") as st:
        s1 = run_sweep(units, st, executor="serial", progress=False)
        assert s1.n_done == len(units) and s1.n_failed == 0
        assert st.count() == _expected_rows(units) == s1.n_rows_added
        # every row carries its parameters
        for r in st.rows():
            assert r["m"] == 12 and r["p"] in (0.1, 0.3) and r["method"] == "toy"
        s2 = run_sweep(units, st, executor="serial", progress=False)
        assert (s2.n_skipped, s2.n_done, s2.n_rows_added) == (len(units), 0, 0)
        assert st.count() == _expected_rows(units)


def test_process_pool_and_serial_agree(tmp_path):
    units = expand_units(_config())
    with ResultsStore(tmp_path / "a.sqlite") as a, ResultsStore(tmp_path / "b.sqlite") as b:
        run_sweep(units, a, executor="serial", progress=False)
        s = run_sweep(units, b, executor="process", jobs=2, progress=False)
        assert s.executor == "process" and s.n_done == len(units)
        assert _content(a) == _content(b)


def test_dask_local_cluster_matches_serial(tmp_path):
    distributed = pytest.importorskip("distributed")
    units = expand_units(_config())
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        with ResultsStore(tmp_path / "d.sqlite") as d, ResultsStore(tmp_path / "s.sqlite") as s:
            run_sweep(units, s, executor="serial", progress=False)
            # an address string, as on the command line (--scheduler)
            summ = run_sweep(
                units, d, executor="dask", scheduler=cluster.scheduler_address, progress=False
            )
            assert summ.n_done == len(units) and summ.executor == "dask"
            assert _content(d) == _content(s)


class _Interrupt:
    """Unit runner that raises KeyboardInterrupt (a Ctrl-C) at its k-th call."""

    def __init__(self, k):
        self.k, self.calls = k, 0

    def __call__(self, cfg):
        self.calls += 1
        if self.calls == self.k:
            raise KeyboardInterrupt
        return execute_unit(cfg)


def test_interrupt_loses_only_the_unit_in_flight_and_resume_completes(tmp_path):
    units = expand_units(_config())
    with ResultsStore(tmp_path / "ref.sqlite") as ref:
        run_sweep(units, ref, executor="serial", progress=False)
        with ResultsStore(tmp_path / "r.sqlite") as st:
            with pytest.raises(KeyboardInterrupt):
                run_sweep(units, st, executor="serial", progress=False, fn=_Interrupt(4))
            assert st.count("units") == 3  # the three finished units are stored, whole
            assert st.integrity_ok()
            s = run_sweep(units, st, executor="serial", progress=False)
            assert (s.n_skipped, s.n_done) == (3, len(units) - 3)
            assert _content(st) == _content(ref)


class _Swallow:
    """Unit runner hit by Ctrl-C at its k-th call whose solver swallows it and returns a result."""

    def __init__(self, k):
        self.k, self.calls = k, 0

    def __call__(self, cfg):
        self.calls += 1
        if self.calls == self.k:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            except KeyboardInterrupt:
                pass  # e.g. a solver that catches the interrupt and stops early
        return execute_unit(cfg)


def test_a_swallowed_ctrl_c_never_stores_the_unit_in_flight(tmp_path):
    units = expand_units(_config())
    with ResultsStore(tmp_path / "r.sqlite") as st:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(units, st, executor="serial", progress=False, fn=_Swallow(2))
        assert st.count("units") == 1  # only the unit finished before Ctrl-C
    # the SIGINT handler is restored afterwards
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_failed_units_are_recorded_and_retried(tmp_path):
    units = expand_units(_config(method="boom", seeds=2, ps=(0.1,)))
    with ResultsStore(tmp_path / "r.sqlite") as st:
        s = run_sweep(units, st, executor="serial", progress=False)
        assert (s.n_done, s.n_failed) == (1, 1)
        assert "deliberate failure" in s.failures[0]
        (bad,) = st.units(status="failed")
        assert "RuntimeError" in bad["error"]
        s2 = run_sweep(units, st, executor="serial", progress=False)
        assert (s2.n_skipped, s2.n_failed) == (1, 1)  # retried, fails again, still recorded once
        assert st.count("units") == 2


def _writer(path, units, n):
    with ResultsStore(path) as st:
        for u in units[:n]:
            st.write_unit(execute_unit(u))


def test_two_concurrent_runs_do_not_corrupt_the_store(tmp_path):
    units = expand_units(_config(seeds=4))
    path = tmp_path / "c.sqlite"
    ResultsStore(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_writer, args=(path, units, len(units))),
        ctx.Process(target=_writer, args=(path, units[::-1], len(units))),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with ResultsStore(path) as st:
        assert st.integrity_ok()
        assert st.count("units") == len(units)
        assert st.count() == _expected_rows(units)
        keys = [r["row_key"] for r in st.rows()]
        assert len(keys) == len(set(keys))
    # the file really is in WAL mode (what makes concurrent readers and a writer safe)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_export_csv_matches_store(tmp_path):
    units = expand_units(_config(seeds=2))
    with ResultsStore(tmp_path / "r.sqlite") as st:
        run_sweep(units, st, executor="serial", progress=False)
        paths = st.export_csv(tmp_path / "csv")
        rows = st.rows()
    with open(paths[0], newline="") as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == len(rows)
    by_key = {r["row_key"]: r for r in got}
    for r in rows:
        g = by_key[r["row_key"]]
        assert float(g["objective"]) == r["objective"]  # floats round-trip exactly (repr)
        assert int(g["seed"]) == r["seed"]


def test_bad_grids_are_input_errors():
    with pytest.raises(InputError, match="p must lie"):
        expand_units(SweepConfig("g.toml", {"grid": {"p": [0.7], "m": [5]}, "global": {}}))
    with pytest.raises(InputError, match="unknown section"):
        expand_units(SweepConfig("g.toml", {"grid": {"p": [0.1], "m": [5]}, "globl": {}}))
    with pytest.raises(InputError, match="g.toml"):
        expand_units(SweepConfig("g.toml", {"grid": {"m": [5]}}))
    with pytest.raises(InputError, match="unknown executor"):
        run_sweep([], None, executor="spark")  # type: ignore[arg-type]
