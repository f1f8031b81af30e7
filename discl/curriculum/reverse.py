"""``reverse``: the fixed schedule played backwards (real → synthetic), an ablation of the order."""

from __future__ import annotations

from discl.curriculum.base import Scheduled, Stage, register_strategy, stage_boundaries


@register_strategy("reverse", "ablation: the fixed schedule reversed, real → synthetic")
class ReverseSchedule(Scheduled):
    def __init__(self, cfg, epochs, seed):
        super().__init__(cfg, epochs, seed)
        levels = self._synthetic_levels()
        forward = [Stage((lv,)) for lv in levels] + ([Stage()] if self._has_real_tail() else [])
        self._lengths(len(forward))  # validates the number of stage lengths
        self.sequence = forward[::-1]
        self.ends = stage_boundaries(list(cfg.stages)[::-1], epochs)
