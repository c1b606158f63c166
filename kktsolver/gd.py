"""Gradient-descent baseline: full-batch GD on the exp or logistic loss, and its exact limit cell.

GD converges in direction to a KKT point of (P) (Lyu & Li 2020); this module measures how far a
trained network is from the exact KKT point of its final activation cell (MATH.md section 3, F2).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .data import Dataset, interval_or_support
from .errors import InputError, SolverError, require_instance
from .network import ReLUNetwork, require_compatible

__all__ = [
    "LOSSES",
    "Trajectory",
    "LimitPoint",
    "train",
    "limit_point",
    "loss_and_gradient",
    "rescaled",
    "aligned_angle",
    "solve_cell",
    "ExactCell",
    "EXACT_SOLVER_OPTIONS",
    "CELL_GAP",
    "STEP_RULES",
    "gd_cert_tol",
]

Loss = Literal["exp", "logistic"]
LOSSES = ("exp", "logistic")


# --------------------------------------------------------------------------- losses (log domain)


def _log_softplus_neg(q: np.ndarray) -> np.ndarray:
    """log(log(1 + e^{-q})), stable for all q (no underflow to log 0 at large margins).

    For q >= 0 write t = e^{-q}: log(log1p(t)) = -q + log(log1p(t) / t), where log1p(t) / t -> 1
    as t -> 0.
    """
    q = np.asarray(q, dtype=float)
    out = np.empty_like(q)
    pos = q >= 0
    t = np.exp(-q[pos])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(t > 0, np.log1p(t) / np.where(t > 0, t, 1.0), 1.0)
    out[pos] = -q[pos] + np.log(ratio)
    qn = q[~pos]
    out[~pos] = np.log(-qn + np.log1p(np.exp(qn)))
    return out


def _log_losses(q: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """(log l(q_i), log g_i) with g_i = -l'(q_i) > 0, for l(q) = e^{-q} or log(1 + e^{-q}).

    Exp loss: log l = log g = -q. Logistic: log l = log softplus(-q) and
    log g = log sigmoid(-q) = -softplus(q). Working with logarithms keeps both finite at margins
    where e^{-q} underflows (q > 745).
    """
    if loss == "exp":
        return -q, -q
    log_g = -(np.maximum(q, 0.0) + np.log1p(np.exp(-np.abs(q))))
    return _log_softplus_neg(q), log_g


def _logsumexp(a: np.ndarray) -> float:
    amax = float(np.max(a))
    return amax + float(np.log(np.sum(np.exp(a - amax))))


@dataclass(frozen=True)
class _Eval:
    """One forward/backward pass on theta = (v, U), U = [W | b] of shape (n, d + 1).

    The inputs are lifted, x~ = (x, 1).

    ``grad_v``, ``grad_U`` are dL/dtheta of the mean loss L, or dL/dtheta / L when evaluated with
    ``relative=True`` (finite even when L underflows). ``Z`` holds the preactivations z_ij.
    """

    q: np.ndarray
    log_loss: float
    grad_v: np.ndarray
    grad_U: np.ndarray
    Z: np.ndarray


def _evaluate(
    v: np.ndarray, U: np.ndarray, Xt: np.ndarray, y: np.ndarray, loss: str, relative: bool
) -> _Eval:
    """Mean loss L = (1/m) sum_i l(y_i N(x_i)) and dL/dtheta (or dL/dtheta / L if ``relative``).

    dL/dN_i = -(1/m) g_i y_i with g_i = -l'(q_i); dN_i/dv_j = relu(z_ij) and
    dN_i/d(w_j, b_j) = v_j [z_ij > 0] x~_i. We use relu'(0) := 0, the convention of PyTorch and most
    frameworks (any element of the Clarke interval [0, 1] would do; z_ij = 0 exactly is a null set).
    Written with few numpy calls because it runs once per GD step.
    """
    Z = Xt @ U.T
    H = np.maximum(Z, 0.0)
    q = H @ v
    q *= y
    m = q.size
    if loss == "exp":
        # log l_i = log g_i = -q_i: a softmax of -q, shifted by the smallest margin
        qmin = q.min()
        e = np.exp(qmin - q)
        s = e.sum()
        lse = -qmin + np.log(s)
        scale = 1.0 / s if relative else np.exp(-qmin) / m
        c = e * (-scale) * y
    else:
        log_l, log_g = _log_losses(q, loss)
        lse = _logsumexp(log_l)
        shift = lse if relative else np.log(m)
        c = -np.exp(log_g - shift) * y
    grad_v = c @ H
    grad_U = v[:, None] * ((Z > 0).T @ (c[:, None] * Xt))
    return _Eval(q, float(lse - np.log(m)), grad_v, grad_U, Z)


def loss_and_gradient(
    network: ReLUNetwork, dataset: Dataset, loss: Loss = "exp"
) -> tuple[float, np.ndarray]:
    """Mean training loss and its exact gradient with respect to theta = (v, W row-major, b).

    L(theta) = (1/m) sum_i l(y_i N_theta(x_i)),  l(q) = e^{-q} ("exp") or log(1 + e^{-q})
    ("logistic").

    The derivative of relu at 0 is taken to be 0 (see :func:`_evaluate`). Returns (L, grad) with
    grad in the layout of :attr:`ReLUNetwork.theta`.
    """
    _check_loss(loss)
    require_compatible(network, dataset)
    U = np.column_stack([network.W, network.b])
    e = _evaluate(network.v, U, _lift(dataset.X), dataset.y.astype(float), loss, False)
    return float(np.exp(e.log_loss)), np.concatenate(
        [e.grad_v, e.grad_U[:, :-1].ravel(), e.grad_U[:, -1]]
    )


def _lift(X: np.ndarray) -> np.ndarray:
    """x~_i = (x_i, 1), shape (m, d + 1)."""
    return np.column_stack([X, np.ones(X.shape[0])])


# --------------------------------------------------------------------------- helpers


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise InputError(f"loss must be one of {LOSSES}, got {loss!r}")


def rescaled(network: ReLUNetwork, dataset: Dataset, *, shrink: bool = True) -> ReLUNetwork | None:
    """theta / sqrt(q_min), q_min = min_i y_i N(x_i): the point of the ray of theta with margin 1.

    2-homogeneity: c theta scales every margin by c^2, so this is the feasible point of (P) on the
    ray of theta closest to 0. With ``shrink=False`` a network that is already feasible
    (q_min >= 1) is returned unchanged; only an infeasible one is scaled up.

    Returns None when the minimum margin is not positive (theta does not separate the data yet).
    """
    qmin = float(np.min(network.margins(dataset.X, dataset.y)))
    if not qmin > 0:
        return None
    if qmin >= 1.0 and not shrink:
        return network
    return network.scaled(1.0 / np.sqrt(qmin))


def _clean_error(network: ReLUNetwork, interval: tuple[float, float]) -> float:
    from .clean_error import clean_error

    return float(clean_error(network, interval))


#: Slack of the certifier for GD iterates: points with margin <= 1 + 1e-3 may carry multipliers and
#: kinks within 1e-3 (relative preactivation) of a data point may carry a Clarke weight mu. An exact
#: KKT point needs neither; a GD iterate gets margins 1 and kinks on data points only in the limit.
GD_CERT_SLACK = 1e-3


def gd_cert_tol(eps: float = GD_CERT_SLACK) -> Any:
    """``CertTolerances(active=eps, kink=eps, max_cells_log2=0)``: an (eps, eps)-KKT reading of a GD
    iterate.

    With the default tolerances (1e-6, 1e-7) a GD iterate whose kinks approach a data point keeps a
    relative stationarity residual of order 1 until the kink is within 1e-7 of the point, however
    close its direction is to the KKT point; allowing eps-near kinks and margins measures how far
    it is from being an approximate Clarke-KKT point instead. Only the residuals are wanted here,
    so the local-minimality search over adjacent cells of near-pinned kinks is capped at one LP
    (``max_cells_log2=0``; the verdict may then be ``kkt_undecided``).
    """
    from .certify import CertTolerances

    return CertTolerances(active=eps, kink=eps, max_cells_log2=0)


def _gd_cert_tol(cert_tol: Any) -> Any:
    return gd_cert_tol() if cert_tol is None else cert_tol


def _stationarity(network: ReLUNetwork, dataset: Dataset, width: int | None, tol: Any) -> float:
    """The certifier's relative stationarity residual of a feasible network (NaN if none)."""
    from .certify import certify

    cert = certify(network, dataset, width=width, tol=tol)
    r = getattr(cert, "stationarity_residual", None)
    return float("nan") if r is None else float(r)


