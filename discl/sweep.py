"""``discl sweep``: one config key over several values, one full run per value, and how the results move.

The critics' first check on DisCL -- does the CLIP threshold track downstream accuracy? -- is a sweep of
``filtering.threshold``; any dotted key works the same way (``generation.guidance_scale``,
``curriculum.stages``). Layout, under the base run folder ``RUN`` (the config's run_dir or ``--run-dir``):

- ``RUN/sweep/<key>/<value>/``: a complete run (:func:`discl.pipeline.run`) with ``<key>=<value>``;
- ``RUN/sweep/<key>/summary.csv``: one row per value x method x seed: the value, the filter's keep
  rate, kept-image count and mean image-text score of the kept images (over all levels and over the
  levels the method draws from), the run's headline test metrics and the validation score its checkpoint
  was selected on (``val_score``);
- ``summary.md`` (mean +- sample std (ddof = 1) per value, the value each method would choose on the
  validation split (:func:`choose_on_validation`), Spearman rank correlation for numeric keys) and
  ``summary.png`` (headline metric vs value, keep rate on a second axis).

Stages the swept key does not change are not recomputed: before a stage of a value runs, the
pipeline asks the sweep (:func:`make_reuse`) for a finished stage with the digest the value's run
records (:mod:`discl.digests`: the stage's config keys, its upstream artifacts by content, its
weights); when the base run or an earlier value's folder holds one, its artifact files, then its
marker, are hard-linked into the value's folder. Artifacts are written by rename, never in place, so
a link can never see a half-written file and a later rewrite in one folder leaves the other's file
alone; append-only logs (``*.jsonl``) are copied instead. When the spectrum is shared but the filter
is not (a threshold sweep), the filter's score cache is linked with it, so the value's filter stage
encodes nothing and only re-applies its rules. Training runs are linked the same way when the
filter manifest they read is byte-identical. The base run's own stages are never run or written by
the sweep: when the base has not run, the first value computes the upstream stages and the others
link them.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from discl.artifacts import (
    TMP_SUFFIX,
    atomic_write_bytes,
    atomic_write_text,
    read_table,
)
from discl.config import RunConfig
from discl.configtools import ConfigError, apply_overrides, from_dict, parse_override
from discl.evaluation.results import HEADLINE, method_levels
from discl.methods import parse_method
from discl.pipeline import Reuse, stage_marker, stage_paths

log = logging.getLogger(__name__)

NOT_SWEEPABLE = {"name", "run_dir", "methods", "seeds"}  # the sweep sets these itself
# stage marker name -> the run-folder paths its artifacts live in (see the stage runners)
FILTER_CACHE = ("filter/scores.parquet", "filter/real_embeddings.safetensors")  # content-checked caches
COPY_SUFFIXES = (".jsonl",)  # appended in place by their writers: never share the inode


@dataclass(frozen=True)
class SweepPoint:
    """One value of the sweep: the text as given, the parsed value, its config and run folder."""

    text: str
    value: Any
    cfg: RunConfig
    run_dir: Path


# -- planning (pure given the base config) ----------------------------------------------------------


def with_override(cfg: RunConfig, key: str, raw: str) -> RunConfig:
    """``cfg`` with ``key=raw`` applied exactly like a command-line override; errors name the key."""
    return from_dict(RunConfig, apply_overrides(cfg.to_dict(), [f"{key}={raw}"]))


def value_dirname(text: str) -> str:
    """A folder name for a value as given: characters other than ``A-Za-z0-9._+-`` become ``_``."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", text.strip())
    return name if name and not name.startswith(".") else f"_{name}"


def sweep_dir(base_dir: Path, key: str) -> Path:
    return Path(base_dir) / "sweep" / key


