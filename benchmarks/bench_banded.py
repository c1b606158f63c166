"""Benchmark: banded interior point (kktsolver.banded_ipm) vs Clarabel on the all-gaps program.

Usage:  python benchmarks/bench_banded.py [--ms 1000 10000 30000 100000] [--seed 0] [--p 0.1]
        [--tol 1e-8] [--no-clarabel-above M] [--repeat N] [--stages]
        python benchmarks/bench_banded.py --agreement [--tol 1e-10]
        python benchmarks/bench_banded.py --hard [--tol 1e-8]

Both solve exactly the program of ``scale.chain_master(sample, arange(m), arange(1, m),
scaling="dual")`` (Clarabel with _solve_full's settings: tol, equilibration off) on the seed setting
``noisy_constant_1d(m, p, seed)``, in the same process, one after the other. Prints m, seconds and
iterations of both, the time ratio Clarabel / banded, seconds per iteration per 1e4 points (flat if
the cost per iteration is O(m)), CPU seconds (time.process_time: the machine is shared), the
relative objective difference, the max |R| difference and both statuses. ``--repeat N``: the
banded solve runs N times and its minimum wall time is reported (the machine is shared).
``--stages``: after the table, where one banded solve spends its time (wall seconds per stage,
measured by wrapping the module's internal functions; stages nest: the initial point contains
Newton solves, "W^p v" runs inside the others).

``--agreement``: instead, the agreement table of issue 8 (acceptance 1): both solvers at ``--tol``
on seed-setting data (m in 30, 300, 1000, 3000; p in 0.1, 0.4; seeds 0, 1) and adversarial sets
(clustered points, gaps of 1e-6 between opposite labels, alternating labels, m = 3, 4, all labels
+1): statuses, iterations, seconds, relative objective difference, max |R| difference, max |lam|
difference relative to max lam, and |objective - sum lam| / objective of the banded solution.

``--hard``: the banded solver alone on larger hard sets (m = 1e4 with p = 0.4 and p = 0.01, m = 3e4,
5000 clustered points, 5000 alternating labels, 100 gaps of 1e-9 between opposite labels, x in
[1e3, 1e3 + 1]): status, iterations, seconds and its stopping measures.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _agreement_cases():
    from kktsolver.data import noisy_constant_1d
    from kktsolver.patterns import SortedSample

    def sample(x, y):
        o = np.argsort(x)
        return SortedSample(np.asarray(x, float)[o], np.asarray(y, float)[o], o)

    cases = []
    for m in (30, 300, 1000, 3000):
        for p in (0.1, 0.4):
            for seed in (0, 1):
                s = SortedSample.from_dataset(noisy_constant_1d(m, p, seed=seed))
                cases.append((f"seed m={m} p={p} s={seed}", s))
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [rng.normal(0.2, 1e-3, 40), rng.normal(0.7, 1e-4, 40), rng.uniform(0, 1, 20)]
    )
    x = np.unique(x)
    cases.append(
        (f"clustered m={x.size}", sample(x, np.where(rng.random(x.size) < 0.3, -1.0, 1.0)))
    )
    x, y = np.sort(rng.uniform(0, 1, 100)), np.ones(100)
    x, y = np.r_[x, x[::10] + 1e-6], np.r_[y, -np.ones(10)]
    cases.append(("gaps 1e-6 opposite m=110", sample(x, y)))
    x = np.linspace(0, 1, 200)
    cases.append(("alternating m=200", sample(x, np.where(np.arange(200) % 2 == 0, 1.0, -1.0))))
    cases.append(("m=3 (+,-,+) at -1,0,1", sample([-1.0, 0.0, 1.0], [1, -1, 1])))
    cases.append(("m=4", sample([0.0, 0.3, 0.5, 1.0], [1, -1, -1, 1])))
    cases.append(("m=4 all +1", sample([0.1, 0.3, 0.5, 1.0], [1, 1, 1, 1])))
    return cases


def agreement(tol: float) -> None:
    from kktsolver.banded_ipm import banded_chain_master
    from kktsolver.scale import chain_master

    print(
        f"{'case':28} {'banded':>12} {'it':>3} {'s':>6} {'clarabel':>12} {'it':>3} {'s':>6} "
        f"{'rel obj':>8} {'max dR':>8} {'dlam/max':>8} {'obj-sum lam':>11}"
    )
    for name, s in _agreement_cases():
        m = s.m
        b = banded_chain_master(s, tol=tol)
        c = chain_master(
            s,
            np.arange(m),
            np.arange(1, m),
            tol,
            scaling="dual",
            settings_extra={"equilibrate_enable": False},
        )
        # objectives ~0 (all labels equal): absolute differences
        rel = abs(b.objective - c.objective) / (c.objective if c.objective > 1e-8 else 1.0)
        dl = np.max(np.abs(b.lam - c.lam)) / (c.lam.max() if c.lam.max() > 1e-8 else 1.0)
        sl = abs(b.objective - b.lam.sum()) / (b.objective if b.objective > 1e-8 else 1.0)
        dR = float(np.max(np.abs(b.R - c.R)))
        print(
            f"{name:28} {b.status:>12} {b.iterations:3d} {b.seconds:6.2f} {c.status:>12} "
            f"{c.iterations:3d} {c.seconds:6.2f} {rel:8.1e} {dR:8.1e} {dl:8.1e} {sl:11.1e}",
            flush=True,
        )


def hard(tol: float) -> None:
    from kktsolver.banded_ipm import banded_chain_master_info
    from kktsolver.data import noisy_constant_1d
    from kktsolver.patterns import SortedSample

    def sample(x, y):
        o = np.argsort(x)
        return SortedSample(np.asarray(x, float)[o], np.asarray(y, float)[o], o)

    rng = np.random.default_rng(11)
    cases = [
        (
            f"seed m={m} p={p} s={seed}",
            SortedSample.from_dataset(noisy_constant_1d(m, p, seed=seed)),
        )
        for m, p, seed in [(10000, 0.4, 1), (10000, 0.01, 2), (30000, 0.1, 3), (30000, 0.05, 4)]
    ]
    x = np.concatenate(
        [rng.normal(0.3, 1e-4, 2000), rng.normal(0.6, 1e-6, 1000), rng.uniform(0, 1, 2000)]
    )
    x = np.unique(x)
    cases.append(
        (f"clustered m={x.size}", sample(x, np.where(rng.random(x.size) < 0.2, -1.0, 1.0)))
    )
    x = np.linspace(0, 1, 5000)
    cases.append(("alternating m=5000", sample(x, np.where(np.arange(5000) % 2 == 0, 1.0, -1.0))))
    x = np.sort(rng.uniform(0, 1, 5000))
    cases.append(
        (
            "gaps 1e-9 opposite m=5100",
            sample(np.r_[x, x[::50] + 1e-9], np.r_[np.ones(5000), -np.ones(100)]),
        )
    )
    x = 1e3 + rng.uniform(0, 1, 3000)
    cases.append(
        ("x in [1e3, 1e3+1] m=3000", sample(x, np.where(rng.random(3000) < 0.1, -1.0, 1.0)))
    )
    for name, s in cases:
        b, info = banded_chain_master_info(s, tol=tol)
        print(
            f"{name:28} {b.status:>12} it={b.iterations:3d} {b.seconds:6.2f}s "
            f"obj={b.objective:.10g} pres={info.primal_residual:.1e} dres={info.dual_residual:.1e} "
            f"gap={info.relative_gap:.1e} |obj-sum lam|/obj="
            f"{abs(b.objective - b.lam.sum()) / b.objective:.1e}",
            flush=True,
        )


#: (owner attribute path, label) of the stages timed by --stages
_STAGES = [
    ("_initial_point", "initial point (2 solves, W = I)"),
    ("_soc_nt", "NT scaling + lambda"),
    ("_Newton._factor_kinks", "per-kink factors (Gram-Schmidt)"),
    ("_Newton._factor_cholesky", "Cholesky of S (pbtrf)"),
    ("_Newton._factor_lu", "banded LU (gbtrf)"),
    ("_Newton._solve_once", "Newton solves"),
    ("_Newton._apply", "refinement residual"),
    ("_residuals", "residuals"),
    ("_measures", "stopping measures"),
    ("_soc_step", "step lengths (SOC)"),
    ("_lin_step", "step lengths (linear)"),
    ("_SocScaling.apply", "W^p v"),
]


def stage_profile(sample, tol: float) -> tuple[float, dict]:
    """Wall seconds and calls per stage of one banded solve (wrappers removed afterwards)."""
    import functools

    from kktsolver import banded_ipm as B

    acc: dict = {}
    saved = []
    for path, label in _STAGES:
        owner = B
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        f = getattr(owner, name)
        saved.append((owner, name, f))

        def timed(*a, _f=f, _label=label, **k):
            t0 = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                sec, calls = acc.get(_label, (0.0, 0))
                acc[_label] = (sec + time.perf_counter() - t0, calls + 1)

        setattr(owner, name, functools.wraps(f)(timed))
    try:
        t0 = time.perf_counter()
        B.banded_chain_master(sample, tol=tol)
        total = time.perf_counter() - t0
    finally:
        for owner, name, f in saved:
            setattr(owner, name, f)
    return total, acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ms", type=int, nargs="+", default=[1000, 10000, 30000, 100000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--no-clarabel-above", type=int, default=10**9, metavar="M")
    ap.add_argument("--repeat", type=int, default=1, help="banded runs per m (min wall time)")
    ap.add_argument("--stages", action="store_true", help="per-stage times of one banded solve")
    ap.add_argument("--agreement", action="store_true", help="print the agreement table instead")
    ap.add_argument("--hard", action="store_true", help="run the hard sets (banded only) instead")
    args = ap.parse_args()
    if args.agreement:
        agreement(args.tol)
        return
    if args.hard:
        hard(args.tol)
        return

    from kktsolver.banded_ipm import banded_chain_master
    from kktsolver.data import noisy_constant_1d
    from kktsolver.patterns import SortedSample
    from kktsolver.scale import chain_master

    head = (
        f"{'m':>7} {'banded s':>9} {'cpu s':>7} {'it':>3} {'s/it/1e4':>8} {'clarabel s':>10} "
        f"{'cpu s':>7} {'it':>3} {'ratio':>6} {'rel obj diff':>12} {'max dR':>8}  "
        "status (banded / clarabel)"
    )
    print(head)
    for m in args.ms:
        s = SortedSample.from_dataset(noisy_constant_1d(m, args.p, seed=args.seed))
        tb = cb = np.inf
        for _ in range(max(1, args.repeat)):
            t0, c0 = time.perf_counter(), time.process_time()
            b = banded_chain_master(s, tol=args.tol)
            tb = min(tb, time.perf_counter() - t0)
            cb = min(cb, time.process_time() - c0)
        per = tb / max(b.iterations, 1) / (m / 1e4)
        if m <= args.no_clarabel_above:
            t0, c0 = time.perf_counter(), time.process_time()
            c = chain_master(
                s,
                np.arange(m),
                np.arange(1, m),
                args.tol,
                scaling="dual",
                settings_extra={"equilibrate_enable": False},
            )
            tc, cc = time.perf_counter() - t0, time.process_time() - c0
            rel = abs(b.objective - c.objective) / abs(c.objective)
            dR = float(np.max(np.abs(b.R - c.R)))
            print(
                f"{m:7d} {tb:9.3f} {cb:7.2f} {b.iterations:3d} {per:8.4f} {tc:10.3f} {cc:7.2f} "
                f"{c.iterations:3d} {tc / tb:6.2f} {rel:12.2e} {dR:8.1e}  {b.status} / {c.status}",
                flush=True,
            )
        else:
            print(
                f"{m:7d} {tb:9.3f} {cb:7.2f} {b.iterations:3d} {per:8.4f} {'-':>10} {'-':>7} "
                f"{'-':>3} {'-':>6} {'-':>12} {'-':>8}  {b.status} / -",
                flush=True,
            )
    if args.stages:
        for m in args.ms:
            s = SortedSample.from_dataset(noisy_constant_1d(m, args.p, seed=args.seed))
            total, acc = stage_profile(s, args.tol)
            print(f"\nstages of one banded solve, m = {m}, tol = {args.tol:g}: {total:.3f} s")
            for label, (sec, calls) in sorted(acc.items(), key=lambda kv: -kv[1][0]):
                print(f"  {label:34} {sec:7.3f} s {calls:5d} calls")


if __name__ == "__main__":
    main()
