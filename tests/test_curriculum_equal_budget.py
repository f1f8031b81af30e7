"""`mixed_equal`: the unordered mix at the synthetic budget of a one-level curriculum."""

from __future__ import annotations

import numpy as np
import pandas as pd

from discl.curriculum.base import Stage, create_strategy
from discl.curriculum.config import CurriculumConfig
from discl.curriculum.stage_data import plan_stage_epoch


def _meta() -> pd.DataFrame:
    rows = [{"kind": "real", "sample_id": f"r{i}", "label": i % 2, "lam": 1.0, "hard": False, "tail": False}
            for i in range(40)]
    for lv in (0.1, 0.3, 0.5):
        rows += [{"kind": "synthetic", "sample_id": f"h{i}", "label": i % 2, "lam": lv, "hard": True, "tail": False}
                 for i in range(30)]
    return pd.DataFrame(rows)


def test_share_draws_that_fraction_of_each_class_and_depends_on_the_epoch():
    cfg = CurriculumConfig(levels=[0.1, 0.3, 0.5], tail_quota=False, real_fraction=1.0)
    meta = _meta()
    full = plan_stage_epoch(meta, Stage((0.1, 0.3, 0.5)), 0, 0, cfg)
    one = plan_stage_epoch(meta, Stage((0.1,)), 0, 0, cfg)
    third = plan_stage_epoch(meta, Stage((0.1, 0.3, 0.5), share=1 / 3), 0, 0, cfg)
    assert full.info["n_synthetic"] == 90 and one.info["n_synthetic"] == 30
    assert third.info["n_synthetic"] == 30  # the one-level budget, drawn from every level
    syn = third.indices[meta["kind"].to_numpy()[third.indices] == "synthetic"]
    assert np.bincount(meta["label"].to_numpy()[syn]).tolist() == [15, 15]
    assert len(set(np.round(meta["lam"].to_numpy()[syn], 6))) == 3
    again = plan_stage_epoch(meta, Stage((0.1, 0.3, 0.5), share=1 / 3), 0, 0, cfg)
    other = plan_stage_epoch(meta, Stage((0.1, 0.3, 0.5), share=1 / 3), 1, 0, cfg)
    assert (again.indices == third.indices).all() and set(other.indices) != set(third.indices)


def test_mixed_equal_uses_every_level_at_a_one_level_share():
    cfg = CurriculumConfig(levels=[0.1, 0.3, 0.5], stages=[0.2, 0.25, 0.25, 0.3])
    s = create_strategy("mixed_equal", cfg, 20, 0)
    first, last = s.stage(0), s.stage(19)
    assert first.levels == (0.1, 0.3, 0.5) and abs(first.share - 1 / 3) < 1e-9 and last.real_only
