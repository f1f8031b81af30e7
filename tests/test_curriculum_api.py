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
