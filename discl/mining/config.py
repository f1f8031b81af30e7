from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from discl.configtools import check

Criterion = Literal["class_frequency", "misclassified", "low_confidence"]


@dataclass
class MiningConfig:
    """Which training images count as hard (phase 1a). Criteria combine with ``combine``."""

    criteria: list[Criterion] = field(default_factory=lambda: ["class_frequency"])
    combine: Literal["any", "all"] = "any"
    frequency_below: int = 20  # class_frequency: classes with fewer training images than this
    confidence_below: float = 0.5  # low_confidence: ground-truth probability threshold tau
    folds: int = 3  # model-based criteria: out-of-fold predictions (a model never judges its own training images)
    epochs: int = 8  # training length of each fold model
    max_per_class: int | None = None  # cap hard images per class (keeps the lowest-confidence ones)

    def __post_init__(self):
        check(len(self.criteria) > 0, "criteria", "needs at least one criterion")
        check(len(set(self.criteria)) == len(self.criteria), "criteria", "lists a criterion twice")
        check(self.frequency_below >= 1, "frequency_below", f"must be >= 1, got {self.frequency_below}")
        check(0.0 < self.confidence_below <= 1.0, "confidence_below", f"must be in (0, 1], got {self.confidence_below}")
        check(self.folds >= 2, "folds", f"must be >= 2, got {self.folds}")
        check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        check(self.max_per_class is None or self.max_per_class >= 1, "max_per_class", "must be >= 1")
