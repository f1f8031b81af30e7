"""Every registered curriculum strategy honours the contract; the adaptive math on hand-made numbers."""

import json

import numpy as np
import pytest

from discl.configtools import ConfigError
from discl.curriculum.base import Stage, create_strategy, list_strategies, stage_boundaries
from discl.curriculum.config import CurriculumConfig
from discl.curriculum.progress import (
    choose_level,
    iqr_trimmed_mean,
    iqr_trimmed_se,
    level_progress,
    level_progress_se,
    smooth,
)

EPOCHS = 12


def _cfg(name):
    if name in ("adaptive", "adaptive_class", "random_level"):
        return CurriculumConfig(levels=[0.5, 0.7, 0.9, 1.0], curriculum_fraction=0.75)
    return CurriculumConfig(fixed_level=0.3 if name == "single" else None)


def _feed(s, epoch, shift=0.0):
    levels = s.cfg.levels
    labels = {lv: np.arange(9) % 2 for lv in levels}  # two classes, 5 and 4 held-out values per level
    return s.observe(epoch, {lv: np.linspace(0, 1, 9) * (0.2 + (i == 2) * 0.5) + shift for i, lv in enumerate(levels)},
                     labels)


@pytest.mark.parametrize("name", sorted(list_strategies()))
def test_strategy_contract(name):
    cfg = _cfg(name)
    allowed = {round(v, 6) for v in cfg.levels} | {0.0} | ({cfg.fixed_level} if cfg.fixed_level is not None else set())
    a, b = create_strategy(name, cfg, EPOCHS, seed=3), create_strategy(name, cfg, EPOCHS, seed=3)
    for e in range(EPOCHS):
        st = a.stage(e)
        assert isinstance(st, Stage)
        assert set(st.levels) <= allowed, f"{name} epoch {e}: {st}"
        assert st == b.stage(e), "same (seed, epoch) -> same stage"
        if a.needs_feedback and a.wants_feedback(e):
            assert _feed(a, e) == _feed(b, e)
    # horizon clamping: past the end is the last epoch's stage; negative epochs are refused
    assert a.stage(EPOCHS + 5) == a.stage(EPOCHS - 1)
    with pytest.raises(ValueError):
        a.stage(-1)
    # state round-trip through JSON (what the checkpoint stores)
    state = json.loads(json.dumps(a.state_dict()))
    c = create_strategy(name, cfg, EPOCHS, seed=3)
    c.load_state_dict(state)
    assert [c.stage(e) for e in range(EPOCHS)] == [a.stage(e) for e in range(EPOCHS)]
    assert json.loads(json.dumps(c.state_dict())) == state


def test_fixed_schedule_is_the_authors_recipe():
    # ImageNet-LT: 65 epochs, 0.1 for 14, 0.3 for 15, 0.5 for 15, real for 21
    s = create_strategy("fixed", CurriculumConfig(levels=[0.1, 0.3, 0.5], stages=[14, 15, 15, 21]), 65, 0)
    got = [str(s.stage(e)) for e in range(65)]
    assert got == ["0.1"] * 14 + ["0.3"] * 15 + ["0.5"] * 15 + ["real"] * 21
    rev = create_strategy("reverse", CurriculumConfig(levels=[0.1, 0.3, 0.5], stages=[14, 15, 15, 21]), 65, 0)
    assert [str(rev.stage(e)) for e in range(65)] == ["real"] * 21 + ["0.5"] * 15 + ["0.3"] * 15 + ["0.1"] * 14
    assert stage_boundaries([0.2, 0.25, 0.25, 0.3], 20) == [4, 9, 14, 20]


def test_ablations_differ_as_named():
    cfg = CurriculumConfig()
    real = create_strategy("real_only", cfg, 10, 0)
    assert all(real.stage(e).real_only for e in range(10))
    mixed = create_strategy("mixed", cfg, 10, 0)
    assert mixed.stage(0).levels == (0.1, 0.3, 0.5) and mixed.stage(9).real_only
    assert create_strategy("text_only", cfg, 10, 0).stage(0).levels == (0.0,)
    orders = {tuple(str(create_strategy("random_order", cfg, 10, s).stage(e)) for e in range(10)) for s in range(8)}
    assert len(orders) > 1, "random_order depends on the seed"
    with pytest.raises(ConfigError, match="fixed_level"):
        create_strategy("single", cfg, 10, 0)
    with pytest.raises(ConfigError, match="unknown strategy"):
        create_strategy("nope", cfg, 10, 0)
    with pytest.raises(ConfigError, match="stages"):
        create_strategy("fixed", CurriculumConfig(stages=[0.5, 0.5]), 10, 0)


