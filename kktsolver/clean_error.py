"""Clean test error L(N) = Pr_x[N(x) <= 0] of a network in the seed setting (target f* = +1).

Exact in 1-D under Uniform[a, b] from the piecewise-linear form; Monte Carlo with a 95% CI in any d.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from .data import check_interval, check_seed, positive_int
from .errors import InputError
from .network import PiecewiseLinear, ReLUNetwork

__all__ = [
    "clean_error",
    "clean_error_mc",
    "MonteCarloEstimate",
    "nonpositive_intervals",
    "nonpositive_length",
    "wilson_interval",
]

#: two-sided 95% standard normal quantile, Phi^{-1}(0.975)
Z95 = 1.959963984540054


def clean_error(
    network: ReLUNetwork | PiecewiseLinear, interval: tuple[float, float] = (0.0, 1.0)
) -> float:
    """Exact clean error for x ~ Uniform[a, b] in 1-D: |{x in [a, b] : N(x) <= 0}| / (b - a).

    Parameters
    ----------
    network : ReLUNetwork with d = 1, or its PiecewiseLinear form
    interval : (a, b), finite with a < b

    Returns
    -------
    float in [0, 1]. No sampling: on each linear piece s x + c meeting [a, b] in [lo, hi] the set
    {N <= 0} is [lo, min(hi, -c/s)] if s > 0, [max(lo, -c/s), hi] if s < 0, and all or nothing if
    s = 0 (a piece where N is identically 0 counts fully; isolated zeros have measure 0). Kinks
    outside [a, b] only select which piece is active at a or b (:func:`nonpositive_intervals`
    lists the set itself).

    Raises
    ------
    InputError
        if d != 1 (use :func:`clean_error_mc`) or the interval is not finite with a < b.
    """
    a, b = check_interval(interval)
    pl = _piecewise_form(network)
    return min(1.0, max(0.0, nonpositive_length(pl, a, b) / (b - a)))


def _nonpositive_pieces(pl: PiecewiseLinear, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Per piece meeting [a, b], the interval [start, end] where it is <= 0 (start <= end).

    Piece k spans (kinks[k-1], kinks[k]); the ones meeting [a, b] are k_lo = #{kinks <= a} ...
    k_hi = #{kinks < b}, and the interior kinks cut [a, b] into [lo_k, hi_k]. Kinks outside
    [a, b] (even infinite ones) are never used as cut points. On a piece s x + c the set {<= 0} is
    [lo, r] if s > 0, [r, hi] if s < 0 (r = -c/s clipped to [lo, hi]), and all or nothing if s = 0.
    """
    k_lo = int(np.searchsorted(pl.kinks, a, side="right"))
    k_hi = int(np.searchsorted(pl.kinks, b, side="left"))
    inner = pl.kinks[k_lo:k_hi]
    lo = np.concatenate([[a], inner])
    hi = np.concatenate([inner, [b]])
    s = pl.slopes[k_lo : k_hi + 1]
    c = pl.intercepts[k_lo : k_hi + 1]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        root = np.clip(-c / s, lo, hi)  # inf for |s| tiny is fine: clip puts it at an end
    flat_in = c <= 0  # s = 0: a piece with N identically 0 (or negative) counts fully
    start = np.where(s > 0, lo, np.where(s < 0, root, np.where(flat_in, lo, hi)))
    end = np.where(s > 0, root, hi)  # an empty flat piece is [hi, hi]
    return start, end


def nonpositive_length(pl: PiecewiseLinear, a: float, b: float) -> float:
    """Lebesgue measure of {x in [a, b] : pl(x) <= 0} for a < b (no validation)."""
    start, end = _nonpositive_pieces(pl, a, b)
    return math.fsum((end - start).tolist())


def nonpositive_intervals(
    network: ReLUNetwork | PiecewiseLinear, interval: tuple[float, float] = (0.0, 1.0)
) -> list[tuple[float, float]]:
    """The maximal closed sub-intervals of [a, b] of positive length where N(x) <= 0 (1-D).

    Same pieces as :func:`clean_error` (their lengths sum to it); pieces that touch are joined.
    Isolated zeros (measure 0) are left out.
    """
    a, b = check_interval(interval)
    start, end = _nonpositive_pieces(_piecewise_form(network), a, b)
    out: list[tuple[float, float]] = []
    for lo, hi in zip(start.tolist(), end.tolist(), strict=True):
        if hi <= lo:
            continue
        if out and out[-1][1] >= lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _piecewise_form(network: ReLUNetwork | PiecewiseLinear) -> PiecewiseLinear:
    if isinstance(network, PiecewiseLinear):
        return network
    if not isinstance(network, ReLUNetwork):
        raise InputError(f"expected a ReLUNetwork, got {type(network).__name__}")
    if network.d != 1:
        raise InputError(
            f"the exact clean error needs d = 1, the network has d = {network.d}; "
            "use clean_error_mc (Monte Carlo) in higher dimension"
        )
    return network.piecewise_linear()


