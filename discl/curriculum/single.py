"""``single``: one fixed level (``curriculum.fixed_level``) for the synthetic epochs, then real."""

from __future__ import annotations

from discl.configtools import ConfigError
from discl.curriculum.base import Stage, register_strategy
from discl.curriculum.mixed import _SyntheticThenReal


@register_strategy("single", "ablation: one λ (curriculum.fixed_level) for the synthetic epochs, then real only")
class SingleLevel(_SyntheticThenReal):
    def __init__(self, cfg, epochs, seed):
        super().__init__(cfg, epochs, seed)
        if cfg.fixed_level is None:
            raise ConfigError("curriculum.fixed_level: strategy 'single' needs a level, e.g. curriculum.fixed_level=0.5")
        self._build(Stage((cfg.fixed_level,)))
