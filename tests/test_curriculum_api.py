"""The public curriculum/spectrum API (issue 24) and the stage-data rules it shares with ``discl train``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from discl.curriculum.base import Stage
from discl.curriculum.config import CurriculumConfig
from discl.curriculum.stage_data import plan_stage_epoch
from discl.errors import BadInputError


def _all_tail_meta():
    """3 classes, every class mostly hard (all tail): 4 real each (3 hard), 2 variants per hard image per level."""
    rows = []
    for c in range(3):
        for i in range(4):
            hard = i < 3
            rows.append(("real", f"r{c}-{i}", c, 1.0, hard, True))
            if hard:
                for lam in (0.1, 0.5):
                    rows += [("synthetic", f"r{c}-{i}", c, lam, True, True)] * 2
    return pd.DataFrame(rows, columns=["kind", "sample_id", "label", "lam", "hard", "tail"])


def test_every_class_a_tail_class_trains_on_its_real_and_the_stage_synthetic_images():
    meta = _all_tail_meta()
    plan = plan_stage_epoch(meta, Stage((0.1,)), 0, 0, CurriculumConfig())
    sel = meta.iloc[plan.indices]
    assert len(sel) == 3 * (4 + 6)  # all 4 real + the 6 variants at λ=0.1 of each class
    assert (sel.kind == "real").sum() == 12 and set(sel[sel.kind == "synthetic"].lam) == {0.1}
    assert plan.info["n_tail_real"] == 12 and plan.info["n_tail_synthetic"] == 18
    real = plan_stage_epoch(meta, Stage(), 2, 0, CurriculumConfig())
    assert len(real.indices) == 12 and (meta.iloc[real.indices].kind == "real").all()
    capped = plan_stage_epoch(meta, Stage((0.1, 0.5)), 0, 0, CurriculumConfig(synthetic_cap_per_class=2))
    assert (meta.iloc[capped.indices].query("kind == 'synthetic'").groupby("label").size() == 2).all()


def test_an_epoch_of_no_item_is_an_error():
    meta = _all_tail_meta()
    meta = meta[meta.kind == "synthetic"]  # no real image at all: a real-only stage has nothing
    with pytest.raises(BadInputError, match="epoch 1 .*no training image"):
        plan_stage_epoch(meta, Stage(), 1, 0, CurriculumConfig())
    assert len(plan_stage_epoch(meta, Stage((0.5,)), 1, 0, CurriculumConfig()).indices) == 18


def _head_tail_meta():
    """4 head classes x 100 real (10 hard), 2 tail classes x 5 real (all hard), variants at 0.1 and 0.5."""
    rows = []
    for c in range(6):
        n = 100 if c < 4 else 5
        for i in range(n):
            hard = c >= 4 or i < 10
            rows.append(("real", f"r{c}-{i}", c, 1.0, hard, c >= 4))
            if hard:
                for lam in (0.1, 0.5):
                    rows += [("synthetic", f"r{c}-{i}", c, lam, True, c >= 4)] * (6 if c >= 4 else 1)
    return pd.DataFrame(rows, columns=["kind", "sample_id", "label", "lam", "hard", "tail"])


class _Stages:
    """A strategy that plays a fixed list of stages (what the planner asks a strategy for)."""

    name, needs_feedback, uses_holdout = "listed", False, False

    def __init__(self, stages):
        self.stages = stages

    def stage(self, epoch):
        return self.stages[epoch]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


# the per-epoch global order (world 1) and the rank-concatenated order (world 2) of this meta, computed
# with the code before the Curriculum refactor (commit 4474505: plan_stage_epoch + training.loop.epoch_batches)
BEFORE = ["965d689591245c79", "10bda541c91c19e6", "499c9ae58fa45a55", "3e60424ab7787d24", "51135a3a2e45386a",
          "24289db1409f08d4", "c709633d10bb0246", "aeff1edc62375a12"]


def test_curriculum_epochs_are_those_of_the_code_before_the_refactor():
    from discl.curriculum.epochs import order_digest
    from discl.curriculum.sampler import Curriculum

    stages = [Stage((0.1,)), Stage((0.5,)), Stage((0.1, 0.5), share=0.5), Stage()]
    cur = Curriculum(_Stages(stages), CurriculumConfig(), _head_tail_meta(), seed=3)
    got = []
    for e in range(len(stages)):
        got.append(order_digest(cur.indices(e, batch_size=32)))
        sampler = cur.sampler(32, num_replicas=2, rank=0)
        sampler.set_epoch(e)
        shards = [cur.indices(e, 32, 2, r) for r in (0, 1)]
        assert list(sampler) == shards[0].tolist()
        per = 16  # each rank's share of a global batch of 32
        inter = [s[i : i + per] for i in range(0, max(map(len, shards)), per) for s in shards]
        got.append(order_digest(np.concatenate(inter)))
    assert got == BEFORE
