"""Report statistics on synthetic data with a known truth: exponent fits, CI coverage, verdicts.

No solver is involved: the truth is built into the data.
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from kktsolver.errors import InputError
from kktsolver.report import (
    bootstrap_mean_ci,
    envelope_check,
    fit_loglog,
    write_report,
)
from kktsolver.store import ResultsStore, UnitRecord

PS = np.array([0.02, 0.04, 0.08, 0.16, 0.32])


def _power_data(alpha, C=0.8, sigma=0.4, groups_per_p=25, seed=0):
    """L = C p^alpha exp(sigma Z): the mean is C e^{sigma^2/2} p^alpha, exponent exactly alpha."""
    rng = np.random.default_rng(seed)
    p = np.repeat(PS, groups_per_p)
    L = C * p**alpha * np.exp(sigma * rng.standard_normal(p.size))
    return p, L, np.arange(p.size)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_fit_recovers_known_exponent(alpha):
    p, L, g = _power_data(alpha)
    f = fit_loglog(p, L, g)
    assert abs(f.slope - alpha) < 0.15
    assert f.low < alpha < f.high
    # interval width consistent with the noise: sd of log-mean at each p is ~ sigma/sqrt(25) = 0.08
    assert f.high - f.low < 0.3
    # the intercept is log(C e^{sigma^2/2})
    assert f.intercept == pytest.approx(np.log(0.8 * np.exp(0.08)), abs=0.3)


def test_fit_interval_coverage_on_repeated_synthetic_data():
    hits = 0
    reps = 100
    for s in range(reps):
        p, L, g = _power_data(1.0, groups_per_p=15, seed=100 + s)
        f = fit_loglog(p, L, g, n_boot=800, seed=s)
        hits += f.low <= 1.0 <= f.high
    # nominal 95%; percentile bootstrap with 15 groups per level under-covers a little at most
    assert 0.85 <= hits / reps <= 1.0


def test_fit_skips_levels_with_zero_mean_and_handles_exact_zeros():
    p = np.repeat([0.01, 0.1, 0.2, 0.4], 10)
    L = np.where(p == 0.01, 0.0, 0.5 * p)  # benign at the smallest p, linear elsewhere
    L[p == 0.1] = np.tile([0.0, 0.1], 5)  # half zeros: mean 0.05 = 0.5 * 0.1
    f = fit_loglog(p, L)
    assert f.p_used == (0.1, 0.2, 0.4)
    assert f.slope == pytest.approx(1.0, abs=1e-12)  # exact power law through the means
    single = fit_loglog([0.1, 0.1], [0.2, 0.3])
    assert single.slope is None  # one level: no slope, not a made-up number
    with pytest.raises(InputError):
        fit_loglog([0.1, -0.2], [0.1, 0.2])


def test_bootstrap_ci_covers_the_true_mean():
    # exponential data, true mean 2; n = 40; nominal 95%
    hits = 0
    reps = 300
    for s in range(reps):
        x = np.random.default_rng(s).exponential(2.0, size=40)
        ci = bootstrap_mean_ci(x, n_boot=1000, seed=s)
        assert ci.low <= ci.mean <= ci.high
        hits += ci.low <= 2.0 <= ci.high
    assert 0.88 <= hits / reps <= 0.99


def test_cluster_bootstrap_accounts_for_correlated_points():
    # 20 datasets x 10 points, a strong per-dataset effect: points of a dataset are not independent
    cluster_hits = naive_hits = 0
    reps = 200
    for s in range(reps):
        rng = np.random.default_rng(1000 + s)
        effect = rng.normal(0, 1.0, size=20)
        x = (effect[:, None] + rng.normal(0, 0.2, size=(20, 10))).ravel()
        g = np.repeat(np.arange(20), 10)
        c = bootstrap_mean_ci(x, g, n_boot=800, seed=s)
        n = bootstrap_mean_ci(x, None, n_boot=800, seed=s)
        cluster_hits += c.low <= 0 <= c.high
        naive_hits += n.low <= 0 <= n.high
    assert cluster_hits / reps >= 0.88
    assert naive_hits / reps < 0.7  # the naive interval is far too narrow here


def test_bootstrap_rejects_bad_input():
    with pytest.raises(InputError):
        bootstrap_mean_ci([])
    with pytest.raises(InputError):
        bootstrap_mean_ci([1.0, np.nan])
    one = bootstrap_mean_ci([0.3])
    assert one.mean == 0.3 and one.low is None


def _row(p, L, inst, idx=0):
    return {"p": p, "clean_error": L, "instance_key": inst, "row_key": f"{inst}-{idx}"}


def test_envelope_ratios_by_hand():
    rows = [
        _row(0.04, 0.1, "a"),
        _row(0.04, 0.3, "a", 1),
        _row(0.25, 0.5, "b"),
        _row(0.25, 0.0, "c"),
        _row(0.25, 0.2, "d"),
    ]
    noisy = {"a": 2, "b": 1, "c": 0, "d": 0}
    for r in rows:
        r["n_negative"] = noisy[r["instance_key"]]
    env = envelope_check(rows)
    assert env.ps == (0.04, 0.25)
    assert env.C_needed == pytest.approx((0.3 / 0.2, 0.5 / 0.5))
    assert env.c_allowed == pytest.approx((0.1 / 0.04**5, 0.0))
    assert env.c_allowed_noisy == pytest.approx((0.1 / 0.04**5, 0.5 / 0.25**5))
    assert env.n_zero == (0, 1) and env.n_zero_clean == (0, 1)
    assert env.n_points == (2, 3)


def _synthetic_store(path, local_alpha, kkt_alpha=0.5):
    """A store with hand-made rows: global ~ p, local minima ~ p^local_alpha, others ~ p^kkt_alpha.

    The spread factors have mean exactly 1 at every p, so each class mean is exactly c p^alpha and
    the fitted exponent is alpha (the verdict logic is tested here; coverage is tested above).
    """
    z = np.random.default_rng(7).standard_normal((3, 12))
    spread = np.exp(0.2 * z)
    spread /= spread.mean(axis=1, keepdims=True)
    with ResultsStore(path) as st:
        for p in PS:
            for seed in range(12):
                inst = f"inst-{p}-{seed}"
                recs = [
                    ("global", "global_min", 0.5 * p),
                    ("sample", "local_min", 0.6 * p**local_alpha),
                    ("sample", "kkt", 0.9 * p**kkt_alpha),
                ]
                for k, (method, verdict, mean) in enumerate(recs):
                    L = float(mean * spread[k, seed])
                    key = hashlib.sha256(f"{inst}-{k}".encode()).hexdigest()[:32]
                    row = {
                        "row_key": key,
                        "unit_key": key,
                        "instance_key": inst,
                        "idx": 0,
                        "method": method,
                        "strategy": "random" if method == "sample" else None,
                        "m": 50,
                        "p": float(p),
                        "seed": seed,
                        "verdict": verdict,
                        "clean_error": L,
                        "objective": 1.0 + k + L,
                        "function_id": key,
                    }
                    st.write_unit(
                        UnitRecord(
                            key,
                            method,
                            {"m": 50, "p": float(p), "seed": seed},
                            "done",
                            1,
                            0.0,
                            None,
                            [row],
                        )
                    )
    return path


def test_report_states_agreement_and_disagreement(tmp_path):
    st_ok = ResultsStore(_synthetic_store(tmp_path / "ok.sqlite", local_alpha=1.0))
    rep = write_report(st_ok, tmp_path / "ok", figures=False).read_text()
    assert "Local minima scale like p**: over 60 non-global local minima" in rep
    line = next(ln for ln in rep.splitlines() if "Local minima scale like p" in ln)
    assert "**consistent**" in line
    st_bad = ResultsStore(_synthetic_store(tmp_path / "bad.sqlite", local_alpha=2.0))
    rep = write_report(st_bad, tmp_path / "bad", figures=False).read_text()
    line = next(ln for ln in rep.splitlines() if "Local minima scale like p" in ln)
    assert "DISAGREE" in line
    slope = float(line.split("p^")[1].split()[0])
    assert slope == pytest.approx(2.0, abs=0.005)
    # the upper envelope: the largest error per dataset is the ~p^0.5 class, consistent
    up = next(ln for ln in rep.splitlines() if "Upper envelope" in ln)
    assert "**consistent**" in up
    # tables carry row keys that exist in the store
    keys = {r["row_key"][:10] for r in st_bad.rows()}
    cited = re.findall(r"\(`([0-9a-f]{10})`\)", rep)
    # min and max row at each of 5 p for 4 non-empty classes: global, kkt, local_min, non_minimal
    assert len(cited) == 2 * 5 * 4
    assert set(cited) <= keys
    st_ok.close()
    st_bad.close()


def test_report_flags_an_upper_envelope_violation(tmp_path):
    # KKT points whose error does not shrink with p at all (exponent 0 < 1/2): C must grow as p -> 0
    st = ResultsStore(_synthetic_store(tmp_path / "flat.sqlite", local_alpha=1.0, kkt_alpha=0.0))
    rep = write_report(st, tmp_path / "flat", figures=False).read_text()
    up = next(ln for ln in rep.splitlines() if "Upper envelope" in ln)
    assert "DISAGREE" in up
    analysis = json.loads(rep.split("analysis json: ")[1].split(" -->")[0])
    assert analysis["non_minimal"]["slope"] == pytest.approx(0.0, abs=1e-9)
    st.close()
