"""The curriculum-strategy protocol, the registry, and the stage type.

A strategy answers one question: which synthetic guidance level(s) λ does epoch ``e`` train on?
An empty :class:`Stage` means real data only. Strategies are built from (config, epochs, seed),
are deterministic from (seed, epoch), never touch the global RNG, and round-trip their state
through ``state_dict``/``load_state_dict`` (plain JSON-able data) so training resumes exactly.
Adaptive strategies also ``observe`` the model's progress after an epoch: the ground-truth-class
probability of each held-out value per candidate level, and (for per-class choices) its class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from discl.configtools import ConfigError
from discl.curriculum.config import CurriculumConfig

__all__ = ["Stage", "CurriculumStrategy", "register_strategy", "create_strategy", "list_strategies",
           "REAL", "stage_boundaries", "is_real"]

REAL = 1.0  # λ = 1 denotes the real image itself


def is_real(level: float) -> bool:
    return bool(np.isclose(level, REAL))


@dataclass(frozen=True)
class Stage:
    """The synthetic levels of an epoch (sorted); ``()`` = real data only.

    ``share`` < 1 draws only that fraction of the stage's synthetic candidates each epoch (seeded, per
    class): ``mixed_equal`` uses it to give an unordered mix the synthetic budget of one level.
    ``class_levels`` ((class, λ) pairs, λ=1 = real only) overrides ``levels`` for those classes:
    ``adaptive_class`` lets each hard class train on its own level.
    """

    levels: tuple[float, ...] = ()
    share: float = 1.0
    class_levels: tuple[tuple[int, float], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "levels", tuple(sorted(round(float(v), 6) for v in self.levels if not is_real(v))))
        object.__setattr__(self, "class_levels", tuple(sorted((int(c), round(float(v), 6)) for c, v in self.class_levels)))
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"Stage.share must be in (0, 1], got {self.share}")
        classes = [c for c, _ in self.class_levels]
        if len(set(classes)) != len(classes):
            raise ValueError(f"Stage.class_levels names a class twice: {self.class_levels}")

    @property
    def all_levels(self) -> tuple[float, ...]:
        """Every synthetic level some class trains on in this stage (sorted)."""
        return tuple(sorted(set(self.levels) | {v for _, v in self.class_levels if not is_real(v)}))

    @property
    def real_only(self) -> bool:
        return not self.all_levels

    def __str__(self) -> str:
        text = "real" if not self.levels else "+".join(f"{v:g}" for v in self.levels)
        if self.class_levels:
            text += " [" + " ".join(f"{c}:{'real' if is_real(v) else f'{v:g}'}" for c, v in self.class_levels) + "]"
        return text


@runtime_checkable
class CurriculumStrategy(Protocol):
    name: ClassVar[str]
    needs_feedback: ClassVar[bool]  # True: the trainer calls observe() after epochs it asks for
    uses_holdout: ClassVar[bool]  # True: held-out hard images are removed from training

    def stage(self, epoch: int) -> Stage: ...

    def wants_feedback(self, epoch: int) -> bool: ...

    def observe(self, epoch: int, gt_probs: dict[float, np.ndarray],
                labels: dict[float, np.ndarray] | None = None,
                sources: dict[float, np.ndarray] | None = None) -> dict[str, Any]: ...
    # ``sources`` (optional: the trainer passes it only to an observe that takes it) names each value's held-out image

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# filled by the strategy modules themselves as ``discl.curriculum`` (the package) imports them
_REGISTRY: dict[str, tuple[Callable[..., CurriculumStrategy], str]] = {}


def register_strategy(name: str, description: str):
    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"curriculum strategy {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = (cls, description)
        return cls

    return deco


def list_strategies() -> dict[str, str]:
    return {name: desc for name, (_, desc) in sorted(_REGISTRY.items())}


def create_strategy(name: str, cfg: CurriculumConfig, epochs: int, seed: int) -> CurriculumStrategy:
    if name not in _REGISTRY:
        raise ConfigError(f"curriculum.strategy: unknown strategy {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return _REGISTRY[name][0](cfg, int(epochs), int(seed))


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A config warning logged once per process (a strategy is built by validation, digests and training)."""
    if message not in _WARNED:
        _WARNED.add(message)
        logging.getLogger(__name__).warning(message)


def stage_boundaries(stages: list[float], epochs: int) -> list[int]:
    """End epoch (exclusive) of each stage. ``stages`` are shares of the epochs when they sum to 1,
    otherwise epoch counts (the authors' ImageNet-LT recipe: 14, 15, 15, 21 of 65).
    """
    if not stages:
        return []
    total = float(sum(stages))
    if total <= 0:
        raise ConfigError("curriculum.stages: the stage lengths sum to 0")
    if abs(total - 1.0) < 1e-6:
        cum = np.cumsum(stages) * epochs
    else:
        cum = np.cumsum(stages) * (epochs / total)
    ends = [int(round(c)) for c in cum]
    ends[-1] = epochs
    return [min(max(e, 0), epochs) for e in ends]


class NonAdaptive:
    """Shared plumbing of the schedules that do not look at the model."""

    needs_feedback: ClassVar[bool] = False
    uses_holdout: ClassVar[bool] = False

    def __init__(self, cfg: CurriculumConfig, epochs: int, seed: int):
        self.cfg, self.epochs, self.seed = cfg, epochs, seed

    def _clamp(self, epoch: int) -> int:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return min(int(epoch), self.epochs - 1)

    def wants_feedback(self, epoch: int) -> bool:
        return False

    def observe(self, epoch: int, gt_probs: dict[float, np.ndarray],
                labels: dict[float, np.ndarray] | None = None) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and state.get("name") not in (None, self.name):
            raise ValueError(f"state of strategy {state.get('name')!r} cannot be loaded into {self.name!r}")


class Scheduled(NonAdaptive):
    """A sequence of (stage, length) over the epochs: ``self.sequence`` lists the stages."""

    sequence: list[Stage]

    def _synthetic_levels(self) -> list[float]:
        return [v for v in self.cfg.levels if not is_real(v)]

    def _lengths(self, n_stages: int) -> list[int]:
        """Stage ends for the authors' layout: one stage per level, then (optionally) real only."""
        stages = list(self.cfg.stages)
        if len(stages) != n_stages:
            raise ConfigError(
                f"curriculum.stages: {self.name} has {n_stages} stages here but stages lists {len(stages)} lengths"
            )
        ends = stage_boundaries(stages, self.epochs)
        starts = [0, *ends[:-1]]
        empty = [i for i, (a, b) in enumerate(zip(starts, ends)) if b <= a]
        if empty:  # a stage with no epoch vanishes from the schedule (even the real-only one): say so, once
            _warn_once(f"curriculum.stages: {self.name} over training.epochs = {self.epochs} gives stage(s) "
                       f"{', '.join(str(i + 1) for i in empty)} of {n_stages} no epoch (stage ends {ends}), so "
                       f"they are skipped; raise training.epochs to at least {n_stages} or drop levels")
        return ends

    def stage(self, epoch: int) -> Stage:
        e = self._clamp(epoch)
        for end, st in zip(self.ends, self.sequence):
            if e < end:
                return st
        return self.sequence[-1]

    def _has_real_tail(self) -> bool:
        return len(self.cfg.stages) == len(self._synthetic_levels()) + 1
