"""Benchmark of KKT enumeration (small m, complete) and sampling (m = 200, seed setting); prints
tables.

Targets (issue 5): complete enumeration at m = 6 in <= 60 s; >= 200 distinct certified KKT classes
per minute at m = 200; on the seed setting (m = 200, p = 0.1, 5 seeds) the range of clean errors
found, the global optimum's, and how many sampled classes were local minima vs non-minimal KKT
points.

    python benchmarks/bench_enumerate.py [--quick] [--sample-seconds S] [--sampling-only]
        [--enumeration-only] [--coverage-only] [--gd-width W --gd-steps T --gd-init-scale C]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kktsolver.data import Dataset, noisy_constant_1d
from kktsolver.enumeration import (
    KKT_VERDICTS,
    STRATEGIES,
    EnumTolerances,
    FunctionRegistry,
    enumerate_kkt,
    sample_kkt,
)
from kktsolver.global_solver import solve_global


def enumeration_table(quick: bool) -> None:
    print("## complete enumeration (x sorted uniform on [0, 1], seed 0)")
    print(
        f"{'m':>3} {'labels':>14} {'seconds':>8} {'complete':>8} {'classes':>7} {'functions':>9} "
        f"{'LPs':>6} {'primal LPs':>10} {'subproblems':>11} {'global_min':>10} {'local_min':>9} "
        f"{'kkt':>4}"
    )
    rng = np.random.default_rng(0)
    cases = [
        (4, "alternating"),
        (5, "alternating"),
        (6, "alternating"),
        (6, "one noisy"),
        (6, "two noisy"),
    ]
    if quick:
        cases = cases[:2]
    for m, kind in cases:
        x = np.sort(rng.uniform(0, 1, m))
        y = {
            "alternating": [(-1) ** i for i in range(m)],
            "one noisy": [1, 1, -1, 1, 1, 1],
            "two noisy": [1, -1, 1, 1, -1, 1],
        }[kind][:m]
        ds = Dataset(x, np.array(y), {"support": [0.0, 1.0]})
        t0 = time.perf_counter()
        res = enumerate_kkt(ds, progress=False).collect()
        secs = time.perf_counter() - t0
        v = res.verdict_counts()
        print(
            f"{m:>3} {kind:>14} {secs:8.1f} {str(res.complete):>8} {res.count:7d} "
            f"{res.n_functions:9d} {res.counters['lps']:6d} "
            f"{res.counters.get('primal_lps', 0):10d} "
            f"{res.counters['subproblems']:11d} "
            f"{v.get('global_min', 0):10d} "
            f"{v.get('local_min', 0):9d} {v.get('kkt', 0):4d}"
        )


STAGES = ("conic", "purify", "certify", "dedupe", "propose")


def sampling_table(
    seconds: float, seeds: list[int], gd: dict, strategies: tuple[str, ...] = STRATEGIES
) -> None:
    print(f"\n## sampling, seed setting m = 200, p = 0.1, {seconds:g} s per strategy and seed")
    print(f"gradient_flow settings: {gd}")
    print(
        f"{'seed':>4} {'strategy':>14} {'attempts':>8} {'classes':>7} {'per min':>7} "
        f"{'on [0,1]':>8} {'global':>6} "
        f"{'local':>5} {'kkt':>4} {'undec':>5} {'dup':>4} {'gave up':>7} {'err min':>8} "
        f"{'err max':>8} {'err global':>10}  seconds in " + "/".join(STAGES)
    )
    totals: dict[str, list[float]] = {}
    per_seed = []
    for seed in seeds:
        ds = noisy_constant_1d(200, 0.1, seed=seed)
        g = solve_global(ds)
        reg = FunctionRegistry(EnumTolerances(function=1e-4))  # union over the strategies
        union: dict[int, object] = {}
        for strategy in strategies:
            t0 = time.perf_counter()
            res = sample_kkt(
                ds, 10_000, strategy, seed=seed, time_budget=seconds, progress=False, **gd
            ).collect()
            secs = time.perf_counter() - t0
            v = res.verdict_counts()
            errs = [c.clean_error for c in res.classes]
            lo = f"{min(errs):8.4f}" if errs else f"{'-':>8}"
            hi = f"{max(errs):8.4f}" if errs else f"{'-':>8}"
            rate = 60 * res.count / secs
            totals.setdefault(strategy, []).append(rate)
            for c in res.classes:
                _, cid, new = reg.lookup(c.network, c.objective)
                if new:
                    union[cid] = c
            stages = "/".join(f"{res.timings.get(k, 0.0):.1f}" for k in STAGES)
            print(
                f"{seed:>4} {strategy:>14} {res.counters['attempts']:8d} {res.count:7d} "
                f"{rate:7.1f} {res.n_support_functions:8d} "
                f"{v.get('global_min', 0):6d} {v.get('local_min', 0):5d} "
                f"{v.get('kkt', 0):4d} {v.get('kkt_undecided', 0):5d} "
                f"{res.counters['duplicates']:4d} {res.counters.get('gave_up', 0):7d} "
                f"{lo} {hi} {g.clean_error:10.4f}  {stages}"
            )
        per_seed.append((seed, g.clean_error, list(union.values())))
    print(
        "\nmean distinct certified classes per minute: "
        + ", ".join(f"{k} {np.mean(r):.1f}" for k, r in totals.items())
        + " (target >= 200)"
    )
    print(
        "(a class is a (function on R, objective) pair; 'on [0,1]' counts distinct functions on "
        "the clean-error interval, which is all the clean error sees)"
    )
    print("\n## seed setting summary (classes of all three strategies, deduplicated)")
    print(
        f"{'seed':>4} {'classes':>7} {'err min':>8} {'err max':>8} {'err global':>10} "
        f"{'global_min':>10} {'local_min':>9} {'kkt (not min)':>13} {'undecided':>9}"
    )
    for seed, g_err, classes in per_seed:
        errs = [c.clean_error for c in classes]
        cnt = {k: sum(c.verdict == k for c in classes) for k in KKT_VERDICTS}
        if not errs:  # possible with --strategies gradient_flow alone
            print(f"{seed:>4} {0:7d} {'-':>8} {'-':>8} {g_err:10.4f}")
            continue
        print(
            f"{seed:>4} {len(classes):7d} {min(errs):8.4f} {max(errs):8.4f} {g_err:10.4f} "
            f"{cnt['global_min']:10d} {cnt['local_min']:9d} {cnt['kkt']:13d} "
            f"{cnt['kkt_undecided']:9d}"
        )


def coverage_table(seconds: float) -> None:
    """How many of the complete enumeration's classes each sampler finds at m = 6 (ground truth)."""
    print(f"\n## sampler coverage at m = 6 (labels + - + + - +), {seconds:g} s per strategy")
    rng = np.random.default_rng(0)
    for m in (4, 5, 6):  # the same x as the "two noisy" row of the first table
        x = np.sort(rng.uniform(0, 1, m))
    ds = Dataset(x, np.array([1, -1, 1, 1, -1, 1]), {"support": [0.0, 1.0]})
    full = enumerate_kkt(ds, progress=False).collect()
    reg = FunctionRegistry(EnumTolerances(function=1e-4))  # the samplers' tolerance
    truth = [reg.lookup(c.network, c.objective)[1] for c in full.classes]
    print(f"complete enumeration: {full.count} classes {full.verdict_counts()}")
    print(
        f"{'strategy':>14} {'attempts':>8} {'classes':>7} {'enumerated classes hit':>22} "
        f"{'not enumerated':>14}"
    )
    for strategy in ("random", "local", "gradient_flow"):
        res = sample_kkt(ds, 1000, strategy, seed=0, time_budget=seconds, progress=False).collect()
        ids = [reg.lookup(c.network, c.objective) for c in res.classes]
        hit = len({cid for _, cid, _ in ids if cid in truth})
        extra = sum(cid not in truth for _, cid, _ in ids)
        print(
            f"{strategy:>14} {res.counters['attempts']:8d} {res.count:7d} "
            f"{hit:>15d} of {len(truth):<4d} "
            f"{extra:14d}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="m <= 5 and one seed, 20 s per strategy")
    ap.add_argument("--sample-seconds", type=float, default=60.0)
    ap.add_argument("--coverage-only", action="store_true", help="only the m = 6 coverage table")
    ap.add_argument("--sampling-only", action="store_true", help="only the m = 200 tables")
    ap.add_argument("--enumeration-only", action="store_true", help="only the m <= 6 table")
    ap.add_argument(
        "--strategies", default=",".join(STRATEGIES), help="comma-separated sampling strategies"
    )
    ap.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated dataset seeds (m = 200)")
    ap.add_argument("--gd-width", type=int, default=200)
    ap.add_argument("--gd-steps", type=int, default=500)
    ap.add_argument("--gd-init-scale", type=float, default=0.3)
    args = ap.parse_args()
    gd = dict(gd_width=args.gd_width, gd_steps=args.gd_steps, gd_init_scale=args.gd_init_scale)
    if args.coverage_only:
        coverage_table(30.0)
        return
    if not args.sampling_only:
        enumeration_table(args.quick)
        if args.enumeration_only:
            return
        coverage_table(30.0)
    strategies = tuple(s for s in args.strategies.split(",") if s)
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        ap.error(f"unknown strategies {sorted(unknown)}; choose from {', '.join(STRATEGIES)}")
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",") if s]
    sampling_table(20.0 if args.quick else args.sample_seconds, seeds, gd, strategies)


if __name__ == "__main__":
    main()
