"""Metrics on hand-made labels and predictions."""

import numpy as np
import pytest

from discl.evaluation.metrics import compute_metrics, frequency_bins, macro_f1, per_class_accuracy


def test_bins_and_accuracies_by_frequency():
    train_counts = [500, 50, 5]  # many, medium, few with thresholds 100 / 20
    assert list(frequency_bins(train_counts, 100, 20)) == ["many", "medium", "few"]
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 0, 2, 0]
    m = compute_metrics(y_true, y_pred, train_counts, many=100, few=20, class_names=["a", "b", "c"])
    assert m["top1"] == pytest.approx(5 / 8)
    assert m["many"] == pytest.approx(3 / 4) and m["medium"] == pytest.approx(1 / 2) and m["few"] == pytest.approx(1 / 2)
    assert m["per_class"] == {"a": 0.75, "b": 0.5, "c": 0.5}
    assert m["confusion"] == [[3, 1, 0], [1, 1, 0], [1, 0, 1]]
    # F1: a: p=3/5 r=3/4 -> 2/3; b: p=1/2 r=1/2 -> 1/2; c: p=1 r=1/2 -> 2/3
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert m["n"] == 8 and m["few_classes"] == 1


def test_thresholds_are_configurable_and_empty_bins_are_none():
    m = compute_metrics([0, 1], [0, 0], [30, 8], many=10, few=5)
    assert m["many"] == 1.0 and m["medium"] == 0.0 and m["few"] is None
    m = compute_metrics([0, 1], [0, 0], [30, 8], many=100, few=20)
    assert m["medium"] == 1.0 and m["few"] == 0.0 and m["many"] is None


def test_per_class_accuracy_missing_class_and_bad_input():
    pca = per_class_accuracy([0, 0], [0, 1], 3)
    assert pca[0] == 0.5 and np.isnan(pca[1]) and np.isnan(pca[2])
    assert macro_f1([0, 1], [0, 1], 2) == 1.0
    with pytest.raises(ValueError, match="labels must be in"):
        compute_metrics([0, 3], [0, 1], [10, 10])
    with pytest.raises(ValueError, match="y_pred has"):
        compute_metrics([0, 1], [0], [10, 10])


def test_macro_f1_is_wilds_definition_over_true_labels():
    # WILDS (wilds/common/metrics/all_metrics.py F1, average="macro") averages over torch.unique(y_true):
    # class 0 F1 = 1, class 1 F1 = 2/3; class 2 is only predicted and does not count.
    y_true, y_pred = [0, 0, 1, 1], [0, 0, 1, 2]
    assert abs(macro_f1(y_true, y_pred, 3) - (1 + 2 / 3) / 2) < 1e-9
    from discl.evaluation.metrics import macro_f1_union

    assert abs(macro_f1_union(y_true, y_pred, 3) - (1 + 2 / 3 + 0) / 3) < 1e-9
    m = compute_metrics(y_true, y_pred, [5, 5, 5], 4, 2)
    assert m["macro_f1"] > m["macro_f1_union"]
