"""Benchmark of the structured 1-D certifier (kktsolver.certify_large), seed setting (issue 8).

Usage:  python benchmarks/bench_certify_large.py [--ms 10000 100000] [--seed 0] [--p 0.1] [--dense]

For each m: solve with kktsolver.scale.solve_global_large (noisy_constant_1d(m, p, seed)), then
certify the network with kktsolver.certify.certify (which takes the structured path above
certify.STRUCTURED_MIN_ENTRIES = m * n). Each m runs in its own subprocess, so the peak memory
(ru_maxrss, of the whole run including the solve, and tracemalloc's peak of the certify call
alone) is per run. ``--dense`` also certifies m = 10^4 by the dense path (the constant raised;
about 4 minutes) and prints the time ratio dense / structured of the same run.
Prints m, n, solve seconds, certify seconds, peak memory, verdict, stationarity residual and the
relative gap.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def _solve(m: int, seed: int, p: float, path: str) -> dict:
    """Child process 1: solve, pickle (network, dataset) to ``path``."""
    import pickle

    from kktsolver.data import noisy_constant_1d
    from kktsolver.scale import solve_global_large

    d = noisy_constant_1d(m, p, seed=seed)
    t0 = time.perf_counter()
    r = solve_global_large(d, progress=False)
    solve_s = time.perf_counter() - t0
    with open(path, "wb") as f:
        pickle.dump((r.network, d), f)
    return {"solve_s": solve_s, "solver_gap": r.relative_gap, "n": r.network.n}


def _certify(path: str, dense: bool) -> dict:
    """Child process 2: certify the pickled network (its ru_maxrss is the certifier's own)."""
    import importlib
    import pickle

    # the module (kktsolver/__init__ exports the function certify under the same name)
    cm = importlib.import_module("kktsolver.certify")
    with open(path, "rb") as f:
        net, d = pickle.load(f)
    if dense:
        cm.STRUCTURED_MIN_ENTRIES = float("inf")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    c = cm.certify(net, d)
    return {
        "m": d.m,
        "path": "dense" if dense else "structured",
        "certify_s": time.perf_counter() - t0,
        "rss_before_mb": rss0,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "verdict": c.verdict,
        "stationarity": c.stationarity_residual,
        "gap": c.relative_gap,
    }


def _child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ms", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--dense", action="store_true", help="also the dense path at m = 10^4")
    ap.add_argument("--solve", type=str, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cert", type=str, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.solve is not None:  # child: m,path
        m, path = a.solve.split(",")
        print(json.dumps(_solve(int(m), a.seed, a.p, path)))
        return
    if a.cert is not None:  # child: path,dense
        path, dense = a.cert.split(",")
        print(json.dumps(_certify(path, dense == "1")))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in a.ms:
            path = f"{tmp}/net_{m}.pkl"
            sol = _child(["--solve", f"{m},{path}", "--seed", str(a.seed), "--p", str(a.p)])
            for dense in [False] + ([True] if a.dense and m == 10_000 else []):
                rows.append({**sol, **_child(["--cert", f"{path},{int(dense)}"])})
    hdr = (
        f"{'m':>7} {'n':>6} {'path':>10} {'solve s':>8} {'certify s':>9} {'rss0 MB':>7} "
        f"{'rss MB':>7} {'verdict':>12} {'stationarity':>12} {'gap':>10} {'solver gap':>10}"
    )
    print(hdr)
    for r in rows:
        print(
            f"{r['m']:>7} {r['n']:>6} {r['path']:>10} {r['solve_s']:>8.1f} {r['certify_s']:>9.1f} "
            f"{r['rss_before_mb']:>7.0f} {r['maxrss_mb']:>7.0f} {r['verdict']:>12} "
            f"{r['stationarity']:>12.3g} {r['gap']:>10.3g} {r['solver_gap']:>10.3g}"
        )
    st = {r["m"]: r for r in rows if r["path"] == "structured"}
    for r in rows:
        if r["path"] == "dense" and r["m"] in st:
            print(
                f"m = {r['m']}: dense / structured certify time = "
                f"{r['certify_s'] / st[r['m']]['certify_s']:.1f}x"
            )


if __name__ == "__main__":
    main()
