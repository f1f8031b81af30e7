"""Similarity math and keep/drop rules (pure functions, hand-computed expectations)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from discl.configtools import ConfigError, from_dict
from discl.filtering.config import FilterConfig
from discl.filtering.rules import PRESETS, FilterRules, apply_rules, rules_from_config, top_q_mask
from discl.filtering.scores import clipscore, rowwise_cosine, similarity_columns


def test_rowwise_cosine_matches_hand_computed_values():
    a = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[0.0, 2.0], [3.0, 4.0], [-1.0, 0.0], [1.0, 0.0]])
    got = rowwise_cosine(a, b)
    assert got[0] == pytest.approx(0.0)
    assert got[1] == pytest.approx(1.0)
    assert got[2] == pytest.approx(-1 / math.sqrt(2))
    assert np.isnan(got[3])  # a zero vector has no direction


def test_rowwise_cosine_nan_row_and_shape_check():
    assert np.isnan(rowwise_cosine(np.array([[np.nan, 1.0]]), np.array([[1.0, 0.0]]))[0])
    with pytest.raises(ValueError, match="shapes differ"):
        rowwise_cosine(np.zeros((2, 3)), np.zeros((3, 3)))


def test_clipscore_convention():
    np.testing.assert_allclose(clipscore(np.array([0.3, -0.2, 1.0])), [0.75, 0.0, 2.5])


def test_similarity_columns_use_the_right_pairs():
    img = np.array([[1.0, 0.0], [0.6, 0.8]])
    prompt = np.array([[0.0, 1.0], [0.6, 0.8]])
    text = np.array([[1.0, 1.0], [0.0, 1.0]])
    real = np.array([[1.0, 0.0], [1.0, 0.0]])
    cols = similarity_columns(img, prompt, text, real)
    np.testing.assert_allclose(cols["sim_prompt"], [0.0, 1.0])
    np.testing.assert_allclose(cols["sim_text"], [1 / math.sqrt(2), 0.8])
    np.testing.assert_allclose(cols["sim_image"], [1.0, 0.6])
    np.testing.assert_allclose(cols["clipscore"], [0.0, 2.5])


def _frame():
    # two samples x two levels x two seeds
    rows = []
    values = iter([0.35, 0.20, 0.31, 0.29, 0.50, 0.10, 0.26, np.nan])
    for sid, cls in (("a", "Shirt"), ("b", "Bag")):
        for lam in (0.1, 0.5):
            for k in range(2):
                rows.append({"sample_id": sid, "class_name": cls, "lam": lam, "k": k, "sim_text": next(values),
                             "sim_image": 0.9})
    return pd.DataFrame(rows)


def test_global_threshold_keeps_at_or_above_and_names_the_reason():
    out = apply_rules(_frame(), FilterRules(score="text", threshold=0.30))
    assert out["keep"].tolist() == [True, False, True, False, True, False, False, False]
    assert out.loc[1, "drop_reason"] == "sim_text 0.200 < 0.300 (global)"
    assert out.loc[7, "drop_reason"].startswith("sim_text missing")
    assert (out.loc[out["keep"], "drop_reason"] == "").all()


def test_threshold_equal_to_value_is_kept():
    frame = pd.DataFrame({"sample_id": ["a"], "class_name": ["Bag"], "lam": [0.1], "sim_text": [0.30]})
    assert apply_rules(frame, FilterRules(threshold=0.30))["keep"].tolist() == [True]


def test_per_level_overrides_global_and_per_class_overrides_both():
    rules = FilterRules(score="text", threshold=0.30, per_level={"0.5": 0.25}, per_class={"Bag": 0.05})
    out = apply_rules(_frame(), rules)
    # sample a (Shirt): λ 0.1 -> global 0.30; λ 0.5 -> 0.25
    assert out["keep"].tolist()[:4] == [True, False, True, True]
    assert "(lambda 0.5)" not in out.loc[3, "drop_reason"]
    # sample b (Bag): class threshold 0.05 everywhere; NaN still fails
    assert out["keep"].tolist()[4:] == [True, True, True, False]
    assert out.loc[7, "drop_reason"] == "sim_text missing (class Bag threshold 0.050)"
    only_level = apply_rules(_frame(), FilterRules(threshold=0.30, per_level={"0.5": 0.30001}))
    assert "(lambda 0.5)" in only_level.loc[3, "drop_reason"]


def test_top_q_keeps_the_best_of_each_sample_level_cell():
    frame = _frame()
    mask = top_q_mask(frame, "sim_text", 0.5)
    assert mask.tolist() == [True, False, True, False, True, False, True, False]
    out = apply_rules(frame, FilterRules(threshold=None, top_q=0.5))
    assert out["keep"].tolist() == mask.tolist()
    assert out.loc[1, "drop_reason"] == "not in top 0.5 of its (sample, lambda) by sim_text"
    both = apply_rules(frame, FilterRules(threshold=0.30, top_q=0.5))
    assert both.loc[3, "drop_reason"] == ("sim_text 0.290 < 0.300 (global); "
                                          "not in top 0.5 of its (sample, lambda) by sim_text")
    assert both.loc[6, "keep"] == False  # noqa: E712 - best of its cell but below the threshold


def test_top_q_rounds_up_and_one_keeps_all():
    frame = pd.DataFrame({"sample_id": ["a"] * 3, "lam": [0.1] * 3, "class_name": ["Bag"] * 3, "sim_text": [0.1, 0.3, 0.2]})
    assert top_q_mask(frame, "sim_text", 0.34).tolist() == [False, True, True]
    assert top_q_mask(frame, "sim_text", 1.0).all()


def test_no_threshold_keeps_everything():
    assert apply_rules(_frame(), PRESETS["keep-all"])["keep"].all()


def test_authors_presets():
    assert PRESETS["authors-long-tail"] == FilterRules(score="text", threshold=0.30)
    assert PRESETS["authors-camera-trap"] == FilterRules(score="text", threshold=0.25)


def test_rule_validation():
    with pytest.raises(ValueError, match="score"):
        FilterRules(score="nope")
    with pytest.raises(ValueError, match="per_level key"):
        FilterRules(per_level={"high": 0.3})
    with pytest.raises(ValueError, match="top_q"):
        FilterRules(top_q=0.0)


def test_rules_from_config_and_config_errors_name_the_key():
    cfg = from_dict(FilterConfig, {"score": "image", "threshold": 0.5, "per_level": {"0.9": 0.7}, "top_q": 0.5})
    rules = rules_from_config(cfg)
    assert rules == FilterRules(score="image", threshold=0.5, per_level={"0.9": 0.7}, top_q=0.5)
    with pytest.raises(ConfigError, match="per_level"):
        from_dict(FilterConfig, {"per_level": {"half": 0.3}})
    with pytest.raises(ConfigError, match="threshold"):
        from_dict(FilterConfig, {"threshold": 1.5})


def test_per_level_keys_from_yaml_numbers_or_strings():
    from discl.config import load_config

    cfg = load_config(None, ["filtering.per_level={0.5: 0.2, '0.90': 0.1}"])
    assert cfg.filtering.per_level == {"0.5": 0.2, "0.9": 0.1}
    with pytest.raises(ConfigError, match="twice"):
        from_dict(FilterConfig, {"per_level": {0.5: 0.2, "0.50": 0.3}})
    with pytest.raises(ConfigError, match="per_level.1.5"):
        from_dict(FilterConfig, {"per_level": {1.5: 0.2}})
