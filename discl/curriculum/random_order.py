"""``random_order``: the fixed schedule's synthetic stages in a seeded random order, real stage last.

Each stage keeps the length of its position, so only the order differs from ``fixed``.
"""

from __future__ import annotations

from discl.curriculum.base import Scheduled, Stage, register_strategy
from discl.seeding import numpy_rng


@register_strategy("random_order", "ablation: the synthetic stages in a seeded random order, then real only")
class RandomOrderSchedule(Scheduled):
    def __init__(self, cfg, epochs, seed):
        super().__init__(cfg, epochs, seed)
        levels = self._synthetic_levels()
        order = numpy_rng("curriculum-random-order", seed).permutation(len(levels))
        self.sequence = [Stage((levels[i],)) for i in order] + ([Stage()] if self._has_real_tail() else [])
        self.ends = self._lengths(len(self.sequence))

    def state_dict(self):
        return {"name": self.name, "order": [str(s) for s in self.sequence]}