def plan_sweep(cfg: RunConfig, key: str, values: list[str], base_dir: Path) -> list[SweepPoint]:
    """One :class:`SweepPoint` per value; every value is checked before anything runs."""
    key = key.strip()
    path, _ = parse_override(f"{key}=0")
    if not key or any(not p for p in path):
        raise ConfigError(f"--key {key!r} is not a dotted config key like filtering.threshold")
    if key in NOT_SWEEPABLE:
        raise ConfigError(f"--key {key}: cannot be swept ({', '.join(sorted(NOT_SWEEPABLE))} are set by the sweep; "
                          "use --methods / --seeds)")
    if not values:
        raise ConfigError(f"--key {key}: give one or more --values")
    points: list[SweepPoint] = []
    seen: dict[str, str] = {}
    for text in values:
        _, value = parse_override(f"{key}={text}")
        folder = sweep_dir(base_dir, key) / value_dirname(text)
        try:
            cfg_v = with_override(cfg, key, text)
            cfg_v = with_override(cfg_v, "run_dir", str(folder))
        except ConfigError as e:
            raise ConfigError(f"--key {key} --values {text}: {e}") from None
        ident = repr(value)
        if ident in seen or folder.name in {p.run_dir.name for p in points}:
            raise ConfigError(f"--values: {text!r} is given twice (same value or folder as {seen.get(ident, text)!r})")
        seen[ident] = text
        points.append(SweepPoint(text, value, cfg_v, folder))
    return points


def read_marker_digest(marker: Path) -> str | None:
    try:
        return json.loads(Path(marker).read_text(encoding="utf-8")).get("digest")
    except (OSError, ValueError, AttributeError):
        return None


def is_numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


# -- reuse by hard links --------------------------------------------------------------------------


