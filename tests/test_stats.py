"""Paired statistics over seeds (discl.evaluation.stats)."""

import math

import numpy as np
import pandas as pd
import pytest

from discl.evaluation.stats import Interval, describe, paired_differences, paired_interval, paired_table


def test_t_interval_known_values():
    # d = 1..5: mean 3, sd 1.5811, se 0.70711, t_{0.975, 4} = 2.776445 -> half width 1.963243
    iv = paired_interval([1, 2, 3, 4, 5])
    assert (iv.mean, iv.n, iv.kind) == (3.0, 5, "t")
    assert iv.low == pytest.approx(1.036757, abs=1e-6) and iv.high == pytest.approx(4.963243, abs=1e-6)
    # two pairs: t_{0.975, 1} = 12.7062; d = (0.1, 0.3): se 0.1 -> [-1.0706, 1.4706]
    iv = paired_interval([0.1, 0.3])
    assert iv.low == pytest.approx(0.2 - 1.270620, abs=1e-6) and iv.high == pytest.approx(0.2 + 1.270620, abs=1e-6)
    assert not iv.excludes_zero
    # 90 %: t_{0.95, 4} = 2.131847
    iv = paired_interval([1, 2, 3, 4, 5], level=0.9)
    assert iv.high - 3 == pytest.approx(2.131847 * math.sqrt(2.5) / math.sqrt(5), abs=1e-6)


def test_t_interval_agrees_with_scipy_paired_t_test():
    from scipy import stats

    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 0.02, 7), rng.normal(0.48, 0.02, 7)
    iv = paired_interval(a - b)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert iv.low == pytest.approx(ci.low) and iv.high == pytest.approx(ci.high)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    d = [0.01, 0.03, 0.02, 0.05, 0.04, 0.02]
    a, b = paired_interval(d, kind="bootstrap", seed=1), paired_interval(d, kind="bootstrap", seed=1)
    assert a == b and a.kind == "bootstrap"
    assert min(d) <= a.low < a.mean < a.high <= max(d) and a.excludes_zero
    assert a.high - a.low < paired_interval(d).high - paired_interval(d).low  # narrower than t at small n
    with pytest.raises(ValueError, match="kind"):
        paired_interval(d, kind="z")


def test_degenerate_inputs():
    assert paired_interval([]).n == 0 and describe(paired_interval([])) == "no paired runs"
    one = paired_interval([0.02])
    assert one.n == 1 and math.isnan(one.low) and not one.excludes_zero
    assert describe(one) == "+2.0 at n = 1 (no interval)"
    same = paired_interval([0.01, 0.01, 0.01])  # zero spread: the interval is the point
    assert same.low == same.high == pytest.approx(0.01) and same.excludes_zero


def test_describe_states_a_difference_only_when_the_interval_excludes_zero():
    assert describe(Interval(0.031, 0.012, 0.050, 5)) == "+3.1 [1.2, 5.0], n=5"
    assert describe(Interval(-0.031, -0.050, -0.012, 5)) == "-3.1 [-5.0, -1.2], n=5"
    assert describe(Interval(0.004, -0.012, 0.020, 5)) == "no detectable difference at n = 5 (+0.4 [-1.2, 2.0], n=5)"


def _results():
    rows = []
    for ds in (0, 1):
        for s in (0, 1, 2):
            base = 0.5 + 0.05 * ds + 0.01 * s  # shared by the pair: cancels in the difference
            rows += [{"method": "discl", "data_seed": ds, "seed": s, "test.top1": base, "test.few": base - 0.1},
                     {"method": "cb", "data_seed": ds, "seed": s, "test.top1": base + 0.02 + 0.001 * s,
                      "test.few": base - 0.1}]
    rows.append({"method": "cb", "data_seed": 2, "seed": 0, "test.top1": 0.9, "test.few": 0.9})  # no DisCL pair
    return pd.DataFrame(rows)


def test_paired_differences_line_up_pairs_and_pool_data_seeds():
    d = paired_differences(_results(), "cb", "discl", "test.top1")
    assert len(d) == 6 and list(d.index) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert d.to_numpy() == pytest.approx([0.02, 0.021, 0.022] * 2)
    with pytest.raises(ValueError, match="several runs"):
        paired_differences(_results().drop(columns=["data_seed"]), "cb", "discl", "test.top1")
    with pytest.raises(ValueError, match="no column"):
        paired_differences(_results(), "cb", "discl", "test.nope")


