"""ReLUNetwork: function-preserving transformations, theta/JSON round trips, 1-D form, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kktsolver.data import Dataset
from kktsolver.errors import InputError
from kktsolver.network import (
    NetworkError,
    PiecewiseLinear,
    ReLUNetwork,
    load_network,
    require_compatible,
    save_network,
)

# magnitudes below 1e-6 are excluded: products of two such parameters underflow towards the
# subnormal range, where balancing (a square root of |v| * |(w, b)|) loses the sign of a neuron.
finite = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False).filter(
    lambda x: abs(x) >= 1e-6
)
param = st.one_of(finite, st.just(0.0))


@st.composite
def networks(draw, d=None, max_n=6):
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, 3)) if d is None else d
    v = np.array([draw(param) for _ in range(n)])
    W = np.array([[draw(param) for _ in range(d)] for _ in range(n)])
    b = np.array([draw(param) for _ in range(n)])
    return ReLUNetwork(v, W, b)


def probe(d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3, 3, size=(200, d))


def reference(net: ReLUNetwork, X: np.ndarray) -> np.ndarray:
    """N(x) written out neuron by neuron, independently of the vectorised __call__."""
    out = np.zeros(len(X))
    for j in range(net.n):
        out += net.v[j] * np.maximum(X @ net.W[j] + net.b[j], 0.0)
    return out


def test_evaluation_hand_computed():
    # N(x) = 2 relu(x - 0.5) - relu(-x) + 3 relu(1):  N(1) = 1 + 0 + 3, N(-2) = 0 - 2 + 3
    net = ReLUNetwork([2.0, -1.0, 3.0], [1.0, -1.0, 0.0], [-0.5, 0.0, 1.0])
    assert net(np.array([1.0, -2.0, 0.25])).tolist() == [4.0, 1.0, 3.0]
    assert net.margins(np.array([1.0, -2.0]), np.array([-1, 1])).tolist() == [-4.0, 1.0]
    # objective 1/2 (4 + 1 + 9 + 1 + 1 + 0 + 0.25 + 0 + 1)
    assert net.objective() == pytest.approx(0.5 * 17.25)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(net=networks())
def test_vectorised_evaluation_matches_neuron_sum(net):
    X = probe(net.d)
    np.testing.assert_allclose(net(X), reference(net, X), rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(net=networks())
def test_balanced_preserves_function_and_equalises(net):
    bal = net.balanced()
    X = probe(net.d)
    np.testing.assert_allclose(bal(X), net(X), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.abs(bal.v), bal.neuron_norms(), rtol=1e-12, atol=0)
    assert bal.is_balanced()
    # balanced objective is sum_j |v_j| ||(w_j, b_j)||  <=  the original (AM-GM)
    expected = float(np.sum(np.abs(net.v) * net.neuron_norms()))
    assert bal.objective() == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert bal.objective() <= net.objective() * (1 + 1e-12)


def test_balanced_zeroes_silent_neurons():
    net = ReLUNetwork([0.0, 2.0, 4.0], [[3.0], [0.0], [1.0]], [1.0, 0.0, 0.0])
    bal = net.balanced()
    # neuron 0 has v = 0 and neuron 1 has (w, b) = 0: both become entirely zero
    assert bal.v[:2].tolist() == [0.0, 0.0] and bal.W[:2, 0].tolist() == [0.0, 0.0]
    # neuron 2: |v| = ||(w, b)|| = sqrt(4 * 1) = 2
    assert (bal.v[2], bal.W[2, 0]) == pytest.approx((2.0, 2.0))
    assert not net.is_balanced() and bal.is_balanced()


@st.composite
def networks_with_duplicates(draw):
    """A network with distinct directions plus positive rescalings of some of its neurons."""
    base = draw(networks(max_n=4))
    k = draw(st.integers(1, 4))
    picks = [draw(st.integers(0, base.n - 1)) for _ in range(k)]
    cw = np.array([draw(st.floats(0.1, 5.0)) for _ in range(k)])
    cv = np.array([draw(st.floats(0.1, 5.0)) for _ in range(k)])
    v = np.concatenate([base.v, cv * base.v[picks]])
    W = np.vstack([base.W, cw[:, None] * base.W[picks]])
    b = np.concatenate([base.b, cw * base.b[picks]])
    return base, ReLUNetwork(v, W, b)


def _distinct_live_classes(net: ReLUNetwork) -> int:
    """Number of (unit direction, sign) classes among neurons that are not identically zero."""
    keys = set()
    for j in range(net.n):
        nrm = np.hypot(np.linalg.norm(net.W[j]), net.b[j])
        dead = not np.any(net.W[j]) and net.b[j] <= 0
        if net.v[j] == 0 or nrm == 0 or dead:
            continue
        e = np.append(net.W[j], net.b[j]) / nrm
        keys.add((np.sign(net.v[j]), *np.round(e, 9)))
    return len(keys)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(pair=networks_with_duplicates())
def test_merged_preserves_function_and_does_not_increase_objective(pair):
    base, net = pair
    merged = net.merged(rtol=1e-9)
    X = probe(net.d, seed=1)
    scale = 1 + np.max(np.abs(net(X)))
    np.testing.assert_allclose(merged(X), net(X), rtol=1e-9, atol=1e-9 * scale)
    assert merged.objective() <= net.objective() * (1 + 1e-12) + 1e-300
    assert merged.is_balanced()
    assume(_distinct_live_classes(net) > 0)
    assert merged.n == _distinct_live_classes(net)


def test_merged_hand_example():
    # relu(x - 1) and 3 relu(2x - 2) = 6 relu(x - 1) are the same neuron with mass 1*sqrt(2) +
    # 3*sqrt(8) = 7 sqrt(2); the other neuron has a different sign and stays.
    net = ReLUNetwork([1.0, 3.0, -1.0], [[1.0], [2.0], [1.0]], [-1.0, -2.0, -1.0])
    m = net.merged()
    assert m.n == 2
    x = np.linspace(-2, 4, 13)
    np.testing.assert_allclose(m(x), 6 * np.maximum(x - 1, 0), atol=1e-12)
    assert m.objective() == pytest.approx(7 * np.sqrt(2) + np.sqrt(2))


def test_merged_of_zero_network_is_one_zero_neuron():
    net = ReLUNetwork([0.0, 1.0], [[0.0], [0.0]], [1.0, -2.0])
    m = net.merged()
    assert m.n == 1 and m.objective() == 0.0


def test_pruned_drops_zero_and_dead_neurons():
    # neuron 1: v = 0; neuron 2: w = 0, b < 0 (relu(-1) = 0 everywhere); neuron 3: constant 2
    net = ReLUNetwork([1.0, 0.0, 5.0, 2.0], [[1.0], [1.0], [0.0], [0.0]], [0.0, 1.0, -1.0, 1.0])
    p = net.pruned()
    assert p.n == 2
    x = np.linspace(-2, 2, 9)
    np.testing.assert_array_equal(p(x), net(x))
    # atol: drop neurons with |v| ||(w, b)|| <= atol (here the relu(x) neuron, mass 1)
    assert net.pruned(atol=1.5).n == 1


@settings(max_examples=30, deadline=None, derandomize=True)
@given(net=networks())
def test_theta_round_trip_is_exact(net):
    theta = net.theta
    assert theta.shape == (net.n * (net.d + 2),)
    back = ReLUNetwork.from_theta(theta, net.n, net.d)
    for a, b in ((back.v, net.v), (back.W, net.W), (back.b, net.b)):
        assert a.tobytes() == b.tobytes()
    assert 0.5 * theta @ theta == pytest.approx(net.objective())


def test_from_theta_rejects_wrong_length():
    with pytest.raises(NetworkError, match="expected n \\(d \\+ 2\\) = 6"):
        ReLUNetwork.from_theta(np.zeros(7), 2, 1)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(net=networks(), c=st.floats(0.1, 10.0))
def test_scaling_is_two_homogeneous_and_permutation_invariant(net, c):
    X = probe(net.d)
    np.testing.assert_allclose(net.scaled(c)(X), c * c * net(X), rtol=1e-10, atol=1e-10)
    perm = np.arange(net.n)[::-1]
    np.testing.assert_allclose(net.permuted(perm)(X), net(X), rtol=1e-12, atol=1e-12)
    padded = net.padded(net.n + 2)
    assert padded.n == net.n + 2
    np.testing.assert_allclose(padded(X), net(X), rtol=1e-14, atol=1e-14)


def test_permuted_rejects_non_permutation():
    net = ReLUNetwork([1.0, 2.0], [1.0, 1.0], [0.0, 0.0])
    with pytest.raises(NetworkError, match="permutation"):
        net.permuted([0, 0])


# --------------------------------------------------------------------------- 1-D form


@settings(max_examples=40, deadline=None, derandomize=True)
@given(net=networks(d=1))
def test_piecewise_linear_matches_network(net):
    pl = net.piecewise_linear()
    assert isinstance(pl, PiecewiseLinear)
    assert np.all(np.diff(pl.kinks) >= 0) and pl.n_pieces == pl.kinks.size + 1
    fin = np.isfinite(pl.kinks)
    x = np.concatenate([np.linspace(-5, 5, 101), pl.kinks[fin]])
    # |N(x)| <= sum_j |v_j| ||(w_j, b_j)|| (1 + |x|): rounding is relative to that
    mass = float(np.sum(np.abs(net.v) * net.neuron_norms()))
    tol = 1e-12 * mass * (1 + np.abs(x))
    assert np.all(np.abs(pl(x) - net(x)) <= tol)
    assert np.all(np.abs(pl.values[fin] - net(pl.kinks[fin])) <= tol[101:])


def test_piecewise_linear_hand_example():
    # N = relu(x) - 2 relu(x - 1) + relu(-x + 2): kinks 0, 1, 2
    net = ReLUNetwork([1.0, -2.0, 1.0], [1.0, 1.0, -1.0], [0.0, -1.0, 2.0])
    pl = net.piecewise_linear()
    assert pl.kinks.tolist() == [0.0, 1.0, 2.0]
    # slopes: (-inf, 0): -1;  (0, 1): 0;  (1, 2): -2;  (2, inf): -1
    assert pl.slopes.tolist() == [-1.0, 0.0, -2.0, -1.0]
    # N(0) = 2, N(1) = 2, N(2) = 0
    assert pl.values.tolist() == [2.0, 2.0, 0.0]


def test_piecewise_linear_needs_1d():
    with pytest.raises(NetworkError, match="d = 1"):
        ReLUNetwork([1.0], [[1.0, 1.0]], [0.0]).piecewise_linear()


# --------------------------------------------------------------------------- JSON files

AWKWARD = [1 / 3, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, -2.5, 0.1 + 0.2]


def test_json_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    for d in (1, 3):
        net = ReLUNetwork(AWKWARD, rng.standard_normal((7, d)), AWKWARD[::-1])
        path = save_network(net, tmp_path / f"net{d}.json")
        back = load_network(path)
        for a, b in ((back.v, net.v), (back.W, net.W), (back.b, net.b)):
            assert a.tobytes() == b.tobytes()


def test_hand_written_json_flat_and_column_w(tmp_path):
    # the example of docs/formats.md:
    # N(x) = relu(x - 0.5) + relu(0.5 - x) - 0.2 relu(1) = |x - .5| - .2
    text = '{"v": [1.0, 1.0, -0.2], "W": [[1.0], [-1.0], [0.0]], "b": [-0.5, 0.5, 1.0]}'
    (tmp_path / "col.json").write_text(text)
    (tmp_path / "flat.json").write_text(text.replace("[[1.0], [-1.0], [0.0]]", "[1.0, -1.0, 0.0]"))
    for name in ("col.json", "flat.json"):
        net = load_network(tmp_path / name)
        assert (net.n, net.d) == (3, 1)
        np.testing.assert_allclose(net(np.array([0.0, 0.5, 0.9])), [0.3, -0.2, 0.2], atol=1e-15)


def test_to_dict_shape():
    net = ReLUNetwork([1.0, 2.0], [3.0, 4.0], [5.0, 6.0])
    assert net.to_dict() == {"v": [1.0, 2.0], "W": [[3.0], [4.0]], "b": [5.0, 6.0]}
    assert json.loads(json.dumps(net.to_dict())) == net.to_dict()


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"v": [1], "W": [[1]]}', r"missing key\(s\) \['b'\]"),
        ('{"v": [1, 2], "W": [[1], [2]], "b": [0]}', "inconsistent widths"),
        ('{"v": [1, 2, 3], "W": [[1, 2, 3]], "b": [0, 0, 0]}', "one row per neuron"),
        ('{"v": [1, NaN], "W": [1, 2], "b": [0, 0]}', r"non-finite value in v at index \(1,\)"),
        ('{"v": [1, 2], "W": [[1], [2, 3]], "b": [0, 0]}', "W must be a numeric array"),
        ('{"v": [1], "W": [["a"]], "b": [0]}', "W must be a numeric array"),
        ('{"v": [], "W": [], "b": []}', "no neurons"),
        ("[1, 2, 3]", "JSON object"),
        ('{"v": [1],\n "W": [1]\n "b": [0]}', "line 3: invalid JSON"),
    ],
)
def test_bad_network_files(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(NetworkError, match=match) as info:
        load_network(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, InputError)


def test_missing_network_file(tmp_path):
    with pytest.raises(NetworkError, match="nope.json: no such file"):
        load_network(tmp_path / "nope.json")


def test_save_network_to_missing_directory(tmp_path):
    with pytest.raises(NetworkError, match="cannot write"):
        save_network(ReLUNetwork([1.0], [1.0], [0.0]), tmp_path / "no" / "net.json")


def test_inputs_of_wrong_dimension():
    with pytest.raises(NetworkError, match="d = 2"):
        ReLUNetwork([1.0], [[1.0, 1.0]], [0.0])(np.zeros((3, 3)))


def test_require_compatible_names_the_argument_and_what_was_expected():
    net2 = ReLUNetwork([1.0], [[1.0, 0.0]], [0.0])  # input dimension 2
    require_compatible(net2, Dataset(np.eye(2), [1, -1]))  # same d: no error
    with pytest.raises(InputError, match=r"^network must be a kktsolver.ReLUNetwork, got dict$"):
        require_compatible({"v": [1.0]}, Dataset(np.eye(2), [1, -1]))
    with pytest.raises(InputError, match=r"^dataset must be a kktsolver.Dataset, got ndarray$"):
        require_compatible(net2, np.eye(2))
    with pytest.raises(
        InputError,
        match=r"^data.csv has input dimension d = 1, but net.json takes inputs of dimension d = 2$",
    ):
        require_compatible(net2, Dataset([0.0, 1.0], [1, -1]), ("net.json", "data.csv"))


def test_accurate_margins_match_rational_arithmetic():
    """Cancelling neurons (|v w| ~ 1e7 .. 1e8, kinks among the points, as in clustered max-margin
    optima): the accurate margins are the correctly rounded exact values of the float64
    parameters' margins, computed in rational arithmetic here."""
    from fractions import Fraction

    rng = np.random.default_rng(3)
    m, n = 40, 60
    x = 0.3 + 1e-3 * rng.random(m)
    t = 0.3 + 1e-3 * rng.random(n)  # kinks among the points
    w = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(3, 4, n)
    net = ReLUNetwork(rng.normal(size=n) * 1e4, w[:, None], -w * t)
    y = np.ones(m)
    exact = np.array(
        [
            float(
                sum(
                    Fraction(vj) * (Fraction(wj) * Fraction(xi) + Fraction(bj))
                    for vj, wj, bj in zip(net.v, net.W[:, 0], net.b, strict=True)
                    if Fraction(wj) * Fraction(xi) + Fraction(bj) > 0
                )
            )
            for xi in x
        ]
    )
    acc = net.accurate_margins(x[:, None], y)
    plain = net.margins(x[:, None], y)
    # math.fsum of exact float64 parts is the correctly rounded sum: identical to the rounded
    # rational value (a long double sum was off by 7e-12 here, float64 by 6.7e-9)
    np.testing.assert_array_equal(acc, exact)
    assert np.max(np.abs(plain - exact)) > 1e-10  # not vacuous: float64 really errs here


def test_accurate_margins_near_recomputes_only_rows_near_one():
    """near=: rows whose float64 margin is provably farther than near from 1 keep their float64
    value; the rows near 1 are still the exact ones."""
    rng = np.random.default_rng(5)
    n = 40
    t = 0.3 + 1e-3 * rng.random(n)
    w = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(3, 4, n)
    net = ReLUNetwork(rng.normal(size=n) * 1e4, w[:, None], -w * t)
    x = 0.3 + 1e-3 * rng.random(30)
    y = np.ones(30)
    full = net.accurate_margins(x[:, None], y)
    # targets near 1 for half of the rows: shift y so that y N(x) = 1 + tiny there
    scale_rows = np.where(np.arange(30) < 15, 1.0 / full, 1.0)  # rows 0..14 get margin ~1
    y2 = y * scale_rows
    exact = net.accurate_margins(x[:, None], y2)
    near = net.accurate_margins(x[:, None], y2, near=1e-3)
    plain = net.margins(x[:, None], y2)
    np.testing.assert_array_equal(near[:15], exact[:15])
    far = np.abs(plain[15:] - 1) > 1e-2
    assert far.any()
    np.testing.assert_array_equal(near[15:][far], plain[15:][far])