def test_iqr_trim_drops_outliers():
    assert iqr_trimmed_mean([1, 2, 3, 4, 100]) == pytest.approx(2.5)  # Q1=2, Q3=4, fence 7
    assert iqr_trimmed_mean([0.1, 0.1, 0.1, 0.1]) == pytest.approx(0.1)
    assert np.isnan(iqr_trimmed_mean([]))
    assert iqr_trimmed_mean([-50, 1, 2, 3, 4]) == pytest.approx(2.5)


def test_progress_first_check_compares_against_zero_then_previous():
    now = {0.5: np.array([0.2, 0.4]), 1.0: np.array([0.1, 0.1])}
    first = level_progress(now, None)
    assert first == {0.5: pytest.approx(0.3), 1.0: pytest.approx(0.1)}
    later = level_progress({0.5: np.array([0.25, 0.45]), 1.0: np.array([0.5, 0.3])}, now)
    assert later == {0.5: pytest.approx(0.05), 1.0: pytest.approx(0.3)}


def test_progress_standard_error_is_that_of_the_trimmed_values():
    se, n = iqr_trimmed_se([1, 2, 3, 4, 100])  # 100 is dropped: std(1..4, ddof 1) / sqrt(4)
    assert n == 4 and se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert np.isnan(iqr_trimmed_se([0.3])[0]) and iqr_trimmed_se([])[1] == 0
    now = {0.5: np.array([0.2, 0.4, 0.6]), 1.0: np.full(3, 0.1)}
    out = level_progress_se(now, {0.5: np.array([0.1, 0.1, 0.1])})  # deltas 0.1, 0.3, 0.5; 1.0 against zero
    assert out[0.5] == (pytest.approx(0.2 / np.sqrt(3)), 3) and out[1.0] == (pytest.approx(0.0), 3)


def test_paired_gap_cancels_what_the_images_share():
    """Two levels measured on the same held-out images: an image's own learnability moves both, so the
    per-level spreads are wide while the per-image differences are not; variants average per image,
    images missing at one level are left out."""
    from discl.curriculum.progress import paired_gap

    base = np.array([0.0, 0.3, 0.6, 0.9, 0.1, 0.5])  # each image's own progress, shared by both levels
    now = {0.5: np.repeat(base + 0.1, 2) + np.tile([0.01, -0.01], 6),  # two variants per image
           1.0: base + np.array([0.0, 0.002, -0.002, 0.001, -0.001, 0.0])}
    sources = {0.5: np.repeat([f"s{i}" for i in range(6)], 2), 1.0: np.array([f"s{i}" for i in range(6)])}
    gap, se, n = paired_gap(now, None, sources, 0.5, 1.0)
    assert n == 6 and gap == pytest.approx(0.1, abs=0.003)
    per_level = level_progress_se(now, None)
    assert se < per_level[1.0][0] / 20  # the unpaired view says the gap is ~1 SE; paired it is far beyond
    # a previous check is subtracted per value first; an image at one level only does not count
    gap2, _, n2 = paired_gap(now, {0.5: now[0.5] - 0.2, 1.0: now[1.0]}, {0.5: sources[0.5], 1.0: np.array(
        ["s0", "s1", "s2", "s3", "s4", "other"])}, 0.5, 1.0)
    assert n2 == 5 and gap2 == pytest.approx(0.2)
    one = paired_gap({0.5: np.ones(2), 1.0: np.ones(1)}, None, {0.5: np.array(["a", "a"]), 1.0: np.array(["a"])}, 0.5, 1.0)
    assert one[2] == 1 and np.isnan(one[0]) and np.isnan(one[1])
    with pytest.raises(ValueError, match="source ids"):
        paired_gap(now, None, {0.5: sources[1.0], 1.0: sources[1.0]}, 0.5, 1.0)


