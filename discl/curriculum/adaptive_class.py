"""``adaptive_class``: Algorithm 2 with a level choice per hard class (an option beyond the paper).

At every check the global choice is made exactly as in ``adaptive`` (progress over all held-out
values). Then the same progress is computed per (class, level) over that class's held-out values
(:func:`discl.curriculum.progress.class_level_progress`, IQR drop within the class), and each class
picks its own next level by the same rule (greedy; ε-greedy, UCB and smoothing per class when set).
A class with fewer than ``class_min_holdout`` held-out values at some candidate level, or none held
out at all, trains on the global choice. The next stage takes each class's synthetic images at its
own level (tail quota and caps as before: :func:`discl.curriculum.stage_data.plan_stage_epoch`).

Why: one level for all classes averages over classes that may need different amounts of realism
(a class whose images are only blurred may profit from λ=0.9 while a heavily corrupted one still
needs the prototypical λ=0.5). The price is noisier decisions: each class rests on its few held-out
images (``holdout_per_class`` × kept variants per level).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from discl.curriculum.adaptive import Adaptive
from discl.curriculum.base import Stage, register_strategy
from discl.curriculum.progress import check_labels, choose_class_levels, class_level_progress, smooth
from discl.seeding import torch_generator


@register_strategy("adaptive_class", "Algorithm 2 per hard class: each class trains on the level where its own held-out "
                                     "images progress most (global choice for classes with too few)")
class AdaptiveClass(Adaptive):
    def __init__(self, cfg, epochs, seed):
        super().__init__(cfg, epochs, seed)
        self.class_choices: dict[int, dict[int, float]] = {0: {}}  # epoch -> {class: level} from that epoch on
        self.class_smoothed: dict[int, dict[float, float]] = {}
        self.class_counts: dict[int, dict[float, int]] = {}

    def _class_levels_at(self, epoch: int) -> dict[int, float]:
        starts = [e for e in self.class_choices if e <= epoch]
        return self.class_choices[max(starts)] if starts else {}

    def stage(self, epoch: int) -> Stage:
        e = self._clamp(epoch)
        if e >= self.curriculum_epochs:
            return Stage()
        return Stage((self._level_at(e),), class_levels=tuple(self._class_levels_at(e).items()))

    def observe(self, epoch: int, gt_probs: dict[float, np.ndarray],
                labels: dict[float, np.ndarray] | None = None,
                sources: dict[float, np.ndarray] | None = None) -> dict[str, Any]:
        e = int(epoch)
        before, start_before = self.stage(e), self.stage_start
        now = self._measured(gt_probs)
        labels = {} if labels is None else {round(float(k), 6): np.asarray(v, dtype=np.int64) for k, v in labels.items()}
        if labels:  # checked before the global choice changes any state
            check_labels(now, labels)
        prev = None if self.previous is None else {float(k): np.asarray(v) for k, v in self.previous.items()}
        out = super().observe(e, gt_probs, sources=sources)  # the global choice (fallback); updates previous, counts, checks

        raw = class_level_progress(now, labels, prev, self.cfg.class_min_holdout) if labels else {}
        self.class_smoothed = {c: smooth(self.class_smoothed.get(c), scores, self.cfg.smoothing) for c, scores in raw.items()}
        draws = {}
        for c in raw:
            g = torch_generator("curriculum-adaptive-class-explore", self.seed, e, c)
            u, pick = torch.rand(2, generator=g, dtype=torch.float64).tolist()
            draws[c] = (u, pick)
        own = choose_class_levels(self.class_smoothed, self.class_counts, self.checks, self.cfg.epsilon, self.cfg.ucb, draws)
        for c, lv in own.items():
            counts = self.class_counts.setdefault(c, {lv2: 0 for lv2 in self.levels})
            counts[lv] = counts.get(lv, 0) + 1
        self.class_choices[e + 1] = own
        # a stage ends when any class's level changes, not only the global one (min_stage_epochs)
        self.stage_start = e + 1 if self.stage(e + 1) != before else start_before
        out.update({
            "class_progress": {f"{c}@{lv:g}": v for c, scores in raw.items() for lv, v in scores.items()},
            "chosen_class_level": {str(c): lv for c, lv in own.items()},
            "class_fallback": sorted(set(raw) - set(own)),
        })
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "class_choices": {str(e): {str(c): v for c, v in m.items()} for e, m in self.class_choices.items()},
            "class_smoothed": {str(c): {f"{k!r}": v if np.isfinite(v) else None for k, v in m.items()}
                               for c, m in self.class_smoothed.items()},
            "class_counts": {str(c): {f"{k!r}": v for k, v in m.items()} for c, m in self.class_counts.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if not state:
            return
        self.class_choices = {int(e): {int(c): float(v) for c, v in m.items()} for e, m in state["class_choices"].items()}
        self.class_smoothed = {int(c): {float(k): float("nan") if v is None else float(v) for k, v in m.items()}
                               for c, m in state["class_smoothed"].items()}
        self.class_counts = {int(c): {float(k): int(v) for k, v in m.items()} for c, m in state["class_counts"].items()}