def _progress(total: int, enabled: bool | None, desc: str):
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = total >= 10_000 and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, mininterval=0.5)


# --------------------------------------------------------------------------- trajectory


@dataclass(frozen=True, eq=False)
class Trajectory:
    """What one GD run did, recorded every ``record_every`` steps (and at the last step).

    Attributes
    ----------
    steps : ndarray of int, shape (R,)
        GD step index of each record (0 = initialisation).
    loss, log_loss : ndarray, shape (R,)
        Mean loss L = (1/m) sum_i l(y_i N(x_i)) and its natural logarithm (finite even when L
        underflows).
    normalized_margin : ndarray, shape (R,)
        gamma = min_i y_i N(x_i) / ||theta||^2 (negative before the data are separated).
    smoothed_margin : ndarray, shape (R,)
        log(1 / (m L)) / ||theta||^2, the smoothed margin of Lyu & Li (their loss is the sum m L);
        it lower-bounds gamma.
    objective : ndarray, shape (R,)
        1/2 ||theta~||^2 = 1 / (2 gamma) of the rescaled iterate theta~ = theta / sqrt(min margin);
        NaN while gamma <= 0.
    stationarity_residual : ndarray, shape (R,)
        ``certify.certify(theta~, dataset, width).stationarity_residual``; NaN while gamma <= 0, in
        d > 1, or when ``residuals=False``.
    clean_error : ndarray, shape (R,)
        ``clean_error.clean_error(theta, interval)`` (d = 1; NaN otherwise or with ``clean=False``).
    patterns : ndarray of bool, shape (R, m, n)
        Activation pattern [z_ij > 0] (dataset order) of each record.
    thetas : ndarray, shape (R, n (d + 2))
        The iterate at each record (layout of :attr:`ReLUNetwork.theta`).
    network : ReLUNetwork
        The final iterate (also the last record).
    stopped : str
        "steps" (ran all steps), "callback" (the callback returned True) or "overflow" (||theta||
        exceeded ``max_norm``). Divergence (mean loss > e^700) raises ``SolverError`` instead.
    seconds : float
        Wall time of the GD updates alone; ``record_seconds`` is the time spent recording
        (certifier, clean error), excluded from ``seconds``; ``elapsed`` (R,) is ``seconds``
        accumulated at each record.
    config : dict
        loss, lr, normalized (the step-size rule, a :data:`STEP_RULES` name), init_scale, init,
        adaptive, final_rate, seed, width, record_every, steps requested.
    """

    steps: np.ndarray
    loss: np.ndarray
    log_loss: np.ndarray
    normalized_margin: np.ndarray
    smoothed_margin: np.ndarray
    objective: np.ndarray
    stationarity_residual: np.ndarray
    clean_error: np.ndarray
    patterns: np.ndarray
    thetas: np.ndarray
    elapsed: np.ndarray
    network: ReLUNetwork
    stopped: str
    seconds: float
    record_seconds: float
    dataset: Dataset = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return self.network.n

    def network_at(self, r: int) -> ReLUNetwork:
        """The iterate of record ``r`` (negative indices count from the end)."""
        return ReLUNetwork.from_theta(self.thetas[r], self.network.n, self.network.d)

    def first_below(self, threshold: float) -> int | None:
        """Index of the first record whose stationarity residual is <= threshold, or None."""
        hits = np.flatnonzero(self.stationarity_residual <= threshold)
        return int(hits[0]) if hits.size else None

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        """Plain JSON values: the recorded series, the final network and the configuration.

        ``full=True`` adds ``thetas`` and ``patterns`` (large).
        """
        from .cli import to_jsonable

        out = {
            "config": self.config,
            "stopped": self.stopped,
            "seconds": self.seconds,
            "record_seconds": self.record_seconds,
            "steps": self.steps,
            "elapsed": self.elapsed,
            "loss": self.loss,
            "log_loss": self.log_loss,
            "normalized_margin": self.normalized_margin,
            "smoothed_margin": self.smoothed_margin,
            "objective": self.objective,
            "stationarity_residual": self.stationarity_residual,
            "clean_error": self.clean_error,
            "network": self.network.to_dict(),
        }
        if full:
            out["thetas"] = self.thetas
            out["patterns"] = self.patterns
        return to_jsonable(out)


