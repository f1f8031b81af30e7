"""`adaptive_class`: per-class level choice on hand-made progress tables, its stage data, and one tiny run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from discl.configtools import ConfigError
from discl.curriculum.base import Stage, create_strategy
from discl.curriculum.config import CurriculumConfig, digest_view
from discl.curriculum.progress import (
    choose_class_levels,
    choose_level,
    class_level_progress,
    iqr_trimmed_mean,
    level_progress,
)
from discl.curriculum.stage_data import plan_stage_epoch

LEVELS = [0.5, 0.7, 0.9, 1.0]


def _table(per_class: dict[int, dict[float, float]], n: int = 4):
    """Probabilities and labels per level: ``n`` held-out values of class c at p = per_class[c][level]."""
    probs = {lv: np.concatenate([np.full(n, t[lv]) for t in per_class.values()]) for lv in LEVELS}
    labels = {lv: np.concatenate([np.full(n, c) for c in per_class]) for lv in LEVELS}
    return probs, labels


def test_each_class_takes_the_level_where_it_progresses_most():
    probs, labels = _table({0: {0.5: 0.2, 0.7: 0.3, 0.9: 0.8, 1.0: 0.1},    # class 0: most progress at 0.9
                            3: {0.5: 0.6, 0.7: 0.2, 0.9: 0.1, 1.0: 0.3}})   # class 3: at 0.5
    scores = class_level_progress(probs, labels, None)
    assert scores[0] == {0.5: pytest.approx(0.2), 0.7: pytest.approx(0.3), 0.9: pytest.approx(0.8), 1.0: pytest.approx(0.1)}
    assert choose_class_levels(scores) == {0: 0.9, 3: 0.5}
    # the global choice pools both classes (0.5 -> 0.4, 0.9 -> 0.45): 0.9 for all, class 3 included
    assert choose_level(level_progress(probs, None)) == 0.9
    # later checks compare against the previous probabilities, per class
    later, _ = _table({0: {0.5: 0.2, 0.7: 0.9, 0.9: 0.8, 1.0: 0.1}, 3: {0.5: 0.6, 0.7: 0.2, 0.9: 0.1, 1.0: 0.6}})
    assert choose_class_levels(class_level_progress(later, labels, probs)) == {0: 0.7, 3: 1.0}


def test_classes_with_too_few_held_out_values_fall_back():
    probs, labels = _table({0: {0.5: 0.2, 0.7: 0.3, 0.9: 0.8, 1.0: 0.1}, 1: {0.5: 0.9, 0.7: 0.2, 0.9: 0.1, 1.0: 0.3}})
    # class 1 loses its values at λ=0.7 (filtered out): too little evidence to compare levels
    keep = labels[0.7] != 1
    probs[0.7], labels[0.7] = probs[0.7][keep], labels[0.7][keep]
    scores = class_level_progress(probs, labels, None, min_values=4)
    assert np.isnan(scores[1][0.7]) and choose_class_levels(scores) == {0: 0.9}
    assert choose_class_levels(class_level_progress(probs, labels, None, min_values=5)) == {}  # 4 values < 5
    with pytest.raises(ValueError, match="labels"):
        class_level_progress(probs, {lv: y for lv, y in labels.items() if lv != 1.0}, None)


def test_iqr_drop_is_per_class():
    # class 0 has one outlier that its own quartiles drop; pooled with class 1 the fences are wider
    c0 = np.array([0.1, 0.2, 0.3, 0.4, 0.95])
    c1 = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    probs = {0.5: np.concatenate([c0, c1])}
    labels = {0.5: np.array([0] * 5 + [1] * 5)}
    got = class_level_progress(probs, labels, None)
    assert got[0][0.5] == pytest.approx(0.25) == pytest.approx(iqr_trimmed_mean(c0))
    assert got[1][0.5] == pytest.approx(0.7)
    assert iqr_trimmed_mean(probs[0.5]) == pytest.approx(np.mean(probs[0.5]))  # pooled: nothing dropped


def test_strategy_stage_per_class_fallback_and_state():
    cfg = CurriculumConfig(strategy="adaptive_class", levels=LEVELS, curriculum_fraction=0.5, class_min_holdout=3)
    s = create_strategy("adaptive_class", cfg, 8, seed=0)
    assert s.stage(0) == Stage((0.5,))
    probs, labels = _table({0: {0.5: 0.2, 0.7: 0.3, 0.9: 0.8, 1.0: 0.1}, 3: {0.5: 0.7, 0.7: 0.2, 0.9: 0.1, 1.0: 0.3},
                            5: {0.5: 0.6, 0.7: 0.2, 0.9: 0.1, 1.0: 0.9}})
    keep = labels[1.0] != 5  # class 5 has no real held-out image left: it falls back to the global choice
    probs[1.0], labels[1.0] = probs[1.0][keep], labels[1.0][keep]
    out = s.observe(0, probs, labels)
    assert out["chosen_level"] == 0.5 and out["chosen_class_level"] == {"0": 0.9, "3": 0.5}
    assert out["class_fallback"] == [5]
    st = s.stage(1)
    assert st.levels == (0.5,) and st.class_levels == ((0, 0.9), (3, 0.5)) and str(st) == "0.5 [0:0.9 3:0.5]"
    assert s.stage(0) == Stage((0.5,)) and s.stage(4).real_only  # history kept; real only after the curriculum
    # without labels (no class information) every class takes the global choice
    assert s.observe(1, probs)["chosen_class_level"] == {} and s.stage(2).class_levels == ()
    state = json.loads(json.dumps(s.state_dict()))
    t = create_strategy("adaptive_class", cfg, 8, seed=0)
    t.load_state_dict(state)
    assert [t.stage(e) for e in range(8)] == [s.stage(e) for e in range(8)]


def test_stage_data_takes_each_class_at_its_level_with_the_tail_quota():
    rows = [{"kind": "real", "sample_id": f"r{i}", "label": i % 3, "lam": 1.0, "hard": False, "tail": False}
            for i in range(60)]
    rows += [{"kind": "real", "sample_id": f"t{i}", "label": 2, "lam": 1.0, "hard": True, "tail": True} for i in range(2)]
    for lv in (0.5, 0.9):
        rows += [{"kind": "synthetic", "sample_id": f"h{i}", "label": i % 3, "lam": lv, "hard": True, "tail": i % 3 == 2}
                 for i in range(60)]
    meta = pd.DataFrame(rows)
    cfg = CurriculumConfig(real_fraction=1.0)
    st = Stage((0.5,), class_levels=((1, 0.9), (2, 0.9)))
    plan = plan_stage_epoch(meta, st, 0, 0, cfg)
    picked = meta.iloc[plan.indices]
    syn = picked[picked["kind"] == "synthetic"]
    assert set(syn[syn["label"] == 0]["lam"]) == {0.5} and set(syn[syn["label"] == 1]["lam"]) == {0.9}
    assert set(syn[syn["label"] == 2]["lam"]) == {0.9}  # the tail class's quota is filled at its own level
    assert plan.info["synthetic_by_level"] == {"0.5": 20, "0.9": 20 + plan.info["n_tail_synthetic"]}
    assert plan.info["class_level"] == {"1": 0.9, "2": 0.9}
    # a class at λ=1 gets no synthetic images, even when the global level is synthetic
    real_for_1 = plan_stage_epoch(meta, Stage((0.5,), class_levels=((1, 1.0),)), 0, 0, cfg)
    labels = meta["label"].to_numpy()[real_for_1.indices][meta["kind"].to_numpy()[real_for_1.indices] == "synthetic"]
    assert 1 not in set(labels) and not Stage((), class_levels=((1, 0.5),)).real_only


def test_config_key_validated_and_only_in_its_strategys_digest():
    with pytest.raises(ConfigError, match="class_min_holdout"):
        CurriculumConfig(class_min_holdout=0)
    assert "class_min_holdout" in digest_view(CurriculumConfig(strategy="adaptive_class"))
    assert "class_min_holdout" not in digest_view(CurriculumConfig(strategy="adaptive"))
    assert "smoothing" in digest_view(CurriculumConfig(strategy="adaptive"))


def test_adaptive_class_trains_end_to_end(tmp_path):
    """The tiny fmnist-lq run: per-class choices in the log, checkpoint state, test metrics."""
    from discl.config import load_config
    from discl.curriculum.testing import write_toy_spectrum
    from discl.data import build_dataset
    from discl.training.recipe import train_curriculum

    torch.set_num_threads(1)
    cfg = load_config("configs/fmnist-lq.yaml", [
        "data.test_limit=100", "data.val_per_class=5", "training.epochs=4", "training.batch_size=64",
        "curriculum.holdout_per_class=2", "curriculum.class_min_holdout=2", "curriculum.real_fraction=0.2",
    ])
    ds = build_dataset(cfg.data)
    train = ds.split("train")
    hard = [sid for c, g in train.groupby("label") if c < 4 for sid in sorted(g["sample_id"])[:6]]
    write_toy_spectrum(tmp_path, ds, levels=(0.5, 0.7, 0.9), k=2, hard_ids=hard, drop=0.0)
    metrics = train_curriculum(cfg, tmp_path, "adaptive_class", seed=0)
    assert metrics["strategy"] == "adaptive_class" and metrics["holdout"] == 8 and 0 <= metrics["test_ood"]["macro_f1"] <= 1
    log = pd.read_json(tmp_path / "train" / "adaptive_class-s0" / "log.jsonl", lines=True)  # <method>-s<seed>
    checks = log[log["chosen_level"].notna()]
    assert len(checks) == 2  # after epochs 0 and 1; epoch 2 is the last curriculum epoch (3 of 4)
    # the top two levels' gap on the same held-out images (8 images, each at every level)
    assert checks["progress_top2"].str.fullmatch(r"[\d.]+>[\d.]+").all()
    assert (checks["progress_gap_paired_n"] >= 2).all() and (checks["progress_gap_paired_n"] <= 8).all()
    chosen = [c for c in log.columns if c.startswith("chosen_class_level.")]
    assert {c.split(".")[1] for c in chosen} <= {"0", "1", "2", "3"} and chosen, "hard classes choose their own level"
    first = checks.iloc[0]
    for c in chosen:  # the next epoch trains each class on the level chosen for it
        assert log.loc[1, f"class_level.{c.split('.')[1]}"] == pytest.approx(first[c])
    assert log.loc[3, "stage"] == "real"
    assert train_curriculum(cfg, tmp_path, "adaptive_class", seed=0) == metrics  # finished: not redone


def test_report_level_plot_reads_per_class_stages():
    from discl.evaluation.report import class_level_series, level_series

    log = pd.DataFrame({"epoch": [0, 1, 2, 3], "stage": ["0.5", "0.5 [0:0.9 3:real]", "real [0:0.7]", "real"]})
    x, y = level_series(log)
    assert y.tolist() == [0.5, 0.5, 1.0, 1.0]
    per_class = class_level_series(log, y)
    assert {c: v.tolist() for c, v in per_class.items()} == {0: [0.5, 0.9, 0.7, 1.0], 3: [0.5, 1.0, 1.0, 1.0]}
    assert class_level_series(log.iloc[[0, 3]], y[[0, 3]]) == {}
