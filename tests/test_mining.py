"""Hard-sample mining: the pure criteria on hand-made numbers, the folds, out-of-fold judging, and
the ``mine`` stage on a tiny real CSV dataset (real fold models, artifacts, rerun does no work)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from discl.config import load_config
from discl.mining import (
    HARD_COLUMNS,
    MiningInputs,
    available_criteria,
    get_criterion,
    select_hard,
    stratified_folds,
)
from discl.mining.config import MiningConfig
from discl.mining.oof import out_of_fold_proba

CLASSES = ["a", "b", "c"]


def _inputs(proba=None):
    labels = np.array([0, 0, 0, 1, 1, 2])
    counts = np.array([30, 12, 1])
    return MiningInputs(labels=labels, class_counts=counts, oof_proba=None if proba is None else np.array(proba))


PROBA = [
    [0.9, 0.05, 0.05],  # right, confident
    [0.4, 0.5, 0.1],  # wrong (pred 1), p_gt 0.4
    [0.45, 0.3, 0.25],  # right but p_gt 0.45
    [0.1, 0.8, 0.1],  # right
    [0.7, 0.2, 0.1],  # wrong, p_gt 0.2
    [0.3, 0.3, 0.4],  # right, p_gt 0.4
]
FRAME = pd.DataFrame({"sample_id": [f"s{i}" for i in range(6)]})


@pytest.mark.parametrize("name", available_criteria())
def test_every_registered_criterion_returns_a_mask(name):
    crit = get_criterion(name)
    mask = crit(_inputs(PROBA), MiningConfig(criteria=[name]))
    assert mask.dtype == bool and mask.shape == (6,)
    if crit.needs_predictions:
        with pytest.raises(ValueError, match="out-of-fold"):
            crit(_inputs(), MiningConfig(criteria=[name]))


def test_builtin_criteria_are_registered():
    assert {"class_frequency", "misclassified", "low_confidence"} <= set(available_criteria())
    with pytest.raises(KeyError, match="unknown mining criterion"):
        get_criterion("nope")


def test_criteria_on_hand_made_numbers():
    inp = _inputs(PROBA)
    cfg = MiningConfig(frequency_below=12, confidence_below=0.45)
    assert get_criterion("class_frequency")(inp, cfg).tolist() == [False] * 5 + [True]  # only class c (1 < 12)
    assert get_criterion("misclassified")(inp, cfg).tolist() == [False, True, False, False, True, False]
    assert get_criterion("low_confidence")(inp, cfg).tolist() == [False, True, False, False, True, True]


def test_combine_any_all_and_columns():
    cfg = MiningConfig(criteria=["misclassified", "low_confidence"], confidence_below=0.45, combine="any")
    hard = select_hard(FRAME, CLASSES, _inputs(PROBA), cfg)
    assert list(hard.columns) == HARD_COLUMNS
    assert hard["sample_id"].tolist() == ["s1", "s4", "s5"]
    assert hard.set_index("sample_id").at["s1", "criteria"] == "misclassified;low_confidence"
    assert hard.set_index("sample_id").at["s5", "criteria"] == "low_confidence"
    assert hard["oof_prob_gt"].round(3).tolist() == [0.4, 0.2, 0.4]
    assert hard["oof_pred"].tolist() == [1.0, 0.0, 2.0]
    both = select_hard(FRAME, CLASSES, _inputs(PROBA), MiningConfig(criteria=cfg.criteria, confidence_below=0.45,
                                                                     combine="all"))
    assert both["sample_id"].tolist() == ["s1", "s4"]


def test_class_frequency_without_predictions_has_nan_scores():
    hard = select_hard(FRAME, CLASSES, _inputs(), MiningConfig(frequency_below=13))
    assert hard["sample_id"].tolist() == ["s3", "s4", "s5"]
    assert hard["class_count"].tolist() == [12, 12, 1]
    assert hard["oof_prob_gt"].isna().all() and hard["oof_pred"].isna().all()


def test_max_per_class_keeps_lowest_confidence():
    cfg = MiningConfig(criteria=["low_confidence"], confidence_below=0.95, max_per_class=1)
    hard = select_hard(FRAME, CLASSES, _inputs(PROBA), cfg)
    # p_gt: class a s0..s2 = 0.9, 0.4, 0.45 -> s1; class b s3, s4 = 0.8, 0.2 -> s4; class c -> s5
    assert hard["sample_id"].tolist() == ["s1", "s4", "s5"]
    capped = select_hard(FRAME, CLASSES, _inputs(), MiningConfig(frequency_below=100, max_per_class=2), seed=3)
    assert capped.groupby("label").size().tolist() == [2, 2, 1]
    again = select_hard(FRAME, CLASSES, _inputs(), MiningConfig(frequency_below=100, max_per_class=2), seed=3)
    assert capped.equals(again)


def test_stratified_folds_are_balanced_seeded_and_order_free():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 103)
    ids = [f"id{i:03d}" for i in range(103)]
    f = stratified_folds(ids, labels, 3, seed=1)
    assert set(f) == {0, 1, 2} and max(np.bincount(f)) - min(np.bincount(f)) <= 1
    for c in range(4):  # every class spread over the folds
        per = np.bincount(f[labels == c], minlength=3)
        assert per.max() - per.min() <= 1
    perm = rng.permutation(103)
    f2 = stratified_folds([ids[i] for i in perm], labels[perm], 3, seed=1)
    assert (f2 == f[perm]).all()  # the fold of an image does not depend on the input order
    assert not (stratified_folds(ids, labels, 3, seed=2) == f).all()


class _Memoriser(nn.Module):
    """A real 1-nearest-neighbour classifier: it recalls every training image perfectly."""

    def __init__(self, x, y, k):
        super().__init__()
        self.x, self.y, self.k = x.flatten(1).float(), y, k

    def forward(self, x):
        d = torch.cdist(x.flatten(1).float(), self.x)
        return torch.nn.functional.one_hot(self.y[d.argmin(1)], self.k).float()


def test_out_of_fold_never_judges_training_images():
    """Random images with random labels: a memoriser scores its own training images perfectly, so
    an in-sample judge would call nothing hard; out of fold it is at chance level."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (90, 1, 6, 6), dtype=np.uint8))
    y = rng.integers(0, 3, 90)
    fit = lambda xt, yt, xv, yv, cfg, k, seed: _Memoriser(xt, yt, k)  # noqa: E731
    predict = lambda model, xs: model(xs)  # noqa: E731
    in_sample = predict(fit(x, torch.as_tensor(y), None, None, None, 3, 0), x).argmax(1).numpy()
    assert (in_sample == y).all()
    folds = stratified_folds([str(i) for i in range(90)], y, 3, seed=0)
    proba = out_of_fold_proba(x, y, folds, None, None, None, 3, seed=0, fit=fit, predict=predict)
    assert np.isfinite(proba).all()
    assert (proba.argmax(1) == y).mean() < 0.6