@dataclass(frozen=True)
class MonteCarloEstimate:
    """Monte Carlo estimate of the clean error Pr[N(x) <= 0].

    Attributes
    ----------
    estimate : k / n, the fraction of the n samples with N(x) <= 0
    stderr : sqrt(estimate (1 - estimate) / n), the plug-in binomial standard error
    ci_low, ci_high : Wilson score interval at level ``confidence`` (it stays inside [0, 1] and is
        not degenerate when k = 0 or k = n):
        (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.96
    n_samples : n
    seed : the seed of ``np.random.default_rng`` (drawn from OS entropy and recorded when the
        caller passed None), so every estimate can be reproduced
    distribution : "uniform" (1-D, on ``support``), "sphere" or "gaussian" (as data.noisy_constant)
    support : (a, b) for "uniform", else None
    confidence : level of the interval (0.95)
    seconds : wall-clock time
    """

    estimate: float
    stderr: float
    ci_low: float
    ci_high: float
    n_samples: int
    seed: int
    distribution: str = "uniform"
    support: tuple[float, float] | None = None
    confidence: float = 0.95
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Plain JSON values."""
        out = asdict(self)
        out["support"] = None if self.support is None else list(self.support)
        return out


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n (see :class:`MonteCarloEstimate`)."""
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the exact ends at k = 0 and k = n, which rounding would otherwise miss by ~1e-18
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def clean_error_mc(
    network: ReLUNetwork,
    n_samples: int = 10**6,
    seed: int | None = None,
    distribution: str | None = None,
    interval: tuple[float, float] = (0.0, 1.0),
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> MonteCarloEstimate:
    """Monte Carlo clean error: the fraction of n i.i.d. inputs x with N(x) <= 0, with a 95% CI.

    Parameters
    ----------
    network : ReLUNetwork, any d
    n_samples : number of inputs drawn
    seed : seed of ``np.random.default_rng``; None draws one from OS entropy and records it
    distribution : "uniform" on ``interval`` (d = 1 only; the default in 1-D), "sphere" (uniform on
        the unit sphere; the default for d > 1) or "gaussian" (standard normal), the input laws of
        :func:`kktsolver.data.noisy_constant_1d` and :func:`kktsolver.data.noisy_constant`
    interval : (a, b) for "uniform"
    chunk_size : inputs per batch; default keeps each batch's (chunk x width) preactivations near
        32 MB, so memory is bounded whatever n_samples is
    progress : tqdm bar on stderr; None shows it only on a terminal

    Returns
    -------
    MonteCarloEstimate
    """
    if not isinstance(network, ReLUNetwork):
        raise InputError(f"expected a ReLUNetwork, got {type(network).__name__}")
    n = positive_int(n_samples, "n_samples")
    d = network.d
    if distribution is None:
        distribution = "uniform" if d == 1 else "sphere"
    if distribution not in ("uniform", "sphere", "gaussian"):
        raise InputError(
            f"distribution must be 'uniform', 'sphere' or 'gaussian', got {distribution!r}"
        )
    if distribution == "uniform" and d != 1:
        raise InputError(
            f"distribution 'uniform' (on an interval) needs d = 1, the network has d = {d}"
        )
    support = check_interval(interval) if distribution == "uniform" else None
    seed = check_seed(seed)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
    if chunk_size is None:
        chunk_size = max(1024, 2**22 // max(network.n, d))
    chunk_size = positive_int(chunk_size, "chunk_size")

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    bad = 0
    sizes = [chunk_size] * (n // chunk_size) + ([n % chunk_size] if n % chunk_size else [])
    for k in tqdm(sizes, desc="clean error (MC)", unit="chunk", disable=_disabled(progress)):
        X = _draw(rng, k, d, distribution, support)
        bad += int(np.count_nonzero(network(X) <= 0.0))
    p = bad / n
    lo, hi = wilson_interval(bad, n)
    return MonteCarloEstimate(
        estimate=p,
        stderr=math.sqrt(p * (1.0 - p) / n),
        ci_low=lo,
        ci_high=hi,
        n_samples=n,
        seed=seed,
        distribution=distribution,
        support=support,
        seconds=time.perf_counter() - start,
    )


def _draw(
    rng: np.random.Generator, k: int, d: int, distribution: str, support: tuple[float, float] | None
) -> np.ndarray:
    # the same laws as the dataset generators, so a clean error matches the data it is tested on
    if distribution == "uniform":
        return rng.uniform(support[0], support[1], size=(k, 1))
    X = rng.standard_normal((k, d))
    if distribution == "sphere":
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def _disabled(progress: bool | None) -> bool | None:
    return None if progress is None else not progress  # tqdm: None = only on a terminal
