"""The results of a run, read from its folder: which (method, seed) runs a config asks for, in which
order, the digest each records, and the table of their metrics.

Both the orchestrator (:mod:`discl.pipeline`, which trains what is missing) and the report
(:mod:`discl.evaluation.report`, which reads what is there) need these; they live here, below both,
so that the report never imports the orchestrator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from discl.config import RunConfig
from discl.methods import init_baseline, parse_method

MODEL_BASED_CRITERIA = {"misclassified", "low_confidence"}


def stage_sections(cfg: RunConfig) -> dict[str, tuple[str, ...]]:
    """The config sections of each stage and its upstream stages (pure): which weights a stage's
    marker records under ``models`` (provenance for the report). What decides a rerun is
    :mod:`discl.digests`, not these sections."""
    mine = ("data", "mining", "seed")  # the run seed draws the per-class cap and the adaptive held-out images
    if MODEL_BASED_CRITERIA & set(cfg.mining.criteria):  # the out-of-fold models depend on these too
        mine = (*mine, "training")
    gen = (*mine, "prompts", "generation")
    filt = (*gen, "filtering")
    return {"mine": mine, "generate": gen, "filter": filt, "train": (*filt, "training", "curriculum"),
            "train-real": ("data", "training"),
            # real_only: no synthetic images, but the curriculum's epoch rules (real_fraction, tail quota
            # from hard.csv) shape what it trains on
            "train-real-curriculum": (*mine, "training", "curriculum")}


def stage_digest(cfg: RunConfig, stage: str, fingerprints: dict[str, Any] | None = None,
                 run_dir: Path | None = None) -> str:
    """The digest of stage ``mine``, ``generate`` or ``filter`` in ``run_dir`` now
    (:func:`discl.digests.current`; the stage's runner records the same one)."""
    from discl.digests import current

    return current(cfg, Path(run_dir) if run_dir is not None else cfg.run_path, stage, fingerprints)


@dataclass(frozen=True)
class RunSpec:
    """How ``discl run`` trains one method: a baseline ``variant``, a ``derived`` baseline (``la``,
    ``crt``, ``ce_long``: built from the same seed's CE run), or a curriculum ``strategy`` with its
    ``loss`` over ``cfg`` (a ``single@λ`` method's level already set in it)."""

    cfg: RunConfig
    variant: str | None = None
    strategy: str | None = None
    loss: str | None = None
    derived: str | None = None


def run_spec(cfg: RunConfig, method: str) -> RunSpec:
    """The recipe call a method is (pure): shared by :func:`train_method` and :func:`train_run_digest`."""
    import dataclasses

    m = parse_method(method)
    if m.base is not None:  # la / crt / ce_long: built from the same seed's CE run
        return RunSpec(cfg, derived=m.name)
    if m.strategy is None:  # the baseline names (ce, bs, cb, flyp) are their variants
        return RunSpec(cfg, variant=m.name)
    strategy = cfg.curriculum.strategy if m.strategy == "discl" else m.strategy
    if m.level is not None:
        cfg = dataclasses.replace(cfg, curriculum=dataclasses.replace(cfg.curriculum, fixed_level=m.level))
    return RunSpec(cfg, strategy=strategy, loss=m.loss)


def train_run_digest(cfg: RunConfig, run_dir: Path, method: str, seed: int,
                     fingerprints: dict[str, Any] | None = None) -> str:
    """The digest training run (method, seed) records in its metrics.json (the recipe's own function)."""
    from discl.training.recipe import baseline_run_digest, curriculum_digest

    spec = run_spec(cfg, method)
    if spec.derived is not None:
        from discl.training.posthoc import derived_digest

        return derived_digest(spec.cfg, run_dir, spec.derived, seed, fingerprints)
    if spec.variant is not None:
        return baseline_run_digest(spec.cfg, spec.variant, seed, fingerprints)
    return curriculum_digest(spec.cfg, run_dir, spec.strategy, seed, spec.loss, fingerprints)


def train_sections(cfg: RunConfig, method: str) -> tuple[str, ...]:
    m = parse_method(method)
    return stage_sections(cfg)["train" if m.uses_synthetic else ("train-real-curriculum" if m.strategy else "train-real")]


def training_order(cfg: RunConfig) -> list[str]:
    """The methods in the order they train (pure): with ``training.init_from`` naming a baseline
    (``ce``; ``baseline``: the one of each curriculum method's loss, ``bs`` for ``bs+discl``), that
    baseline comes first, added when not listed, since the curriculum runs fine-tune from its
    checkpoint of the same seed; so does the base (``ce``) of a derived baseline (``la``,
    ``crt``, ``ce_long``)."""
    methods = list(cfg.methods)
    parsed = [parse_method(m) for m in methods]
    first = [init_baseline(cfg.training.init_from, m.loss or cfg.training.loss)  # real_only too
             for m in parsed if m.strategy is not None]
    first = [b for b in first if b is not None]
    first = list(dict.fromkeys(first + [m.base for m in parsed if m.base is not None]))
    return first + [m for m in methods if m not in first]


def collect_results(cfg: RunConfig, run_dir: Path, fingerprints: dict[str, Any] | None = None) -> pd.DataFrame:
    """One row per (method, seed) of the current config, in training order.

    A run's metrics.json is read only when its digest is the one the run would record now
    (:func:`train_run_digest`): ``status`` is ``ok`` then; otherwise the row is kept with
    ``status`` ``missing`` (never trained), ``stale`` (trained for other inputs), ``failed``
    (a marker-less run folder with a partial log) or ``unreadable``, the reason in ``reason``, and
    no metrics, so a table never averages silently over fewer seeds.
    """
    from discl.data.identity import snapshot

    with snapshot():  # one listing of the data for every row
        return _collect_results(cfg, run_dir, fingerprints)


def _collect_results(cfg: RunConfig, run_dir: Path, fingerprints: dict[str, Any] | None) -> pd.DataFrame:
    from discl.artifacts import ArtifactError, read_json

    if fingerprints is None:
        from discl.fingerprint import model_fingerprints

        fingerprints = model_fingerprints(cfg, {s for m in training_order(cfg) for s in train_sections(cfg, m)})
    rows = []
    spectrum = run_dir / "spectrum" / "metadata.csv"
    manifest = pd.read_csv(spectrum) if spectrum.is_file() else None
    for method in training_order(cfg):
        steps = denoiser_pool_steps(cfg, method, manifest)
        for seed in cfg.seeds:
            folder = run_dir / "train" / f"{method}-s{seed}"
            path = folder / "metrics.json"
            row: dict[str, Any] = {"method": method, "seed": seed, "status": "ok", "reason": ""}
            try:
                metrics = read_json(path) if path.is_file() else None
            except ArtifactError as e:
                metrics, row["status"], row["reason"] = None, "unreadable", str(e)
            if metrics is None and row["status"] == "ok":
                if (folder / "log.csv").is_file():
                    row["status"], row["reason"] = "failed", "the run started but did not finish (see its log.csv)"
                else:
                    row["status"], row["reason"] = "missing", "not trained yet"
            elif metrics is not None:
                try:
                    want = train_run_digest(cfg, run_dir, method, seed, fingerprints)
                except Exception as e:  # noqa: BLE001 - e.g. the filter manifest it needs is missing
                    want = f"unknown ({e})"
                if metrics.get("digest") != want:
                    row["status"] = "stale"
                    row["reason"] = "trained for other inputs (config, data, upstream artifacts or weights); rerun `discl run`"
                else:
                    row.update(_flatten(metrics))
                    row["denoiser_steps"] = steps
                    row["tail_synthetic_share"] = _lowest_tail_share(folder / "log.csv")
            rows.append(row)
    return pd.DataFrame(rows)


def _lowest_tail_share(log_csv: Path) -> float | None:
    """The run's lowest per-epoch synthetic share of the tail slots in its synthetic stages (log.csv)."""
    from discl.curriculum.stage_data import lowest_tail_synthetic_share

    return lowest_tail_synthetic_share(pd.read_csv(log_csv)) if log_csv.is_file() else None


def method_levels(cfg: RunConfig, method: str) -> list[float]:
    """The synthetic levels a method can draw from (pure given the config)."""
    import dataclasses

    from discl.curriculum.base import create_strategy
    from discl.curriculum.stage_data import needed_levels

    m = parse_method(method)
    if not m.uses_synthetic:
        return []
    cur = cfg.curriculum
    if m.level is not None:
        cur = dataclasses.replace(cur, fixed_level=m.level)
    strategy = create_strategy(cur.strategy if m.strategy == "discl" else m.strategy, cur, cfg.training.epochs, 0)
    return needed_levels(strategy, cur, cfg.training.epochs)


def denoiser_pool_steps(cfg: RunConfig, method: str, manifest: pd.DataFrame | None) -> int:
    """Denoiser evaluations spent generating the images a method could draw from (x2 with CFG)."""
    levels = method_levels(cfg, method)
    if manifest is None or not levels or not len(manifest):
        return 0
    rows = manifest[manifest["lam"].round(6).isin([round(lv, 6) for lv in levels])]
    cfg_factor = (rows["guidance_scale"].astype(float) > 1.0).map({True: 2, False: 1})
    return int((rows["denoise_steps"].astype(int) * cfg_factor).sum())


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        elif not isinstance(v, list):
            out[key] = v
    return out


HEADLINE = {
    "fmnist-lt": [("test.top1", "overall"), ("test.many", "many"), ("test.medium", "medium"), ("test.few", "few")],
    "fmnist-lq": [("test.macro_f1", "ID macro-F1"), ("test_ood.macro_f1", "OOD macro-F1"), ("test.top1", "ID acc")],
}


def headline_table(cfg: RunConfig, results: pd.DataFrame) -> str:
    """Markdown table: mean ± sample std (ddof = 1) over the seeds with a finished run of the current
    config, per method; seeds without one are listed with the reason, never silently left out."""
    cols = HEADLINE.get(cfg.data.task, HEADLINE["fmnist-lt"])
    if cfg.data.task not in HEADLINE:
        cols = [("test.top1", "overall"), ("test.many", "many"), ("test.medium", "medium"), ("test.few", "few"),
                ("test.macro_f1", "macro-F1")]
    cols = [(k, label) for k, label in cols if k in results.columns]
    extra = [(k, label) for k, label in (("synthetic_seen", "synthetic images seen"), ("denoiser_steps", "denoiser steps (pool)"),
                                         ("tail_synthetic_share", "tail slots synthetic (lowest epoch)"))
             if k in results.columns and (k != "tail_synthetic_share" or results[k].notna().any())]
    lines = ["| method | seeds (mean ± sample std, ddof=1) | " + " | ".join(label for _, label in cols + extra)
             + " | missing |",
             "|---|---|" + "---|" * (len(cols) + len(extra) + 1)]
    status = results["status"] if "status" in results.columns else pd.Series("ok", index=results.index)
    for method in training_order(cfg):
        mine = results[results["method"] == method] if len(results) else results
        if not len(mine):
            continue
        r = mine[status.loc[mine.index] == "ok"]
        gone = mine[status.loc[mine.index] != "ok"]
        missing = "; ".join(f"seed {int(g['seed'])}: {g['status']} ({g['reason']})" for _, g in gone.iterrows())
        cells = []
        for k, _ in cols:
            v = (r[k].astype(float) * 100).dropna()  # NaN: e.g. no class in the 'many' bin
            cells.append("—" if not len(v) else f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}")
        for k, _ in extra:
            v = r[k].astype(float).dropna() if len(r) else r[k]
            if k == "tail_synthetic_share":  # the lowest over the seeds: the authors' regime holds every stage >= 70 %
                cells.append(f"{v.min():.0%}" if len(v) else "—")
            else:
                cells.append(f"{int(v.mean()):,}" if len(v) else "—")
        lines.append(f"| {method} | {len(r)} of {len(mine)} | " + " | ".join(cells) + f" | {missing or '—'} |")
    return "\n".join(lines)

