"""The README's Python tour runs as written, and the claims in its comments hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block(section: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}")
    match = re.search(r"```python\n(.*?)```", text[start:], flags=re.S)
    assert match, f"no python block in README section {section!r}"
    return match.group(1)


@pytest.mark.slow
def test_readme_tour_runs_and_its_comments_are_true(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_python_block("A five-minute tour"), "README.md (tour)", "exec"), ns)
    res, cert, found, lp = ns["res"], ns["cert"], ns["found"], ns["lp"]
    # "lower_bound <= min (P) <= objective", every margin >= 1, certified to the default gap 1e-8
    assert res.lower_bound <= res.objective and res.relative_gap <= 1e-8
    assert res.network.margins(ns["ds"].X, ns["ds"].y).min() >= 1 - 1e-9
    assert cert.verdict == "global_min"
    assert found.complete and len(found.classes) >= 1
    # every enumerated class costs at least the global optimum of its dataset
    best = ns["kk"].solve_global(ns["tiny"]).objective
    assert min(c.objective for c in found.classes) == pytest.approx(best, rel=1e-6)
    # the exact point of GD's cell is feasible, so it costs at least min (P) >= the lower bound,
    # and at most GD's own rescaled iterate (it is the optimum of that iterate's cell)
    assert lp.objective >= best * (1 - 1e-9)
    assert lp.objective <= lp.gd_objective * (1 + 1e-7)
    assert lp.verdict == "kkt"  # the README says so; certify's witness proves it is not a local min
