"""``fixed``: the authors' non-adaptive schedule, synthetic → real (long-tail recipe).

One stage per synthetic level in ``curriculum.levels`` order (0.1 → 0.3 → 0.5), then real data only
when ``curriculum.stages`` has one more entry than there are levels.
"""

from __future__ import annotations

from discl.curriculum.base import Scheduled, Stage, register_strategy


@register_strategy("fixed", "λ schedule synthetic → real: one stage per level in order, then real only")
class FixedSchedule(Scheduled):
    def __init__(self, cfg, epochs, seed):
        super().__init__(cfg, epochs, seed)
        levels = self._synthetic_levels()
        self.sequence = [Stage((lv,)) for lv in levels] + ([Stage()] if self._has_real_tail() else [])
        self.ends = self._lengths(len(self.sequence))