INITS = ("auto", "gaussian", "kinks")


def _init_network(
    n: int, X: np.ndarray, init_scale: float, seed: int | None, init: str
) -> tuple[np.ndarray, ...]:
    """Initial (v, W, b).

    "gaussian": v, W, b i.i.d. N(0, init_scale^2). "kinks" (1-D): v, w i.i.d. N(0, init_scale^2) and
    b = -w t with the kink t ~ Uniform[min x, max x], so every neuron starts with a kink among the
    data (with Gaussian biases most kinks of a 1-D net fall outside the data and GD needs far longer
    to fit isolated labels). "auto": "kinks" in 1-D, "gaussian" otherwise.
    """
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    v = init_scale * rng.standard_normal(n)
    W = init_scale * rng.standard_normal((n, d))
    if init == "auto":
        init = "kinks" if d == 1 else "gaussian"
    if init == "kinks":
        t = rng.uniform(float(X.min()), float(X.max()), size=n)
        b = -W[:, 0] * t
    else:
        b = init_scale * rng.standard_normal(n)
    return v, W, b


def _validate_train(
    dataset, width, loss, init_scale, lr, steps, record_every, max_norm, init
) -> None:
    require_instance(dataset, Dataset, "dataset")
    if init not in INITS:
        raise InputError(f"init must be one of {INITS}, got {init!r}")
    if init == "kinks" and dataset.d != 1:
        raise InputError(f"init='kinks' needs 1-D inputs, the dataset has d = {dataset.d}")
    _check_loss(loss)
    if int(width) != width or width < 1:
        raise InputError(f"width must be a positive integer, got {width!r}")
    if int(steps) != steps or steps < 0:
        raise InputError(f"steps must be a non-negative integer, got {steps!r}")
    if int(record_every) != record_every or record_every < 1:
        raise InputError(f"record_every must be a positive integer, got {record_every!r}")
    for name, val in (("init_scale", init_scale), ("lr", lr), ("max_norm", max_norm)):
        if not (np.isfinite(val) and val > 0):
            raise InputError(f"{name} must be a positive finite number, got {val!r}")


