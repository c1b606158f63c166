"""Twin neurons: a float64 1-D network whose margins match a long-double solution to ~1e-12.

Rounding neurons with slopes ~1e10 to float64 moves the margins by ~1e-7 (docs/scale.md, Limits);
a second, tiny neuron along each neuron's own float64 direction carries the correction exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.sparse.linalg import LinearOperator, lsqr

from .network import ReLUNetwork

__all__ = ["activation_operator", "twin_network", "refine_with_twins"]


def activation_operator(net: ReLUNetwork, x: np.ndarray) -> LinearOperator:
    """G with (G c)_i = sum_j c_j relu(w_j x_i + b_j) for sorted 1-D points x, O(m + n log n).

    A right-facing neuron (w_j > 0) is w_j (x - t_j)_+ and a left-facing one |w_j| (t_j - x)_+,
    t_j = -b_j / w_j, so G c and G^T r are prefix sums over the kinks and the points (float64:
    G only computes corrections, whose relative accuracy ~1e-12 is plenty).
    """
    w, b = net.W[:, 0], net.b
    n = w.size
    right, left, flat = w > 0, w < 0, w == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(w != 0, -b / np.where(w != 0, w, 1.0), 0.0)
    const = np.where(flat, np.maximum(b, 0.0), 0.0)
    r_idx = np.flatnonzero(right)[np.argsort(t[right], kind="stable")]
    l_idx = np.flatnonzero(left)[np.argsort(t[left], kind="stable")]
    tr, tl = t[r_idx], t[l_idx]
    n_r = np.searchsorted(tr, x, side="left")  # right-facing kinks strictly left of x_i
    n_l = np.searchsorted(tl, x, side="right")  # left-facing kinks at or left of x_i
    # points strictly right of each right-facing kink / left of each left-facing kink
    p_r = np.searchsorted(x, tr, side="right")
    p_l = np.searchsorted(x, tl, side="left")

    def matvec(c: np.ndarray) -> np.ndarray:
        c = np.ravel(c)
        a = c[r_idx] * w[r_idx]
        ca = np.r_[0.0, np.cumsum(a)]
        cat = np.r_[0.0, np.cumsum(a * tr)]
        out = x * ca[n_r] - cat[n_r]
        e = c[l_idx] * -w[l_idx]
        se = np.r_[np.cumsum(e[::-1])[::-1], 0.0]
        set_ = np.r_[np.cumsum((e * tl)[::-1])[::-1], 0.0]
        out += set_[n_l] - x * se[n_l]
        return out + float(c @ const)

    def rmatvec(r: np.ndarray) -> np.ndarray:
        r = np.ravel(r)
        out = np.zeros(n)
        s0 = np.r_[np.cumsum(r[::-1])[::-1], 0.0]  # sum_{i >= k} r_i
        s1 = np.r_[np.cumsum((r * x)[::-1])[::-1], 0.0]
        out[r_idx] = w[r_idx] * (s1[p_r] - tr * s0[p_r])
        c0 = np.r_[0.0, np.cumsum(r)]  # sum_{i < k} r_i
        c1 = np.r_[0.0, np.cumsum(r * x)]
        out[l_idx] = -w[l_idx] * (tl * c0[p_l] - c1[p_l])
        return out + const * r.sum()

    return LinearOperator((x.size, n), matvec=matvec, rmatvec=rmatvec, dtype=float)


def twin_network(net: ReLUNetwork, delta: np.ndarray) -> ReLUNetwork:
    """``net`` plus, for every delta_j != 0, a balanced twin computing delta_j relu(w_j x + b_j).

    The twin is (delta_j / c, c w_j, c b_j) with c = sqrt(|delta_j| / ||(w_j, b_j)||): its own
    rounding errs by ~eps |delta_j| only, and its cost |delta_j| ||(w_j, b_j)|| is that of the
    slope it adds.
    """
    nw = net.neuron_norms()
    on = (delta != 0) & (nw > 0)
    c = np.sqrt(np.abs(delta[on]) / nw[on])
    v = np.r_[net.v, delta[on] / c]
    W = np.vstack([net.W, net.W[on] * c[:, None]])
    b = np.r_[net.b, net.b[on] * c]
    return ReLUNetwork(v, W, b)


def refine_with_twins(
    net: ReLUNetwork,
    x: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    target: np.ndarray,
    margins: Callable[[ReLUNetwork], np.ndarray],
    rounds: int = 2,
    iter_lim: int = 1000,
) -> tuple[ReLUNetwork, np.ndarray]:
    """Twins that move the margins y_i N(x_i), i in ``rows``, onto ``target`` (iterative
    refinement).

    Each round: r_i = y_i (target_i - margin_i) with the margins evaluated by ``margins`` (which
    must be accurate: extended precision or exact), the least-norm correction delta of
    G delta = r (LSQR on :func:`activation_operator`, at most ``iter_lim`` iterations) added to
    the twins' coefficients. The directions (w_j, b_j) never change, so neither do the kinks nor
    the activation patterns. LSQR converges slowly (cond(G) ~ 3e8 on two clusters of width 1e-3,
    m = 300: residual 1e-7 -> 3.2e-9 after one round of 200 iterations, 7.4e-10 after two of
    1000, 1.8e-10 after five, in exact evaluation; a Jacobi column scaling made it worse).
    Returns (network with twins, its margins).
    """
    x = np.asarray(x, dtype=float)
    rows = np.asarray(rows, dtype=np.int64)
    G = activation_operator(net, x[rows])
    delta = np.zeros(net.n)
    cur = net
    marg = margins(cur)
    for _ in range(rounds):
        r = y[rows] * (target - marg[rows])
        if not np.any(r):
            break
        # conlim: the default 1e8 stopped LSQR early (cond(G) 3.4e8 on two clusters, m = 300)
        step = lsqr(G, r, atol=1e-15, btol=1e-15, conlim=1e20, iter_lim=iter_lim)[0]
        delta = delta + step
        cur = twin_network(net, delta)
        marg = margins(cur)
    return cur, marg