def _observe_every_check(name: str, with_sources: bool = False):
    """A strategy fed seeded random probabilities of 12 held-out values per level at each of its checks
    (synthetic levels: two variants per held-out image): its outputs, state and stages."""
    s = create_strategy(name, _cfg(name), EPOCHS, seed=3)
    rng = np.random.default_rng(0)
    outs = []
    for e in range(EPOCHS):
        if s.wants_feedback(e):
            labels = {lv: np.arange(12) % 3 for lv in s.cfg.levels}
            src = {lv: np.array([f"h{i // 2}" if lv < 1 else f"h{i}" for i in range(12)]) for lv in s.cfg.levels}
            outs.append(s.observe(e, {lv: rng.random(12) for lv in s.cfg.levels}, labels,
                                  **({"sources": src} if with_sources else {})))
    return outs, json.dumps(s.state_dict(), sort_keys=True), [s.stage(e) for e in range(EPOCHS)]


@pytest.mark.parametrize("name", ["adaptive", "adaptive_class"])
def test_paired_gap_is_logged_for_the_top_two_and_never_changes_the_choice(name):
    outs, state, _ = _observe_every_check(name, with_sources=True)
    plain, plain_state, _ = _observe_every_check(name)
    assert [o["chosen_level"] for o in outs] == [o["chosen_level"] for o in plain] and state == plain_state
    assert all("progress_gap_paired" not in o for o in plain)
    for o in outs:
        a, b = (float(v) for v in o["progress_top2"].split(">"))
        assert o["progress"][f"{a:g}"] >= o["progress"][f"{b:g}"] == max(
            v for k, v in o["progress"].items() if k != f"{a:g}")
        assert o["progress_gap_paired_n"] >= 2 and np.isfinite(o["progress_gap_paired_se"])


@pytest.mark.parametrize("name", ["adaptive", "adaptive_class"])
def test_progress_noise_is_logged_and_never_changes_the_choice(name, monkeypatch):
    """The standard error of each level's progress goes to the log only: with it replaced by
    anything, the strategy makes the same choices and keeps the same state (runs stay byte-identical)."""
    import discl.curriculum.adaptive as adaptive_mod

    def run():
        return _observe_every_check(name)

    outs, state, stages = run()
    assert outs and all(set(o["progress_se"]) == set(o["progress"]) for o in outs)
    assert all(np.isfinite(v) and v > 0 for o in outs for v in o["progress_se"].values())
    assert all(o["progress_n"][k] <= 12 for o in outs for k in o["progress_n"])
    monkeypatch.setattr(adaptive_mod, "level_progress_se", lambda now, prev: {lv: (-1e9, 0) for lv in now})
    outs2, state2, stages2 = run()
    assert [o["chosen_level"] for o in outs2] == [o["chosen_level"] for o in outs]
    assert [o["progress"] for o in outs2] == [o["progress"] for o in outs]
    assert state2 == state and stages2 == stages


def test_choose_level_greedy_ucb_epsilon():
    scores = {0.5: 0.1, 0.7: 0.3, 0.9: 0.3, 1.0: float("nan")}
    assert choose_level(scores) == 0.7  # argmax, ties -> first; NaN never wins
    assert choose_level(scores, epsilon=0.5, u=0.2, pick=0.99) == 1.0  # exploration picks by `pick`
    assert choose_level(scores, epsilon=0.5, u=0.7, pick=0.99) == 0.7  # no exploration when u >= eps
    # UCB: a never-tried level overtakes a slightly better, often-tried one
    assert choose_level({0.5: 0.30, 0.7: 0.29}, counts={0.5: 10, 0.7: 0}, checks=10, ucb=0.5) == 0.7
    assert smooth({0.5: 1.0}, {0.5: 0.0}, 0.75) == {0.5: 0.75}


def test_adaptive_follows_measured_progress_and_goes_real():
    cfg = CurriculumConfig(levels=[0.5, 0.7, 0.9, 1.0], curriculum_fraction=0.5)
    s = create_strategy("adaptive", cfg, 8, seed=0)
    assert s.stage(0).levels == (0.5,)  # starts at the lowest level
    p = {0.5: np.full(5, 0.2), 0.7: np.full(5, 0.2), 0.9: np.full(5, 0.6), 1.0: np.full(5, 0.1)}
    assert s.wants_feedback(0)
    assert s.observe(0, p)["chosen_level"] == 0.9  # first check: largest mean probability
    assert s.stage(1).levels == (0.9,)
    p2 = {0.5: np.full(5, 0.3), 0.7: np.full(5, 0.7), 0.9: np.full(5, 0.65), 1.0: np.full(5, 0.15)}
    assert s.observe(1, p2)["chosen_level"] == 0.7  # +0.5 beats +0.1, +0.05, +0.05
    assert s.stage(2).levels == (0.7,) and s.stage(0).levels == (0.5,)
    p3 = {lv: v + (0.5 if lv == 1.0 else 0.0) for lv, v in p2.items()}
    assert s.observe(2, p3)["chosen_level"] == 1.0 and s.stage(3).real_only  # λ=1: real images
    assert not s.wants_feedback(3) and all(s.stage(e).real_only for e in range(4, 8))


