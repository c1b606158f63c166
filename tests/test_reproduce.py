"""End to end: ``kktsolver reproduce --quick`` (report, figures, store, rerun, interrupt, resume),
export, the figures' geometry, and the notebook tour executed with nbclient.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kktsolver.clean_error import clean_error, nonpositive_intervals
from kktsolver.experiments import expand_units, instance_dataset, load_config
from kktsolver.network import ReLUNetwork
from kktsolver.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ("clean_error_vs_p.png", "example_networks.png", "histograms.png")
TIMING = {"unit_seconds", "created_at"}


def _cli(*args, timeout=300, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kktsolver", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )


def _deterministic(row):
    """A row without what legitimately differs between runs: timings. (The quick grid has no time
    caps, so every search, the extreme ones included, is a deterministic function of its unit.)"""
    out = {k: v for k, v in row.items() if k not in TIMING}
    if out.get("extra"):
        extra = json.loads(out["extra"])
        out["extra"] = {k: v for k, v in extra.items() if "seconds" not in k}
        out["extra"] = json.dumps(out["extra"], sort_keys=True)
    return tuple(sorted(out.items()))


def _content(path):
    with ResultsStore(path) as st:
        return sorted((_deterministic(r) for r in st.rows()), key=repr)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    t0 = time.perf_counter()
    res = _cli("reproduce", "--quick", "--out", str(out), "--no-progress", "--json")
    secs = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"reproduce --quick: {secs:.1f} s wall (sweep {summary['seconds']:.1f} s)")
    return out, summary


def test_quick_run_writes_report_and_readable_figures(quick):
    out, summary = quick
    report = (out / "report.md").read_text()
    for section in ("## Setting", "## Verdicts", "## Fitted exponents", "## Tables per class"):
        assert section in report
    import matplotlib.image as mpimg

    for name in FIGURES:
        path = out / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 400, (name, img.shape)
        assert img.std() > 0.01  # not a blank canvas
        assert f"]({name})" in report  # embedded in the report


def test_store_has_one_row_per_point_with_its_parameters(quick):
    out, summary = quick
    units = expand_units(load_config(quick=True))
    assert summary["n_units"] == len(units) and summary["n_failed"] == 0
    with ResultsStore(out / "results.sqlite") as st:
        stored = st.units()
        assert len(stored) == len(units) and all(u["status"] == "done" for u in stored)
        assert st.count() == sum(u["n_rows"] for u in stored) == summary["n_rows_added"]
        by_key = {u["unit_key"]: u for u in stored}
        n_global = sum(u["method"] == "global" for u in units)
        assert len(st.rows(method="global")) == n_global  # exactly one row per dataset
        # an extreme search is time-bounded: one row, or none if it found no KKT point in time
        assert all(u["n_rows"] in (0, 1) for u in stored if u["method"] == "extreme")
        assert all(
            u["n_rows"] <= u["config"]["params"]["n"] for u in stored if u["method"] == "sample"
        )
        for r in st.rows():
            cfg = by_key[r["unit_key"]]["config"]
            assert (r["m"], r["p"], r["seed"], r["method"]) == (
                cfg["m"],
                cfg["p"],
                cfg["seed"],
                cfg["method"],
            )
        # independent re-check of the global rows from the stored networks and regenerated data
        for r in st.rows(method="global"):
            net = ReLUNetwork.from_dict(json.loads(r["network"]))
            ds = instance_dataset({**by_key[r["unit_key"]]["config"]})
            assert r["n_negative"] == int((ds.y < 0).sum())
            assert net.margins(ds.X, ds.y).min() >= 1 - 1e-6
            assert r["objective"] == pytest.approx(net.objective(), rel=1e-9)
            assert r["clean_error"] == pytest.approx(clean_error(net), abs=1e-12)
            assert r["verdict"] == "global_min"
        # every sampled KKT point is at least as costly as the global minimum of its dataset
        glob = {r["instance_key"]: r["objective"] for r in st.rows(method="global")}
        for r in st.rows(method="sample"):
            assert r["verdict"] in ("kkt", "local_min", "global_min")
            assert r["objective"] >= glob[r["instance_key"]] * (1 - 1e-6)


def test_rerun_adds_no_rows(quick):
    out, _ = quick
    before = _content(out / "results.sqlite")
    res = _cli("reproduce", "--quick", "--out", str(out), "--no-progress", "--json", "--no-report")
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["n_skipped"] == summary["n_units"] and summary["n_rows_added"] == 0
    assert _content(out / "results.sqlite") == before


def _wait_for_units(db, n, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if db.exists():
            try:
                con = sqlite3.connect(db, timeout=5)
                k = con.execute("SELECT COUNT(*) FROM units").fetchone()[0]
                con.close()
                if k >= n:
                    return True
            except sqlite3.OperationalError:
                pass
        time.sleep(0.2)
    return False


def test_interrupted_run_resumes_to_the_same_store(quick, tmp_path):
    ref_out, summary = quick
    out = tmp_path / "interrupted"
    db = out / "results.sqlite"
    args = [
        sys.executable,
        "-m",
        "kktsolver",
        "reproduce",
        "--quick",
        "--out",
        str(out),
        "--no-progress",
        "--no-report",
        "--jobs",
        "1",
    ]
    n_units = summary["n_units"]
    # 1) Ctrl-C after a few units; 2) a hard crash (SIGKILL) later on; 3) rerun to completion
    for sig, n_wait in ((signal.SIGINT, 3), (signal.SIGKILL, n_units // 2)):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        reached = _wait_for_units(db, n_wait, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert reached, f"run ended before {n_wait} units were stored: {err[-2000:]}"
        if sig == signal.SIGINT:
            assert proc.returncode == 130 and "rerun the same command to resume" in err
        with ResultsStore(db) as st:
            partial = st.count("units")
            assert st.integrity_ok()
            assert n_wait <= partial < n_units
            # whole units only: each stored unit has exactly its rows
            for u in st.units():
                assert len(st.rows(unit_key=u["unit_key"])) == u["n_rows"]
    res = subprocess.run(args + ["--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    final = json.loads(res.stdout.strip().splitlines()[-1])
    assert final["n_skipped"] == partial and final["n_done"] == n_units - partial
    assert _content(db) == _content(ref_out / "results.sqlite")


def test_export_csv(quick, tmp_path):
    out, _ = quick
    res = _cli("export", str(out), "--csv", "--to", str(tmp_path), "--json")
    assert res.returncode == 0, res.stderr
    files = json.loads(res.stdout)["files"]
    import csv

    with open(files[0], newline="") as fh:
        rows = list(csv.DictReader(fh))
    with ResultsStore(out / "results.sqlite") as st:
        stored = {r["row_key"]: r for r in st.rows()}
    assert len(rows) == len(stored)
    for r in rows:
        s = stored[r["row_key"]]
        assert float(r["clean_error"]) == s["clean_error"] and float(r["p"]) == s["p"]
    bad = _cli("export", str(tmp_path / "nothing-here"), "--csv")
    assert bad.returncode == 2 and "no results store" in bad.stderr


def test_bad_arguments_are_clear_errors(tmp_path):
    res = _cli("reproduce", "--executor", "dask", "--out", str(tmp_path))
    assert res.returncode == 2 and "--scheduler" in res.stderr
    grid = tmp_path / "g.toml"
    grid.write_text("[grid]\np = [0.7]\nm = [10]\n[global]\n")
    res = _cli("reproduce", "--grid", str(grid), "--out", str(tmp_path))
    assert res.returncode == 2 and "g.toml" in res.stderr and "p must lie" in res.stderr
    grid.write_text("[grid\n")
    res = _cli("reproduce", "--grid", str(grid), "--out", str(tmp_path))
    assert res.returncode == 2 and "invalid TOML" in res.stderr


def test_shaded_regions_measure_the_clean_error():
    rng = np.random.default_rng(3)
    for _ in range(50):
        net = ReLUNetwork(rng.normal(size=6), rng.normal(size=(6, 1)), rng.normal(size=6))
        regions = nonpositive_intervals(net, (0.0, 1.0))
        total = sum(b - a for a, b in regions)
        assert total == pytest.approx(clean_error(net), abs=1e-12)
        for a, b in regions:  # N <= 0 inside each region (checked at interior points)
            xs = np.linspace(a, b, 7)[1:-1]
            assert np.all(net(xs) <= 1e-12)


def test_notebook_tour_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        pytest.skip("no python3 Jupyter kernel installed (pip install ipykernel)")
    nb = nbformat.read(ROOT / "notebooks" / "tour.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    # the tour prints its own checks; they must hold
    assert "CHECK FAILED" not in text
    assert text.count("CHECK OK") >= 4
    assert any("image/png" in o.get("data", {}) for o in outputs)
