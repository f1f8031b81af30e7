"""Distribution distances used for the 'how far is each λ from the real data' check."""

from __future__ import annotations

import numpy as np
import pytest
from pandas import testing as pd_testing

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
    dropped = int(man["label"].iloc[0])
    man.loc[man["label"] == dropped, "keep"] = False
    man.to_csv(run / "filter" / "manifest.csv", index=False)
    out = spectrum_distances(cfg, run).set_index("lam")
    (real_a, ref_a), (real_b, ref_b) = seen
    assert np.array_equal(ref_a, ref_b) and np.array_equal(real_a, real_b)
    # ... and the levels that lost the class say so, the real row has every class
    n_classes = man["label"].nunique()
    for lam in sorted(set(man["lam"].astype(float))):
        assert out.loc[lam, "missing"] == str(dropped) and out.loc[lam, "classes"] == n_classes - 1
    assert out.loc[1.0, "classes"] == n_classes and out.loc[1.0, "classes_missing"] == 0
    # the report names the lacking class beside the table, also from the cached table on a rewrite
    from discl.evaluation.report import DISTANCE_NOTE, _classes, write_report

    monkeypatch.undo()
    name = _classes(cfg)[dropped]
    for _ in range(2):
        write_report(cfg, run)
        table = (run / "report.md").read_text().split(DISTANCE_NOTE + "\n\n")[1].split("\n\n")[0].splitlines()
        assert table[0].startswith("| lam |") and "| classes | classes_missing | missing |" in table[0]
        rows = {line.split(" | ")[0]: line for line in table[2:]}
        assert f"| 1 | {name} |" in rows["| 0.5"] and "| 0 |  |" in rows["| 1"]


def test_level_distances_pair_variants_across_sources_only():
    """A level of near-copies of the real sources (two seeds each) sits on the real row once pairs
    of one source's variants are left out; without source ids it looks further away."""
    rng = np.random.default_rng(5)
    ref, real = rng.normal(size=(300, 8)), rng.normal(size=(30, 8))
    level = np.repeat(real, 2, axis=0) + rng.normal(scale=0.01, size=(60, 8))
    ids = np.repeat([f"s{i}" for i in range(30)], 2)
    by_source = level_distances({0.9: level}, real, ref, sources={0.9: ids}).set_index("lam")
    grouped = by_source["mmd2"]
    pooled = level_distances({0.9: level}, real, ref).set_index("lam")["mmd2"]
    assert abs(grouped[0.9] - grouped[1.0]) < 0.25 * abs(pooled[0.9] - pooled[1.0])
    # each draw takes distinct sources, one variant each, as the real row has: a level's spread (Fréchet)
    # is not shrunk by repeated near-copies of one source
    fre = by_source["frechet"]
    assert abs(fre[0.9] - fre[1.0]) < 0.01 * fre[1.0] and by_source.loc[0.9, "n"] == by_source.loc[1.0, "n"] == 30
    # a level whose images all come from one source lacks its class: flagged, no distance
    one = level_distances({0.5: level[:2]}, real, ref, sources={0.5: ids[:2]}).set_index("lam")
    assert np.isnan(one.loc[0.5, "mmd2"]) and np.isnan(one.loc[0.5, "frechet"])
    assert (one.loc[0.5, "classes"], one.loc[0.5, "classes_missing"], one.loc[0.5, "missing"]) == (0, 1, "0")
    assert one.loc[1.0, "classes"] == 1 and np.isfinite(one.loc[1.0, "mmd2"])
    with pytest.raises(ValueError, match="one id per image"):
        level_distances({0.9: level}, real, ref, sources={0.9: ids[:-1]})
    with pytest.raises(ValueError, match="one id per image"):
        level_distances({0.9: level, 0.5: level}, real, ref, sources={0.9: ids})


def _classes(rng, counts, dim=4, spread=3.0):
    """Images of classes 0..k-1, class c drawn from N(spread * e_c, I): the same per-class
    distributions whatever the counts."""
    x = np.concatenate([rng.normal(size=(n, dim)) + spread * np.eye(dim)[c] for c, n in enumerate(counts)])
    return x, np.repeat(np.arange(len(counts)), counts)


def test_class_mix_alone_gives_no_distance_under_the_class_conditional_estimator():
    """A level with the real classes' own distributions but another class mix (80/10/10 against a
    balanced reference and real row): the pooled MMD² calls it far from real, the class-conditional
    one puts it where the real row is, at about 0."""
    rng = np.random.default_rng(6)
    ref, ref_labels = _classes(rng, [60, 60, 60])
    real, real_labels = _classes(rng, [12, 12, 12])
    level, level_labels = _classes(rng, [96, 12, 12])
    pooled = level_distances({0.5: level}, real, ref, subsamples=20).set_index("lam")
    cond = level_distances({0.5: level}, real, ref, subsamples=20, labels={0.5: level_labels, 1.0: real_labels},
                           reference_labels=ref_labels).set_index("lam")
    assert pooled.loc[0.5, "mmd2"] > 0.1 and pooled.loc[0.5, "mmd2_lo"] > 0.05  # the mix, measured as distance
    assert abs(pooled.loc[1.0, "mmd2"]) < 0.03
    assert abs(cond["mmd2"]).max() < 0.03 and cond.loc[0.5, "mmd2_lo"] < 0 < cond.loc[0.5, "mmd2_hi"]
    assert cond["classes"].tolist() == [3, 3] and cond["classes_missing"].tolist() == [0, 0]
    assert abs(cond.loc[0.5, "mmd2"]) < 0.2 * pooled.loc[0.5, "mmd2"]
    # equal footing per class: every row at the smallest count of each class (12 + 12 + 12)
    assert cond["n"].tolist() == [36, 36] and cond["n_total"].tolist() == [120, 36]
    # deterministic from the seed
    again = level_distances({0.5: level}, real, ref, subsamples=20, labels={0.5: level_labels, 1.0: real_labels},
                            reference_labels=ref_labels).set_index("lam")
    pd_testing.assert_frame_equal(cond, again)


