"""Shared fixtures: small datasets whose optima are known by hand (see MATH.md and the issues)."""

from __future__ import annotations

import numpy as np
import pytest

from kktsolver.data import Dataset


@pytest.fixture
def three_point_v() -> Dataset:
    """x = (0.1, 0.5, 0.9), y = (+1, -1, +1): the global optimum is a V with both kinks on x = 0.5."""
    return Dataset(np.array([[0.1], [0.5], [0.9]]), np.array([1, -1, 1]), {"support": [0.0, 1.0]})


@pytest.fixture
def alternating_four() -> Dataset:
    """Four points with alternating labels: non-global KKT points exist here."""
    return Dataset(np.array([[0.1], [0.4], [0.6], [0.9]]), np.array([1, -1, 1, -1]), {"support": [0.0, 1.0]})
