"""The synthetic share of the tail slots: logged per epoch, warned about below a minimum, and the
paper-regime config's planned share (configs/fmnist-lt-paper.yaml, issue 22) computed without generation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from discl.config import load_config
from discl.configtools import ConfigError
from discl.curriculum.base import Stage, create_strategy
from discl.curriculum.config import CurriculumConfig, digest_view
from discl.curriculum.sampler import Curriculum
from discl.curriculum.stage_data import build_pool_meta, plan_stage_epoch, tail_synthetic_share
from discl.curriculum.testing import head_tail_pool_meta
from discl.data.tasks import LT, class_profile
from discl.seeding import numpy_rng

PAPER = Path(__file__).resolve().parents[1] / "configs" / "fmnist-lt-paper.yaml"


def test_share_is_logged_next_to_the_tail_counts():
    meta = head_tail_pool_meta()
    cfg = CurriculumConfig(real_fraction=0.3)
    info = plan_stage_epoch(meta, Stage((0.1,)), 0, 0, cfg).info
    # quota 47 per tail class: 5 real + 30 synthetic (all there are) + 12 oversampled
    assert (info["n_tail_real"], info["n_tail_synthetic"], info["n_tail_oversampled"]) == (10, 60, 24)
    assert info["tail_synthetic_share"] == pytest.approx(60 / 94, abs=1e-4)
    keys = list(info)
    assert keys.index("tail_synthetic_share") == keys.index("n_tail_oversampled") + 1  # next to n_tail_* in log.csv
    assert plan_stage_epoch(meta, Stage(()), 0, 0, cfg).info["tail_synthetic_share"] == 0.0  # real-only stage
    free = plan_stage_epoch(meta, Stage((0.1,)), 0, 0, CurriculumConfig(real_fraction=0.3, tail_quota=False))
    assert free.info["tail_synthetic_share"] is None  # no tail slots: nothing to share
    assert tail_synthetic_share(0, 0, 0) is None and tail_synthetic_share(3, 7, 0) == 0.7


def _curriculum(minimum: float | None, levels=(0.1, 0.5)) -> Curriculum:
    cfg = CurriculumConfig(levels=list(levels), stages=[1, 1, 1], real_fraction=0.3, min_tail_synthetic_share=minimum)
    return Curriculum(create_strategy("fixed", cfg, 3, 0), cfg, head_tail_pool_meta(), seed=0)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "tail slots" in r.getMessage()]


def test_a_synthetic_stage_below_the_minimum_is_warned_about_once(caplog):
    cur = _curriculum(0.7)
    with caplog.at_level(logging.WARNING, logger="discl.curriculum.sampler"):
        for _ in range(2):  # a loop may plan an epoch several times (indices, batches): one warning
            cur.plan(0)
        cur.plan(2)  # the real-only stage fills its tail slots with real images by design: no warning
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "stage λ=0.1" in msgs[0] and "63.8%" in msgs[0] and "0.7" in msgs[0], msgs


@pytest.mark.parametrize("minimum", [None, 0.6])
def test_no_warning_without_a_minimum_or_above_it(caplog, minimum):
    cur = _curriculum(minimum)
    with caplog.at_level(logging.WARNING, logger="discl.curriculum.sampler"):
        for e in range(3):
            cur.plan(e)
    assert _warnings(caplog) == []


def test_the_minimum_is_checked_and_left_out_of_the_run_digest():
    with pytest.raises(ConfigError, match="min_tail_synthetic_share"):
        load_config(None, ["curriculum.min_tail_synthetic_share=1.5"])
    a, b = CurriculumConfig(), CurriculumConfig(min_tail_synthetic_share=0.7)
    assert "min_tail_synthetic_share" not in digest_view(b) and digest_view(a) == digest_view(b)  # a check, not a setting
    assert "real_fraction" in digest_view(a)


def _paper_pool(keep_rate: float, data_seed: int = 0) -> tuple[pd.DataFrame, object]:
    """The paper config's pool without generating: fmnist-lt's class profile, its class-frequency hard
    set, and a manifest of ``seeds_per_level`` variants per (hard image, λ) of which a seeded
    ``keep_rate`` passes the filter."""
    cfg = load_config(PAPER, [f"data.seed={data_seed}"])
    counts = class_profile(LT.head, LT.tail)
    labels = np.repeat(np.arange(len(counts)), counts)
    train = pd.DataFrame({"sample_id": [f"t{i}" for i in range(len(labels))], "label": labels})
    hard = train[np.asarray(counts)[labels] < cfg.mining.frequency_below]
    rows = [(sid, lab, lam, k, f"{sid}_{lam}_{k}.png") for sid, lab in zip(hard["sample_id"], hard["label"])
            for lam in cfg.generation.levels for k in range(cfg.generation.seeds_per_level)]
    manifest = pd.DataFrame(rows, columns=["sample_id", "label", "lam", "k", "file_name"])
    manifest["keep"] = numpy_rng("test-keep", data_seed).random(len(manifest)) < keep_rate
    strategy = create_strategy(cfg.curriculum.strategy, cfg.curriculum, cfg.training.epochs, 0)
    real, syn = build_pool_meta(train, hard, manifest, list(cfg.curriculum.levels), [], len(counts),
                                cfg.curriculum.tail_min_hard_share)
    return pd.concat([real, syn.drop(columns=["file_name"])], ignore_index=True), (cfg, strategy)


@pytest.mark.parametrize("keep_rate", [1.0, 0.8])
def test_paper_config_fills_every_synthetic_stage_at_least_70_percent_synthetic(keep_rate):
    meta, (cfg, strategy) = _paper_pool(keep_rate)
    shares: dict[str, set[float]] = {}
    for epoch in range(cfg.training.epochs):
        stage = strategy.stage(epoch)
        info = plan_stage_epoch(meta, stage, epoch, 0, cfg.curriculum).info
        shares.setdefault(str(stage), set()).add(info["tail_synthetic_share"])
        if epoch == 0:  # the arithmetic in the config's comments
            assert info["n_real_sampled"] == 364 and info["tail_quota"] == 52 and info["n_tail_real"] == 27
    assert list(shares) == ["0.1", "0.3", "0.5", "real"]
    for stage, values in shares.items():
        if stage == "real":
            assert values == {0.0}
        else:
            assert min(values) >= cfg.curriculum.min_tail_synthetic_share == 0.7, (stage, values)
    if keep_rate == 1.0:
        assert shares["0.1"] == {round(122 / 156, 4)}  # 38 + 44 + 40 synthetic of 156 slots


def test_the_old_demo_rules_give_a_small_share():
    """fmnist-lt.yaml's rules (real_fraction 1.0, 3 seeds): the 12-20 % of issue 22, far below the paper's."""
    meta, (cfg, _) = _paper_pool(1.0)
    cur = CurriculumConfig(**{**cfg.curriculum.__dict__, "real_fraction": 1.0})
    three = meta[(meta["kind"] == "real") | meta.groupby(["sample_id", "lam"]).cumcount().lt(3)]
    info = plan_stage_epoch(three.reset_index(drop=True), Stage((0.1,)), 0, 0, cur).info
    assert info["tail_quota"] == 174 and info["tail_synthetic_share"] < 0.2


def test_shortfall_hint_follows_the_counts():
    """Oversampled slots: the variants ran out (more variants, or a smaller quota). None: the quota
    is the limit, and a smaller quota would lower the share further (the trial's real_fraction 0.1)."""
    from discl.curriculum.base import Stage
    from discl.curriculum.stage_data import tail_share_shortfall

    stage = Stage((0.1,))
    out_of_variants = {"tail_synthetic_share": 0.2, "n_tail_synthetic": 6, "n_tail_real": 10, "n_tail_oversampled": 14,
                       "tail_quota": 10}
    quota_bound = {"tail_synthetic_share": 0.357, "n_tail_synthetic": 10, "n_tail_real": 18, "n_tail_oversampled": 0,
                   "tail_quota": 9}
    assert "lower curriculum.real_fraction" in tail_share_shortfall(out_of_variants, stage, 0.7)
    msg = tail_share_shortfall(quota_bound, stage, 0.7)
    assert "raise curriculum.real_fraction" in msg and "lower curriculum.real_fraction" not in msg
    assert tail_share_shortfall(quota_bound, stage, 0.3) is None


def test_the_lowest_share_counts_only_synthetic_stages_and_reaches_the_headline():
    from discl.curriculum.stage_data import lowest_tail_synthetic_share
    from discl.evaluation.results import headline_table

    log = pd.DataFrame({"stage": ["0.1", "0.1", "0.3", "real"], "n_synthetic": [40, 40, 12, 0],
                        "tail_synthetic_share": [0.78, 0.75, 0.21, 0.0]})
    assert lowest_tail_synthetic_share(log) == 0.21  # the weak λ 0.3 epoch, not the real-only stage's 0
    assert lowest_tail_synthetic_share(log[log["stage"] == "real"]) is None
    assert lowest_tail_synthetic_share(log.drop(columns="tail_synthetic_share")) is None
    # adaptive_class: a stage with every class at real is labelled with its classes, not "real"
    cls = pd.DataFrame({"stage": ["0.5 [3:0.5]", "real [3:real]"], "synthetic_stage": [True, False],
                        "tail_synthetic_share": [0.6, 0.0]})
    assert lowest_tail_synthetic_share(cls) == 0.6
    from discl.curriculum.base import Stage
    from discl.curriculum.testing import head_tail_pool_meta

    for stage in (Stage((0.1,)), Stage()):
        info = plan_stage_epoch(head_tail_pool_meta(), stage, 0, 0, CurriculumConfig(real_fraction=0.3)).info
        assert info["synthetic_stage"] is (not stage.real_only)
    cfg = load_config(PAPER, ["methods=[ce,discl]", "seeds=[0,1]"])
    results = pd.DataFrame({"method": ["ce", "ce", "discl", "discl"], "seed": [0, 1, 0, 1], "status": "ok",
                            "reason": "", "test.top1": [0.5, 0.5, 0.6, 0.6], "tail_synthetic_share": [None, None, 0.78, 0.71]})
    table = headline_table(cfg, results)
    assert "tail slots synthetic (lowest epoch)" in table
    discl_row = next(line for line in table.splitlines() if line.startswith("| discl"))
    assert "71%" in discl_row  # the lowest over the seeds
