"""Timing of kktsolver.certify on 1-D noisy datasets (m points, a width-50 network).

Cases: the global optimum (kktsolver.global_solver.solve_global, or kktsolver.scale.
solve_global_large with --solver scale, the default for m > 300) padded to 50 neurons (float and
exact), the optimum perturbed by 1e-5 (or less, see below) and rescaled to be feasible; where the
time of the first case goes (phases of certify); and the multiplier LP alone against the named
baseline "cvxpy-L1" (the same L1 problem modelled in cvxpy, Clarabel).

    /work/venv/bin/python benchmarks/bench_certify.py [--m 200] [--width 50] [--repeat 3]
        [--solver global|scale] [--no-exact]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cvxpy as cp
import numpy as np

from kktsolver.certify import (
    CertTolerances,
    _best_multipliers,
    _blocks_1d,
    _build_system,
    _r_dual_bound,
    _rho_all,
    _socp_dual_bound,
    _solve_lp,
    certify,
    kink_pairs,
)
from kktsolver.data import noisy_constant_1d
from kktsolver.global_solver import solve_global
from kktsolver.network import ReLUNetwork
from kktsolver.scale import solve_global_large


def timed(fn, repeat: int):
    out, ts = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return out, statistics.median(ts)


def lp_system(net, ds, tol=None):
    tol = tol or CertTolerances()
    Xt = np.column_stack([ds.X, np.ones(ds.m)])
    Z = net.preactivations(ds.X)
    margins = net.margins(ds.X, ds.y)
    active = np.flatnonzero(margins <= 1 + tol.active)
    norms = np.sqrt(net.v**2 + net.neuron_norms() ** 2)
    live = norms > tol.zero_neuron * np.linalg.norm(net.theta)
    pairs = kink_pairs(Z, net, Xt, tol.kink, live)
    return _build_system(net, Xt, ds.y.astype(float), Z, active, pairs)


def phases(net, ds):
    """Seconds of each phase of certify on ``net`` (the same calls, in the same order)."""
    out = {}
    t0 = time.perf_counter()
    sys_ = lp_system(net, ds)
    out["system (margins, kink pairs, matrix)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lam_s, _, _, _ = _best_multipliers(sys_, np.zeros(sys_.pairs.shape[0], dtype=int), 1e-6)
    out["multipliers (LP + polish [+ SOCP])"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    b1 = _blocks_1d(ds, sys_)
    rh = _rho_all(sys_, b1, lam_s)
    out["1-D blocks and rho of the KKT lambda"] = time.perf_counter() - t0
    objective = net.objective()
    gap = 1 - float((sys_.c * lam_s).sum()) / max(1.0, float(rh.max())) / objective
    for name, fn in (
        ("R-value dual LP", _r_dual_bound),
        ("SOCP dual (fallback)", _socp_dual_bound),
    ):
        t0 = time.perf_counter()
        lb, _ = fn(sys_, b1, net, lam_s, objective)
        out[f"{name} (gap {1 - lb / objective:.1e})"] = time.perf_counter() - t0
    out[f"(gap from the KKT lambda alone: {gap:.1e})"] = float("nan")
    return out


def cvxpy_l1(sys_):
    """Baseline: the same multiplier LP (Clarke box, L1 residual) modelled in cvxpy."""
    na, P = sys_.A_lam.shape[1], sys_.pairs.shape[0]
    lam = cp.Variable(na, nonneg=True)
    expr = sys_.A_lam @ lam
    cons = []
    if P:
        mu = cp.Variable(P, nonneg=True)
        expr = expr + sys_.A_mu @ mu
        on = sys_.pair_col >= 0
        cons += [mu[np.flatnonzero(on)] <= lam[sys_.pair_col[on]], mu[np.flatnonzero(~on)] == 0]
    prob = cp.Problem(cp.Minimize(cp.norm1(sys_.rhs - expr)), cons)
    prob.solve(solver=cp.CLARABEL)
    return prob.value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=200)
    ap.add_argument("--width", type=int, default=50)
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--solver", choices=("global", "scale"), default=None)
    ap.add_argument("--no-exact", action="store_true", help="skip the exact case")
    args = ap.parse_args()
    ds = noisy_constant_1d(args.m, args.p, seed=args.seed)
    solver = args.solver or ("global" if args.m <= 300 else "scale")
    g = (solve_global if solver == "global" else solve_global_large)(ds)
    opt = g.network
    width = max(args.width, opt.n)
    padded = opt.padded(width)
    # a feasible non-KKT network: the optimum with every weight perturbed by eps (relative; the
    # largest of 1e-5, 1e-6, ... keeping all margins positive), scaled so that min margin = 1
    rng = np.random.default_rng(args.seed)
    noise = rng.standard_normal(padded.theta.size)
    for eps in 10.0 ** -np.arange(5, 12):
        pert = ReLUNetwork.from_theta(padded.theta * (1 + eps * noise), padded.n, 1)
        if pert.margins(ds.X, ds.y).min() > 0:
            break
    pert = pert.scaled(1 / np.sqrt(pert.margins(ds.X, ds.y).min()))

    rows = []
    cases = [("global opt (padded)", padded, False)]
    if not args.no_exact:
        cases.append(("global opt (padded), exact", padded, True))
    cases.append((f"perturbed optimum ({eps:.0e})", pert, False))
    for name, net, exact in cases:
        cert, sec = timed(lambda net=net, exact=exact: certify(net, ds, exact=exact), args.repeat)
        rows.append((name, net.n, cert.verdict, cert.stationarity_residual, cert.relative_gap, sec))
        rows[-1] += (cert.near_global,)
    print(
        f"m = {ds.m}, width = {width} (optimum from {solver}: {opt.n} neurons, "
        f"its own gap {g.relative_gap:.1e}), repeat = {args.repeat}"
    )
    cols = f"{'n':>4s} {'verdict':>12s} {'stationarity':>13s} {'rel. gap':>10s} {'near_gl':>7s}"
    print(f"{'case':30s} {cols} {'seconds':>8s}")
    for name, n, verdict, st, gap, sec, near in rows:
        gs = "n/a" if gap is None else f"{gap:.2e}"
        print(f"{name:30s} {n:4d} {verdict:>12s} {st:13.2e} {gs:>10s} {near!s:>7s} {sec:8.3f}")

    print()
    print(f"{'phases of certify (global opt, padded)':44s} {'seconds':>8s}")
    for name, sec in phases(padded, ds).items():
        print(f"{name:44s} {sec:8.3f}" if np.isfinite(sec) else name)

    sys_ = lp_system(padded, ds)
    (_, _, r1), t_lp = timed(
        lambda: _solve_lp(sys_, np.zeros(sys_.pairs.shape[0], dtype=int)), args.repeat
    )
    r1_cvx, t_cvx = timed(lambda: cvxpy_l1(sys_), args.repeat)
    print()
    print(f"{'multiplier LP (global opt)':30s} {'L1 optimum':>12s} {'seconds':>8s} {'ratio':>6s}")
    print(f"{'HiGHS (certify)':30s} {r1:12.3e} {t_lp:8.4f} {t_lp / t_cvx:6.2f}")
    print(f"{'cvxpy-L1 (baseline)':30s} {r1_cvx:12.3e} {t_cvx:8.4f} {1.0:6.2f}")


if __name__ == "__main__":
    main()
