"""``mixed``: every synthetic level at once for the synthetic epochs (no order), then real only."""

from __future__ import annotations

from discl.curriculum.base import Scheduled, Stage, register_strategy, stage_boundaries


class _SyntheticThenReal(Scheduled):
    """One synthetic stage for the epochs the fixed schedule spends on synthetic data, then real."""

    def _build(self, stage: Stage):
        n_levels = len(self._synthetic_levels())
        self._lengths(n_levels + (1 if self._has_real_tail() else 0))  # validates stages
        stages = list(self.cfg.stages)
        if self._has_real_tail():
            self.sequence = [stage, Stage()]
            self.ends = stage_boundaries([sum(stages[:-1]), stages[-1]], self.epochs)
        else:
            self.sequence, self.ends = [stage], [self.epochs]


@register_strategy("mixed", "ablation: all synthetic levels mixed without order, then real only")
class MixedLevels(_SyntheticThenReal):
    def __init__(self, cfg, epochs, seed):
        super().__init__(cfg, epochs, seed)
        self._build(Stage(tuple(self._synthetic_levels())))


@register_strategy("mixed_equal", "ablation: all levels mixed without order, at the synthetic budget of one level per "
                                  "epoch (each epoch draws 1/len(levels) of the synthetic pool), then real only")
class MixedEqualBudget(_SyntheticThenReal):
    def __init__(self, cfg, epochs, seed):
        super().__init__(cfg, epochs, seed)
        levels = tuple(self._synthetic_levels())
        self._build(Stage(levels, share=1.0 / len(levels)))
