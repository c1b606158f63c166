"""Figures of the reproduction report (matplotlib, PNG, sized and lettered to be readable in print).

Each function takes plain rows or networks and an Axes or a path; nothing here runs a solver.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .clean_error import nonpositive_intervals
from .data import Dataset
from .network import ReLUNetwork

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from .report import ClassLevel, PowerFit
    from .store import ResultsStore

__all__ = [
    "plot_network",
    "plot_error_vs_p",
    "plot_examples",
    "plot_histograms",
    "write_figures",
]

_STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "figure.dpi": 110,
    "savefig.dpi": 150,
}
_COLORS = {
    "global": "black",
    "kkt": "tab:gray",
    "global_min": "tab:blue",
    "local_min": "tab:green",
    "non_minimal": "tab:red",
    "max_error": "tab:purple",
    "min_error": "tab:orange",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(_STYLE)
    return plt


def plot_network(
    ax: Axes,
    net: ReLUNetwork,
    dataset: Dataset,
    title: str = "",
    interval: tuple[float, float] = (0.0, 1.0),
) -> None:
    """N(x) over ``interval`` with the data (noisy points, y = -1, marked) and {N <= 0} shaded."""
    a, b = interval
    pl = net.piecewise_linear()
    inner = pl.kinks[(pl.kinks > a) & (pl.kinks < b)]
    xs = np.unique(np.concatenate([np.linspace(a, b, 801), inner]))
    ys = pl(xs)
    for lo, hi in nonpositive_intervals(net, interval):
        ax.axvspan(lo, hi, color="tab:red", alpha=0.18, lw=0)
    ax.plot(xs, ys, color="black", lw=1.4, label="N(x)")
    ax.axhline(0, color="0.4", lw=0.8)
    x, y = dataset.x, dataset.y
    pos, neg = y > 0, y < 0
    ax.plot(x[pos], np.ones(pos.sum()), "o", ms=3.5, color="tab:blue", label="y = +1")
    ax.plot(x[neg], -np.ones(neg.sum()), "X", ms=7, color="tab:red", label="noisy (y = -1)")
    # clip the y-range to the margin scale (data sit at |N| >= 1): N grows to ~1/gap between points,
    # which would flatten the picture around the noisy points that matter
    lim = min(max(3.0, 1.5 * float(np.median(np.abs(ys)))), 8.0)
    ax.set_ylim(-lim, lim)
    ax.set_xlim(a, b)
    ax.set_xlabel("x")
    ax.set_ylabel("N(x)")
    if title:
        ax.set_title(title)


def _p_ticks(ax: Axes, ps: np.ndarray) -> None:
    """Major ticks at the grid's p values, plain numbers, no crowded minor labels."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(ps))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(ps.min() / 1.25, ps.max() * 1.25)


def _ref_lines(ax: Axes, ps: np.ndarray, anchor: float) -> None:
    """Reference slopes p, sqrt(p), p^5 through (geometric middle p, anchor)."""
    pm = float(np.exp(np.mean(np.log(ps))))
    grid = np.geomspace(ps.min(), ps.max(), 50)
    for expo, style, lab in ((1.0, "--", "∝ p"), (0.5, ":", "∝ sqrt(p)"), (5.0, "-.", "∝ p^5")):
        ax.plot(grid, anchor * (grid / pm) ** expo, style, color="0.35", lw=1, label=lab)


