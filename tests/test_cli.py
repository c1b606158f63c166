"""CLI `data`, `error`, `demo`: exit codes 0 / 2, exactly one JSON object with --json, messages."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from kktsolver import cli
from kktsolver.clean_error import clean_error, clean_error_mc
from kktsolver.commands.demo import load_config, spike_network
from kktsolver.data import Dataset, load_dataset, noisy_constant_1d, save_dataset
from kktsolver.network import ReLUNetwork, save_network

V_NET = {"v": [2.0, 2.0, -0.4], "W": [[1.0], [-1.0], [0.0]], "b": [-0.5, 0.5, 1.0]}  # 2|x-.5|-.4


def run(argv, capsys):
    """cli.main in-process: (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_json(out: str) -> dict:
    lines = out.strip().splitlines()
    assert len(lines) == 1, f"expected exactly one line of JSON, got {len(lines)}"
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


def fail_line(code, out, err, *fragments):
    """Bad input: exit 2, nothing on stdout, one line on stderr containing every fragment."""
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    for f in fragments:
        assert f in err, (f, err)


@pytest.fixture
def vnet(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps(V_NET))
    return path


# --------------------------------------------------------------------------- data


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_data_writes_the_generator_output(tmp_path, capsys, suffix):
    out_path = tmp_path / f"d{suffix}"
    code, out, _ = run(
        [
            "data",
            "--m",
            50,
            "--p",
            0.2,
            "--seed",
            4,
            "--interval",
            -1,
            1,
            "--out",
            out_path,
            "--json",
        ],
        capsys,
    )
    assert code == 0
    obj = one_json(out)
    assert obj["path"] == str(out_path) and obj["m"] == 50 and obj["d"] == 1
    assert obj["sidecar"] == str(out_path) + ".meta.json"
    expected = noisy_constant_1d(50, 0.2, seed=4, interval=(-1, 1))
    got = load_dataset(out_path)
    assert got.X.tobytes() == expected.X.tobytes() and np.array_equal(got.y, expected.y)
    assert obj["n_negative"] == int((expected.y < 0).sum())
    assert got.meta["support"] == [-1.0, 1.0] and got.meta["seed"] == 4


def test_data_high_dimension_and_plain_output(tmp_path, capsys):
    code, out, _ = run(
        [
            "data",
            "--m",
            10,
            "--p",
            0.1,
            "--d",
            3,
            "--distribution",
            "gaussian",
            "--out",
            tmp_path / "g.csv",
        ],
        capsys,
    )
    assert code == 0 and "wrote 10 points in d = 3" in out
    assert load_dataset(tmp_path / "g.csv").d == 3


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--p", 0.7], "flip probability"),
        (["--p", 0.1, "--interval", 1, 0], "interval"),
        (["--p", 0.1, "--d", 2, "--interval", 0, 1], "--interval is for d = 1"),
        (["--p", 0.1, "--distribution", "sphere"], "--distribution is for d > 1"),
    ],
)
def test_data_bad_arguments_exit_2(tmp_path, capsys, extra, fragment):
    code, out, err = run(["data", "--m", 10, *extra, "--out", tmp_path / "d.csv"], capsys)
    fail_line(code, out, err, fragment)


def test_data_bad_output_path_exit_2(tmp_path, capsys):
    code, out, err = run(["data", "--m", 5, "--p", 0.1, "--out", tmp_path / "d.txt"], capsys)
    fail_line(code, out, err, "d.txt", "unknown dataset format")
    code, out, err = run(["data", "--m", 5, "--p", 0.1, "--out", tmp_path / "x" / "d.csv"], capsys)
    fail_line(code, out, err, "cannot write")


# --------------------------------------------------------------------------- error


def test_error_json_exact(vnet, capsys):
    code, out, _ = run(["error", "--network", vnet, "--json"], capsys)
    assert code == 0
    obj = one_json(out)
    assert obj["clean_error"] == pytest.approx(0.4, abs=1e-12)  # |x - .5| <= .2
    assert obj["interval"] == [0.0, 1.0]
    code, out, _ = run(["error", "--network", vnet, "--interval", -2, 2, "--json"], capsys)
    assert one_json(out)["clean_error"] == pytest.approx(0.1, abs=1e-12)


