"""``random_level``: a uniformly random candidate level per stage, the control for ``adaptive``.

Same budget and the same held-out images removed from training as ``adaptive``, same
real-only phase after ``curriculum_fraction``; the level is drawn from a generator seeded by
(seed, stage start) instead of chosen by measured progress.
"""

from __future__ import annotations

import torch

from discl.curriculum.base import NonAdaptive, Stage, register_strategy
from discl.seeding import torch_generator


@register_strategy("random_level", "control for adaptive: a seeded random candidate level per stage, then real only")
class RandomLevel(NonAdaptive):
    uses_holdout = True

    def __init__(self, cfg, epochs, seed):
        super().__init__(cfg, epochs, seed)
        self.curriculum_epochs = int(round(cfg.curriculum_fraction * epochs))

    def stage(self, epoch: int) -> Stage:
        e = self._clamp(epoch)
        if e >= self.curriculum_epochs:
            return Stage()
        start = e - e % self.cfg.min_stage_epochs
        g = torch_generator("curriculum-random-level", self.seed, start)
        i = int(torch.randint(len(self.cfg.levels), (1,), generator=g))
        return Stage((self.cfg.levels[i],))
