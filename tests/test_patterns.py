"""Rounding of block vectors to balanced float64 neurons (patterns.balanced_neurons).

Misses are measured in exact rational arithmetic (fractions.Fraction of the float64 outputs and
inputs), independently of the extended-precision arithmetic that balanced_neurons uses to choose.
"""

from fractions import Fraction

import numpy as np
import pytest

from kktsolver.patterns import Block, balanced_neurons, network_from_blocks


def _random_blocks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    norms = 10.0 ** rng.uniform(-3, 9, n)
    angles = rng.uniform(0, 2 * np.pi, n)
    U = norms[:, None] * np.column_stack([np.cos(angles), np.sin(angles)])
    return U, rng.choice([-1.0, 1.0], n)


def _misses(U, s, v, w, b, x_scale=1.0):
    """|v w - s alpha| x_scale + |v b - s beta| per neuron, exactly."""
    out = []
    for (al, be), sk, vk, wk, bk in zip(U, s, v, w, b, strict=True):
        fv, fs = Fraction(float(vk)), Fraction(float(sk))
        miss = abs(fv * Fraction(float(wk)) - fs * Fraction(float(al))) * Fraction(x_scale)
        out.append(miss + abs(fv * Fraction(float(bk)) - fs * Fraction(float(be))))
    return out


def test_never_worse_than_plain_rounding_and_balanced():
    U, s = _random_blocks(300, seed=0)
    v, w, b = balanced_neurons(U, s)
    v0, w0, b0 = balanced_neurons(U, s, candidates=0)
    chosen, plain = _misses(U, s, v, w, b), _misses(U, s, v0, w0, b0)
    norms = np.linalg.norm(U, axis=1)
    for k in range(len(U)):
        # extended precision (64-bit mantissa) can misorder candidates only within ~1e-19 |u|
        assert chosen[k] <= plain[k] + Fraction(1e-18) * Fraction(float(norms[k]))
    # balance |v| = ||(w, b)|| up to the candidates' ulps: the objective 1/2||theta||^2 per
    # neuron stays ||u|| to ~1e-13 relative (candidates = 64 ulps at most, plus rounding)
    obj = 0.5 * (v**2 + w**2 + b**2)
    assert np.all(np.abs(obj - norms) <= 1e-13 * norms)
    assert np.all(np.sign(v) == s)


def test_total_miss_much_smaller_than_plain_rounding():
    # with 129 candidates per neuron the best of |e1| + |e2| (each about uniform over half an ulp)
    # is typically a tenth of one candidate's; a factor 4 on the total leaves a wide margin
    U, s = _random_blocks(400, seed=1)
    chosen = sum(_misses(U, s, *balanced_neurons(U, s)))
    plain = sum(_misses(U, s, *balanced_neurons(U, s, candidates=0)))
    assert chosen * 4 <= plain


def test_network_margins_follow_the_blocks():
    # giant cancelling neurons (the m = 2000 situation: objective ~1e9, margins O(1)): the
    # network's exact values at the data points against the blocks' exact values
    rng = np.random.default_rng(2)
    x = np.sort(rng.uniform(0, 1, 40))
    blocks, rows = [], []
    for g in range(5, 35, 3):
        c = 10.0 ** rng.uniform(6, 9)
        t = 0.5 * (x[g - 1] + x[g])
        for sign, shift in ((1, 0.0), (-1, 1e-3)):
            blocks.append(Block("right", g, sign))
            rows.append([c * (1 + shift), -c * (1 + shift) * t])
    U = np.array(rows)

    def exact_values(v, w, b):
        params = [tuple(Fraction(float(p)) for p in row) for row in zip(v, w, b, strict=True)]
        vals = []
        for xi in x:
            fx = Fraction(float(xi))
            zs = [(fv, fw * fx + fb) for fv, fw, fb in params]
            vals.append(sum(fv * z for fv, z in zs if z > 0))
        return vals

    target = []
    for i, xi in enumerate(x):
        fx = Fraction(float(xi))
        tot = Fraction(0)
        for blk, (al, be) in zip(blocks, U, strict=True):
            if i in range(len(x))[blk.active(len(x))]:
                tot += blk.sign * (Fraction(float(al)) * fx + Fraction(float(be)))
        target.append(tot)

    def worst(net):
        vals = exact_values(net.v, net.W[:, 0], net.b)
        return max(abs(a - t) for a, t in zip(vals, target, strict=True))

    plain_v, plain_w, plain_b = balanced_neurons(U, [blk.sign for blk in blocks], candidates=0)
    from kktsolver.network import ReLUNetwork

    plain = worst(ReLUNetwork(plain_v, plain_w[:, None], plain_b))
    chosen = worst(network_from_blocks(blocks, U))
    assert plain > 0
    assert chosen * 4 <= plain


@pytest.mark.parametrize("u", [[0.0, 0.0], [3.0, -4.0]])
def test_zero_block_and_simple_block(u):
    v, w, b = balanced_neurons(np.array([u]), [-1.0])
    if np.linalg.norm(u) == 0:
        assert (v[0], w[0], b[0]) == (0.0, 0.0, 0.0)
    else:  # ||u|| = 5: q = sqrt(5) is the only candidate whose products can be exact to rounding
        assert v[0] == pytest.approx(-np.sqrt(5.0), rel=1e-14)
        assert v[0] * w[0] == pytest.approx(-3.0, rel=1e-15)
        assert v[0] * b[0] == pytest.approx(4.0, rel=1e-15)


def test_block_sums_survive_cancelling_multipliers():
    # g_k = sum_{i in A_k} lambda_i y_i x~_i with lambda ~1e9 on pairs of opposite labels 1e-9
    # apart: g_k ~ 1 while the prefix sums reach 1e10. rho and the lower bound sum lambda / max rho
    # inherit any error, so g_k is checked against exact rational sums.
    from kktsolver.data import Dataset
    from kktsolver.patterns import SortedSample, _block_sums, all_blocks

    rng = np.random.default_rng(3)
    base = np.sort(rng.uniform(0.1, 0.9, 20))
    x = np.sort(np.r_[base, base + 1e-9])
    y = np.tile([1.0, -1.0], 20)
    sample = SortedSample.from_dataset(Dataset(x, y))
    lam = np.repeat(10.0 ** rng.uniform(8, 9.5, 20), 2)  # equal on each pair: they cancel
    weights = lam * sample.y
    blocks = all_blocks(sample.m)
    got = _block_sums(blocks, sample, weights)
    xs = [Fraction(float(t)) for t in sample.x]
    wq = [Fraction(float(t)) for t in weights]
    worst = 0.0
    for k, blk in enumerate(blocks):
        idx = range(sample.m)[blk.active(sample.m)]
        g0 = sum((wq[i] * xs[i] for i in idx), Fraction(0))
        g1 = sum((wq[i] for i in idx), Fraction(0))
        worst = max(worst, abs(float(got[k, 0] - g0)), abs(float(got[k, 1] - g1)))
    # float64 prefix sums err by ~eps * 1e10 ~ 1e-6 here; long double by ~5e-20 * 1e10
    assert worst <= 1e-8
