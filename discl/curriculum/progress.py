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

__all__ = ["iqr_trimmed_mean", "level_progress", "smooth", "choose_level"]


def iqr_trimmed_mean(values: Sequence[float] | np.ndarray, k: float = 1.5) -> float:
    """Mean of the values inside [Q1 - k·IQR, Q3 + k·IQR]; NaN for no values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    q1, q3 = np.percentile(v, [25, 75])
    iqr = q3 - q1
    kept = v[(v >= q1 - k * iqr) & (v <= q3 + k * iqr)]
    return float(kept.mean())


def level_progress(now: Mapping[float, np.ndarray], previous: Mapping[float, np.ndarray] | None) -> dict[float, float]:
    """IQR-trimmed mean of (p_now - p_previous) per level; a level without a previous check uses 0."""
    out = {}
    for level, p in now.items():
        p = np.asarray(p, dtype=np.float64)
        prev = None if previous is None else previous.get(level)
        if prev is None or len(prev) != len(p):
            prev = np.zeros_like(p)
        out[level] = iqr_trimmed_mean(p - np.asarray(prev, dtype=np.float64))
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
