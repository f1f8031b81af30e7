"""The adaptive curriculum's decisions as pure functions (Algorithm 2 of the paper, as coded).

At a check, each candidate level has the ground-truth-class softmax probability of every held-out
hard image's variants at that level. A level's *progress* is the mean change of those
probabilities since its previous check (the first check compares against zero), after dropping
outliers outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR]. The next stage trains on the level with the largest
progress. Exploration (ε-greedy, UCB) and smoothing are options beyond the paper, off by default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["iqr_trimmed_mean", "iqr_trimmed_se", "progress_deltas", "level_progress", "level_progress_se", "paired_gap",
           "class_level_progress", "class_value_counts", "smooth", "choose_level", "choose_class_levels"]


def _iqr_kept(values: Sequence[float] | np.ndarray, k: float = 1.5) -> np.ndarray:
    """The finite values inside [Q1 - k·IQR, Q3 + k·IQR] (empty for no values)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return v
    q1, q3 = np.percentile(v, [25, 75])
    iqr = q3 - q1
    return v[(v >= q1 - k * iqr) & (v <= q3 + k * iqr)]


def iqr_trimmed_mean(values: Sequence[float] | np.ndarray, k: float = 1.5) -> float:
    """Mean of the values inside [Q1 - k·IQR, Q3 + k·IQR]; NaN for no values."""
    kept = _iqr_kept(values, k)
    return float(kept.mean()) if kept.size else float("nan")


def iqr_trimmed_se(values: Sequence[float] | np.ndarray, k: float = 1.5) -> tuple[float, int]:
    """(standard error, count) of :func:`iqr_trimmed_mean`: the sample std (ddof = 1) of the kept
    values over the square root of their count; NaN below 2 values. It ignores the trimming's own
    variability, so it is a lower bound of the estimate's noise, comparable with the gaps between levels."""
    kept = _iqr_kept(values, k)
    if kept.size < 2:
        return float("nan"), int(kept.size)
    return float(kept.std(ddof=1) / math.sqrt(kept.size)), int(kept.size)


def progress_deltas(now: Mapping[float, np.ndarray], previous: Mapping[float, np.ndarray] | None) -> dict[float, np.ndarray]:
    """``p_now - p_previous`` per level and held-out value; a level without a previous check uses 0."""
    out = {}
    for level, p in now.items():
        p = np.asarray(p, dtype=np.float64)
        prev = None if previous is None else previous.get(level)
        if prev is None or len(prev) != len(p):
            prev = np.zeros_like(p)
        out[level] = p - np.asarray(prev, dtype=np.float64)
    return out


def level_progress(now: Mapping[float, np.ndarray], previous: Mapping[float, np.ndarray] | None) -> dict[float, float]:
    """IQR-trimmed mean of (p_now - p_previous) per level; a level without a previous check uses 0."""
    return {level: iqr_trimmed_mean(d) for level, d in progress_deltas(now, previous).items()}


def level_progress_se(now: Mapping[float, np.ndarray],
                      previous: Mapping[float, np.ndarray] | None) -> dict[float, tuple[float, int]]:
    """Per level, (standard error, values kept) of :func:`level_progress` (:func:`iqr_trimmed_se`):
    how noisy each level's progress is, to compare with the gaps between the levels' progress."""
    return {level: iqr_trimmed_se(d) for level, d in progress_deltas(now, previous).items()}


def _per_source_mean(values: np.ndarray, sources: np.ndarray) -> dict[str, float]:
    """Mean of the finite values of each source (its kept variants at one level, or its one real image)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    s = np.asarray(sources).astype(str).ravel()
    if len(v) != len(s):
        raise ValueError(f"{len(s)} source ids given for {len(v)} held-out values")
    ok = np.isfinite(v)
    keys, inv = np.unique(s[ok], return_inverse=True)
    sums = np.bincount(inv, weights=v[ok], minlength=len(keys))
    counts = np.bincount(inv, minlength=len(keys))
    return {k: float(t / c) for k, t, c in zip(keys, sums, counts)}


def paired_gap(now: Mapping[float, np.ndarray], previous: Mapping[float, np.ndarray] | None,
               sources: Mapping[float, np.ndarray], a: float, b: float, k: float = 1.5) -> tuple[float, float, int]:
    """The gap between levels ``a`` and ``b`` measured on the same held-out images: per held-out image
    (``sources[level]`` names the image each value comes from; a synthetic level's variants are
    averaged per image), its progress at ``a`` minus its progress at ``b``, over the images present at
    both; returns (IQR-trimmed mean, its standard error, images kept) as :func:`iqr_trimmed_se`.

    Both levels are measured on one set of held-out images, so the gap's noise is that of the paired
    differences: what an image's own learnability adds to both levels cancels, which the per-level
    standard errors (:func:`level_progress_se`) cannot tell. Gap and error are NaN when fewer than
    two images are at both levels.
    """
    deltas = progress_deltas({lv: now[lv] for lv in (a, b)}, previous)
    pa, pb = (_per_source_mean(deltas[lv], sources[lv]) for lv in (a, b))
    common = sorted(set(pa) & set(pb))
    d = np.array([pa[s] - pb[s] for s in common], dtype=np.float64)
    se, n = iqr_trimmed_se(d, k)
    return (iqr_trimmed_mean(d, k) if n >= 2 else float("nan")), se, n


def class_value_counts(labels: Mapping[float, np.ndarray]) -> dict[int, dict[float, int]]:
    """Held-out values per (class, level): how much evidence a class's own choice would rest on."""
    classes = sorted({int(c) for y in labels.values() for c in np.asarray(y).ravel()})
    return {c: {lv: int((np.asarray(y) == c).sum()) for lv, y in labels.items()} for c in classes}


