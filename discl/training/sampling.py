"""The baselines' epoch planners: which training items an epoch visits (the trainer shuffles and batches them).

The plan type and the planner protocol are :mod:`discl.curriculum.epochs` (shared with the curriculum,
whose planner lives in :mod:`discl.curriculum.stage_data`). Everything random comes from a generator
seeded from (seed, epoch), so a resumed run replays the same epochs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from discl.curriculum.epochs import EpochPlan, EpochPlanner
from discl.seeding import torch_generator

__all__ = ["EpochPlan", "EpochPlanner", "AllItems", "ClassBalanced", "build_planner"]


class _Stateless:
    def after_epoch(self, epoch: int, predict_proba) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class AllItems(_Stateless):
    """Every training item once per epoch (plain ERM)."""

    def __init__(self, n: int):
        self.n = int(n)

    def plan(self, epoch: int) -> EpochPlan:
        return EpochPlan(np.arange(self.n, dtype=np.int64), {"n_real": self.n, "n_synthetic": 0})


def class_balanced_indices(labels: np.ndarray, n: int, generator: torch.Generator) -> np.ndarray:
    """``n`` draws: a class uniformly among the present ones, then an item of it uniformly."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == c) for c in classes]
    cls = torch.randint(len(classes), (n,), generator=generator).numpy()
    u = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
    out = np.empty(n, dtype=np.int64)
    for i, members in enumerate(by_class):
        m = cls == i
        out[m] = members[np.minimum((u[m] * len(members)).astype(np.int64), len(members) - 1)]
    return out


class ClassBalanced(_Stateless):
    """Class-balanced resampling: as many draws per epoch as items, classes equally likely.

    A strong, cheap long-tail baseline; seeded from (seed, epoch).
    """

    def __init__(self, labels: np.ndarray, seed: int):
        self.labels = np.asarray(labels)
        self.seed = int(seed)

    def plan(self, epoch: int) -> EpochPlan:
        g = torch_generator("class-balanced", self.seed, int(epoch))
        idx = class_balanced_indices(self.labels, len(self.labels), g)
        return EpochPlan(idx, {"n_real": len(idx), "n_synthetic": 0})


def build_planner(sampler: str, labels: np.ndarray, seed: int) -> EpochPlanner:
    if sampler == "none":
        return AllItems(len(labels))
    if sampler == "class_balanced":
        return ClassBalanced(labels, seed)
    raise ValueError(f"unknown sampler {sampler!r} (none, class_balanced)")
