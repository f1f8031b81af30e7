"""Distribution distances used for the 'how far is each λ from the real data' check."""

from __future__ import annotations

import numpy as np
import pytest

from discl.evaluation.distance import frechet_distance, level_distances, mmd2_rbf


def test_mmd_is_near_zero_for_the_same_distribution_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(200, 4))
    near = mmd2_rbf(a, b, bandwidth=1.0)
    far = mmd2_rbf(a, b + 1.5, bandwidth=1.0)
    assert abs(near) < 0.02 and far > 10 * max(abs(near), 1e-3)


def test_mmd_by_hand():
    x, y = np.array([[0.0], [1.0]]), np.array([[0.0], [2.0]])
    k = lambda d: np.exp(-(d**2) / 2)  # noqa: E731  bandwidth 1
    expected = (2 * k(1)) / 2 + (2 * k(2)) / 2 - 2 * (k(0) + k(2) + k(1) + k(1)) / 4
    assert mmd2_rbf(x, y, bandwidth=1.0) == pytest.approx(expected)


def test_frechet_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 2))
    y = rng.normal(size=(4000, 2)) * 2 + np.array([3.0, 0.0])
    # mean term 9; covariance term tr(I + 4I - 2*2I) = 2
    assert frechet_distance(x, y) == pytest.approx(11.0, rel=0.05)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_level_distances_orders_levels_and_adds_the_real_row():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(100, 3))
    syn = {0.0: rng.normal(size=(50, 3)) + 2.0, 0.5: rng.normal(size=(50, 3)) + 0.5}
    out = level_distances(syn, rng.normal(size=(20, 3)), ref)
    assert list(out["lam"]) == [0.0, 0.5, 1.0]
    assert out["mmd2"].iloc[0] > out["mmd2"].iloc[1] > out["mmd2"].iloc[2] - 0.05
