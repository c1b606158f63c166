"""Exact 1-D clean error against hand-computed networks and Monte Carlo; Monte Carlo in d > 1.

Expected values are worked out by hand in the comments (or are closed forms such as Phi(0.5)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kktsolver.clean_error import (
    MonteCarloEstimate,
    clean_error,
    clean_error_mc,
    nonpositive_intervals,
    wilson_interval,
)
from kktsolver.errors import InputError
from kktsolver.network import ReLUNetwork

CONST = (0.0, 1.0)  # (w, b) of a constant neuron: relu(0 x + 1) = 1


def net1d(*neurons: tuple[float, float, float]) -> ReLUNetwork:
    """Network from (v, w, b) triples."""
    v, w, b = zip(*neurons, strict=True)
    return ReLUNetwork(np.array(v), np.array(w)[:, None], np.array(b))


HAND_CASES = [
    # relu(x - 0.3): identically 0 on [0, 0.3] (counts fully), positive after
    ("zero piece counts fully", net1d((1, 1, -0.3)), CONST, 0.3),
    # relu(x - 0.3) - 0.2 <= 0  iff  x <= 0.5
    ("ramp minus constant", net1d((1, 1, -0.3), (-0.2, *CONST)), CONST, 0.5),
    # V: 2|x - 0.5| - 0.4 <= 0  iff  |x - 0.5| <= 0.2
    ("V", net1d((2, 1, -0.5), (2, -1, 0.5), (-0.4, *CONST)), CONST, 0.4),
    # the same V on [-2, 2]: the set [0.3, 0.7] has length 0.4 out of 4
    ("V on [-2, 2]", net1d((2, 1, -0.5), (2, -1, 0.5), (-0.4, *CONST)), (-2.0, 2.0), 0.1),
    # all output weights negative: N <= 0 everywhere
    ("all negative", net1d((-1, 1, 0.3), (-2, -1, 0.1)), CONST, 1.0),
    # relu(x + 1) >= 1 on [0, 1]
    ("all positive", net1d((1, 1, 1)), CONST, 0.0),
    # kinks at -2, 5, -3 all outside [0, 1]: N = 0.5 (x + 2) - 1.1 = 0.5 x - 0.1 there
    (
        "kinks outside",
        net1d((0.5, 1, 2), (-1.1, *CONST), (3, 1, -5), (-7, -1, -3)),
        CONST,
        0.2,
    ),
    # tiny slopes put the kinks at -1e300 or overflow them to -inf / +inf
    ("kink at -1e300", net1d((1, 1e-300, 1), (-0.5, *CONST)), CONST, 0.0),
    ("kink overflows to -inf", net1d((1, 5e-324, 1), (-0.5, *CONST)), CONST, 0.0),
    ("kink overflows to +inf", net1d((1, 5e-324, -1), (-0.5, *CONST)), CONST, 1.0),
    # zero network: N = 0 <= 0 everywhere
    ("zero network", net1d((0, 1, 0)), CONST, 1.0),
    # two neurons cancel exactly, leaving relu(0.6 - x): zero on [0.6, 1]
    ("cancellation", net1d((1, 1, -0.3), (-1, 1, -0.3), (1, -1, 0.6)), CONST, 0.4),
    # |x - 0.5| touches zero at one point: measure zero
    ("touching zero", net1d((1, 1, -0.5), (1, -1, 0.5)), CONST, 0.0),
    # three neurons share the kink 0.5: N = 0.5 - 2 relu(x - 0.5) <= 0 iff x >= 0.75
    ("shared kink", net1d((1, 1, -0.5), (-3, 1, -0.5), (0.5, *CONST)), CONST, 0.25),
    # kinks exactly at both ends: N = x - 0.5 on [0, 1]
    ("kinks at the ends", net1d((1, 1, 0), (-1, 1, -1), (-0.5, *CONST)), CONST, 0.5),
    # relu(0.7 - x) - 0.1 <= 0 iff x >= 0.6
    ("decreasing crossing", net1d((1, -1, 0.7), (-0.1, *CONST)), CONST, 0.4),
    # g = ||x - 0.5| - 0.25| - 0.1 = 10.15 - relu(x + 10) + 2 relu(x - .25) - 2 relu(x - .5)
    #     + 2 relu(x - .75) on [0, 1]; g <= 0 on [0.15, 0.35] and [0.65, 0.85]
    (
        "W shape, four crossings",
        net1d((10.15, *CONST), (-1, 1, 10), (2, 1, -0.25), (-2, 1, -0.5), (2, 1, -0.75)),
        CONST,
        0.4,
    ),
]


@pytest.mark.parametrize(
    "net, interval, expected", [c[1:] for c in HAND_CASES], ids=[c[0] for c in HAND_CASES]
)
def test_exact_clean_error_hand_computed(net, interval, expected):
    assert clean_error(net, interval) == pytest.approx(expected, abs=1e-12)


def test_nonpositive_intervals_hand_computed():
    w_shape = HAND_CASES[-1][1]
    got = nonpositive_intervals(w_shape)
    assert len(got) == 2
    np.testing.assert_allclose(got, [(0.15, 0.35), (0.65, 0.85)], atol=1e-12)
    # two pieces (kink at 0.5 inside the set) are joined into one interval
    v_net = HAND_CASES[2][1]
    np.testing.assert_allclose(nonpositive_intervals(v_net), [(0.3, 0.7)], atol=1e-12)
    assert nonpositive_intervals(net1d((1, 1, -0.5), (1, -1, 0.5))) == []  # isolated zero
    assert nonpositive_intervals(net1d((-1, *CONST)), (2.0, 3.0)) == [(2.0, 3.0)]


def test_exact_accepts_piecewise_linear_form():
    net = net1d((2, 1, -0.5), (2, -1, 0.5), (-0.4, *CONST))
    assert clean_error(net.piecewise_linear()) == pytest.approx(0.4, abs=1e-12)


@pytest.mark.parametrize(
    "interval", [(1.0, 0.0), (0.5, 0.5), (0.0, math.inf), (math.nan, 1.0), (0.0,), "ab"]
)
def test_exact_rejects_bad_interval(interval):
    with pytest.raises(InputError, match="interval"):
        clean_error(net1d((1, 1, 0)), interval)


def test_exact_rejects_d_greater_than_one():
    net = ReLUNetwork([1.0], [[1.0, 2.0]], [0.0])
    with pytest.raises(InputError, match="d = 2"):
        clean_error(net)


# --------------------------------------------------------------------------- Monte Carlo

# magnitudes below 1e-6 are excluded: products of two such parameters underflow towards the
# subnormal range, where balancing (a square root of |v| * |(w, b)|) loses the sign of a neuron.
finite = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False).filter(
    lambda x: abs(x) >= 1e-6
)
# zeros on purpose: constant neurons (w = 0), neurons through the origin, silent neurons (v = 0)
param = st.one_of(finite, st.just(0.0))


@st.composite
def random_net_1d(draw):
    n = draw(st.integers(1, 6))
    v = [draw(param) for _ in range(n)]
    w = [draw(param) for _ in range(n)]
    b = [draw(param) for _ in range(n)]
    return ReLUNetwork(v, w, b)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    net=random_net_1d(),
    a=st.floats(-1.0, 1.0),
    length=st.floats(0.1, 3.0),
)
def test_exact_agrees_with_monte_carlo(net, a, length):
    interval = (a, a + length)
    exact = clean_error(net, interval)
    parts = nonpositive_intervals(net, interval)
    assert sum(hi - lo for lo, hi in parts) == pytest.approx(exact * length, abs=1e-12)
    assert all(a <= lo < hi <= a + length for lo, hi in parts)
    mc = clean_error_mc(net, 10**6, seed=12345, interval=interval, progress=False)
    sigma = math.sqrt(exact * (1 - exact) / mc.n_samples)
    assert abs(mc.estimate - exact) <= 5 * sigma + 1e-6  # 1e-6 = one sample when exact is 0 or 1


def test_mc_gaussian_and_sphere_against_closed_forms():
    # N(x) = relu(x_1) - 0.5 <= 0 iff x_1 <= 0.5.
    # Gaussian: Phi(0.5). Sphere in R^3: x_1 is Uniform[-1, 1] (Archimedes), so 0.75.
    net = ReLUNetwork([1.0, -0.5], [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [0.0, 1.0])
    phi = 0.5 * (1 + math.erf(0.5 / math.sqrt(2)))
    for dist, truth in (("gaussian", phi), ("sphere", 0.75)):
        mc = clean_error_mc(net, 4 * 10**5, seed=7, distribution=dist, progress=False)
        sigma = math.sqrt(truth * (1 - truth) / mc.n_samples)
        assert abs(mc.estimate - truth) <= 5 * sigma
        assert mc.ci_low < truth < mc.ci_high
        assert mc.distribution == dist and mc.support is None


def test_mc_default_distribution_in_high_dimension_is_sphere():
    net = ReLUNetwork([1.0], [[1.0, 0.0]], [0.0])  # relu(x_1) <= 0 iff x_1 <= 0: probability 1/2
    mc = clean_error_mc(net, 10**5, seed=3, progress=False)
    assert mc.distribution == "sphere"
    assert abs(mc.estimate - 0.5) <= 5 * math.sqrt(0.25 / 10**5)


def test_mc_is_reproducible_and_records_its_seed():
    net = net1d((2, 1, -0.5), (2, -1, 0.5), (-0.4, *CONST))
    a = clean_error_mc(net, 10**4, seed=5, progress=False)
    b = clean_error_mc(net, 10**4, seed=5, progress=False)
    assert a.estimate == b.estimate
    # the chunk size bounds memory only; it must not change the draw
    c = clean_error_mc(net, 10**4, seed=5, chunk_size=999, progress=False)
    assert c.estimate == a.estimate
    fresh = clean_error_mc(net, 10**4, seed=None, progress=False)
    assert isinstance(fresh.seed, int)
    again = clean_error_mc(net, 10**4, seed=fresh.seed, progress=False)
    assert again.estimate == fresh.estimate


def test_mc_result_fields():
    net = net1d((-1, *CONST))  # N = -1: every sample is an error
    mc = clean_error_mc(net, 100, seed=0, progress=False)
    assert isinstance(mc, MonteCarloEstimate)
    assert (mc.estimate, mc.stderr, mc.n_samples, mc.seed) == (1.0, 0.0, 100, 0)
    # Wilson interval at k = n: lower end 1 - (z^2/n) / (1 + z^2/n)
    z2n = 1.959963984540054**2 / 100
    assert mc.ci_low == pytest.approx(1 - z2n / (1 + z2n), rel=1e-12)
    assert mc.ci_high == 1.0
    d = mc.to_dict()
    assert d["support"] == [0.0, 1.0] and d["estimate"] == 1.0
    with pytest.raises(AttributeError):
        mc.estimate = 0.0  # frozen


def test_wilson_interval_hand_values():
    # k = 0: [0, (z^2/n) / (1 + z^2/n)]
    lo, hi = wilson_interval(0, 100)
    z2n = 1.959963984540054**2 / 100
    assert lo == 0.0 and hi == pytest.approx(z2n / (1 + z2n), rel=1e-12)
    # symmetric around 1/2 at k = n/2
    lo, hi = wilson_interval(50, 100)
    assert lo + hi == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 2.5}, "n_samples"),
        ({"seed": -1}, "seed"),
        ({"distribution": "cube"}, "distribution"),
        ({"interval": (1.0, 0.0)}, "interval"),
    ],
)
def test_mc_rejects_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        clean_error_mc(net1d((1, 1, 0)), **{"n_samples": 10, **kwargs})


def test_mc_uniform_needs_one_dimension():
    with pytest.raises(InputError, match="d = 1"):
        clean_error_mc(ReLUNetwork([1.0], [[1.0, 0.0]], [0.0]), 10, distribution="uniform")


@settings(max_examples=40, deadline=None, derandomize=True)
@given(net=random_net_1d(), c=st.floats(0.1, 10.0))
def test_exact_invariant_under_function_preserving_maps(net, c):
    # balancing, merging, permuting and positive scaling (N -> c^2 N) keep the sign of N
    e = clean_error(net)
    for other in (
        net.balanced(),
        net.merged(),
        net.permuted(np.arange(net.n)[::-1]),
        net.scaled(c),
    ):
        assert clean_error(other) == pytest.approx(e, abs=1e-9)