def plot_error_vs_p(
    classes: Sequence[tuple[str, str]],
    rows_by_class: dict[str, list[dict[str, Any]]],
    tables: dict[str, list[ClassLevel]],
    fits: dict[str, PowerFit],
    path: Path,
) -> Path | None:
    """Log-log clean error vs p, one panel per non-empty class: points, means with CIs, slopes."""
    plt = _plt()
    keys = [
        (k, t) for k, t in classes if any(r["clean_error"] > 0 for r in rows_by_class.get(k, []))
    ]
    if not keys:
        return None
    ncol = min(3, len(keys))
    nrow = -(-len(keys) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.8 * nrow), squeeze=False)
    for ax, (k, title) in zip(axes.flat, keys, strict=False):
        rows = [r for r in rows_by_class[k] if r["clean_error"] > 0]
        p = np.array([r["p"] for r in rows])
        L = np.array([r["clean_error"] for r in rows])
        rng = np.random.default_rng(0)  # horizontal jitter so overlapping points stay visible
        ax.plot(
            p * np.exp(rng.uniform(-0.04, 0.04, p.size)),
            L,
            ".",
            color=_COLORS.get(k, "C0"),
            alpha=0.3,
            ms=4,
        )
        tab = [lv for lv in tables[k] if lv.mean.mean > 0]
        if tab:
            tp = np.array([lv.p for lv in tab])
            tm = np.array([lv.mean.mean for lv in tab])
            lo = np.array([lv.mean.low if lv.mean.low is not None else lv.mean.mean for lv in tab])
            hi = np.array(
                [lv.mean.high if lv.mean.high is not None else lv.mean.mean for lv in tab]
            )
            ax.errorbar(
                tp,
                tm,
                yerr=[tm - np.maximum(lo, tm * 1e-3), hi - tm],
                fmt="s-",
                color=_COLORS.get(k, "C0"),
                ms=5,
                capsize=3,
                label="mean, 95% CI",
            )
            _ref_lines(ax, tp if tp.size > 1 else p, float(np.exp(np.mean(np.log(tm)))))
        f = fits.get(k)
        if f is not None and f.slope is not None:
            title = f"{title}\nfitted exponent {f.slope:.2f}"
            if f.low is not None:
                title += f" [{f.low:.2f}, {f.high:.2f}]"
        ax.set_xscale("log")
        ax.set_yscale("log")
        _p_ticks(ax, np.unique(p))
        # keep the data readable: the p^5 reference would otherwise stretch the axis over decades
        lo_y, hi_y = float(L.min()), float(L.max())
        if tab:
            lo_y = min(lo_y, float(np.min(np.maximum(lo, tm * 1e-3))))
            hi_y = max(hi_y, float(np.max(hi)))
        ax.set_ylim(lo_y / 3, hi_y * 3)
        ax.set_xlabel("noise level p")
        ax.set_ylabel("clean error L")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.25)
        ax.legend(loc="lower right", fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle("Clean error against noise level (log-log), with reference slopes", fontsize=12)
    return _save(fig, path)


def plot_examples(
    examples: Sequence[tuple[str, ReLUNetwork | None, float | None]],
    dataset: Dataset,
    path: Path,
    caption: str = "",
) -> Path:
    """One panel per (label, network, clean error) on the same dataset; a None network leaves a
    panel saying that no such point was found (so the figure always has the same layout)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(examples), figsize=(5.0 * len(examples), 3.9), squeeze=False)
    a, b = dataset.support or (0.0, 1.0)
    for ax, (label, net, L) in zip(axes.flat, examples, strict=True):
        if net is None:
            ax.text(
                0.5,
                0.5,
                f"no {label}\nfound for this dataset",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        title = f"{label}\nL = {L:.3g}, 1/2||θ||² = {net.objective():.4g}"
        plot_network(ax, net, dataset, title, (a, b))
    axes.flat[0].legend(loc="best", fontsize=8, framealpha=0.8)
    if caption:
        fig.suptitle(caption, fontsize=11)
    return _save(fig, path)


def plot_histograms(
    rows: list[dict[str, Any]], global_rows: list[dict[str, Any]], path: Path
) -> Path | None:
    """Histogram of clean error over sampled KKT points, one panel per p, global minimum marked."""
    if not rows:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    by_p: dict[float, list[float]] = defaultdict(list)
    for r in rows:
        by_p[r["p"]].append(r["clean_error"])
    glob: dict[float, list[float]] = defaultdict(list)
    for r in global_rows:
        glob[r["p"]].append(r["clean_error"])
    ps = sorted(by_p)
    ncol = min(3, len(ps))
    nrow = -(-len(ps) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 3.2 * nrow), squeeze=False)
    for ax, p in zip(axes.flat, ps, strict=False):
        L = np.array(by_p[p])
        ax.hist(L, bins=min(30, max(5, L.size // 4)), color="tab:gray", edgecolor="black", lw=0.5)
        if glob.get(p):
            ax.axvline(
                float(np.mean(glob[p])), color="black", lw=1.5, ls="--", label="global min (mean)"
            )
            ax.legend(fontsize=8)
        ax.axvline(np.sqrt(p), color="tab:red", lw=1, ls=":")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"p = {p:g}: {L.size} KKT points", fontsize=10)
        ax.set_xlabel("clean error L")
        ax.set_ylabel("count")
    for ax in list(axes.flat)[len(ps) :]:
        ax.axis("off")
    fig.suptitle("Clean error of sampled KKT points per p (dotted red: sqrt(p))", fontsize=12)
    return _save(fig, path)


def _net(row: dict[str, Any]) -> ReLUNetwork:
    return ReLUNetwork.from_dict(json.loads(row["network"]))


def pick_example(store: ResultsStore) -> dict[str, dict[str, Any]] | None:
    """Rows of one dataset with a global min, a non-global local min and a non-minimal KKT point.

    Prefers datasets where all three exist, then the smallest m and the p closest to 0.1.
    """
    rows = store.rows(where="network IS NOT NULL AND clean_error IS NOT NULL")
    by_inst: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        kind = None
        if r["method"] == "global":
            kind = "global"
        elif r["method"] in ("sample", "enumerate", "extreme"):
            kind = {"local_min": "local", "kkt": "kkt", "global_min": "global"}.get(r["verdict"])
        if kind and kind not in by_inst[r["instance_key"]]:
            by_inst[r["instance_key"]][kind] = r
    if not by_inst:
        return None

    def score(item):
        d = item[1]
        r0 = next(iter(d.values()))
        only_enum = all(r["method"] == "enumerate" for r in d.values())
        # most kinds first, then data with flipped labels, the main grid, p near 0.1, small m
        return (
            -len(d),
            r0["n_negative"] == 0,
            only_enum,
            abs(np.log(r0["p"] / 0.1)),
            r0["m"],
            r0["seed"],
        )

    return sorted(by_inst.items(), key=score)[0][1]


def write_figures(
    store: ResultsStore,
    rows_by_class: dict[str, list[dict[str, Any]]],
    tables: dict[str, list[ClassLevel]],
    fits: dict[str, PowerFit],
    out: Path,
) -> list[tuple[str, Path]]:
    """The report's three figures; returns (title, path) of those that had data."""
    from .experiments import instance_dataset
    from .report import CLASSES

    done: list[tuple[str, Path]] = []
    path = plot_error_vs_p(
        [(c.key, c.title) for c in CLASSES],
        rows_by_class,
        tables,
        fits,
        out / "clean_error_vs_p.png",
    )
    if path:
        done.append(("Clean error vs p per class, log-log, reference lines p, sqrt(p), p^5", path))
    ex = pick_example(store)
    if ex:
        r0 = next(iter(ex.values()))
        cfg = {
            "m": r0["m"],
            "p": r0["p"],
            "seed": r0["seed"],
            "interval": [r0["interval_a"], r0["interval_b"]],
        }
        ds = instance_dataset(cfg)
        labels = {
            "global": "global minimum",
            "local": "local minimum (not global)",
            "kkt": "KKT point, not a local minimum",
        }
        examples = [
            (labels[k], _net(ex[k]), ex[k]["clean_error"]) if k in ex else (labels[k], None, None)
            for k in ("global", "local", "kkt")
        ]
        cap = (
            f"One dataset: m = {r0['m']}, p = {r0['p']:g}, seed = {r0['seed']}, "
            f"{r0['n_negative']} flipped labels; shaded: N(x) <= 0"
        )
        path = plot_examples(examples, ds, out / "example_networks.png", cap)
        done.append((cap, path))
    path = plot_histograms(
        rows_by_class.get("kkt", []), rows_by_class.get("global", []), out / "histograms.png"
    )
    if path:
        done.append(("Histograms of clean error over sampled KKT points per p", path))
    return done


def _save(fig: Any, path: Path) -> Path:
    """Lay out, write and close a figure (closing frees it: a sweep draws many)."""
    fig.tight_layout()
    fig.savefig(path)
    _plt().close(fig)
    return path
