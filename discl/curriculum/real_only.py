"""``real_only``: no synthetic data at all (the baseline the curriculum must beat, with the same
stage-data rules: real fraction and tail quota by oversampling)."""

from __future__ import annotations

from discl.curriculum.base import NonAdaptive, Stage, register_strategy


@register_strategy("real_only", "ablation: real data only, same epoch composition rules (tail quota by oversampling)")
class RealOnly(NonAdaptive):
    def stage(self, epoch: int) -> Stage:
        self._clamp(epoch)
        return Stage()
