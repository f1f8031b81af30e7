"""Paired statistics over seeds: is a method's difference to DisCL more than seed noise? (pure)

Two methods trained with the same (data seed, training seed) share the data split, the
initialisation seed and, for DisCL, the synthetic pool; their difference on that pair removes the
variance the pair shares. :func:`paired_differences` lines the runs up by pair,
:func:`paired_interval` gives a 95 % confidence interval of the mean difference (Student's t over
the pairs, or a percentile bootstrap over the pairs), and :func:`describe` says it in words, stating
a difference only when the interval excludes 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Interval", "paired_differences", "paired_interval", "stratified_interval", "between_strata_interval",
           "describe", "paired_table", "PAIR_KEYS"]

PAIR_KEYS = ("data_seed", "seed")  # the columns that identify one pair of runs (absent ones are ignored)


@dataclass(frozen=True)
class Interval:
    """Mean paired difference with its confidence interval (``low``/``high`` NaN when n < 2)."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95
    kind: str = "t"  # t | bootstrap

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)


def paired_differences(results: pd.DataFrame, method: str, reference: str = "discl", metric: str = "test.top1",
                       keys: Sequence[str] = PAIR_KEYS) -> pd.Series:
    """``method − reference`` on ``metric`` for every pair (keys) both have, indexed by the pair.

    ``results`` has one row per run with a ``method`` column (``collect_results``' format, plus a
    ``data_seed`` column when pooled over data splits). Pairs only one of them has are left out.
    """
    keys = [k for k in keys if k in results.columns]
    if not keys:
        raise ValueError(f"paired_differences: results have none of the pair columns {list(PAIR_KEYS)}")
    if metric not in results.columns:
        raise ValueError(f"paired_differences: no column {metric!r} in the results")

    def side(name: str) -> pd.Series:
        r = results[results["method"] == name]
        if r.duplicated(keys).any():
            raise ValueError(f"paired_differences: {name!r} has several runs for one {'/'.join(keys)} pair")
        return r.set_index(keys)[metric].astype(float)

    a, b = side(method), side(reference)
    common = a.index.intersection(b.index).sort_values()
    return (a.loc[common] - b.loc[common]).rename(f"{metric}: {method} - {reference}")


def paired_interval(diffs: Sequence[float], level: float = 0.95, kind: str = "t", n_boot: int = 10_000,
                    seed: int = 0) -> Interval:
    """Confidence interval of the mean of paired differences.

    ``t``: mean ± t_{(1+level)/2, n−1} · sd/√n (sd with ddof 1). ``bootstrap``: percentile interval
    of the mean over ``n_boot`` resamples of the pairs (from a generator seeded by ``seed``); with
    few pairs it is narrower than the t interval, so t is the default.
    """
    from scipy import stats

    d = np.asarray(list(diffs), dtype=np.float64)
    d = d[~np.isnan(d)]
    n = len(d)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, level, kind)
    mean = float(d.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, level, kind)
    if kind == "t":
        half = float(stats.t.ppf((1 + level) / 2, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
        return Interval(mean, mean - half, mean + half, n, level, kind)
    if kind == "bootstrap":
        from discl.seeding import numpy_rng

        rng = numpy_rng("paired-bootstrap", int(seed))
        means = d[rng.integers(0, n, size=(int(n_boot), n))].mean(axis=1)
        lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
        return Interval(mean, float(lo), float(hi), n, level, kind)
    raise ValueError(f"unknown interval kind {kind!r} (t, bootstrap)")


def _strata(diffs: pd.Series, stratum: str) -> pd.core.groupby.SeriesGroupBy | None:
    d = diffs.dropna()
    if not isinstance(d.index, pd.MultiIndex) or stratum not in d.index.names:
        return None
    return d.groupby(level=stratum)


def stratified_interval(diffs: pd.Series, level: float = 0.95, stratum: str = "data_seed") -> Interval:
    """Mean of the per-stratum mean differences (equal weight per split) with a t interval whose error
    comes from the spread within the strata: var = s²_within · Σ 1/n_i / k², df = N − k. ``diffs``
    is :func:`paired_differences`' series (indexed by the pair keys); without a ``stratum`` level it
    is :func:`paired_interval`'s t interval."""
    from scipy import stats

    groups = _strata(diffs, stratum)
    if groups is None:
        return paired_interval(diffs, level)
    d = diffs.dropna()
    n, k = len(d), groups.ngroups
    if k < 2:
        return dataclasses.replace(paired_interval(d, level), kind="stratified")
    mean = float(groups.mean().mean())
    if n - k < 1:
        return Interval(mean, math.nan, math.nan, n, level, "stratified")
    within = float(((d - groups.transform("mean")) ** 2).sum()) / (n - k)
    se = math.sqrt(within * float((1.0 / groups.size()).sum())) / k
    half = float(stats.t.ppf((1 + level) / 2, n - k)) * se
    return Interval(mean, mean - half, mean + half, n, level, "stratified")


def between_strata_interval(diffs: pd.Series, level: float = 0.95, stratum: str = "data_seed") -> Interval:
    """t interval over the per-stratum mean differences (n = the number of strata, df = k − 1)."""
    groups = _strata(diffs, stratum)
    if groups is None:
        return paired_interval(diffs, level)
    return dataclasses.replace(paired_interval(groups.mean(), level), kind="between")


def describe(iv: Interval, scale: float = 100.0, digits: int = 1) -> str:
    """One sentence fragment: ``+3.1 [1.2, 5.0], n=5`` when the interval excludes 0, else
    ``no detectable difference at n = 5 (+0.4 [-1.2, 2.0])``; values × ``scale`` (points of %)."""
    if iv.n == 0:
        return "no paired runs"

    def f(v: float, sign: bool = False) -> str:
        return f"{v * scale:+.{digits}f}" if sign else f"{v * scale:.{digits}f}"

    if iv.n < 2:
        return f"{f(iv.mean, True)} at n = 1 (no interval)"
    text = f"{f(iv.mean, True)} [{f(iv.low)}, {f(iv.high)}], n={iv.n}"
    return text if iv.excludes_zero else f"no detectable difference at n = {iv.n} ({text})"


def paired_table(results: pd.DataFrame, metrics: Sequence[str], reference: str = "discl",
                 methods: Sequence[str] | None = None, level: float = 0.95, kind: str = "t") -> pd.DataFrame:
    """One row per method (the reference left out): for each metric the paired mean difference to
    the reference, its interval and :func:`describe`'s text (columns ``<metric>``, ``<metric>.low``,
    ``<metric>.high``, ``<metric>.n``, ``<metric>.text``). ``kind``: ``t`` or ``bootstrap`` over the
    pairs, ``stratified`` or ``between`` over data splits (the module doc)."""
    methods = [m for m in (methods or list(dict.fromkeys(results["method"]))) if m != reference]
    rows = []
    for m in methods:
        row: dict[str, object] = {"method": m}
        for metric in metrics:
            if metric not in results.columns:
                continue
            diffs = paired_differences(results, m, reference, metric)
            iv = (stratified_interval(diffs, level) if kind == "stratified" else
                  between_strata_interval(diffs, level) if kind == "between" else paired_interval(diffs, level, kind))
            row.update({metric: iv.mean, f"{metric}.low": iv.low, f"{metric}.high": iv.high, f"{metric}.n": iv.n,
                        f"{metric}.text": describe(iv)})
        rows.append(row)
    return pd.DataFrame(rows)