def test_paired_table():
    t = paired_table(_results(), ["test.top1", "test.few"])
    assert t["method"].tolist() == ["cb"]
    row = t.iloc[0]
    assert row["test.top1.n"] == 6 and row["test.top1.text"].startswith("+2.1 [")
    assert row["test.few"] == 0 and row["test.few.text"].startswith("no detectable difference at n = 6")


def test_bench_results_table_has_a_paired_column_against_discl():
    import argparse
    import importlib.util

    from conftest import ROOT

    from discl.config import load_config

    spec = importlib.util.spec_from_file_location("bench_results", ROOT / "bench" / "results.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = _results().assign(**{"test.many": 0.8, "test.medium": 0.3, "synthetic_seen": 0, "denoiser_steps": 0})
    cfg = load_config("configs/fmnist-lt.yaml", ["methods=[cb, discl]"])
    args = argparse.Namespace(seeds=[0, 1, 2], data_seeds=[0, 1], methods=["cb", "discl"], interval="t", overrides=[])
    text = bench.render(cfg, res, args, 60.0)
    assert "| Δ overall vs DisCL | Δ few vs DisCL |" in text and "--data-seeds 0 1" in text
    cb_row = next(line for line in text.splitlines() if line.startswith("| CE + class-balanced"))
    assert "+2.1 [" in cb_row and "no detectable difference at n = 6" in cb_row
    assert "| reference | reference |" in next(line for line in text.splitlines() if "DisCL (non-adaptive)" in line)


def test_report_section_states_paired_differences():
    from discl.evaluation.report import paired_section

    lines = paired_section(_results())
    assert lines[0].startswith("### Paired difference to discl")
    table = next(x for x in lines if x.startswith("|"))
    assert "| cb | +2.1 [" in table and "no detectable difference at n = 6" in table
    assert paired_section(_results()[lambda r: r["method"] == "cb"]) == []  # no DisCL run: no section


def test_intervals_over_data_splits():
    """Pairs of one data split share its images: pooled, the interval is per split (stratified: the
    within-split spread, df = N - k) or over the split means (between: df = k - 1)."""
    from scipy import stats

    from discl.evaluation.stats import between_strata_interval, stratified_interval

    rows = []
    for d, shift in enumerate([0.00, 0.05, 0.30]):  # split 2 differs a lot: its pairs are not 5 new draws
        for s, noise in enumerate([-0.01, 0.0, 0.01, 0.02, -0.02]):
            rows.append({"data_seed": d, "seed": s, "method": "a", "m": shift + noise})
            rows.append({"data_seed": d, "seed": s, "method": "discl", "m": 0.0})
    res = pd.DataFrame(rows)
    diffs = paired_differences(res, "a", "discl", "m")
    strat, between, naive = stratified_interval(diffs), between_strata_interval(diffs), paired_interval(diffs)
    means = diffs.groupby(level="data_seed").mean()
    assert strat.mean == pytest.approx(means.mean()) and strat.n == 15 and strat.kind == "stratified"
    resid = diffs - diffs.groupby(level="data_seed").transform("mean")
    half = stats.t.ppf(0.975, 12) * math.sqrt((resid ** 2).sum() / 12 / 15)  # balanced: s²_within / N
    assert strat.high - strat.mean == pytest.approx(half)
    assert (between.n, between.kind) == (3, "between")
    assert between.high - between.mean == pytest.approx(stats.t.ppf(0.975, 2) * means.std(ddof=1) / math.sqrt(3))
    # conditional on these splits the within-split noise is tiny; across draws of the data it is not
    assert strat.excludes_zero and not between.excludes_zero and between.high - between.low > naive.high - naive.low
    # unbalanced: each split weighs the same, its error by its own size
    un = diffs.drop(index=[(0, 3), (0, 4)])
    iv = stratified_interval(un)
    g = un.groupby(level="data_seed")
    assert iv.mean == pytest.approx(g.mean().mean())
    s2 = float(((un - g.transform("mean")) ** 2).sum()) / (13 - 3)
    assert iv.high - iv.mean == pytest.approx(stats.t.ppf(0.975, 10) * math.sqrt(s2 * (1 / 3 + 1 / 5 + 1 / 5)) / 3)
    # without a data_seed level: the plain t interval; in paired_table by kind
    assert stratified_interval(pd.Series([0.1, 0.2, 0.3])) == paired_interval([0.1, 0.2, 0.3])
    t = paired_table(res, ["m"], kind="between")
    assert t.loc[0, "m.n"] == 3 and t.loc[0, "m.high"] == pytest.approx(between.high)
