"""Classification metrics as pure functions of labels and predictions (no models, no files).

Long-tail tasks report top-1 overall and by class frequency in the *training* set (many / medium /
few, ImageNet-LT's bins with configurable thresholds); low-quality / shift tasks report macro-F1.
scikit-learn computes F1 and the confusion matrix.

``macro_f1`` is WILDS' definition (``wilds.common.metrics.all_metrics.F1`` with ``average="macro"``:
``labels=torch.unique(y_true)``): the mean F1 over the classes present in the ground truth. A class
that is only predicted, never true, lowers precision of nothing it is averaged over; sklearn's
default (the union of true and predicted labels) is kept as ``macro_f1_union`` and recorded too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion
from sklearn.metrics import f1_score

__all__ = ["frequency_bins", "per_class_accuracy", "compute_metrics", "top1", "macro_f1", "macro_f1_union", "confusion"]


def _arr(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(np.int64).ravel()


def top1(y_true, y_pred) -> float:
    y_true, y_pred = _arr(y_true), _arr(y_pred)
    if len(y_true) == 0:
        return float("nan")
    return float((y_true == y_pred).mean())


def macro_f1(y_true, y_pred, num_classes: int) -> float:
    """Macro-F1 over the classes present in ``y_true`` (WILDS' convention, the iWildCam metric)."""
    y_true, y_pred = _arr(y_true), _arr(y_pred)
    if len(y_true) == 0:
        return float("nan")
    labels = np.unique(y_true)
    labels = labels[labels < num_classes]
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def macro_f1_union(y_true, y_pred, num_classes: int) -> float:
    """Macro-F1 over the classes present in ``y_true`` or ``y_pred`` (sklearn's default); lower than
    :func:`macro_f1` whenever the model predicts a class absent from the ground truth."""
    y_true, y_pred = _arr(y_true), _arr(y_pred)
    if len(y_true) == 0:
        return float("nan")
    labels = np.unique(np.concatenate([y_true, y_pred]))
    labels = labels[labels < num_classes]
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def per_class_accuracy(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Accuracy of each class (NaN for a class without test images)."""
    y_true, y_pred = _arr(y_true), _arr(y_pred)
    correct = np.bincount(y_true[y_true == y_pred], minlength=num_classes)[:num_classes]
    total = np.bincount(y_true, minlength=num_classes)[:num_classes]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def frequency_bins(train_counts: Sequence[int], many: int, few: int) -> np.ndarray:
    """'many' (>= many), 'medium' ([few, many)), 'few' (< few) per class, by training count."""
    counts = np.asarray(train_counts)
    return np.where(counts >= many, "many", np.where(counts < few, "few", "medium"))


def confusion(y_true, y_pred, num_classes: int) -> np.ndarray:
    return _sk_confusion(_arr(y_true), _arr(y_pred), labels=np.arange(num_classes))


def compute_metrics(
    y_true,
    y_pred,
    train_counts: Sequence[int],
    many: int = 100,
    few: int = 20,
    class_names: Sequence[str] | None = None,
) -> dict:
    """All metrics of one split as plain JSON-able data.

    Bin accuracies are computed over the *images* of the classes in the bin (ImageNet-LT's way:
    equal to the mean of per-class accuracies when the test set is balanced); a bin without classes
    or test images is ``None``.
    """
    y_true, y_pred = _arr(y_true), _arr(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    k = len(train_counts)
    if len(y_true) and (y_true.max() >= k or y_true.min() < 0):
        raise ValueError(f"labels must be in [0, {k}) (one training count per class)")
    bins = frequency_bins(train_counts, many, few)
    pca = per_class_accuracy(y_true, y_pred, k)
    out: dict = {
        "n": int(len(y_true)),
        "top1": top1(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, k),
        "macro_f1_union": macro_f1_union(y_true, y_pred, k),
    }
    for name in ("many", "medium", "few"):
        mask = np.isin(y_true, np.flatnonzero(bins == name))
        out[name] = float((y_true[mask] == y_pred[mask]).mean()) if mask.any() else None
        out[f"{name}_classes"] = int((bins == name).sum())
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    out["per_class"] = {names[c]: (None if np.isnan(pca[c]) else float(pca[c])) for c in range(k)}
    out["confusion"] = confusion(y_true, y_pred, k).tolist()
    out["thresholds"] = {"many": int(many), "few": int(few)}
    return out
