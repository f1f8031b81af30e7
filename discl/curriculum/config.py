from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from discl.configtools import check, to_dict

NOT_IN_DIGEST = {"in_digest": False}
"""Field metadata of a key that only checks or reports and never changes what a run trains on: it is
left out of a training run's digest (:func:`digest_view`), so setting it does not retrain finished runs."""


def _only_for(*strategies: str) -> dict[str, Any]:
    """Field metadata of a key read only by ``strategies``: it counts in a training run's digest only for
    them (:func:`digest_view`), so adding an option does not invalidate finished runs of other strategies.
    """
    return {"only_for": strategies}


@dataclass
class CurriculumConfig:
    """Which synthetic level(s) each epoch trains on (phase 2)."""

    strategy: str = "fixed"  # any registered name: `discl curricula` lists them
    levels: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5])  # candidate lambdas (1.0 = real)
    stages: list[float] = field(default_factory=lambda: [0.2, 0.25, 0.25, 0.3])  # fixed: share of epochs per level, last = real only
    fixed_level: float | None = None  # single-level ablations
    curriculum_fraction: float = 0.75  # adaptive: share of epochs before real-only training
    real_fraction: float = 0.3  # fresh seeded share of non-hard real images per epoch
    tail_quota: bool = True  # hard classes get the mean images per class of the others (real first, then synthetic)
    synthetic_cap_per_class: int | None = None
    min_tail_synthetic_share: float | None = field(default=None, metadata=NOT_IN_DIGEST)  # warn when a synthetic stage's tail slots hold a smaller synthetic share (logged per epoch as tail_synthetic_share; the authors' ImageNet-LT epochs: ~0.7); null = no check
    tail_min_hard_share: float = 0.5  # tail class = at least this share of its training images is hard
    holdout_per_class: int = 4  # adaptive: hard images held out to measure progress (never trained on)
    min_stage_epochs: int = 1  # adaptive, beyond the paper
    epsilon: float = 0.0  # adaptive: epsilon-greedy exploration, beyond the paper
    ucb: float = 0.0  # adaptive: UCB exploration bonus, beyond the paper
    smoothing: float = 0.0  # adaptive: EMA of the progress signal, beyond the paper
    class_min_holdout: int = field(default=4, metadata=_only_for("adaptive_class"))  # adaptive_class: a class picks its own level only with at least this many held-out values (variants) at every candidate level, else it takes the global choice

    def __post_init__(self):
        check(len(self.levels) > 0, "levels", "needs at least one level")
        for i, lam in enumerate(self.levels):
            check(0.0 <= lam <= 1.0, f"levels[{i}]", f"lambda must be in [0, 1], got {lam}")
        for i, s in enumerate(self.stages):
            check(s >= 0, f"stages[{i}]", f"must be >= 0, got {s}")
        check(self.fixed_level is None or 0.0 <= self.fixed_level <= 1.0, "fixed_level", "must be in [0, 1]")
        check(0.0 <= self.curriculum_fraction <= 1.0, "curriculum_fraction", "must be in [0, 1]")
        check(0.0 < self.real_fraction <= 1.0, "real_fraction", f"must be in (0, 1], got {self.real_fraction}")
        check(self.synthetic_cap_per_class is None or self.synthetic_cap_per_class >= 0, "synthetic_cap_per_class", "must be >= 0")
        check(self.min_tail_synthetic_share is None or 0.0 <= self.min_tail_synthetic_share <= 1.0,
              "min_tail_synthetic_share", f"must be in [0, 1] or null, got {self.min_tail_synthetic_share}")
        check(0.0 < self.tail_min_hard_share <= 1.0, "tail_min_hard_share", "must be in (0, 1]")
        check(self.holdout_per_class >= 0, "holdout_per_class", "must be >= 0")
        check(self.min_stage_epochs >= 1, "min_stage_epochs", "must be >= 1")
        check(0.0 <= self.epsilon <= 1.0, "epsilon", "must be in [0, 1]")
        check(self.ucb >= 0.0, "ucb", "must be >= 0")
        check(0.0 <= self.smoothing < 1.0, "smoothing", "must be in [0, 1)")
        check(self.class_min_holdout >= 1, "class_min_holdout", f"must be >= 1, got {self.class_min_holdout}")


def digest_view(cfg: CurriculumConfig) -> dict[str, Any]:
    """The keys a training run with ``cfg.strategy`` depends on (for its digest): every key except
    those marked as read only by other strategies and those that only check (:data:`NOT_IN_DIGEST`).
    """
    return {f.name: to_dict(getattr(cfg, f.name)) for f in fields(cfg)
            if cfg.strategy in f.metadata.get("only_for", (cfg.strategy,)) and f.metadata.get("in_digest", True)}
