"""Datasets: validation (each bad input and its message), generators, exact CSV/NPZ round trips."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kktsolver.data import (
    Dataset,
    DatasetError,
    clustered_1d,
    interval_or_support,
    load_dataset,
    noisy_constant,
    noisy_constant_1d,
    save_dataset,
    sidecar_path,
)
from kktsolver.errors import InputError

# --------------------------------------------------------------------------- validation


def test_dataset_basic_fields():
    ds = Dataset([0.5, 0.1, 0.9], [1, -1, 1.0], {"support": [0, 1]})
    assert (ds.m, ds.d, len(ds)) == (3, 1, 3)
    assert ds.y.dtype == np.int8 and ds.y.tolist() == [1, -1, 1]
    assert ds.order.tolist() == [1, 0, 2]
    assert ds.support == (0.0, 1.0)
    with pytest.raises(ValueError):
        ds.X[0, 0] = 3.0  # read-only


def test_dataset_copies_the_callers_array():
    X = np.random.default_rng(0).random((4, 3))
    ds = Dataset(X, [1, 1, -1, 1])
    assert X.flags.writeable  # the caller's array is not frozen
    X[0, 0] = 99.0
    assert ds.X[0, 0] != 99.0


@pytest.mark.parametrize(
    "X, y, match",
    [
        ([[0.1], [np.nan], [0.3]], [1, 1, 1], "non-finite input at index 1"),
        ([[0.1, 0.2], [0.3, np.inf]], [1, 1], "non-finite input at index 1"),
        ([0.1, 0.2, 0.3], [1, 0, 1], "label at index 1 is 0"),
        ([0.1, 0.2], [1, np.nan], "label at index 1"),
        ([0.1, 0.2], [1, 2], "label at index 1 is 2"),
        ([0.1, 0.2], ["a", "b"], "labels must be the numbers"),
        ([0.1, 0.2, 0.3], [1, 1], "X has 3 rows but y has 2 labels"),
        (np.zeros((0, 1)), [], "empty"),
        (np.zeros((2, 0)), [1, 1], "d = 0"),
        ([[0.1, 0.2]], [[1]], "y must be a vector"),
        (np.zeros((2, 2, 2)), [1, 1], "shape"),
        (["a", "b"], [1, 1], "X must be a numeric array"),
        ([0.1 + 1j, 0.2], [1, 1], "X must be real"),
    ],
)
def test_dataset_rejects_bad_input(X, y, match):
    with pytest.raises(DatasetError, match=match):
        Dataset(X, y)


def test_conflicting_duplicates_name_both_indices():
    with pytest.raises(DatasetError, match="points 1 and 3 both have x = 0.5") as info:
        Dataset([0.2, 0.5, 0.7, 0.5], [1, 1, -1, -1])
    assert info.value.indices == (1, 3)
    assert "infeasible" in str(info.value)
    assert isinstance(info.value, InputError)


def test_equal_duplicates_merged_with_warning():
    with pytest.warns(UserWarning, match=r"merged 2 duplicate input\(s\).*indices \[2, 4\]"):
        ds = Dataset([0.5, 0.1, 0.5, 0.9, 0.5], [-1, 1, -1, 1, -1])
    assert ds.x.tolist() == [0.5, 0.1, 0.9]  # first occurrence kept, order kept
    assert ds.y.tolist() == [-1, 1, 1]
    assert ds.meta["merged_indices"] == [2, 4]


def test_no_merging_in_higher_dimension():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = Dataset([[0.5, 1.0], [0.5, 1.0]], [1, -1])  # d = 2: not our business here
    assert ds.m == 2


# --------------------------------------------------------------------------- generators


def test_noisy_constant_1d():
    ds = noisy_constant_1d(20000, 0.2, seed=3, interval=(-1.0, 2.0))
    assert ds.d == 1 and ds.m == 20000
    assert ds.x.min() >= -1.0 and ds.x.max() < 2.0
    # flips are Bernoulli(0.2): the fraction is within 5 standard errors of p
    frac = float(np.mean(ds.y < 0))
    assert abs(frac - 0.2) <= 5 * math.sqrt(0.2 * 0.8 / ds.m)
    # x is uniform: mean 0.5, variance 9/12
    assert abs(ds.x.mean() - 0.5) <= 5 * math.sqrt(9 / 12 / ds.m)
    assert ds.meta == {
        "generator": "noisy_constant_1d",
        "m": 20000,
        "p": 0.2,
        "seed": 3,
        "distribution": "uniform",
        "support": [-1.0, 2.0],
    }
    again = noisy_constant_1d(20000, 0.2, seed=3, interval=(-1.0, 2.0))
    assert np.array_equal(again.X, ds.X) and np.array_equal(again.y, ds.y)
    assert noisy_constant_1d(5, 0.0, seed=1).y.tolist() == [1] * 5


def test_clustered_1d():
    ds = clustered_1d(10001, 0.2, 1e-3, seed=2, centres=(0.3, 0.7, 0.9))
    x = ds.x
    # three clusters of sizes 3334, 3333, 3334 (even split of 10001), each inside [c, c + width]
    for c, k in zip((0.3, 0.7, 0.9), (3334, 3333, 3334), strict=True):
        inside = (x >= c) & (x <= c + 1e-3)
        assert inside.sum() == k
        # uniform inside: mean c + width / 2 within 5 standard errors (width / sqrt(12 k))
        assert abs(x[inside].mean() - (c + 5e-4)) <= 5 * 1e-3 / math.sqrt(12 * k)
    frac = float(np.mean(ds.y < 0))
    assert abs(frac - 0.2) <= 5 * math.sqrt(0.2 * 0.8 / ds.m)
    assert ds.meta["generator"] == "clustered_1d" and ds.meta["support"] == [0.3, 0.901]
    again = clustered_1d(10001, 0.2, 1e-3, seed=2, centres=(0.3, 0.7, 0.9))
    assert np.array_equal(again.X, ds.X) and np.array_equal(again.y, ds.y)


def test_noisy_constant_high_dimension():
    sph = noisy_constant(500, 4, 0.1, seed=0, distribution="sphere")
    np.testing.assert_allclose(np.linalg.norm(sph.X, axis=1), 1.0, rtol=1e-14)
    gau = noisy_constant(500, 4, 0.1, seed=0, distribution="gaussian")
    # the sphere points are the Gaussian points normalised (same stream)
    np.testing.assert_allclose(sph.X, gau.X / np.linalg.norm(gau.X, axis=1, keepdims=True))
    assert gau.meta["distribution"] == "gaussian" and gau.d == 4


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: noisy_constant_1d(0, 0.1), "sample size m"),
        (lambda: noisy_constant_1d(2.5, 0.1), "sample size m"),
        (lambda: noisy_constant_1d(10, 0.5), "flip probability"),
        (lambda: noisy_constant_1d(10, -0.1), "flip probability"),
        (lambda: noisy_constant_1d(10, "abc"), "flip probability"),
        (lambda: noisy_constant_1d(10, np.nan), "flip probability"),
        (lambda: noisy_constant_1d(10, 0.1, seed=-3), "seed"),
        (lambda: noisy_constant_1d(10, 0.1, seed=1.5), "seed"),
        (lambda: noisy_constant_1d(10, 0.1, interval=(1, 0)), "interval"),
        (lambda: noisy_constant_1d(10, 0.1, interval=(0, np.inf)), "interval"),
        (lambda: noisy_constant(10, 0, 0.1), "dimension d"),
        (lambda: noisy_constant(10, 2, 0.1, distribution="cube"), "distribution"),
        (lambda: clustered_1d(10, 0.1, 0.0), "width"),
        (lambda: clustered_1d(10, 0.1, np.inf), "width"),
        (lambda: clustered_1d(10, 0.1, 1e-3, centres=()), "centres"),
        (lambda: clustered_1d(10, 0.6, 1e-3), "flip probability"),
    ],
)
def test_generators_reject_bad_arguments(call, match):
    with pytest.raises(DatasetError, match=match):
        call()


# --------------------------------------------------------------------------- files


def _bits_equal(a: Dataset, b: Dataset) -> bool:
    return a.X.tobytes() == b.X.tobytes() and np.array_equal(a.y, b.y)


unique_x = st.lists(
    st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=30, unique=True
).filter(lambda xs: len(set(xs)) == len(xs))  # -0.0 == 0.0 would be merged


@settings(max_examples=40, deadline=None, derandomize=True)
@given(xs=unique_x, data=st.data())
def test_csv_and_npz_round_trips_are_exact_1d(tmp_path_factory, xs, data):
    y = data.draw(st.lists(st.sampled_from([-1, 1]), min_size=len(xs), max_size=len(xs)))
    ds = Dataset(np.array(xs), np.array(y), {"generator": "user", "note": "hypothesis"})
    folder = tmp_path_factory.mktemp("rt")
    for name in ("d.csv", "d.npz"):
        back = load_dataset(save_dataset(ds, folder / name))
        assert _bits_equal(back, ds)
        assert back.meta == ds.meta


def test_round_trips_exact_in_higher_dimension(tmp_path):
    ds = noisy_constant(50, 3, 0.3, seed=9, distribution="gaussian")
    for name in ("d.csv", "d.npz"):
        back = load_dataset(save_dataset(ds, tmp_path / name))
        assert _bits_equal(back, ds) and back.meta == ds.meta
    assert (tmp_path / "d.csv").read_text().splitlines()[0] == "x1,x2,x3,y"
    assert json.loads(sidecar_path(tmp_path / "d.csv").read_text())["seed"] == 9


def test_hand_written_csv(tmp_path):
    # byte-order mark, spaces, '+1', '1.0', blank lines and the header x1,y are all accepted
    path = tmp_path / "hand.csv"
    path.write_text("\ufeffx1, y\n0.25, +1\n\n 0.75 ,-1\n1e-1,1.0\n\n", encoding="utf-8")
    ds = load_dataset(path)
    assert ds.x.tolist() == [0.25, 0.75, 0.1] and ds.y.tolist() == [1, -1, 1]
    assert ds.meta == {}  # no sidecar


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty file"),
        ("x,y\n", "no data rows"),
        ("0.1,1\n0.2,1\n", "line 1: header '0.1,1'"),
        ("x,label\n0.1,1\n", "line 1: header"),
        ("x1,x3,y\n0.1,0.2,1\n", "line 1: header"),
        ("x,y\n0.1,1\n0.2\n", "line 3: expected 2 fields, got 1"),
        ("x,y\n0.1,1\n0.2,1,7\n", "line 3: expected 2 fields, got 3"),
        ("x,y\n0.1,1\nabc,1\n", "line 3: field 'x' is 'abc', not a number"),
        ("x,y\n0.1,1\n0.2,\n", "line 3: field 'y' is '', not a number"),
        ("x,y\n0.1,1\n\nnan,1\n", "line 4: non-finite value"),
        ("x,y\n0.1,1\ninf,1\n", "line 3: non-finite value"),
        ("x,y\n0.1,1\n0.2,0\n", "line 3: label '0' must be \\+1 or -1"),
        ("x,y\n0.1,1\n0.2,2\n", "line 3: label '2'"),
        ("x,y\n0.1,1\n0.5,1\n\n0.5,-1\n", "lines 3 and 5: points 1 and 2 both have x = 0.5"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(path)
    assert str(info.value).startswith(str(path))


def test_bad_npz(tmp_path):
    np.savez(tmp_path / "noy.npz", X=np.zeros(3))
    with pytest.raises(DatasetError, match=r"needs arrays 'X' and 'y', found \['X'\]") as info:
        load_dataset(tmp_path / "noy.npz")
    assert str(info.value).count(str(tmp_path / "noy.npz")) == 1  # named once, not nested
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="junk.npz: not a readable NPZ file"):
        load_dataset(tmp_path / "junk.npz")
    np.savez(tmp_path / "obj.npz", X=np.array([0.1, None], dtype=object), y=np.ones(2))
    with pytest.raises(DatasetError, match="obj.npz: not a readable NPZ file"):
        load_dataset(tmp_path / "obj.npz")
    np.savez(tmp_path / "lab.npz", X=np.array([0.1, 0.2]), y=np.array([1, 3]))
    with pytest.raises(DatasetError, match="lab.npz: label at index 1 is 3"):
        load_dataset(tmp_path / "lab.npz")
    np.savez(tmp_path / "dup.npz", X=np.array([0.1, 0.2, 0.1]), y=np.array([1, 1, -1]))
    with pytest.raises(DatasetError, match="dup.npz: points 0 and 2"):
        load_dataset(tmp_path / "dup.npz")


def test_file_errors(tmp_path):
    with pytest.raises(DatasetError, match="missing.csv: no such file"):
        load_dataset(tmp_path / "missing.csv")
    with pytest.raises(DatasetError, match="unknown dataset format '.txt'"):
        load_dataset(tmp_path / "data.txt")
    ds = noisy_constant_1d(5, 0.1, seed=0)
    with pytest.raises(DatasetError, match="unknown dataset format"):
        save_dataset(ds, tmp_path / "data.txt")
    with pytest.raises(DatasetError, match="cannot write"):
        save_dataset(ds, tmp_path / "no" / "such" / "dir.csv")
    path = save_dataset(ds, tmp_path / "ok.csv")
    sidecar_path(path).write_text('{"seed": 1,\n "p": }')
    with pytest.raises(DatasetError, match=r"ok.csv.meta.json, line 2: invalid JSON"):
        load_dataset(path)
    sidecar_path(path).write_text("[1, 2]")
    with pytest.raises(DatasetError, match="metadata must be a JSON object"):
        load_dataset(path)


def test_interval_or_support_precedence_and_validation():
    ds = noisy_constant_1d(5, 0.0, seed=0, interval=(-2, 3))
    assert interval_or_support((1, 4), ds) == (1.0, 4.0)  # explicit wins
    assert interval_or_support(None, ds) == (-2.0, 3.0)  # else the recorded support
    assert interval_or_support(None, Dataset([0.1, 0.2], [1, 1])) == (0.0, 1.0)  # else [0, 1]
    assert interval_or_support() == (0.0, 1.0)
    with pytest.raises(InputError, match="a < b"):
        interval_or_support((3, 1), ds)
    with pytest.raises(InputError, match="two numbers"):
        interval_or_support(5, ds)