def _tiny_csv(root):
    """Two easy classes (dark vs bright) and one rare class (mid grey) as a CSV dataset."""
    root.mkdir()
    rows = ["path,label,split"]
    rng = np.random.default_rng(0)
    for cls, level, n in (("dark", 30, 24), ("bright", 220, 24), ("rare", 128, 4)):
        for i in range(n + 4):
            arr = np.clip(level + rng.normal(0, 10, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / f"{cls}{i}.png")
            rows.append(f"{cls}{i}.png,{cls},{'val' if i >= n else 'train'}")
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root / "data.csv"


def test_mine_stage_writes_artifacts_and_skips_when_done(tmp_path):
    from discl.mining.runner import mine

    csv = _tiny_csv(tmp_path / "data")
    cfg = load_config(overrides=[
        "data.task=csv", f"data.root={csv}", "data.image_size=8",
        "mining.criteria=[class_frequency,misclassified,low_confidence]", "mining.frequency_below=10",
        "mining.epochs=1", "mining.folds=2", "training.batch_size=16", "training.augment=false",
    ])
    run = tmp_path / "run"
    hard = mine(cfg, run)
    out = run / "mining"
    assert list(pd.read_csv(out / "hard.csv").columns) == HARD_COLUMNS
    assert set(hard.loc[hard["class_name"] == "rare", "sample_id"]) == {f"rare{i}.png" for i in range(4)}
    assert hard["oof_prob_gt"].notna().all() and hard["oof_prob_gt"].between(0, 1).all()
    oof = pd.read_csv(out / "oof_predictions.csv")
    assert len(oof) == 52 and set(oof["fold"]) == {0, 1}
    assert not set(oof["sample_id"]) & {f"dark{i}.png" for i in range(24, 28)}  # val images are never judged
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_train"] == 52 and summary["n_hard"] == len(hard)
    assert summary["per_class"]["rare"] == {"train": 4, "hard": int((hard["class_name"] == "rare").sum())}
    assert summary["per_criterion"]["class_frequency"] == 4
    # a rerun does no work: the files keep their modification times
    stamps = {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = mine(cfg, run)
    assert again.equals(pd.read_csv(out / "hard.csv", keep_default_na=False, na_values=[""]))
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    # an interruption after the folds: the rerun reuses every fold's saved predictions
    folds = {p.name: p.stat().st_mtime_ns for p in (out / "folds").iterdir()}
    assert len(folds) == 2
    (out / "_done.json").unlink()
    (out / "hard.csv").unlink()
    resumed = mine(cfg, run)
    assert resumed.equals(again)
    assert folds == {p.name: p.stat().st_mtime_ns for p in (out / "folds").iterdir()}
    # a changed mining setting redoes the selection, reusing nothing stale
    cfg2 = load_config(overrides=["data.task=csv", f"data.root={csv}", "data.image_size=8",
                                  "mining.frequency_below=30"])
    hard2 = mine(cfg2, run)
    assert len(hard2) == 52 and hard2["oof_prob_gt"].isna().all()
