"""``text_only``: λ = 0 (text-driven synthetic images) for the synthetic epochs, then real."""

from __future__ import annotations

from discl.curriculum.base import Stage, register_strategy
from discl.curriculum.mixed import _SyntheticThenReal


@register_strategy("text_only", "ablation: text-only synthetic images (λ=0) for the synthetic epochs, then real only")
class TextOnly(_SyntheticThenReal):
    def __init__(self, cfg, epochs, seed):
        super().__init__(cfg, epochs, seed)
        self._build(Stage((0.0,)))
