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


def test_frechet_cross_term_is_the_trace_of_the_covariance_products_square_root():
    """The nuclear-norm form equals Tr (S_x S_y)^(1/2) from the eigenvalues of S_x S_y, with more
    samples than dimensions and with fewer (the rank-deficient case of a few CLIP embeddings)."""
    rng = np.random.default_rng(4)
    for n, m, d in [(60, 80, 5), (7, 12, 20), (30, 9, 16)]:
        x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d)) * 1.5 + 0.3
        sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
        root = np.sqrt(np.clip(np.linalg.eigvals(sx @ sy).real, 0, None)).sum()
        direct = ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(sx) + np.trace(sy) - 2 * root
        assert frechet_distance(x, y) == pytest.approx(direct, rel=1e-8)
    with pytest.raises(ValueError, match="two samples"):
        frechet_distance(x[:1], y)


def test_level_distances_orders_levels_and_adds_the_real_row():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(100, 3))
    syn = {0.0: rng.normal(size=(50, 3)) + 2.0, 0.5: rng.normal(size=(50, 3)) + 0.5}
    out = level_distances(syn, rng.normal(size=(20, 3)), ref)
    assert list(out["lam"]) == [0.0, 0.5, 1.0]
    assert out["mmd2"].iloc[0] > out["mmd2"].iloc[1] > out["mmd2"].iloc[2] - 0.05


def test_rows_are_on_equal_footing_whatever_their_sample_size():
    """Same distribution, 27 vs 108 images in 64-d: the raw Fréchet distance differs several-fold
    (its bias falls with n), the table's rows (all at the smallest n, one kernel) agree."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(400, 64))
    few, many = rng.normal(size=(27, 64)), rng.normal(size=(108, 64))
    raw_few, raw_many = frechet_distance(few, ref), frechet_distance(many, ref)
    assert raw_few > 2 * raw_many
    out = level_distances({0.5: many}, few, ref, subsamples=20)
    assert out["n"].tolist() == [27, 27] and out["n_total"].tolist() == [108, 27]
    a, b = out["frechet"].tolist()
    assert abs(a - b) < 0.15 * b
    row = out.iloc[0]
    assert row["mmd2_lo"] <= row["mmd2"] <= row["mmd2_hi"]
    assert np.isnan(out["mmd2_lo"].iloc[1])  # the smallest row is used whole: no subsample interval


def test_the_report_distances_use_only_kept_images_and_the_cached_embeddings(tiny_run, tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    import pandas as pd

    from discl.config import load_config
    from discl.evaluation.distance import spectrum_distances

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    cfg = load_config(run / "config.yaml")
    man = pd.read_csv(run / "filter" / "manifest.csv")
    man.loc[man.index[::2], "keep"] = False  # half the images dropped
    man.to_csv(run / "filter" / "manifest.csv", index=False)
    out = spectrum_distances(cfg, run).set_index("lam")
    kept = man[man["keep"]].groupby("lam").size()
    for lam, count in kept.items():
        if count >= 2:
            assert out.loc[float(lam), "n_total"] == count
    assert out.loc[1.0, "n_total"] == man["sample_id"].nunique()
    # a filter that drops a whole class does not change the reference (every hard class's test images)
    # nor the real row's images: only the subsample size, which every row shares
    import discl.evaluation.distance as dist

    seen = []

    def spy(synthetic, real_sources, reference, **kw):
        seen.append((real_sources, reference))
        return level_distances(synthetic, real_sources, reference, **kw)

    monkeypatch.setattr(dist, "level_distances", spy)
    spectrum_distances(cfg, run)
    man.loc[man["label"] == man["label"].iloc[0], "keep"] = False
    man.to_csv(run / "filter" / "manifest.csv", index=False)
    spectrum_distances(cfg, run)
    (real_a, ref_a), (real_b, ref_b) = seen
    assert np.array_equal(ref_a, ref_b) and np.array_equal(real_a, real_b)


def test_level_distances_pair_variants_across_sources_only():
    """A level of near-copies of the real sources (two seeds each) sits on the real row once pairs
    of one source's variants are left out; without source ids it looks further away."""
    rng = np.random.default_rng(5)
    ref, real = rng.normal(size=(300, 8)), rng.normal(size=(30, 8))
    level = np.repeat(real, 2, axis=0) + rng.normal(scale=0.01, size=(60, 8))
    ids = np.repeat([f"s{i}" for i in range(30)], 2)
    grouped = level_distances({0.9: level}, real, ref, sources={0.9: ids}).set_index("lam")["mmd2"]
    pooled = level_distances({0.9: level}, real, ref).set_index("lam")["mmd2"]
    assert abs(grouped[0.9] - grouped[1.0]) < 0.25 * abs(pooled[0.9] - pooled[1.0])
    # a level whose images all come from one source has no MMD²
    one = level_distances({0.5: level[:2]}, real, ref, sources={0.5: ids[:2]}).set_index("lam")
    assert np.isnan(one.loc[0.5, "mmd2"]) and np.isfinite(one.loc[0.5, "frechet"])
    with pytest.raises(ValueError, match="one id per image"):
        level_distances({0.9: level}, real, ref, sources={0.9: ids[:-1]})
    with pytest.raises(ValueError, match="one id per image"):
        level_distances({0.9: level, 0.5: level}, real, ref, sources={0.9: ids})
