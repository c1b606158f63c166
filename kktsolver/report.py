"""Statistics and report of the reproduction sweep: bootstrap CIs, log-log exponent fits, report.md.

The statistics are small pure functions; :func:`write_report` reads a results store and writes the
markdown report with its figures, every number computed from (and traceable to) store rows.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .store import ResultsStore

__all__ = [
    "MeanCI",
    "PowerFit",
    "bootstrap_mean_ci",
    "fit_loglog",
    "CLASSES",
    "class_rows",
    "class_table",
    "envelope_check",
    "write_report",
]

KKT_VERDICTS = ("kkt", "local_min", "global_min")


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class MeanCI:
    """Mean of a sample with a percentile-bootstrap confidence interval.

    ``n`` observations in ``n_groups`` independent groups (the bootstrap resamples groups: points of
    one dataset are not independent of each other). ``low``/``high`` are None when n_groups < 2.
    """

    mean: float
    low: float | None
    high: float | None
    n: int
    n_groups: int
    level: float
    n_boot: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return dict(self.__dict__)


def _group_index(groups: Sequence[Any] | None, n: int) -> tuple[np.ndarray, int]:
    if groups is None:
        return np.arange(n), n
    _, inv = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    return inv.ravel(), int(inv.max()) + 1 if n else 0


def bootstrap_mean_ci(
    values: Sequence[float],
    groups: Sequence[Any] | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> MeanCI:
    """Mean with a (cluster) percentile-bootstrap interval.

    The estimate is xbar = sum_i x_i / n. A replicate draws G groups with replacement from the G
    groups and takes the mean of all their points (ratio of group sums to group counts); the
    interval is the (1 - level)/2 and (1 + level)/2 quantiles of the replicates. Without ``groups``
    every point is its own group (the ordinary bootstrap).
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise InputError("bootstrap_mean_ci: no values")
    if not np.all(np.isfinite(x)):
        raise InputError("bootstrap_mean_ci: values contain NaN or infinity")
    if not 0 < level < 1:
        raise InputError(f"level must lie in (0, 1), got {level}")
    gi, G = _group_index(groups, x.size)
    mean = float(x.mean())
    if G < 2:
        return MeanCI(mean, None, None, int(x.size), G, level, 0)
    sums = np.bincount(gi, weights=x, minlength=G)
    cnts = np.bincount(gi, minlength=G).astype(float)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, G, size=(n_boot, G))
    reps = sums[draw].sum(axis=1) / cnts[draw].sum(axis=1)
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return MeanCI(mean, float(lo), float(hi), int(x.size), G, level, n_boot)


@dataclass(frozen=True)
class PowerFit:
    """Fit of L ~ C p^alpha: slope alpha of log(mean L) against log p, with a bootstrap interval.

    ``p_used`` are the noise levels whose mean was positive (log defined); ``low``/``high`` the
    percentile-bootstrap interval of the slope (groups resampled within each p), None if fewer than
    three levels or no valid replicates; ``stderr`` the ordinary least-squares standard error.
    """

    slope: float | None
    intercept: float | None
    low: float | None
    high: float | None
    stderr: float | None
    p_used: tuple[float, ...]
    n_points: int
    level: float
    n_boot: int
    n_boot_valid: int

    def contains(self, value: float) -> bool | None:
        """Whether ``value`` lies in the interval (None if there is no interval)."""
        if self.low is None or self.high is None:
            return None
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        d = dict(self.__dict__)
        d["p_used"] = list(self.p_used)
        return d


def _ols(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float, float | None]:
    A = np.column_stack([lx, np.ones_like(lx)])
    coef, *_ = np.linalg.lstsq(A, ly, rcond=None)
    se = None
    if lx.size > 2:
        resid = ly - A @ coef
        s2 = float(resid @ resid) / (lx.size - 2)
        se = math.sqrt(s2 / float(np.sum((lx - lx.mean()) ** 2)))
    return float(coef[0]), float(coef[1]), se