def test_adaptive_min_stage_epochs():
    cfg = CurriculumConfig(levels=[0.5, 0.9], curriculum_fraction=1.0, min_stage_epochs=2)
    s = create_strategy("adaptive", cfg, 10, 0)
    assert not s.wants_feedback(0) and s.wants_feedback(1)


def test_bench_progress_noise_reads_the_logged_standard_errors(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("progress_noise", Path(__file__).resolve().parents[1] / "bench" / "progress_noise.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s = create_strategy("adaptive", _cfg("adaptive"), EPOCHS, seed=0)
    rows = [{"epoch": 0, **{f"{k}.{kk}": vv for k, v in _feed(s, 0).items() if isinstance(v, dict) for kk, vv in v.items()},
             "chosen_level": s.choices[1]}, {"epoch": 1}]
    found = mod.checks(rows)
    assert len(found) == 1 and found[0]["chosen"] == s.choices[1]
    prog, se = found[0]["progress"], found[0]["se"]
    top = sorted(prog.values(), reverse=True)
    best2 = sorted(prog, key=lambda lv: -prog[lv])[:2]
    assert found[0]["gap"] == pytest.approx(top[0] - top[1])
    assert found[0]["gap_in_se"] == pytest.approx((top[0] - top[1]) / max(se[lv] for lv in best2))
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert mod.main([str(log)]) == 0


def test_bench_progress_noise_counts_the_separated_checks():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("progress_noise", Path(__file__).resolve().parents[1] / "bench" / "progress_noise.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    found = [{"se": {"0.5": 0.1}, "gap_in_se": g} for g in (3.5, 1.0, 2.0, float("nan"), 0.5)]
    found.append({"se": {}, "gap_in_se": 9.0})  # a check logged without standard errors is not counted
    s = mod.separated(found)  # the NaN one (no finite SE) counts as a check, not separated
    assert (s["checks"], s["separated"], s["later_checks"], s["later_separated"], s["unmeasured"]) == (5, 2, 4, 1, 1)
    assert s["median_gap_in_se"] == pytest.approx(1.5) and s["later_median_gap_in_se"] == pytest.approx(1.0)
    for c, t in zip(found, (0.5, 2.5, 4.0, 1.0, float("nan"), 3.0)):
        c["paired"] = {"t": t}
    found[0]["paired"] = None  # a check logged before the paired columns is not counted
    p = mod.separated(found, paired=True)
    assert (p["checks"], p["separated"], p["later_checks"], p["later_separated"]) == (5, 3, 4, 2)
    assert mod.main(["log.csv"]) == 2  # the log.csv of a run: told to give log.jsonl


def test_fewer_epochs_than_stages_is_said_not_silently_dropped(caplog):
    """Four stages (λ 0.1, 0.3, 0.5, then real) over 2 epochs skip two of them, even the real-only one:
    a warning names the stages and the fix (once, though validation, digests and training build it)."""
    import logging

    from discl.curriculum.base import create_strategy
    from discl.curriculum.config import CurriculumConfig

    cfg = CurriculumConfig(strategy="fixed", levels=[0.1, 0.3, 0.5], stages=[0.25, 0.25, 0.25, 0.25])
    with caplog.at_level(logging.WARNING, logger="discl.curriculum.base"):
        s2 = create_strategy("fixed", cfg, 2, 0)
        create_strategy("fixed", cfg, 2, 1)
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "fixed over training.epochs = 2 gives stage(s) 1, 4 of 4 no epoch" in msgs[0]
    assert [s2.stage(e).levels for e in range(2)] == [(0.3,), (0.5,)]  # what runs: no real-only stage
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="discl.curriculum.base"):
        s4 = create_strategy("fixed", cfg, 4, 0)
    assert not caplog.records
    assert [s4.stage(e).levels for e in range(4)] == [(0.1,), (0.3,), (0.5,), ()]