def test_each_class_term_is_the_unbiased_mmd2_and_the_frechet_distance_of_that_class():
    """Rows used whole (no subsampling): the row's numbers are the plain means over classes of
    mmd2_rbf (the unbiased estimator, one bandwidth) and frechet_distance on each class."""
    from discl.evaluation.distance import median_bandwidth

    rng = np.random.default_rng(7)
    ref, ref_labels = _classes(rng, [30, 20])
    real, real_labels = _classes(rng, [6, 5])
    level, level_labels = _classes(rng, [6, 5])
    level = level + 0.4
    out = level_distances({0.0: level}, real, ref, labels={0.0: level_labels, 1.0: real_labels},
                          reference_labels=ref_labels).set_index("lam")
    s = median_bandwidth(ref)
    for lam, x, lab in [(0.0, level, level_labels), (1.0, real, real_labels)]:
        mmd = np.mean([mmd2_rbf(x[lab == c], ref[ref_labels == c], s) for c in (0, 1)])
        fre = np.mean([frechet_distance(x[lab == c], ref[ref_labels == c]) for c in (0, 1)])
        assert out.loc[lam, "mmd2"] == pytest.approx(mmd, rel=1e-10)
        assert out.loc[lam, "frechet"] == pytest.approx(fre, rel=1e-10)
        assert np.isnan(out.loc[lam, "mmd2_lo"])


def test_a_level_lacking_a_class_is_counted_and_named_not_dropped():
    rng = np.random.default_rng(8)
    ref, ref_labels = _classes(rng, [20, 20, 20])
    real, real_labels = _classes(rng, [5, 5, 5])
    no_two, no_two_labels = _classes(rng, [10, 10, 0])  # class 2 filtered out entirely
    one_two, one_two_labels = _classes(rng, [10, 10, 1])  # a single image of class 2: no within-set pair
    out = level_distances({0.0: no_two, 0.3: one_two, 0.5: np.zeros((0, 4)), 0.9: real[:0]}, real, ref,
                          labels={0.0: no_two_labels, 0.3: one_two_labels, 0.5: [], 0.9: [], 1.0: real_labels},
                          reference_labels=ref_labels).set_index("lam")
    assert out.loc[0.0, ["classes", "classes_missing", "missing"]].tolist() == [2, 1, "2"]
    assert out.loc[0.3, ["classes", "classes_missing", "missing"]].tolist() == [2, 1, "2"]
    assert out.loc[0.3, "n_total"] == 21 and out.loc[0.3, "n"] == 10  # its classes 0 and 1, at 5 each
    assert out.loc[0.5, ["n_total", "classes", "missing"]].tolist() == [0, 0, "0 1 2"]
    assert np.isnan(out.loc[0.5, "mmd2"]) and np.isnan(out.loc[0.5, "frechet"])
    assert out.loc[1.0, ["classes", "classes_missing", "missing"]].tolist() == [3, 0, ""]
    assert np.isfinite(out.loc[[0.0, 0.3, 1.0], ["mmd2", "frechet"]].to_numpy()).all()
    # a class with too few reference images is lacking in every row, the real one too
    few = level_distances({0.0: no_two}, real, ref[:41], labels={0.0: no_two_labels, 1.0: real_labels},
                          reference_labels=ref_labels[:41]).set_index("lam")
    assert few.loc[1.0, "missing"] == "2" and few.loc[0.0, "missing"] == "2"
    with pytest.raises(ValueError, match="come together"):
        level_distances({0.0: no_two}, real, ref, labels={0.0: no_two_labels, 1.0: real_labels})
    with pytest.raises(ValueError, match="one class per image"):
        level_distances({0.0: no_two}, real, ref, labels={0.0: no_two_labels}, reference_labels=ref_labels)


def test_the_bandwidth_of_a_large_reference_comes_from_a_bounded_sample():
    """All pairs of an ImageNet-LT-sized reference (20,000 rows) would take gigabytes: the median heuristic
    looks at 2,000 evenly spaced rows, whose median is the whole set's within a percent here."""
    from discl.evaluation.distance import median_bandwidth

    ref = np.random.default_rng(3).normal(size=(3000, 8))
    whole = median_bandwidth(ref, max_rows=len(ref))
    assert median_bandwidth(ref) == median_bandwidth(ref[np.linspace(0, 2999, 2000).round().astype(int)], max_rows=2000)
    assert abs(median_bandwidth(ref) / whole - 1) < 0.01
