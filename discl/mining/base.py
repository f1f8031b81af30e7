"""The hard-sample criteria interface: pure functions from per-image facts to a yes/no per image.

A criterion is one file in this package, registered by name with :func:`register`. It sees only
plain arrays (:class:`MiningInputs`), so it can be tested on hand-made numbers; the runner fills
the arrays from the dataset and, for model-based criteria, from out-of-fold predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from discl.mining.config import MiningConfig


@dataclass(frozen=True)
class MiningInputs:
    """Facts about the N training images the criteria judge."""

    labels: np.ndarray  # int [N], ground-truth class per image
    class_counts: np.ndarray  # int [K], training images per class
    oof_proba: np.ndarray | None = None  # float [N, K], out-of-fold softmax (None: not computed)

    def __post_init__(self):
        n = len(self.labels)
        if self.oof_proba is not None and self.oof_proba.shape != (n, len(self.class_counts)):
            raise ValueError(f"oof_proba has shape {self.oof_proba.shape}, expected ({n}, {len(self.class_counts)})")

    @property
    def prob_gt(self) -> np.ndarray:
        """Out-of-fold probability of each image's own class (NaN when not computed)."""
        if self.oof_proba is None:
            return np.full(len(self.labels), np.nan)
        return self.oof_proba[np.arange(len(self.labels)), self.labels]

    @property
    def pred(self) -> np.ndarray:
        """Out-of-fold predicted class (-1 when not computed)."""
        if self.oof_proba is None:
            return np.full(len(self.labels), -1)
        return self.oof_proba.argmax(1)


class Criterion(Protocol):
    name: str
    needs_predictions: bool  # True: needs ``MiningInputs.oof_proba``

    def __call__(self, inputs: MiningInputs, cfg: MiningConfig) -> np.ndarray:
        """Boolean mask [N]: which images this criterion calls hard."""
        ...


# filled by the criterion modules themselves as ``discl.mining`` (the package) imports them
_REGISTRY: dict[str, Criterion] = {}


def register(criterion: Criterion) -> Criterion:
    if criterion.name in _REGISTRY:
        raise ValueError(f"criterion {criterion.name!r} is registered twice")
    _REGISTRY[criterion.name] = criterion
    return criterion


def get_criterion(name: str) -> Criterion:
    if name not in _REGISTRY:
        raise KeyError(f"unknown mining criterion {name!r} (known: {', '.join(available_criteria())})")
    return _REGISTRY[name]


def available_criteria() -> list[str]:
    return sorted(_REGISTRY)


@dataclass(frozen=True)
class FunctionCriterion:
    """A criterion from a plain function (what the built-in files use)."""

    name: str
    needs_predictions: bool
    fn: Callable[[MiningInputs, MiningConfig], np.ndarray]

    def __call__(self, inputs: MiningInputs, cfg: MiningConfig) -> np.ndarray:
        if self.needs_predictions and inputs.oof_proba is None:
            raise ValueError(f"criterion {self.name!r} needs out-of-fold predictions")
        return np.asarray(self.fn(inputs, cfg), dtype=bool)