def train(
    dataset: Dataset,
    width: int,
    loss: Loss = "exp",
    init_scale: float = 0.5,
    lr: float = 0.1,
    steps: int = 10_000,
    seed: int | None = 0,
    normalized: bool = False,
    record_every: int | None = None,
    callback: Callable[[int, ReLUNetwork], bool | None] | None = None,
    *,
    init: str = "auto",
    adaptive: bool = False,
    residuals: bool = True,
    clean: bool = True,
    interval: tuple[float, float] | None = None,
    cert_tol: Any = None,
    max_norm: float = 1e100,
    progress: bool | None = None,
) -> Trajectory:
    """Full-batch gradient descent on the mean exponential or logistic loss, in float64.

        theta_{t+1} = theta_t - eta_t grad L(theta_t),   L(theta) = (1/m) sum_i l(y_i N_theta(x_i)),

    with eta_t = lr (plain GD) or, with ``normalized=True`` (= "loss-log"), the loss-based step
    size of the implicit-bias literature (Lyu & Li 2020, section 5 and appendix)

        eta_t = lr / ( L(theta_t) * max(1, log(1 / L(theta_t))) ),

    which keeps the change of each margin per step bounded while ||theta||^2 grows about linearly
    (plain GD: logarithmically), so the direction converges much faster. ``normalized="loss"``
    takes eta_t = lr / L (Nacson et al. 2019; ||theta|| then grows geometrically) and
    ``normalized="grad"`` eta_t = lr / ||grad L|| (steps of length lr). The gradient divided by L
    is computed directly from log-domain weights (a softmax of -q for the exp loss), so nothing
    overflows or underflows to 0/0 at large margins. relu'(0) := 0.

    Parameters
    ----------
    dataset : Dataset
        Any dimension d; certifier residuals and the clean error are recorded in d = 1 only.
    width : int
        Number of neurons n.
    loss : {"exp", "logistic"}
    init_scale : float
        Scale of the initialisation (see ``init``).
    init : {"auto", "gaussian", "kinks"}
        "gaussian": v, W, b i.i.d. N(0, init_scale^2); "kinks" (1-D): v, w i.i.d. N(0, init_scale^2)
        and kinks -b/w uniform over the data range; "auto": "kinks" in 1-D, else "gaussian".
    lr : float
        Step size (or its numerator, when normalized).
    steps : int
        Maximum number of GD steps.
    seed : int or None
        Seed of the initialisation (``np.random.default_rng``).
    normalized : bool or {"constant", "loss", "loss-log", "grad"}
        Step-size rule (:data:`STEP_RULES`): False = "constant", True = "loss-log"; see above.
    adaptive : bool
        Loss-based step-size scheduling as in Lyu & Li's experiments: the rate (``lr`` at first) is
        multiplied by 1.1 after every step that lowers the loss and halved, but not below ``lr``,
        after one that does not (that step is rejected; it still counts in ``steps``). At the floor
        ``lr`` a step is always taken, since next to a kink of the loss (a ReLU kink on a data
        point, which GD approaches all the time) no small step need decrease it. The final rate is
        ``config["final_rate"]``.
    record_every : int, optional
        Record every this many steps (default: ``max(1, steps // 50)``); the last step is always
        recorded.
    callback : callable, optional
        ``callback(step, network)`` is called at every record; returning True stops the run there.
    residuals, clean : bool
        Whether to record the certifier's stationarity residual of the rescaled iterate and the
        clean error (each costs a certificate / an exact clean-error computation per record).
    interval : (a, b), optional
        Input interval of the clean error; default the dataset's support, else [0, 1].
    cert_tol : CertTolerances, optional
        Tolerances of the certificate of each rescaled iterate; default :func:`gd_cert_tol` =
        ``CertTolerances(active=1e-3, kink=1e-3)``: a GD iterate never has margins exactly 1 nor
        kinks exactly on data points, so points whose rescaled margin is within 1e-3 of 1 may carry
        multipliers and kinks within 1e-3 of a point a Clarke weight (an (eps, delta)-KKT reading,
        Lyu & Li 2020).
    max_norm : float
        Stop (``stopped="overflow"``) if ||theta|| exceeds this, before float64 overflows.
    progress : bool, optional
        tqdm bar on stderr; default: on for runs of >= 10^4 steps when stderr is a terminal.

    Returns
    -------
    Trajectory
    """
    if record_every is None:
        record_every = max(1, int(steps) // 50)
    _validate_train(dataset, width, loss, init_scale, lr, steps, record_every, max_norm, init)
    width, steps, record_every = int(width), int(steps), int(record_every)
    Xt, y = _lift(dataset.X), dataset.y.astype(float)
    one_d = dataset.d == 1
    box = interval_or_support(interval, dataset) if one_d else None
    tol = _gd_cert_tol(cert_tol) if residuals and one_d else None
    v, W, b = _init_network(width, dataset.X, float(init_scale), seed, init)
    U = np.column_stack([W, b])  # theta = (v, U), U = [W | b]: one matrix product per step

    rec: dict[str, list] = {k: [] for k in _RECORD_KEYS}
    clock = {"gd": 0.0, "record": 0.0}

    def record(step: int, ev: _Eval) -> bool:
        t0 = time.perf_counter()
        net = ReLUNetwork(v, U[:, :-1], U[:, -1])
        sq = float(v @ v + np.sum(U * U))
        qmin = float(ev.q.min())
        res = float("nan")
        if residuals and one_d and qmin > 0:
            res = _stationarity(net.scaled(1.0 / np.sqrt(qmin)), dataset, width, tol)
        row = {
            "steps": step,
            "log_loss": ev.log_loss,
            "loss": float(np.exp(ev.log_loss)),
            "gamma": qmin / sq if sq > 0 else float("nan"),
            "smooth": -(ev.log_loss + np.log(dataset.m)) / sq if sq > 0 else float("nan"),
            "objective": 0.5 * sq / qmin if qmin > 0 else float("nan"),
            "res": res,
            "clean": _clean_error(net, box) if clean and one_d else float("nan"),
            "patterns": ev.Z > 0,
            "thetas": net.theta,
            "elapsed": clock["gd"],
        }
        for k, val in row.items():
            rec[k].append(val)
        stop = bool(callback(step, net)) if callback is not None else False
        clock["record"] += time.perf_counter() - t0
        return stop

    rule = _step_rule(normalized)
    relative = rule != "constant"
    ev = _evaluate(v, U, Xt, y, loss, relative)
    stopped = "callback" if record(0, ev) else "steps"
    step, last_recorded, rate = 0, 0, float(lr)
    desc = f"GD ({loss}, step {rule})"
    with _progress(steps, progress, desc) as bar, np.errstate(over="ignore", invalid="ignore"):
        while step < steps and stopped == "steps":
            t0 = time.perf_counter()
            eta = _step_size(rule, rate, ev)
            v_new = v - eta * ev.grad_v
            U_new = U - eta * ev.grad_U
            step += 1
            ev_new = _evaluate(v_new, U_new, Xt, y, loss, relative)
            worse = not ev_new.log_loss <= ev.log_loss
            if adaptive and worse and rate > lr:
                # rejected: theta stays, the attempt still counts as a step
                rate = max(lr, 0.5 * rate)
            else:
                # at the floor rate lr the step is taken anyway: next to a kink of the loss (a
                # ReLU kink on a data point, which GD approaches all the time) no small step need
                # decrease it
                v, U, ev = v_new, U_new, ev_new
                if adaptive and not worse:
                    rate *= ADAPTIVE_GROWTH
            clock["gd"] += time.perf_counter() - t0
            if not ev.log_loss < 700.0:  # the mean loss exceeds e^700 (or is NaN): GD has diverged
                raise SolverError(
                    f"GD diverged at step {step} "
                    f"(mean loss {np.exp(min(ev.log_loss, 709.0)):.3g}); "
                    f"lower the step size lr = {lr:g}"
                )
            if step % 64 == 0 or step == steps:
                nrm = float(np.sqrt(v @ v + np.sum(U * U)))
                if not nrm <= max_norm:  # also catches NaN
                    stopped = "overflow"
                    break
            if step % record_every == 0 or step == steps:
                if record(step, ev):
                    stopped = "callback"
                last_recorded = step
                bar.update(step - bar.n)
    if stopped == "overflow":
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(U))):
            raise SolverError(
                f"GD diverged before step {step} (non-finite parameters); lower the step size lr"
            )
        if last_recorded != step:
            record(step, ev)
    config = {
        "loss": loss,
        "lr": float(lr),
        "normalized": rule,
        "init_scale": float(init_scale),
        "init": init,
        "adaptive": bool(adaptive),
        "final_rate": rate,
        "seed": seed,
        "width": width,
        "record_every": record_every,
        "steps": steps,
    }
    return _make_trajectory(rec, dataset, stopped, clock["gd"], clock["record"], config)


