"""Shared fixtures: small datasets whose optima are known by hand (see MATH.md and the issues)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings

from kktsolver.data import Dataset

# CI must be reproducible: the default profile replays the same examples every run. Explore new
# examples locally with HYPOTHESIS_PROFILE=explore.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def three_point_v() -> Dataset:
    """x = (0.1, 0.5, 0.9), y = (+1, -1, +1): the global optimum is a V with kinks on x = 0.5."""
    return Dataset(np.array([[0.1], [0.5], [0.9]]), np.array([1, -1, 1]), {"support": [0.0, 1.0]})


@pytest.fixture
def alternating_four() -> Dataset:
    """Four points with alternating labels: non-global KKT points exist here."""
    return Dataset(
        np.array([[0.1], [0.4], [0.6], [0.9]]), np.array([1, -1, 1, -1]), {"support": [0.0, 1.0]}
    )
