"""``adaptive``: Algorithm 2 of the paper — train next on the level with the largest progress.

Training starts on the lowest λ. After each stage (one pass over its data, or
``min_stage_epochs`` passes), the trainer measures, for every candidate level (1.0 = the real
held-out images), the ground-truth-class probability of each held-out hard image's variants; the
strategy turns them into progress scores (:func:`discl.curriculum.progress.level_progress`) and picks
the next level (:func:`~discl.curriculum.progress.choose_level`). After ``curriculum_fraction`` of
the epochs it trains on real data only. Options beyond the paper (off by default): minimum stage
length, ε-greedy and UCB exploration, EMA smoothing of the progress.

The decisions depend on the model, so the state (previous probabilities, choices, counts) is saved
with every checkpoint; a resumed run makes the same choices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from discl.curriculum.base import NonAdaptive, Stage, register_strategy
from discl.curriculum.progress import choose_level, level_progress, level_progress_se, paired_gap, smooth
from discl.seeding import torch_generator


@register_strategy("adaptive", "Algorithm 2: greedy choice of the level with the largest IQR-trimmed progress")
class Adaptive(NonAdaptive):
    needs_feedback = True
    uses_holdout = True

    def __init__(self, cfg, epochs, seed):
        super().__init__(cfg, epochs, seed)
        self.levels = [round(float(v), 6) for v in cfg.levels]
        self.curriculum_epochs = int(round(cfg.curriculum_fraction * epochs))
        self.current = min(self.levels)
        self.stage_start = 0
        self.choices: dict[int, float] = {0: self.current}  # epoch -> level from that epoch on
        self.previous: dict[float, list[float]] | None = None
        self.smoothed: dict[float, float] | None = None
        self.counts: dict[float, int] = {lv: 0 for lv in self.levels}
        self.checks = 0

    def _level_at(self, epoch: int) -> float:
        starts = [e for e in self.choices if e <= epoch]
        return self.choices[max(starts)] if starts else min(self.levels)

    def stage(self, epoch: int) -> Stage:
        e = self._clamp(epoch)
        if e >= self.curriculum_epochs:
            return Stage()
        return Stage((self._level_at(e),))

    def wants_feedback(self, epoch: int) -> bool:
        """Measure after ``epoch`` when a next curriculum epoch follows and the stage is long enough."""
        e = int(epoch)
        return e + 1 < self.curriculum_epochs and (e + 1 - self.stage_start) >= self.cfg.min_stage_epochs

    def _measured(self, gt_probs: dict[float, np.ndarray]) -> dict[float, np.ndarray]:
        now = {round(float(k), 6): np.asarray(v, dtype=np.float64) for k, v in gt_probs.items()}
        unknown = set(now) - set(self.levels)
        if unknown:
            raise ValueError(f"progress measured for levels {sorted(unknown)} that are not candidates {self.levels}")
        return now

    def observe(self, epoch: int, gt_probs: dict[float, np.ndarray],
                labels: dict[float, np.ndarray] | None = None,
                sources: dict[float, np.ndarray] | None = None) -> dict[str, Any]:
        """Take one check's ground-truth probabilities per level and choose the next level.

        ``sources[level]`` (optional) names the held-out image of each value; with it the log also has
        the top two levels' gap measured on the same images (:func:`~discl.curriculum.progress.paired_gap`).
        Logged only: it never changes the choice."""
        now = self._measured(gt_probs)
        src = None if sources is None else {round(float(k), 6): np.asarray(v) for k, v in sources.items()}
        for lv, ids in (src or {}).items():  # checked before any state changes
            if lv in now and len(ids) != len(now[lv]):
                raise ValueError(f"λ={lv:g}: {len(ids)} sample ids for {len(now[lv])} held-out values")
        prev = None if self.previous is None else {float(k): np.asarray(v) for k, v in self.previous.items()}
        raw = level_progress(now, prev)
        self.smoothed = smooth(self.smoothed, raw, self.cfg.smoothing)
        self.checks += 1
        g = torch_generator("curriculum-adaptive-explore", self.seed, int(epoch))
        u, pick = torch.rand(2, generator=g, dtype=torch.float64).tolist()
        scores = {lv: self.smoothed.get(lv, float("nan")) for lv in self.levels}
        choice = choose_level(scores, self.counts, self.checks, self.cfg.epsilon, self.cfg.ucb, u, pick)
        self.counts[choice] = self.counts.get(choice, 0) + 1
        self.previous = {lv: now[lv].tolist() for lv in now}
        if choice != self.current:
            self.current = choice
            self.stage_start = int(epoch) + 1
        self.choices[int(epoch) + 1] = choice
        # logged only (never part of the choice): the noise of each level's progress, per check
        se = level_progress_se(now, prev)
        out = {"progress": {f"{lv:g}": raw[lv] for lv in raw}, "chosen_level": choice,
               "progress_se": {f"{lv:g}": se[lv][0] for lv in se}, "progress_n": {f"{lv:g}": se[lv][1] for lv in se}}
        # the two best by the scores the choice ranks (the smoothed progress; the raw one without smoothing)
        top = sorted((lv for lv in scores if np.isfinite(scores[lv])), key=lambda lv: -scores[lv])[:2]
        if src is not None and len(top) == 2:
            if all(lv in src for lv in top):
                gap, gap_se, n = paired_gap(now, prev, src, *top)
                out.update({"progress_top2": f"{top[0]:g}>{top[1]:g}", "progress_gap_paired": gap,
                            "progress_gap_paired_se": gap_se, "progress_gap_paired_n": n})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "current": self.current, "stage_start": self.stage_start, "checks": self.checks,
            "choices": {str(k): v for k, v in self.choices.items()},
            "previous": None if self.previous is None else {f"{k!r}": v for k, v in self.previous.items()},
            "smoothed": None if self.smoothed is None else {f"{k!r}": v for k, v in self.smoothed.items()},
            "counts": {f"{k!r}": v for k, v in self.counts.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if not state:
            return
        self.current = float(state["current"])
        self.stage_start = int(state["stage_start"])
        self.checks = int(state["checks"])
        self.choices = {int(k): float(v) for k, v in state["choices"].items()}
        self.previous = None if state["previous"] is None else {float(k): list(v) for k, v in state["previous"].items()}
        self.smoothed = None if state["smoothed"] is None else {float(k): float(v) for k, v in state["smoothed"].items()}
        self.counts = {float(k): int(v) for k, v in state["counts"].items()}