#: factor by which ``adaptive=True`` grows the rate after an accepted step
ADAPTIVE_GROWTH = 1.1

#: step-size rules of :func:`train` (``normalized=``): eta_t = lr, lr / L, lr / (L max(1, log 1/L)),
#: lr / ||grad L||
STEP_RULES = ("constant", "loss", "loss-log", "grad")


def _step_rule(normalized: bool | str) -> str:
    """The step-size rule named by ``normalized``: False -> "constant", True -> "loss-log"."""
    if normalized is False or normalized is None:
        return "constant"
    if normalized is True:
        return "loss-log"
    if normalized not in STEP_RULES:
        raise InputError(
            f"normalized must be True, False or one of {STEP_RULES}, got {normalized!r}"
        )
    return str(normalized)


def _step_size(rule: str, rate: float, ev: _Eval) -> float:
    """eta_t for the rule; for every rule but "constant", ``ev`` holds dL/dtheta / L.

    "loss": eta = lr / L, so the step is lr * grad L / L. "loss-log": eta = lr / (L max(1,
    log 1/L)) with log(1/L) = -log_loss. "grad": eta = lr / ||grad L||, a step of length lr.
    """
    if rule in ("constant", "loss"):
        return rate
    if rule == "loss-log":
        return rate / max(1.0, -ev.log_loss)
    g = float(np.sqrt(ev.grad_v @ ev.grad_v + np.sum(ev.grad_U * ev.grad_U)))
    return rate / g if g > 0 else rate


_RECORD_KEYS = (
    "steps",
    "loss",
    "log_loss",
    "gamma",
    "smooth",
    "objective",
    "res",
    "clean",
    "patterns",
    "thetas",
    "elapsed",
)


def _make_trajectory(rec, dataset, stopped, gd_seconds, record_seconds, config) -> Trajectory:
    def arr(key, dtype=float):
        a = np.asarray(rec[key], dtype=dtype)
        a.setflags(write=False)
        return a

    thetas = arr("thetas")
    n, d = config["width"], dataset.d
    return Trajectory(
        steps=arr("steps", int),
        loss=arr("loss"),
        log_loss=arr("log_loss"),
        normalized_margin=arr("gamma"),
        smoothed_margin=arr("smooth"),
        objective=arr("objective"),
        stationarity_residual=arr("res"),
        clean_error=arr("clean"),
        patterns=arr("patterns", bool),
        thetas=thetas,
        elapsed=arr("elapsed"),
        network=ReLUNetwork.from_theta(thetas[-1], n, d),
        stopped=stopped,
        seconds=gd_seconds,
        record_seconds=record_seconds,
        dataset=dataset,
        config=config,
    )


# --------------------------------------------------------------------------- limit point


