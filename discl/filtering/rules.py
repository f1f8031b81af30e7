"""Keep/drop rules (pure functions on the scored spectrum table).

A row's threshold is the most specific one configured: its class's (``per_class``), else its λ's
(``per_level``, keys are λ written as strings, "0.5"), else the global one. Independently,
``top_q`` keeps the best ``ceil(q * n)`` of the n rows of each (sample, λ) cell. A row is kept when
it passes both; every dropped row says why in ``drop_reason`` (reasons joined by "; ").
Rows whose score is missing (NaN, e.g. no real source for ``sim_image``) fail a threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from discl.filtering.scores import SCORE_COLUMN


@dataclass(frozen=True)
class FilterRules:
    score: str = "text"  # text | prompt | image
    threshold: float | None = 0.30
    per_level: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, float] = field(default_factory=dict)
    top_q: float | None = None

    def __post_init__(self):
        if self.score not in SCORE_COLUMN:
            raise ValueError(f"score must be one of {sorted(SCORE_COLUMN)}, got {self.score!r}")
        if self.top_q is not None and not 0 < self.top_q <= 1:
            raise ValueError(f"top_q must be in (0, 1], got {self.top_q}")
        for key in self.per_level:
            level_key(key)


# The authors' rules: CLIP ViT-B/32 raw cosine of the image with "a photo of {class}".
# Their thresholds are calibrated for ViT-B/32 cosines; other models' cosines have other scales.
PRESETS: dict[str, FilterRules] = {
    "authors-long-tail": FilterRules(score="text", threshold=0.30),  # ImageNet-LT
    "authors-camera-trap": FilterRules(score="text", threshold=0.25),  # iWildCam
    "keep-all": FilterRules(score="text", threshold=None),
}


def level_key(lam: float | str) -> float:
    """λ as a comparable number (6 decimals), from a float or a per_level key."""
    try:
        return round(float(lam), 6)
    except (TypeError, ValueError):
        raise ValueError(f"per_level key {lam!r} is not a guidance level like '0.5'") from None


def row_thresholds(frame: pd.DataFrame, rules: FilterRules) -> tuple[np.ndarray, np.ndarray]:
    """(threshold per row (NaN = none), which rule set it: 'global' / 'lambda 0.5' / 'class X' / '')."""
    n = len(frame)
    thr = np.full(n, np.nan if rules.threshold is None else float(rules.threshold))
    src = np.full(n, "" if rules.threshold is None else "global", dtype=object)
    if rules.per_level:
        levels = {level_key(k): float(v) for k, v in rules.per_level.items()}
        lam = frame["lam"].astype(float).round(6).to_numpy()
        for key, value in levels.items():
            hit = lam == key
            thr[hit], src[hit] = value, f"lambda {key:g}"
    if rules.per_class:
        names = frame["class_name"].astype(str).to_numpy()
        for name, value in rules.per_class.items():
            hit = names == name
            thr[hit], src[hit] = float(value), f"class {name}"
    return thr, src


def top_q_mask(frame: pd.DataFrame, column: str, q: float) -> np.ndarray:
    """True for the best ceil(q * n) rows of each (sample_id, lam) cell by ``column`` (NaN ranks last;
    ties broken by row order, so the result is deterministic)."""
    keep = np.zeros(len(frame), dtype=bool)
    values = frame[column].to_numpy(dtype=float)
    order_key = np.where(np.isnan(values), -np.inf, values)
    cells = frame.groupby(["sample_id", frame["lam"].astype(float).round(6)], sort=False).indices
    for rows in cells.values():
        rows = np.asarray(rows)
        k = math.ceil(q * len(rows) - 1e-9)
        best = rows[np.argsort(-order_key[rows], kind="stable")[:k]]
        keep[best] = True
    return keep


def apply_rules(frame: pd.DataFrame, rules: FilterRules) -> pd.DataFrame:
    """``frame`` (needs sample_id, lam, class_name and the score column) + ``keep`` and ``drop_reason``."""
    column = SCORE_COLUMN[rules.score]
    if column not in frame.columns:
        raise ValueError(f"the scored table has no {column} column")
    values = frame[column].to_numpy(dtype=float)
    thr, src = row_thresholds(frame, rules)
    reasons: list[list[str]] = [[] for _ in range(len(frame))]
    for i in np.flatnonzero(~np.isnan(thr)):
        if np.isnan(values[i]):
            reasons[i].append(f"{column} missing ({src[i]} threshold {thr[i]:.3f})")
        elif values[i] < thr[i]:
            reasons[i].append(f"{column} {values[i]:.3f} < {thr[i]:.3f} ({src[i]})")
    if rules.top_q is not None:
        best = top_q_mask(frame, column, rules.top_q)
        for i in np.flatnonzero(~best):
            reasons[i].append(f"not in top {rules.top_q:g} of its (sample, lambda) by {column}")
    out = frame.copy()
    out["keep"] = [not r for r in reasons]
    out["drop_reason"] = ["; ".join(r) for r in reasons]
    return out


def rules_from_config(cfg) -> FilterRules:
    """:class:`FilterRules` from a :class:`discl.filtering.config.FilterConfig`."""
    return FilterRules(score=cfg.score, threshold=cfg.threshold, per_level=dict(cfg.per_level),
                       per_class=dict(cfg.per_class), top_q=cfg.top_q)
