"""Benchmark: gradient descent versus the exact solve of its limit cell (issue 7), in one run.

On m = 50 points of the seed setting: wall time of GD until the rescaled iterate is a relative (eps,
eps)-KKT point for eps = 1e-2 and 1e-3 (or the residual reached at the step cap, default 10^6), for
each step-size rule asked for, against solving the convex problem of that run's final activation
cell exactly and certifying it (stationarity residual <= 1e-9), timed in the same run. Then, over
20 initialisations, whether GD's limit is a global minimum, a local minimum or neither.

"GD reached eps" means: ``certify`` of theta / sqrt(min margin), with points of margin <= 1 + eps
allowed to carry multipliers and kinks within eps of a data point allowed a Clarke weight
(``gd.gd_cert_tol(eps)``), reports a relative stationarity residual <= eps. GD time is the time
of the GD updates alone (``Trajectory.elapsed``), checks excluded.

    /work/venv/bin/python benchmarks/bench_gd_vs_exact.py --inits 0           # the two races
    /work/venv/bin/python benchmarks/bench_gd_vs_exact.py --rules none --init-steps 200000
    /work/venv/bin/python benchmarks/bench_gd_vs_exact.py --steps 20000 --inits 2   # quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np
from tqdm import tqdm

from kktsolver.certify import certify
from kktsolver.data import noisy_constant_1d
from kktsolver.errors import KKTSolverError
from kktsolver.gd import STEP_RULES, gd_cert_tol, limit_point, rescaled, train
from kktsolver.global_solver import solve_global

THRESHOLDS = (1e-2, 1e-3)
#: step-size rule -> default lr (the normalised rule of Lyu & Li's theorem, and plain GD)
DEFAULT_RULES = "loss-log:0.02,constant:0.1"
VERDICT_LABELS = {
    "global_min": "global minimum",
    "local_min": "local minimum, not global",
    "kkt": "neither (KKT point, not a local minimum)",
    "not_kkt": "cell optimum not KKT (GD not yet in its final cell)",
}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--m", type=int, default=50)
    p.add_argument("--p", type=float, default=0.05, help="label-flip probability (default 0.05)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--width", type=int, default=60)
    p.add_argument("--steps", type=int, default=1_000_000, help="step cap (default 10^6)")
    p.add_argument("--loss", choices=("exp", "logistic"), default="exp")
    p.add_argument(
        "--rules",
        default=DEFAULT_RULES,
        help=f"races: comma-separated RULE:LR, RULE in {STEP_RULES}, or 'none' "
        f"(default {DEFAULT_RULES})",
    )
    p.add_argument(
        "--check-every", type=int, default=1000, help="certify the iterate every K steps"
    )
    p.add_argument("--inits", type=int, default=20, help="initialisations for the census")
    p.add_argument(
        "--init-steps", type=int, default=None, help="steps per census run (default --steps)"
    )
    p.add_argument(
        "--census-rule", default="loss-log:0.02", help="RULE:LR of the census (default loss-log)"
    )
    return p.parse_args()


def parse_rule(text: str) -> tuple[str, float]:
    rule, _, lr = text.partition(":")
    if rule not in STEP_RULES or not lr:
        raise SystemExit(f"bad rule {text!r}: want RULE:LR with RULE in {STEP_RULES}")
    return rule, float(lr)


class Checker:
    """Callback: certify the rescaled iterate at each record until every threshold is reached."""

    def __init__(self, dataset, width):
        self.dataset, self.width = dataset, width
        self.reached: dict[float, tuple[int, float]] = {}  # eps -> (step, residual)
        self.last: dict[float, float] = dict.fromkeys(THRESHOLDS, float("nan"))
        self.history: dict[int, tuple[float, ...]] = {}  # step -> residual per threshold

    def __call__(self, step, net) -> bool:
        feas = rescaled(net, self.dataset)
        if feas is not None:
            for eps in THRESHOLDS:
                if eps in self.reached:
                    continue
                cert = certify(feas, self.dataset, width=self.width, tol=gd_cert_tol(eps))
                res = cert.stationarity_residual
                self.last[eps] = res = float("nan") if res is None else float(res)
                if res <= eps:
                    self.reached[eps] = (step, res)
        self.history[step] = tuple(self.last[eps] for eps in THRESHOLDS)
        return len(self.reached) == len(THRESHOLDS)


def exact_global(dataset):
    """When GD never separates: the certified global optimum (``solve_global``), certified."""
    t0 = time.perf_counter()
    net = solve_global(dataset).network
    cert = certify(net, dataset)
    return time.perf_counter() - t0, cert


def gd_run(a, ds, rule, lr, seed, steps, record_every, callback=None):
    """One GD run with the benchmark's settings (residuals are checked by the callback)."""
    return train(
        ds,
        a.width,
        loss=a.loss,
        lr=lr,
        steps=steps,
        seed=seed,
        normalized=rule,
        record_every=record_every,
        callback=callback,
        residuals=False,
        clean=False,
    )