@dataclass(frozen=True, eq=False)
class _Alignment:
    """An exact KKT point written in GD's width-n coordinates, up to how merged neurons are split.

    ``phi[g]`` is the balanced vector (v, w, b) of neuron g of the exact point after merging
    parallel neurons of equal sign (``ReLUNetwork.merged``: they compute one neuron);
    ``group[j]`` is the neuron g that GD neuron j is heading to (-1: none, or no block).
    """

    group: np.ndarray
    phi: np.ndarray


def _align(
    network: ReLUNetwork, neuron_blocks: list, sample: Any, exact: ReLUNetwork, tol: float
) -> _Alignment:
    """Map each GD neuron to the exact neuron it is heading to.

    Candidates for GD neuron j in block k are the exact neurons g of the same sign whose
    direction e_g = (w_g, b_g) / ||(w_g, b_g)|| lies in the CLOSED cone of k (within ``tol``:
    G1_k e_g >= -tol ||G1_k|| and R2_k e_g >= -tol ||R2_k||, ``subproblem.cone_rows``), so a
    neuron whose kink sits on a data point is the target of the GD neurons of both adjacent cells
    however the solver split or merged it; of several candidates the one with the largest
    <theta_j, phi_g> is taken.
    """
    from .subproblem import cone_rows

    ex = exact.merged(rtol=tol)
    phi = np.column_stack([ex.v, ex.W, ex.b])
    nrm = ex.neuron_norms()
    E = np.column_stack([ex.W, ex.b]) / np.where(nrm > 0, nrm, 1.0)[:, None]
    sign = np.sign(ex.v)
    T = np.column_stack([network.v, network.W, network.b])
    group = np.full(len(neuron_blocks), -1)
    js = [j for j, blk in enumerate(neuron_blocks) if blk is not None]
    if not js:
        return _Alignment(group, phi)
    G1, R2, pinned = cone_rows([neuron_blocks[j] for j in js], sample)
    g1 = (G1 @ E.T) / np.linalg.norm(G1, axis=1)[:, None]
    r2 = (R2 @ E.T) / np.linalg.norm(R2, axis=1)[:, None]
    inside = (g1 >= -tol) & np.where(pinned[:, None], np.abs(r2) <= tol, r2 >= -tol)
    for row, j in enumerate(js):
        ok = np.flatnonzero(inside[row] & (sign == neuron_blocks[j].sign) & (nrm > 0))
        if ok.size:
            group[j] = int(ok[np.argmax(phi[ok] @ T[j])])
    return _Alignment(group, phi)


def aligned_angle(network: ReLUNetwork, alignment: _Alignment) -> float:
    """Angle (radians) between theta and the nearest width-n representation of the KKT point.

    Neurons of one group must share its balanced vector phi_g as theta*_j = sqrt(c_j) phi_g with c_j
    >= 0, sum_j c_j = 1 (this keeps the function and ||theta*||^2 = sum_g ||phi_g||^2 fixed). With
    a_j = <theta_j, phi_g>, Cauchy-Schwarz gives the best split c_j proportional to max(a_j, 0)^2
    and <theta, theta*> = sum_g sqrt(sum_{j in g} max(a_j, 0)^2); the angle is arccos of that over
    ||theta|| ||theta*||. Neurons outside every group are compared with 0.
    """
    T = np.column_stack([network.v, network.W, network.b])  # rows theta_j = (v_j, w_j, b_j)
    inner = 0.0
    for g in range(alignment.phi.shape[0]):
        members = alignment.group == g
        a = T[members] @ alignment.phi[g]
        inner += float(np.sqrt(np.sum(np.maximum(a, 0.0) ** 2)))
    denom = float(np.linalg.norm(T)) * float(np.linalg.norm(alignment.phi))
    if denom == 0:
        return float("nan")
    return float(np.arccos(np.clip(inner / denom, -1.0, 1.0)))