def check_labels(now: Mapping[float, np.ndarray], labels: Mapping[float, np.ndarray]) -> None:
    """Raise ValueError unless ``labels`` gives one class per probability at exactly ``now``'s levels."""
    if set(labels) != set(now):
        raise ValueError(f"class labels given for levels {sorted(labels)} but probabilities for {sorted(now)}")
    for lv, p in now.items():
        if len(np.asarray(labels[lv])) != len(np.asarray(p)):
            raise ValueError(f"level {lv:g}: {len(labels[lv])} labels for {len(p)} probabilities")


def class_level_progress(
    now: Mapping[float, np.ndarray], labels: Mapping[float, np.ndarray], previous: Mapping[float, np.ndarray] | None,
    min_values: int = 1,
) -> dict[int, dict[float, float]]:
    """:func:`level_progress` computed per class over that class's held-out values (IQR drop per class).

    ``labels[level]`` is the ground-truth class of each value in ``now[level]``. A class with fewer
    than ``min_values`` values at a level scores NaN there (too little evidence to compare levels on).
    """
    check_labels(now, labels)
    deltas = progress_deltas(now, previous)
    out: dict[int, dict[float, float]] = {}
    for c, counts in class_value_counts(labels).items():
        out[c] = {lv: iqr_trimmed_mean(deltas[lv][np.asarray(labels[lv]) == c]) if counts[lv] >= max(min_values, 1)
                  else float("nan") for lv in deltas}
    return out


def smooth(previous: Mapping[float, float] | None, current: Mapping[float, float], alpha: float) -> dict[float, float]:
    """Exponential moving average: ``alpha·previous + (1 - alpha)·current`` (alpha 0 = no smoothing)."""
    if not previous or alpha <= 0:
        return dict(current)
    return {lv: alpha * previous[lv] + (1 - alpha) * v if lv in previous and np.isfinite(previous[lv]) else v
            for lv, v in current.items()}


def choose_level(
    scores: Mapping[float, float],
    counts: Mapping[float, int] | None = None,
    checks: int = 1,
    epsilon: float = 0.0,
    ucb: float = 0.0,
    u: float = 1.0,
    pick: float = 0.0,
) -> float:
    """The level to train on next.

    Greedy argmax of ``scores`` (ties: the first level in order); with ``ucb > 0`` each score gets
    ``ucb·sqrt(ln(checks + 1) / (count + 1))``; with probability ``epsilon`` (``u < epsilon``, ``u``
    uniform in [0, 1) from the caller's seeded generator) a level chosen by ``pick`` in [0, 1).
    NaN scores (no held-out images at that level) never win the greedy choice.
    """
    levels = list(scores)
    if not levels:
        raise ValueError("choose_level needs at least one level")
    if epsilon > 0 and u < epsilon:
        return levels[min(int(pick * len(levels)), len(levels) - 1)]
    best, best_score = levels[0], -math.inf
    for lv in levels:
        s = scores[lv]
        if s is None or not np.isfinite(s):
            continue
        if ucb > 0:
            n = (counts or {}).get(lv, 0)
            s = s + ucb * math.sqrt(math.log(checks + 1) / (n + 1))
        if s > best_score:
            best, best_score = lv, s
    return best


def choose_class_levels(
    class_scores: Mapping[int, Mapping[float, float]],
    counts: Mapping[int, Mapping[float, int]] | None = None,
    checks: int = 1,
    epsilon: float = 0.0,
    ucb: float = 0.0,
    draws: Mapping[int, tuple[float, float]] | None = None,
) -> dict[int, float]:
    """Each class's own next level by :func:`choose_level` on its scores (its own UCB counts and
    exploration draws ``(u, pick)``). A class with a NaN score at any level (too few held-out values
    there) is left out: it falls back to the global choice.
    """
    out = {}
    for c, scores in class_scores.items():
        if not scores or not all(s is not None and np.isfinite(s) for s in scores.values()):
            continue
        u, pick = (draws or {}).get(c, (1.0, 0.0))
        out[c] = choose_level(scores, (counts or {}).get(c), checks, epsilon, ucb, u, pick)
    return out