def race(a, ds, rule: str, lr: float) -> None:
    """GD with one step-size rule against the exact solve of its limit cell: printed rows."""
    checker = Checker(ds, a.width)
    traj = gd_run(a, ds, rule, lr, 0, a.steps, a.check_every, checker)
    lim = None
    if traj.normalized_margin[-1] > 0:
        try:
            lim = limit_point(traj)
        except KKTSolverError as e:
            print(f"limit point failed: {e}")
    if lim is not None:
        exact_secs, exact_res = lim.seconds, lim.certificate.stationarity_residual
        exact_name = f"exact solve of its limit cell ({lim.verdict})"
    else:
        exact_secs, cert = exact_global(ds)
        exact_res = cert.stationarity_residual
        exact_name = f"exact GLOBAL solve, GD never separated ({cert.verdict})"
    print(f"\n[{rule} step size, lr {lr:g}] GD {int(traj.steps[-1])} steps, {traj.seconds:.1f} s")
    w = 48
    print(f"{'route':{w}s} {'steps':>8s} {'seconds':>9s} {'residual':>9s} {'exact faster by':>16s}")
    ratios = []
    for eps in THRESHOLDS:
        if eps in checker.reached:
            step, res = checker.reached[eps]
            secs = float(traj.elapsed[np.flatnonzero(traj.steps == step)[0]])
            name, ratio = f"GD to residual <= {eps:g}", f"{secs / exact_secs:.0f}x"
        else:
            step, secs, res = int(traj.steps[-1]), traj.seconds, checker.last[eps]
            name, ratio = f"GD to residual <= {eps:g}: NOT reached", f">= {secs / exact_secs:.0f}x"
        ratios.append(secs / exact_secs)
        print(f"{name:{w}s} {step:8d} {secs:9.3f} {res:9.2e} {ratio:>16s}")
    print(f"{exact_name:{w}s} {'-':>8s} {exact_secs:9.3f} {exact_res:9.2e}")
    met = min(ratios) >= 1000 and exact_res <= 1e-9
    print(
        f"target (exact >= 1000x faster, certificate <= 1e-9): {'met' if met else 'NOT met'} "
        f"(smallest ratio {min(ratios):.0f}x; '>=': GD never got there, the ratio is a lower bound)"
    )
    decades = [k for k in range(3, 10) if 10**k in checker.history]
    trend = ", ".join(
        f"10^{k}: " + " / ".join(f"{r:.2g}" for r in checker.history[10**k]) for k in decades
    )
    print(f"GD residual (slack {' / '.join(f'{e:g}' for e in THRESHOLDS)}) after {trend} steps")
    if lim is not None:
        print(
            f"angle(GD, exact) = {lim.angle:.3g} rad; objective GD {lim.gd_objective:.6g} vs exact "
            f"{lim.objective:.6g}; clean error GD {lim.clean_error_gd:.4f} vs exact "
            f"{lim.clean_error:.4f}"
        )


def census(a, ds) -> None:
    """Certifier verdict of GD's limit cell over ``a.inits`` initialisations."""
    rule, lr = parse_rule(a.census_rule)
    steps = a.init_steps or a.steps
    counts: Counter[str] = Counter()
    rows = []
    t0 = time.perf_counter()
    for seed in tqdm(range(a.inits), desc="initialisations", file=sys.stderr):
        tr = gd_run(a, ds, rule, lr, seed, steps, steps)
        feas = rescaled(tr.network, ds)
        if feas is None:
            counts["GD did not separate the data"] += 1
            rows.append((seed, "not separated", *[float("nan")] * 4))
            continue
        res = certify(feas, ds, width=a.width, tol=gd_cert_tol(1e-2)).stationarity_residual
        lp = limit_point(tr)
        counts[VERDICT_LABELS.get(lp.verdict, lp.verdict)] += 1
        rows.append((seed, lp.verdict, lp.objective, lp.angle, lp.clean_error, res))
    print(
        f"\ncensus: {a.inits} initialisations x {steps} steps ({rule} step size, lr {lr:g}), "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(
        f"{'seed':>4s} {'verdict':>14s} {'objective':>12s} {'angle':>8s} {'clean err':>9s} "
        f"{'GD res(1e-2)':>12s}"
    )
    for seed, verdict, obj, ang, ce, res in rows:
        print(f"{seed:4d} {verdict:>14s} {obj:12.6g} {ang:8.3g} {ce:9.4f} {res:12.2e}")
    print("summary (certifier verdict of the exact point of GD's final cell, width", a.width, "):")
    for label, count in counts.most_common():
        print(f"  {label:52s} {count:3d} / {a.inits}")


def main() -> int:
    a = parse()
    ds = noisy_constant_1d(a.m, a.p, seed=a.data_seed)
    print(
        f"dataset: noisy_constant_1d(m={a.m}, p={a.p}, seed={a.data_seed}), "
        f"{int((ds.y < 0).sum())} flipped; width {a.width}, {a.loss} loss, step cap {a.steps}, "
        f"residual checked every {a.check_every} steps"
    )
    if a.rules != "none":
        for text in a.rules.split(","):
            race(a, ds, *parse_rule(text))
    if a.inits > 0:
        census(a, ds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
