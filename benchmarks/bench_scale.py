"""Benchmark of the large-m global solver (issue 8) against the generic sparse conic formulation.

Usage:  python benchmarks/bench_scale.py [--ms 1000 3000 10000] [--seed 0] [--p 0.1]
[--generic-limit 60]

Each (m, method) runs in its own subprocess so that the peak memory (ru_maxrss) is per run. Methods:
  scale    kktsolver.scale.solve_global_large (default method "auto": the direct path, one
           loose banded interior-point solve of the all-gaps chain program, then KKT Newton on
           its structure, certified by the Newton point's R-values; the LP path and column
           generation as fallbacks)
  generic  Clarabel on the prefix-sum model over ALL blocks (subproblem.ConvexSubproblem, rhs = 1,
           i.e. no problem-specific scaling or decomposition), capped at --generic-limit seconds;
           its gap is certified the same way (objective / min margin vs sum lambda / max rho).
Prints one row per (m, method) (wall seconds and CPU seconds of the solve: the machine is shared),
the time ratio generic / scale, and the fitted exponent of the
scale solver's time in m (least squares on log seconds vs log m).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def _run_one(m: int, method: str, seed: int, p: float, limit: float) -> dict:
    from kktsolver.data import noisy_constant_1d

    d = noisy_constant_1d(m, p, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    if method == "scale":
        from kktsolver.scale import solve_global_large

        r = solve_global_large(d, progress=False)
        out = {
            "seconds": time.perf_counter() - t0,
            "status": r.status,
            "objective": r.objective,
            "lower_bound": r.lower_bound,
            "gap": r.relative_gap,
            "min_margin": r.min_margin,
            "iterations": r.rounds,
        }
    else:
        from kktsolver.patterns import SortedSample, all_blocks
        from kktsolver.scale import rho_all_gaps
        from kktsolver.subproblem import ConvexSubproblem, margins_of

        s = SortedSample.from_dataset(d)
        blocks = all_blocks(m)
        res = ConvexSubproblem(s, blocks, "sparse", rhs=1.0).solve("CLARABEL", time_limit=limit)
        secs = time.perf_counter() - t0
        out = {"seconds": secs, "status": f"{res.status} ({res.solver_status})"}
        if res.has_solution:
            mm = float(margins_of(blocks, s, res.U).min())
            ub = res.objective / mm if mm > 0 else float("inf")
            lam = np.asarray(res.multipliers)
            lb = float(lam.sum()) / max(1.0, rho_all_gaps(s, lam)["max"])
            out.update(objective=ub, lower_bound=lb, gap=(ub - lb) / ub, min_margin=mm)
    # CPU seconds of the solve: on this shared 2-core machine wall time is inflated by others' load
    out["cpu_seconds"] = time.process_time() - c0
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ms", type=int, nargs="+", default=[1000, 3000, 10000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--generic-limit", type=float, default=60.0)
    ap.add_argument("--no-generic", action="store_true")
    ap.add_argument("--one", nargs=2, metavar=("M", "METHOD"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(_run_one(int(a.one[0]), a.one[1], a.seed, a.p, a.generic_limit)))
        return 0
    rows = []
    generic_ok = not a.no_generic
    hdr = (
        f"{'m':>7} {'method':>8} {'seconds':>9} {'cpu s':>7} {'peak MB':>8} {'rel gap':>10} "
        f"{'min margin-1':>13}  status"
    )
    print(hdr)
    for m in a.ms:
        for method in ("scale", "generic") if generic_ok else ("scale",):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                str(m),
                method,
                "--seed",
                str(a.seed),
                "--p",
                str(a.p),
                "--generic-limit",
                str(a.generic_limit),
            ]
            pr = subprocess.run(cmd, capture_output=True, text=True)
            if pr.returncode != 0:
                r = {"seconds": float("nan"), "status": "crashed: " + pr.stderr.strip()[-200:]}
            else:
                r = json.loads(pr.stdout.strip().splitlines()[-1])
            r.update(m=m, method=method)
            rows.append(r)
            gap = r.get("gap", float("nan"))
            mm = r.get("min_margin", float("nan")) - 1.0
            cpu = r.get("cpu_seconds", float("nan"))
            print(
                f"{m:>7} {method:>8} {r['seconds']:>9.2f} {cpu:>7.2f} "
                f"{r.get('peak_mb', float('nan')):>8.0f} "
                f"{gap:>10.2e} {mm:>13.2e}  {r['status']}",
                flush=True,
            )
            if method == "generic" and (
                r["seconds"] >= a.generic_limit or "optimal" not in r["status"]
            ):
                generic_ok = False  # the generic solve no longer converges: stop running it
    print()
    for m in a.ms:
        s = [r for r in rows if r["m"] == m and r["method"] == "scale"]
        g = [r for r in rows if r["m"] == m and r["method"] == "generic"]
        if s and g:
            print(f"m = {m}: generic / scale time ratio = {g[0]['seconds'] / s[0]['seconds']:.2f}")
    sc = [
        (r["m"], r["seconds"]) for r in rows if r["method"] == "scale" and np.isfinite(r["seconds"])
    ]
    if len(sc) >= 2:
        mm_, ss = np.log([c[0] for c in sc]), np.log([c[1] for c in sc])
        slope = np.polyfit(mm_, ss, 1)[0]
        print(f"fitted exponent of scale time in m: {slope:.2f}  (target <= 1.2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