@dataclass(frozen=True, eq=False)
class LimitPoint:
    """The exact KKT point of the activation cell of a GD iterate, and how far GD is from it.

    Attributes
    ----------
    neuron_blocks : tuple
        The block (``patterns.Block``) of each GD neuron on the data, None for a neuron that is zero
        there.
    subproblem : SubproblemResult
        The interior-point solution of (C_B) for the distinct blocks B of the iterate (before the
        polish).
    network : ReLUNetwork
        The balanced KKT point mapped from ``subproblem`` (one neuron per nonzero block).
    certificate : Certificate
        ``certify.certify(network, dataset, width=GD width)``.
    verdict : str
        ``certificate.verdict`` (global_min / local_min / kkt / ...).
    objective : float
        1/2 ||theta*||^2 = sum_k ||u_k|| of the exact point (after polishing).
    polished : bool
        Whether the purified, Newton-polished point was kept (else theta* is the interior-point
        solution); ``cell_gap`` is its relative duality gap over B (NaN if not polished).
    gd_objective : float
        1/2 ||theta~||^2 of the rescaled GD iterate theta~ = theta / sqrt(min margin) (>=
        ``objective``).
    angle : float
        Angle in radians between theta / ||theta|| and the exact point, aligned to GD's neurons: the
        neuron -> block map removes the permutation symmetry, and blocks whose optimal u_k are
        parallel are merged and their mass split optimally over the GD neurons in them
        (:func:`aligned_angle`).
    angle_history : ndarray or None
        The same angle at every record of the trajectory (None when given a network).
    clean_error_gd, clean_error : float
        Clean error of the GD iterate and of the exact point (``clean_error.clean_error``).
    interval : (float, float)
        Interval of the clean error.
    seconds : float
        Wall time of the exact route: building and solving (C_B) plus certifying (``solve_seconds``,
        ``certify_seconds``).
    """

    neuron_blocks: tuple
    subproblem: Any
    network: ReLUNetwork
    certificate: Any
    verdict: str
    objective: float
    polished: bool
    cell_gap: float
    gd_objective: float
    angle: float
    angle_history: np.ndarray | None
    clean_error_gd: float
    clean_error: float
    interval: tuple[float, float]
    seconds: float
    solve_seconds: float
    certify_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (the certificate and subproblem in summary form)."""
        from dataclasses import asdict

        from .cli import to_jsonable

        out = {key: getattr(self, key) for key in _LIMIT_SCALARS}
        cert = self.certificate
        out.update(
            stationarity_residual=cert.stationarity_residual,
            relative_gap=cert.relative_gap,
            certificate_tolerances=cert.tolerances.to_dict(),
            subproblem_status=self.subproblem.status,
            blocks=[None if b is None else asdict(b) for b in self.neuron_blocks],
            network=self.network.to_dict(),
        )
        return to_jsonable(out)


#: the fields of :class:`LimitPoint` that ``to_dict`` copies as they are
_LIMIT_SCALARS = (
    "verdict",
    "objective",
    "polished",
    "cell_gap",
    "gd_objective",
    "angle",
    "angle_history",
    "clean_error",
    "clean_error_gd",
    "interval",
    "seconds",
    "solve_seconds",
    "certify_seconds",
)


#: Clarabel settings of the interior-point stage of :func:`solve_cell`, far tighter than its
#: defaults (1e-8): the purification and Newton polish then start from the right active set, and
#: when they are not kept (one round did not reach :data:`CELL_GAP`, e.g. on all 4m - 2 blocks at
#: m = 200) the interior-point point itself certifies to ~3e-3 instead of ~1.
EXACT_SOLVER_OPTIONS: dict[str, Any] = {
    "tol_gap_abs": 1e-12,
    "tol_gap_rel": 1e-12,
    "tol_feas": 1e-12,
    "tol_ktratio": 1e-10,
    "max_iter": 500,
}

#: relative gap (objective - sum lambda / max(1, max_k rho_k)) / objective over the cell's own
#: blocks below which the polished point of :func:`solve_cell` is accepted as the optimum of (C_B)
CELL_GAP = 1e-9


@dataclass(frozen=True, eq=False)
class ExactCell:
    """(C_B) solved by interior point, then purified and Newton-polished.

    ``U`` has the rows of ``subproblem.blocks`` (a neuron on a kink shared by two blocks of B is
    kept in one of them); ``network`` is the balanced network (zero blocks pruned); ``polished``
    says whether the polish was kept (else ``U`` is the interior-point solution); ``gap`` is the
    relative duality gap over the blocks of B of the returned point (NaN if not polished);
    ``seconds`` is build + solve + polish.
    """

    subproblem: Any
    U: np.ndarray
    network: ReLUNetwork
    polished: bool
    gap: float
    seconds: float


def _polished_cell(sample: Any, blocks: list, sub: Any) -> tuple[np.ndarray, float] | None:
    """``global_solver.polish_blocks`` (purify -> merge -> Newton polish, MATH.md section 5) on B.

    Returns (U with the rows of ``blocks``, relative gap over B) or None when the polish fails,
    the polished point is infeasible, or its gap exceeds :data:`CELL_GAP`. Pinned blocks are not
    supported by ``global_solver`` (free cones only): None.
    """
    from .global_solver import polish_blocks

    out = polish_blocks(sample, list(blocks), sub)
    if out is None:
        return None
    U, _, gap = out
    return (U, gap) if gap <= CELL_GAP else None


def solve_cell(
    sample: Any, blocks: list, solver_options: dict[str, Any] | None = None, polish: bool = True
) -> ExactCell:
    """Solve (C_B) for the given 1-D blocks exactly.

    ``subproblem.ConvexSubproblem(sample, blocks).solve(**solver_options)`` (Clarabel), then, with
    ``polish=True`` and no pinned block, ``global_solver``'s stages on the block set B: purify
    (an LP vertex over the candidate directions), merge, Newton on the KKT equations of the active
    system. The polished point is kept only if it is feasible with multipliers lambda >= 0 whose
    relative gap over B, (sum ||u_k|| - sum lambda / max(1, max_{k in B} rho_k)) / sum ||u_k||,
    is <= :data:`CELL_GAP`: then it is the optimum of (C_B) to that accuracy.

    Raises
    ------
    SolverError
        The solver returned no usable point (an infeasible block set included).
    """
    from .patterns import network_from_blocks
    from .subproblem import ConvexSubproblem

    t0 = time.perf_counter()
    opts = EXACT_SOLVER_OPTIONS if solver_options is None else solver_options
    sub = ConvexSubproblem(sample, blocks).solve(**opts)
    if not sub.has_solution:
        raise SolverError(
            f"the convex subproblem of {len(blocks)} blocks returned status {sub.status!r} "
            f"({sub.solver_status})"
        )
    out = _polished_cell(sample, list(blocks), sub) if polish else None
    U, gap = (np.array(sub.U, dtype=float), float("nan")) if out is None else out
    network = network_from_blocks(list(blocks), U).pruned()
    U.setflags(write=False)
    return ExactCell(sub, U, network, out is not None, gap, time.perf_counter() - t0)


def limit_point(
    source: Trajectory | ReLUNetwork,
    dataset: Dataset | None = None,
    *,
    width: int | None = None,
    kink_tol: float = 0.0,
    interval: tuple[float, float] | None = None,
    cert_tol: Any = None,
    solver_options: dict[str, Any] | None = None,
    merge_tol: float = 1e-6,
    polish: bool = True,
) -> LimitPoint:
    """Solve the convex subproblem of the final GD iterate's activation cell exactly and compare.

    The blocks B are those of the iterate's neurons (``patterns.block_of_neuron``; duplicates
    collapsed). (C_B) is solved exactly by :func:`solve_cell` (interior point, then
    ``global_solver``'s purification and Newton polish); the optimum maps to a balanced network
    theta* which is a KKT point of (P) (MATH.md F2; kinks may land on data points, which
    ``certify`` handles).

    Parameters
    ----------
    source : Trajectory or ReLUNetwork
        A GD run (its final iterate, dataset and width are used) or a network (then ``dataset`` is
        needed).
    dataset : Dataset, optional
        Needed with a network; 1-D only.
    width : int, optional
        Width for the certificate's local/global decision (default: the GD network's width).
    kink_tol : float
        Passed to ``block_of_neuron``; 0 means a kink counts as on a data point only if exactly on
        it.
    interval : (a, b), optional
        Interval of the clean error (default: the dataset's support, else [0, 1]).
    cert_tol : CertTolerances, optional
        Tolerances of the certificate of theta* (default ``CertTolerances()``).
    solver_options : dict, optional
        Clarabel settings (default :data:`EXACT_SOLVER_OPTIONS`).
    merge_tol : float
        Alignment tolerance (:func:`_align`): exact neurons whose unit directions differ by at most
        this (same sign) count as one neuron, and an exact neuron within this of the closed cone of
        a GD neuron's block is a candidate target of that GD neuron.
    polish : bool
        Purify and Newton-polish the interior-point solution (:func:`solve_cell`); kept only if
        the polished point is feasible and optimal for (C_B) to :data:`CELL_GAP`.

    Raises
    ------
    InputError
        d != 1, a network that does not separate the data, or a dataset that does not match.
    SolverError
        The conic solver failed on (C_B).
    """
    from .certify import CertTolerances, certify
    from .patterns import SortedSample, block_of_neuron

    history_from: Trajectory | None = None
    if isinstance(source, Trajectory):
        history_from = source
        if dataset is not None and dataset is not source.dataset:
            raise InputError(
                "limit_point: pass either a trajectory or a (network, dataset) pair, not both"
            )
        net, dataset = source.network, source.dataset
    elif isinstance(source, ReLUNetwork):
        if dataset is None:
            raise InputError("limit_point(network, dataset): the dataset is missing")
        net = source
    else:
        raise InputError(
            f"limit_point needs a Trajectory or a ReLUNetwork, got {type(source).__name__}"
        )
    require_compatible(net, dataset)
    dataset.require_1d()
    width = net.n if width is None else int(width)
    tol = CertTolerances() if cert_tol is None else cert_tol
    scaled = rescaled(net, dataset)
    if scaled is None:
        qmin = float(np.min(net.margins(dataset.X, dataset.y)))
        raise InputError(
            f"the network does not separate the data (min_i y_i N(x_i) = {qmin:.3g} <= 0): it "
            "has no activation cell with a feasible (C_B); train longer"
        )
    box = interval_or_support(interval, dataset)
    sample = SortedSample.from_dataset(dataset)
    neuron_blocks = tuple(
        block_of_neuron(float(w), float(b), float(v), sample, kink_tol)
        for v, w, b in zip(net.v, net.W[:, 0], net.b, strict=True)
    )
    blocks = sorted({blk for blk in neuron_blocks if blk is not None})

    cell = solve_cell(sample, blocks, solver_options, polish)
    sub, U, exact = cell.subproblem, cell.U, cell.network
    t1 = time.perf_counter()
    cert = certify(exact, dataset, width=max(width, exact.n), tol=tol)
    certify_seconds = time.perf_counter() - t1
    solve_seconds = cell.seconds
    polished = cell.polished

    alignment = _align(net, list(neuron_blocks), sample, exact, merge_tol)
    angle = aligned_angle(net, alignment)
    history = None
    if history_from is not None:
        history = np.array(
            [
                aligned_angle(history_from.network_at(r), alignment)
                for r in range(len(history_from.steps))
            ]
        )
        history.setflags(write=False)
    return LimitPoint(
        neuron_blocks=neuron_blocks,
        subproblem=sub,
        network=exact,
        certificate=cert,
        verdict=str(cert.verdict),
        objective=float(np.sum(np.linalg.norm(U, axis=1))),
        polished=polished,
        cell_gap=cell.gap,
        gd_objective=float(scaled.objective()),
        angle=angle,
        angle_history=history,
        clean_error_gd=_clean_error(net, box),
        clean_error=_clean_error(exact, box),
        interval=box,
        seconds=solve_seconds + certify_seconds,
        solve_seconds=solve_seconds,
        certify_seconds=certify_seconds,
    )