def link_file(src: Path, dst: Path) -> str:
    """Hard-link ``src`` at ``dst`` (replacing it); copy across filesystems. Returns 'link' or 'copy'."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    if src.suffix not in COPY_SUFFIXES:
        try:
            os.link(src, dst)
            return "link"
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
    shutil.copy2(src, dst)
    return "copy"


def link_tree(src: Path, dst: Path) -> int:
    """Link every finished file under ``src`` into ``dst`` (writers' temp files are left out)."""
    n = 0
    for path in sorted(src.rglob("*")):
        if path.is_file() and not path.name.endswith(TMP_SUFFIX):
            link_file(path, dst / path.relative_to(src))
            n += 1
    return n


def make_reuse(sources: list[Path], point: SweepPoint, reused: dict[str, Path]) -> Reuse:
    """The ``reuse(stage, digest)`` callback of :func:`discl.pipeline.run` for one value of the sweep.

    It links, from the first of ``sources`` (the base run, then the values that ran before this
    one) whose marker holds ``digest``, the stage's artifacts and then its marker (a kill mid-way
    leaves a stage without marker that the next run links again), and records the source in
    ``reused``.
    """

    def reuse(name: str, digest: str) -> bool:
        src = next((Path(s) for s in sources  # both markers: a single-stage command may have remade it since
                    if read_marker_digest(Path(s) / ".stages" / f"{name}.json") == digest
                    and read_marker_digest(Path(s) / stage_marker(name)) == digest), None)
        if src is None or src.resolve() == point.run_dir.resolve():
            return False
        marker = point.run_dir / ".stages" / f"{name}.json"
        marker.unlink(missing_ok=True)
        for rel in stage_paths(name):
            shutil.rmtree(point.run_dir / rel, ignore_errors=True)
            if (src / rel).is_dir():
                link_tree(src / rel, point.run_dir / rel)
        link_file(src / ".stages" / f"{name}.json", marker)
        reused[name] = src
        log.info("sweep %s: stage %s linked from %s", point.run_dir.name, name, src)
        if name == "generate" and not (point.run_dir / ".stages" / "filter.json").is_file():
            for rel in FILTER_CACHE:  # same spectrum files (same inodes, so same size:mtime): nothing to re-encode
                if (src / rel).is_file():
                    link_file(src / rel, point.run_dir / rel)
        return True

    return reuse


# -- the sweep -------------------------------------------------------------------------------------


def run_point(sources: list[Path], point: SweepPoint) -> dict[str, Any]:
    """Run the value's pipeline, linking every stage an earlier run finished with the same digest."""
    from discl.pipeline import run

    reused: dict[str, Path] = {}
    status = run(point.cfg, point.run_dir, reuse=make_reuse(sources, point, reused))
    ran = [k for k, v in status.items() if v == "ran" and k != "report"]
    log.info("sweep %s: %s", point.run_dir.name, "stages run: " + ", ".join(ran) if ran else "nothing to redo")
    return {"value": point.text, "reused": reused, "status": status}


def run_sweep(cfg: RunConfig, key: str, values: list[str], base_dir: Path | None = None) -> pd.DataFrame:
    """Run every value of ``key`` (see the module doc); writes and returns the per-seed summary."""
    base_dir = Path(base_dir or cfg.run_path)
    points = plan_sweep(cfg, key, values, base_dir)
    for i, point in enumerate(points):
        log.info("sweep %s [%d/%d]: %s=%s in %s", key, i + 1, len(points), key, point.text, point.run_dir)
        run_point([base_dir, *(p.run_dir for p in points[:i])], point)
    summary = summarize_sweep(points)
    write_summary(summary, points, key, sweep_dir(base_dir, key))
    return summary


# -- summary ---------------------------------------------------------------------------------------


def headline_columns(task: str, columns) -> list[tuple[str, str]]:
    """(results.csv column, label) of the task's headline test metrics that the results hold."""
    cols = HEADLINE.get(task) or [("test.top1", "overall"), ("test.macro_f1", "macro-F1")]
    return [(k, label) for k, label in cols if k in columns]


def _filter_stats(manifest: pd.DataFrame | None, levels: list[float] | None) -> dict[str, Any]:
    if manifest is None:
        return {}
    rows = manifest if levels is None else manifest[manifest["lam"].astype(float).round(6).isin(
        [round(lv, 6) for lv in levels])]
    kept = rows[rows["keep"].astype(bool)]
    return {"images": len(rows), "kept": len(kept), "keep_rate": len(kept) / len(rows) if len(rows) else math.nan,
            "kept_sim_text": float(kept["sim_text"].astype(float).mean()) if len(kept) else math.nan}


def summarize_sweep(points: list[SweepPoint]) -> pd.DataFrame:
    """One row per value x method x seed from each value's filter manifest and results.csv."""
    rows = []
    for p in points:
        mpath = p.run_dir / "filter" / "manifest.csv"
        manifest = read_table(mpath) if mpath.is_file() else None
        results = read_table(p.run_dir / "results.csv")
        cols = headline_columns(p.cfg.data.task, results.columns)
        overall = _filter_stats(manifest, None)
        for method in p.cfg.methods:
            used = _filter_stats(manifest, method_levels(p.cfg, method)) if parse_method(method).uses_synthetic else {}
            for seed in p.cfg.seeds:
                r = results[(results["method"] == method) & (results["seed"] == seed)]
                if not len(r):
                    raise ConfigError(f"{p.run_dir / 'results.csv'} has no row for method {method} seed {seed}")
                row = {"value": p.value, "value_text": p.text, "method": method, "seed": seed}
                row.update({f"filter_{k}": v for k, v in overall.items()})
                row.update({f"used_{k}": v for k, v in used.items()})
                row.update({k: float(r[k].iloc[0]) for k, _ in cols})
                # the validation score the run's checkpoint was selected on: what a value is chosen by
                # (none with select_on: last, whose "score" is the epoch)
                on = str(r["best.select_on"].iloc[0]) if "best.select_on" in r else ""
                row["val_score"] = float(r["best.score"].iloc[0]) if "best.score" in r and on.startswith("val") else math.nan
                row["val_select_on"] = on
                # the run's training digest: equal at every value = the key never reached this method
                digest = r["digest"].iloc[0] if "digest" in r else None  # NaN for a stale/missing row
                row["train_digest"] = "" if digest is None or pd.isna(digest) else str(digest)
                rows.append(row)
    return pd.DataFrame(rows)


def unaffected_methods(summary: pd.DataFrame) -> list[str]:
    """The methods whose every seed trained the same run (one ``train_digest``) at every value of the
    key (pure): the key does not reach them (``ce`` in a threshold sweep), so no value is theirs to
    choose, and their differences between values are nil by construction."""
    if "train_digest" not in summary or summary["value_text"].nunique() < 2:
        return []
    out = []
    for method, g in summary.groupby("method", sort=False):
        digests = g["train_digest"].astype(str)
        if (digests != "").all() and g.assign(d=digests).groupby("seed")["d"].nunique().max() == 1:
            out.append(str(method))
    return out


def _validation_means(summary: pd.DataFrame) -> dict[str, pd.Series]:
    """Per method the key reaches (:func:`unaffected_methods`), its mean validation score per value
    (pure; values in sweep order, methods without scores left out)."""
    if "val_score" not in summary:
        return {}
    skip = set(unaffected_methods(summary))
    out = {}
    for method, g in summary.groupby("method", sort=False):
        means = g.groupby("value_text", sort=False)["val_score"].mean().dropna()
        if method not in skip and len(means):
            out[str(method)] = means
    return out


def choose_on_validation(summary: pd.DataFrame) -> dict[str, tuple[str, float]]:
    """Per method, the value whose runs have the highest mean validation score (``val_score``: the
    metric each run's checkpoint was selected on, ``training.select_on``) and that mean (pure; ties:
    the earlier value). The test split plays no part: a value chosen this way can be reported on test.
    Methods the key does not reach (:func:`unaffected_methods`) get no value."""
    return {m: (str(means.idxmax()), float(means.max())) for m, means in _validation_means(summary).items()}


def validation_ties(summary: pd.DataFrame) -> dict[str, list[str]]:
    """Per method, the values whose mean validation score equals the best one, when more than one
    does (pure): the chosen (earlier) value is then no better than the others."""
    out = {}
    for method, means in _validation_means(summary).items():
        best = [str(v) for v, m in means.items() if math.isclose(m, means.max(), abs_tol=1e-12)]
        if len(best) > 1:
            out[method] = best
    return out


def correlations(summary: pd.DataFrame, metrics: list[str]) -> list[dict[str, Any]]:
    """Spearman rank correlation of value vs each metric, per method, over the per-seed rows."""
    from scipy.stats import spearmanr

    out = []
    for method, g in summary.groupby("method", sort=False):
        for m in metrics:
            x, y = g["value"].astype(float), g[m].astype(float)
            rho, pval = (math.nan, math.nan)
            if x.nunique() > 1 and y.nunique() > 1:
                res = spearmanr(x, y)
                rho, pval = float(res.statistic), float(res.pvalue)
            out.append({"method": method, "metric": m, "rho": rho, "p": pval, "n": len(g)})
    return out


def _pm(v: pd.Series, scale: float = 100.0, fmt: str = ".1f") -> str:
    v = v.astype(float) * scale
    return f"{v.mean():{fmt}} ± {v.std(ddof=1):{fmt}}" if len(v) > 1 else f"{v.mean():{fmt}}"


def summary_markdown(summary: pd.DataFrame, points: list[SweepPoint], key: str) -> str:
    cols = headline_columns(points[0].cfg.data.task, summary.columns)
    lines = [f"| {key} | method | seeds (mean ± sample std, ddof=1) | keep rate (all λ) | keep rate (method's λ) | kept (method's λ) "
             "| kept sim_text | " + " | ".join(label for _, label in cols) + " | validation (selection metric) |",
             "|---|---|---|---|---|---|---|" + "---|" * (len(cols) + 1)]
    for p in points:
        for method in p.cfg.methods:
            g = summary[(summary["value_text"] == p.text) & (summary["method"] == method)]
            first = g.iloc[0]
            used = "used_keep_rate" in g and not pd.isna(first.get("used_keep_rate"))
            cells = [f"{first['filter_keep_rate'] * 100:.1f}%" if "filter_keep_rate" in g else "–",
                     f"{first['used_keep_rate'] * 100:.1f}%" if used else "–",
                     f"{int(first['used_kept'])}/{int(first['used_images'])}" if used else "–",
                     f"{first['used_kept_sim_text']:.3f}" if used else "–"]
            cells += [_pm(g[k]) for k, _ in cols]
            cells.append(_pm(g["val_score"]) if "val_score" in g and g["val_score"].notna().any() else "–")
            lines.append(f"| {p.text} | {method} | {len(g)} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    chosen = choose_on_validation(summary)
    if chosen:
        metric = next((m for m in summary.get("val_select_on", pd.Series(dtype=str)) if m), "the selection metric")
        text += (f"\nChosen on the validation split (highest mean {metric} of the selected checkpoints over the "
                 "seeds; the test columns played no part):\n\n")
        ties = validation_ties(summary)
        text += "".join(f"- {method}: `{key} = {v}` ({score * 100:.1f})"
                        + (f"; a tie with {', '.join(t for t in ties[method] if t != v)}: the earlier value is named, "
                           "no value is better" if method in ties else "") + "\n"
                        for method, (v, score) in chosen.items())
    if unaffected := unaffected_methods(summary):
        text += (f"\nNot affected by `{key}` (the same training run at every value, so no value is chosen for "
                 f"them): {', '.join(unaffected)}\n")
    if is_numeric([p.value for p in points]):
        text += "\nSpearman rank correlation of the value with each metric, over the per-seed rows:\n\n"
        text += "| method | metric | ρ | p | n |\n|---|---|---|---|---|\n"
        labels = dict(cols)
        for c in correlations(summary, [k for k, _ in cols]):
            rho, pval = ("undefined (a constant column)", "–") if math.isnan(c["rho"]) else \
                (f"{c['rho']:+.2f}", f"{c['p']:.3f}")
            text += f"| {c['method']} | {labels[c['metric']]} | {rho} | {pval} | {c['n']} |\n"
    else:
        text += "\n(the values are not numbers: no rank correlation)\n"
    return text


def plot_sweep(summary: pd.DataFrame, points: list[SweepPoint], key: str, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = headline_columns(points[0].cfg.data.task, summary.columns)
    numeric = is_numeric([p.value for p in points])
    xs = {p.text: (float(p.value) if numeric else i) for i, p in enumerate(points)}
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = ["o-", "s--", "^:", "d-."]
    methods = list(summary["method"].unique())
    for mi, method in enumerate(methods):
        g = summary[summary["method"] == method]
        for ci, (k, label) in enumerate(cols):
            by = g.groupby("value_text", sort=False)[k]
            mean, std = by.mean().reindex(xs), by.std(ddof=1).reindex(xs)  # sample std (ddof=1), as in summary.md
            ax.errorbar([xs[t] for t in mean.index], mean * 100, yerr=std.fillna(0) * 100,
                        fmt=styles[ci % len(styles)], color=f"C{ci if len(methods) == 1 else mi}", capsize=3,
                        label=f"{method}: {label}")
    ax.set_xlabel(key)
    ax.set_ylabel("test metric (%), mean ± sample std over seeds")
    rate_col = "used_keep_rate" if "used_keep_rate" in summary and summary["used_keep_rate"].notna().any() \
        else "filter_keep_rate"
    if rate_col in summary:
        rates = summary.groupby("value_text", sort=False)[rate_col].first().reindex([p.text for p in points])
        ax2 = ax.twinx()
        ax2.plot([xs[t] for t in rates.index], rates * 100, "x:", color="grey", label="keep rate")
        ax2.set_ylabel("filter keep rate (%)" + (" at the method's λ" if rate_col == "used_keep_rate" else ""))
        ax2.set_ylim(0, 105)
        ax2.legend(loc="lower right", fontsize=7)
    if not numeric:
        ax.set_xticks(list(xs.values()), list(xs))
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


def write_summary(summary: pd.DataFrame, points: list[SweepPoint], key: str, out: Path) -> bool:
    """Write summary.csv / .md / .png; a rerun with the same rows rewrites nothing. True when written."""
    csv = summary.to_csv(index=False)
    files = [out / "summary.csv", out / "summary.md", out / "summary.png"]
    if all(f.is_file() for f in files) and files[0].read_text(encoding="utf-8") == csv:
        return False
    atomic_write_text(files[1], summary_markdown(summary, points, key))
    plot_sweep(summary, points, key, files[2])
    atomic_write_text(files[0], csv)  # last: the marker that the other two are current
    return True