def fit_loglog(
    p: Sequence[float],
    values: Sequence[float],
    groups: Sequence[Any] | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> PowerFit:
    """Exponent alpha in mean L(p) ~ C p^alpha.

    For each distinct p, Lbar(p) is the mean of the values at p; alpha, log C are the least-squares
    line through (log p, log Lbar(p)) over the p with Lbar(p) > 0. Fitting the log of the mean (not
    the mean of logs) keeps exact zeros (benign fits) in the data. The interval resamples the groups
    (datasets) within each p, recomputes every Lbar(p) and the line; replicates with a zero mean are
    dropped and counted.
    """
    p = np.asarray(p, dtype=float)
    x = np.asarray(values, dtype=float)
    if p.shape != x.shape:
        raise InputError(f"fit_loglog: {p.size} noise levels for {x.size} values")
    if np.any(p <= 0) or not np.all(np.isfinite(x)) or np.any(x < 0):
        raise InputError("fit_loglog: p must be > 0 and values finite and >= 0")
    gi, _ = _group_index(groups, x.size)
    levels = np.unique(p)
    per = []
    for lv in levels:
        sel = p == lv
        g = gi[sel]
        _, inv = np.unique(g, return_inverse=True)
        G = int(inv.max()) + 1
        per.append(
            (
                np.bincount(inv, weights=x[sel], minlength=G),
                np.bincount(inv, minlength=G).astype(float),
            )
        )
    means = np.array([s.sum() / c.sum() for s, c in per])
    ok = means > 0
    empty = PowerFit(
        None, None, None, None, None, tuple(levels[ok].tolist()), int(x.size), level, 0, 0
    )
    if ok.sum() < 2:
        return empty
    lx = np.log(levels[ok])
    slope, icpt, se = _ols(lx, np.log(means[ok]))
    low = high = None
    n_valid = 0
    if ok.sum() >= 3 and n_boot > 0:
        rng = np.random.default_rng(seed)
        # (n_boot, levels) replicate means: groups resampled with replacement within each level
        mb = np.empty((n_boot, int(ok.sum())))
        for j, k in enumerate(np.flatnonzero(ok)):
            s, c = per[k]
            d = rng.integers(0, s.size, size=(n_boot, s.size))
            mb[:, j] = s[d].sum(axis=1) / c[d].sum(axis=1)
        good = np.all(mb > 0, axis=1)
        n_valid = int(good.sum())
        if n_valid >= max(20, n_boot // 10):
            # least-squares slope of every replicate at once: cov(lx, ly) / var(lx)
            ly = np.log(mb[good])
            xc = lx - lx.mean()
            reps = (ly - ly.mean(axis=1, keepdims=True)) @ xc / float(xc @ xc)
            low, high = (float(v) for v in np.quantile(reps, [(1 - level) / 2, (1 + level) / 2]))
    return PowerFit(
        slope, icpt, low, high, se, tuple(levels[ok].tolist()), int(x.size), level, n_boot, n_valid
    )


# --------------------------------------------------------------------------- classes of rows


@dataclass(frozen=True)
class ClassDef:
    """A class of stored rows the report analyses, with the SQL condition that selects them."""

    key: str
    title: str
    where: str  # SQL condition on the results table (traceability)
    description: str


CLASSES: tuple[ClassDef, ...] = (
    ClassDef(
        "global",
        "Global max-margin network",
        "method = 'global'",
        "the exact global minimum of (P) from the global solver, one per dataset",
    ),
    ClassDef(
        "kkt",
        "All sampled KKT points",
        "method = 'sample' AND verdict IN ('kkt','local_min','global_min')",
        "every certified KKT class found by the sampling strategies (duplicates across strategies "
        "removed by function and objective)",
    ),
    ClassDef(
        "global_min",
        "Sampled KKT points that are global minima",
        "method = 'sample' AND verdict = 'global_min'",
        "sampled KKT classes the certifier proves globally optimal",
    ),
    ClassDef(
        "local_min",
        "Local minima that are not global",
        "method = 'sample' AND verdict = 'local_min'",
        "sampled KKT classes certified local minima at the width in the `width` column (the "
        "grid's [sample] width: by default the network's own number of neurons), not global",
    ),
    ClassDef(
        "non_minimal",
        "KKT points that are not local minima",
        "method = 'sample' AND verdict = 'kkt'",
        "sampled KKT classes the certifier shows are not local minima (a descent witness exists)",
    ),
    ClassDef(
        "max_error",
        "Largest clean error found (extreme_kkt)",
        "method = 'extreme' AND strategy = 'max_error'",
        "the KKT point of largest clean error found by the extreme search, one per dataset",
    ),
    ClassDef(
        "min_error",
        "Smallest clean error found (extreme_kkt)",
        "method = 'extreme' AND strategy = 'min_error'",
        "the KKT point of smallest clean error found by the extreme search, one per dataset",
    ),
)
CLASS_BY_KEY = {c.key: c for c in CLASSES}


def _dedupe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, KKT class): strategies may find the same class; keep the first.

    Classes are matched by clean error (to 1e-9) and objective (to 7 significant digits): the
    enumeration's ``function_id`` is numbered per search, so it cannot match across units.
    """
    seen: set[tuple] = set()
    out = []
    for r in rows:
        obj = r.get("objective")
        k = (
            r["instance_key"],
            round(float(r.get("clean_error") or 0.0), 9),
            None if obj is None else float(f"{obj:.7g}"),
        )
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


def class_rows(store: ResultsStore, key: str) -> list[dict[str, Any]]:
    """Rows of one class (``CLASSES``), deduplicated for the sampled classes, clean error known."""
    c = CLASS_BY_KEY[key]
    rows = store.rows(where=c.where + " AND clean_error IS NOT NULL")
    return _dedupe(rows) if "sample" in c.where else rows


@dataclass(frozen=True)
class ClassLevel:
    """Summary of one class at one noise level p (one table row of the report)."""

    p: float
    n_points: int
    n_instances: int
    mean: MeanCI
    min: float
    max: float
    argmin: str
    argmax: str
    n_zero: int


def class_table(rows: list[dict[str, Any]], level: float = 0.95, seed: int = 0) -> list[ClassLevel]:
    """Per-p mean with a cluster-bootstrap CI (datasets resampled), extremes with their row keys."""
    by_p: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_p[float(r["p"])].append(r)
    out = []
    for p in sorted(by_p):
        rs = by_p[p]
        L = np.array([float(r["clean_error"]) for r in rs])
        inst = [r["instance_key"] for r in rs]
        ci = bootstrap_mean_ci(L, inst, level=level, seed=seed)
        i_min, i_max = int(np.argmin(L)), int(np.argmax(L))
        out.append(
            ClassLevel(
                p,
                len(rs),
                len(set(inst)),
                ci,
                float(L[i_min]),
                float(L[i_max]),
                rs[i_min]["row_key"],
                rs[i_max]["row_key"],
                int(np.sum(L == 0)),
            )
        )
    return out


def class_fit(rows: list[dict[str, Any]], level: float = 0.95, seed: int = 0) -> PowerFit:
    """Exponent of the class mean against p (datasets are the bootstrap groups)."""
    return fit_loglog(
        [r["p"] for r in rows],
        [r["clean_error"] for r in rows],
        [r["instance_key"] for r in rows],
        level=level,
        seed=seed,
    )


@dataclass(frozen=True)
class Envelope:
    """How the KKT points sit against c p^5 <= L <= C sqrt(p), per p and overall.

    ``C_needed[p]`` = max L / sqrt(p) (the smallest C for which the upper bound holds at p);
    ``c_allowed[p]`` = min L / p^5 (the largest c for which the lower bound holds; 0 if some L = 0);
    ``c_allowed_noisy[p]`` the same over datasets with at least one flipped label (None if none).
    ``n_zero_clean[p]`` counts the L = 0 points on datasets without any flipped label: a network
    with N(x_i) <= -1 at a noisy x_i is <= 0 on a neighbourhood of it, so L = 0 is only possible
    there.
    """

    ps: tuple[float, ...]
    C_needed: tuple[float, ...]
    c_allowed: tuple[float, ...]
    c_allowed_noisy: tuple[float | None, ...]
    n_zero: tuple[int, ...]
    n_zero_clean: tuple[int, ...]
    n_points: tuple[int, ...]
    max_fit: PowerFit | None
    min_fit: PowerFit | None


def envelope_check(
    kkt_rows: list[dict[str, Any]],
    max_rows: list[dict[str, Any]] | None = None,
    min_rows: list[dict[str, Any]] | None = None,
    seed: int = 0,
) -> Envelope:
    """Ratios L / sqrt(p) and L / p^5 over all KKT points, and the exponents of the extremes.

    The exponents are fitted to the per-dataset maximum (minimum) over ``kkt_rows`` and
    ``max_rows`` (``min_rows``), the extremes found by ``extreme_kkt`` (a time-bounded search may
    miss what the sampler found, or find nothing, so both sources count).
    """
    by_p: dict[float, list[float]] = defaultdict(list)
    noisy: dict[float, list[bool]] = defaultdict(list)
    for r in kkt_rows + (max_rows or []) + (min_rows or []):
        by_p[float(r["p"])].append(float(r["clean_error"]))
        noisy[float(r["p"])].append((r.get("n_negative") or 0) > 0)
    ps = tuple(sorted(by_p))
    C = tuple(max(by_p[p]) / math.sqrt(p) for p in ps)
    c = tuple(min(by_p[p]) / p**5 for p in ps)
    c_noisy = tuple(
        min((v for v, n in zip(by_p[p], noisy[p], strict=False) if n), default=None) for p in ps
    )
    c_noisy = tuple(None if v is None else v / p**5 for v, p in zip(c_noisy, ps, strict=False))
    nz = tuple(sum(v == 0 for v in by_p[p]) for p in ps)
    nzc = tuple(sum(v == 0 and not n for v, n in zip(by_p[p], noisy[p], strict=False)) for p in ps)
    npts = tuple(len(by_p[p]) for p in ps)

    def per_instance(rows: list[dict[str, Any]], pick) -> list[dict[str, Any]]:
        best: dict[str, dict[str, Any]] = {}
        for r in rows:
            k = r["instance_key"]
            if k not in best or pick(r["clean_error"], best[k]["clean_error"]):
                best[k] = r
        return list(best.values())

    mx = per_instance(kkt_rows + (max_rows or []), lambda a, b: a > b)
    mn = per_instance(kkt_rows + (min_rows or []), lambda a, b: a < b)
    max_fit = class_fit(mx, seed=seed) if mx else None
    min_fit = class_fit(mn, seed=seed) if mn else None
    return Envelope(ps, C, c, c_noisy, nz, nzc, npts, max_fit, min_fit)


# --------------------------------------------------------------------------- formatting


def _g(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def _pairs(ps: Sequence[float], vals: Sequence[float]) -> str:
    return ", ".join(f"p={p:g}: {v:.3g}" for p, v in zip(ps, vals, strict=True))


def _fit_text(f: PowerFit | None) -> str:
    if f is None or f.slope is None:
        return "n/a (fewer than two noise levels with a positive mean)"
    ci = (
        f"[{f.low:.2f}, {f.high:.2f}]"
        if f.low is not None
        else "(no interval: fewer than 3 levels or too many zero replicates)"
    )
    return f"{f.slope:.2f} {ci}"


def _verdict_lines(
    env: Envelope,
    fits: dict[str, PowerFit],
    levels: dict[str, list[ClassLevel]],
    enum_rows: list[dict[str, Any]] | None = None,
) -> list[str]:
    out = []
    if not env.ps:
        return ["- No KKT points with a clean error in the store: no verdict."]
    # upper envelope L <= C sqrt(p)
    Cmin, Cmax = min(env.C_needed), max(env.C_needed)
    pmax = env.ps[int(np.argmax(env.C_needed))]
    mf = env.max_fit
    text = (
        f"- **Upper envelope L <= C sqrt(p)** over {sum(env.n_points)} KKT points: the smallest C "
        f"that works is {Cmax:.3g} (reached at p = {pmax:g}); max L / sqrt(p) ranges over "
        f"[{Cmin:.3g}, {Cmax:.3g}] across p."
    )
    if mf is not None and mf.slope is not None:
        text += (
            " The largest clean error found per dataset (global, sampled and extreme KKT points) "
            f"scales as p^{_fit_text(mf)}. "
        )
        if mf.high is not None and mf.high < 0.5:
            text += (
                "The whole interval lies below 1/2, so max L / sqrt(p) grows as p decreases: "
                "**the data DISAGREE with a p-independent C** on this grid."
            )
        elif mf.low is not None:
            text += "The interval reaches 1/2 or above: **consistent** with L <= C sqrt(p) here."
        else:
            text += "No interval: **undecided**."
    out.append(text)
    # lower envelope c p^5 <= L
    nzero = sum(env.n_zero)
    cmin = min(env.c_allowed)
    text = (
        f"- **Lower envelope c p^5 <= L**: the largest c that works at every p is {cmin:.3g}"
        f" (min L / p^5 per p: {_pairs(env.ps, env.c_allowed)})."
    )
    if nzero:
        zs = ", ".join(f"p={p:g}: {z}" for p, z in zip(env.ps, env.n_zero, strict=False) if z)
        nclean = sum(env.n_zero_clean)
        text += (
            f" {nzero} KKT points have L = 0 exactly ({zs}), so at those p **no c > 0 works**; "
            f"{nclean} of them are on datasets without any flipped label (where a positive "
            "network is the natural fit)"
        )
        if nclean < nzero:
            text += f" and **{nzero - nclean} on datasets with flipped labels** (unexpected)"
        cn = [v for v in env.c_allowed_noisy if v is not None]
        if cn:
            text += (
                f"; over datasets with at least one flipped label the largest c is {min(cn):.3g}"
            )
        text += "."
    mn = env.min_fit
    if mn is not None and mn.slope is not None:
        text += f" The smallest clean error found per dataset scales as p^{_fit_text(mn)}"
        if mn.low is not None and mn.low > 5:
            text += ": steeper than p^5, **the data DISAGREE** with the lower envelope."
        elif mn.low is not None:
            text += ": not steeper than p^5, **consistent** with the lower envelope."
        else:
            text += "."
    out.append(text)
    # local minima ~ p
    lf = fits.get("local_min")
    n_local = sum(lv.n_points for lv in levels.get("local_min", []))
    if lf is None or lf.slope is None:
        out.append(
            f"- **Local minima scale like p**: cannot be tested, {n_local} non-global local minima "
            "were found (fewer than two noise levels with a positive mean)."
        )
    else:
        inside = lf.contains(1.0)
        word = {
            True: "**consistent** (the interval contains 1)",
            False: "**the data DISAGREE** (the interval excludes 1)",
            None: "**undecided** (no interval)",
        }[inside]
        out.append(
            f"- **Local minima scale like p**: over {n_local} non-global local minima the mean "
            f"clean error scales as p^{_fit_text(lf)}: {word}."
        )
    if enum_rows:
        loc = [r for r in enum_rows if r["verdict"] == "local_min"]
        non = [r for r in enum_rows if r["verdict"] == "kkt"]
        ms = sorted({r["m"] for r in enum_rows})
        n_sets = len({r["instance_key"] for r in enum_rows})
        text = (
            f"- The complete enumerations (m = {', '.join(map(str, ms))}, {n_sets} datasets) "
            f"contain {len(loc)} non-global local minima and {len(non)} non-minimal KKT points"
        )
        for name, rs in (("local minima", loc), ("non-minimal KKT points", non)):
            if rs:
                L = [r["clean_error"] for r in rs]
                text += f"; clean error of the {name} in [{min(L):.3g}, {max(L):.3g}]"
        out.append(text + " (too few noise levels at one small m for an exponent).")
    gf = fits.get("global")
    if gf is not None and gf.slope is not None:
        out.append(
            f"- For comparison the **global max-margin network** has mean clean error ~ "
            f"p^{_fit_text(gf)} (tempered overfitting predicts 1)."
        )
    return out


def _class_section(cdef: ClassDef, table: list[ClassLevel], fit: PowerFit) -> list[str]:
    lines = [
        f"### {cdef.title}",
        "",
        f"{cdef.description[0].upper()}{cdef.description[1:]}. "
        f"Store rows: `SELECT * FROM results WHERE {cdef.where}`.",
        "",
    ]
    if not table:
        return lines + ["No rows.", ""]
    lines += [
        "| p | datasets | points | mean L | 95% CI | min L (row) | max L (row) | L = 0 |",
        "|---:|---:|---:|---:|---|---|---|---:|",
    ]
    for lv in table:
        ci = (
            f"[{_g(lv.mean.low)}, {_g(lv.mean.high)}]"
            if lv.mean.low is not None
            else "n/a (1 dataset)"
        )
        lines.append(
            f"| {lv.p:g} | {lv.n_instances} | {lv.n_points} | {_g(lv.mean.mean, 4)} | {ci} | "
            f"{_g(lv.min)} (`{lv.argmin[:10]}`) | {_g(lv.max)} (`{lv.argmax[:10]}`) | {lv.n_zero} |"
        )
    lines += ["", f"Fitted exponent of mean L against p: {_fit_text(fit)}.", ""]
    return lines


def _enumeration_section(store: ResultsStore) -> list[str]:
    rows = store.rows(method="enumerate")
    if not rows:
        return []
    by_inst: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_inst[r["instance_key"]].append(r)
    lines = [
        "## Complete enumeration (small m)",
        "",
        "Every KKT class of each small dataset "
        "(`SELECT * FROM results WHERE method = 'enumerate'`).",
        "",
        "| m | p | seed | noisy | classes | complete | global / local / non-minimal | L range |",
        "|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for rs in sorted(by_inst.values(), key=lambda rs: (rs[0]["m"], rs[0]["p"], rs[0]["seed"])):
        r0 = rs[0]
        v = [r["verdict"] for r in rs]
        L = [r["clean_error"] for r in rs if r["clean_error"] is not None]
        comp = {1: "yes", 0: "no", None: "n/a"}[r0["complete"]]
        lines.append(
            f"| {r0['m']} | {r0['p']:g} | {r0['seed']} | {r0['n_negative']} | {len(rs)} | {comp} | "
            f"{v.count('global_min')} / {v.count('local_min')} / {v.count('kkt')} | "
            f"[{_g(min(L)) if L else 'n/a'}, {_g(max(L)) if L else 'n/a'}] |"
        )
    return lines + [""]


def write_report(
    store: ResultsStore,
    out: str | Path,
    grid_text: str = "",
    run_info: dict[str, Any] | None = None,
    figures: bool = True,
    seed: int = 0,
) -> Path:
    """Write ``report.md`` (and the figures, unless ``figures=False``) into ``out`` from ``store``.

    Returns the report path. The analysis is deterministic (bootstrap seeded with ``seed``).
    """
    from . import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows_by_class = {c.key: class_rows(store, c.key) for c in CLASSES}
    tables = {k: class_table(v, seed=seed) for k, v in rows_by_class.items()}
    fits = {k: class_fit(v, seed=seed) for k, v in rows_by_class.items()}
    env = envelope_check(
        rows_by_class["kkt"] + rows_by_class["global"],
        rows_by_class["max_error"] or None,
        rows_by_class["min_error"] or None,
        seed=seed,
    )
    units = store.units()
    failed = [u for u in units if u["status"] == "failed"]
    info = dict(run_info or {})

    fig_lines: list[str] = []
    if figures:
        paths = plots.write_figures(store, rows_by_class, tables, fits, out)
        for title, path in paths:
            fig_lines += [f"![{title}]({path.name})", "", f"*{title}.*", ""]

    L: list[str] = [
        "# Reproduction of the 1-D predictions for KKT points of max-margin ReLU networks",
        "",
    ]
    L += [
        "## Setting",
        "",
        "Seed setting in dimension one: x_i ~ Uniform[0, 1], ground truth f* = +1, each label "
        "flipped with probability p. Two-layer ReLU networks with biases, max-margin problem (P): "
        "minimise 1/2||theta||^2 subject to y_i N(x_i) >= 1. Clean error L(N) = Pr_x[N(x) <= 0], "
        "computed exactly from the piecewise-linear form. Claim under test: w.h.p. every KKT point "
        "has c p^5 <= L <= C sqrt(p), and local minima have L ~ p.",
        "",
        f"Store: `results.sqlite` with {store.count('results')} result rows from "
        f"{len(units) - len(failed)} finished units ({len(failed)} failed). "
        + (
            f"Sweep wall time: {info['sweep_seconds']:.1f} s with {info.get('executor')} "
            f"executor, {info.get('jobs')} jobs. "
            if "sweep_seconds" in info
            else ""
        )
        + f"kktsolver {info.get('version', '')}.",
        "",
    ]
    if grid_text:
        L += [
            "Grid (`" + info.get("grid_name", "grid") + "`):",
            "",
            "```toml",
            grid_text.strip(),
            "```",
            "",
        ]
    enum_rows = store.rows(where="method = 'enumerate' AND clean_error IS NOT NULL")
    L += ["## Verdicts", ""] + _verdict_lines(env, fits, tables, enum_rows) + [""]
    L += [
        "## Fitted exponents",
        "",
        "Slope of log(mean L) against log p (least squares over the p with mean L > 0), 95% "
        "percentile-bootstrap interval resampling datasets within each p.",
        "",
        "| class | points | exponent | 95% CI | OLS s.e. | p used |",
        "|---|---:|---:|---|---:|---|",
    ]
    for c in CLASSES:
        f = fits[c.key]
        if not rows_by_class[c.key]:
            continue
        ci = f"[{f.low:.2f}, {f.high:.2f}]" if f.low is not None else "n/a"
        L.append(
            f"| {c.title} | {f.n_points} | {_g(f.slope)} | {ci} | {_g(f.stderr, 2)} | "
            f"{', '.join(f'{p:g}' for p in f.p_used)} |"
        )
    L += [
        "",
        "## Envelope ratios per p (all KKT points)",
        "",
        "KKT points here: the global minima, the sampled KKT points and the extremes. The last "
        "columns restrict min L / p^5 to datasets with at least one flipped label and count the "
        "zeros that come from datasets without any.",
        "",
        "| p | points | max L / sqrt(p) | min L / p^5 | min L / p^5 (noisy data) | L = 0 | "
        "of which noise-free data |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, p in enumerate(env.ps):
        L.append(
            f"| {p:g} | {env.n_points[i]} | {_g(env.C_needed[i])} | {_g(env.c_allowed[i])} | "
            f"{_g(env.c_allowed_noisy[i])} | {env.n_zero[i]} | {env.n_zero_clean[i]} |"
        )
    L += [
        "",
        "## Tables per class",
        "",
        "Row keys in parentheses are prefixes of `row_key` in `results.sqlite` (the row with that "
        "value).",
        "",
    ]
    for c in CLASSES:
        L += _class_section(c, tables[c.key], fits[c.key])
    L += _enumeration_section(store)
    if failed:
        L += ["## Failed units", "", f"{len(failed)} units failed (retried on the next run):", ""]
        for u in failed[:20]:
            cfg = u["config"]
            L.append(
                f"- {u['method']} m={cfg['m']} p={cfg['p']} seed={cfg['seed']}: "
                f"{(u['error'] or '').splitlines()[0]}"
            )
        L.append("")
    if fig_lines:
        L += ["## Figures", ""] + fig_lines
    L += [
        "## Reproducing",
        "",
        "Every number above is computed from `results.sqlite` by `kktsolver.report.write_report`; "
        "`kktsolver export DIR --csv` writes the tables as CSV. Rerunning `kktsolver reproduce` "
        "with the same grid reuses the stored units.",
        "",
        f"<!-- report written in {time.perf_counter() - t0:.1f} s; analysis json: "
        + json.dumps({k: fits[k].to_dict() for k in fits}, default=str)[:4000]
        + " -->",
        "",
    ]
    path = out / "report.md"
    tmp = out / "report.md.tmp"
    tmp.write_text("\n".join(L))
    tmp.replace(path)  # atomic: an interrupted report never leaves a half-written file
    return path