def test_error_plain_output(vnet, capsys):
    code, out, _ = run(["error", "--network", vnet], capsys)
    assert code == 0 and "clean error (exact, x ~ Uniform[0, 1]): 0.4" in out


def test_error_monte_carlo(vnet, capsys):
    code, out, _ = run(["error", "--network", vnet, "--monte-carlo", 200000, "--json"], capsys)
    mc = one_json(out)["monte_carlo"]
    assert code == 0 and mc["n_samples"] == 200000 and mc["seed"] == 0
    assert abs(mc["estimate"] - 0.4) <= 5 * math.sqrt(0.24 / 200000)


def test_error_with_data_uses_support_and_reports_margins(tmp_path, vnet, capsys):
    ds = Dataset([0.0, 0.5, 1.9], [1, -1, 1], {"support": [0.0, 2.0]})
    save_dataset(ds, tmp_path / "d.csv")
    code, out, _ = run(["error", "--network", vnet, "--data", tmp_path / "d.csv", "--json"], capsys)
    obj = one_json(out)
    assert obj["interval"] == [0.0, 2.0] and obj["clean_error"] == pytest.approx(0.2)
    # N = 2|x - .5| - .4: N(0) = 0.6, N(.5) = -0.4, N(1.9) = 2.4; margins .6, .4, 2.4
    assert obj["train"]["min_margin"] == pytest.approx(0.4)
    assert obj["train"]["n_misclassified"] == 0


def test_error_high_dimension(tmp_path, capsys):
    path = save_network(ReLUNetwork([1.0], [[1.0, 0.0]], [0.0]), tmp_path / "n2.json")
    code, out, err = run(["error", "--network", path, "--json"], capsys)
    fail_line(code, out, err, "d = 2", "--monte-carlo")
    code, out, _ = run(["error", "--network", path, "--monte-carlo", 10000, "--json"], capsys)
    obj = one_json(out)
    assert code == 0 and obj["clean_error"] is None and obj["interval"] is None
    # relu(x_1) <= 0 iff x_1 <= 0 on the circle: probability 1/2
    assert abs(obj["monte_carlo"]["estimate"] - 0.5) <= 5 * 0.5 / 100


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "name, text, fragments",
    [
        ("bad.json", '{"v": [1],\n"W": [1],\n"b": [0]', ["bad.json", "line 3", "invalid JSON"]),
        ("nan.json", '{"v": [NaN], "W": [1], "b": [0]}', ["nan.json", "non-finite value in v"]),
        ("keys.json", '{"v": [1], "W": [1]}', ["keys.json", "missing key"]),
    ],
)
def test_error_bad_network_exit_2(tmp_path, capsys, name, text, fragments):
    path = _write(tmp_path, name, text)
    fail_line(*run(["error", "--network", path], capsys), *fragments)


def test_error_missing_network_exit_2(tmp_path, capsys):
    fail_line(
        *run(["error", "--network", tmp_path / "nope.json"], capsys), "nope.json", "no such file"
    )


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("x,y\n0.1,1\n0.2,1,3\n", ["d.csv", "line 3", "expected 2 fields"]),
        ("x,y\n0.1,1\nnan,1\n", ["d.csv", "line 3", "non-finite"]),
        ("x,y\n0.1,1\n0.2,0\n", ["d.csv", "line 3", "label"]),
        ("x,y\n0.1,1\n0.3,1\n0.1,-1\n", ["d.csv", "lines 2 and 4", "points 0 and 2", "infeasible"]),
    ],
)
def test_error_bad_dataset_exit_2(tmp_path, vnet, capsys, text, fragments):
    path = _write(tmp_path, "d.csv", text)
    fail_line(*run(["error", "--network", vnet, "--data", path], capsys), *fragments)


def test_error_dimension_mismatch_names_both_files(tmp_path, vnet, capsys):
    path = _write(tmp_path, "d2.csv", "x1,x2,y\n0.1,0.2,1\n0.3,0.4,-1\n")
    fragments = ["d2.csv has input dimension d = 2", "v.json takes inputs of dimension d = 1"]
    fail_line(*run(["error", "--network", vnet, "--data", path], capsys), *fragments)


def test_error_bad_interval_exit_2(vnet, capsys):
    fail_line(*run(["error", "--network", vnet, "--interval", 1, 1], capsys), "interval")


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["error"])  # --network is required
    assert info.value.code == 2


# --------------------------------------------------------------------------- demo


def test_demo_json(capsys):
    code, out, _ = run(["demo", "--json"], capsys)
    assert code == 0
    obj = one_json(out)
    assert obj["dataset"]["m"] == 200 and obj["dataset"]["p"] == 0.1
    assert obj["dataset"]["seed"] == 0 and obj["interval"] == [0.0, 1.0]
    ds = noisy_constant_1d(200, 0.1, seed=0)
    assert obj["dataset"]["n_negative"] == int((ds.y < 0).sum())
    assert obj["reference_network"]["min_margin"] >= 1 - 1e-9  # it interpolates
    # independent check of the reported exact value: Monte Carlo on the same network
    mc = clean_error_mc(spike_network(ds), 10**6, seed=1, progress=False)
    assert abs(obj["clean_error"] - mc.estimate) <= 5 * mc.stderr + 1e-6


def test_demo_plain_output(capsys):
    code, out, _ = run(["demo"], capsys)
    assert code == 0 and "clean error Pr[N(x) <= 0] (exact):" in out


def test_demo_config_file(tmp_path, capsys):
    cfg = _write(
        tmp_path, "c.toml", "[dataset]\nm = 30\np = 0.2\nseed = 5\ninterval = [0.0, 2.0]\n"
    )
    code, out, _ = run(["demo", "--config", cfg, "--json"], capsys)
    obj = one_json(out)
    assert code == 0 and obj["dataset"]["m"] == 30 and obj["interval"] == [0.0, 2.0]
    assert load_config(cfg)["seed"] == 5
    assert load_config()["m"] == 200  # the embedded default


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("[dataset]\nm = 30\np = 0.2\nseed = 5\ninterval = [0, 1]\nq = 1\n", ["unknown key", "q"]),
        ("[dataset]\nm = 30\np = 0.2\nseed = 5\n", ["missing", "interval"]),
        ("[dataset]\nm = 30\np = 0.7\nseed = 5\ninterval = [0, 1]\n", ["flip probability"]),
        ("[dataset\n", ["invalid TOML"]),
    ],
)
def test_demo_bad_config_exit_2(tmp_path, capsys, text, fragments):
    cfg = _write(tmp_path, "c.toml", text)
    fail_line(*run(["demo", "--config", cfg], capsys), "c.toml", *fragments)


def test_spike_network_hand_example():
    # x = .1, .3, .5, .9 with the noisy point .3: r = .2, tent on [.1, .5], N <= 0 on [.2, .4]
    ds = Dataset([0.1, 0.3, 0.5, 0.9], [1, -1, 1, 1])
    net = spike_network(ds)
    np.testing.assert_allclose(net(ds.X), [1, -1, 1, 1], atol=1e-12)
    assert clean_error(net) == pytest.approx(0.2, abs=1e-12)
    assert net.is_balanced()


def test_spike_network_interpolates_with_adjacent_noisy_points():
    ds = noisy_constant_1d(300, 0.3, seed=2)
    net = spike_network(ds)
    assert np.min(net.margins(ds.X, ds.y)) >= 1 - 1e-9
    assert spike_network(Dataset([0.2, 0.4], [-1, -1]))(np.array([0.3])).tolist() == [-1.0]
    assert spike_network(Dataset([0.2, 0.4], [1, 1]))(np.array([0.3])).tolist() == [1.0]


# --------------------------------------------------------------------------- console entry


def test_python_dash_m_exit_codes(tmp_path, vnet):
    ok = subprocess.run(
        [sys.executable, "-m", "kktsolver", "error", "--network", str(vnet), "--json"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["clean_error"] == pytest.approx(0.4)
    bad = subprocess.run(
        [sys.executable, "-m", "kktsolver", "error", "--network", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        f"kktsolver error: error: {tmp_path / 'none.json'}: no such file"
    ]


@pytest.mark.parametrize("command", ["data", "error", "demo"])
def test_help(capsys, command):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: kktsolver {command}") and "--json" in out
