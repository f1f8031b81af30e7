"""``discl mine`` / :func:`mine`: select the hard training images of a run (phase 1a).

Writes, under ``RUN/mining/``:
- ``hard.csv``: one row per hard image: ``sample_id, label, class_name, criteria`` (the criteria it
  matched, ';'-joined), ``class_count`` (training images of its class), ``oof_prob_gt`` and
  ``oof_pred`` (out-of-fold ground-truth probability and predicted class; NaN when no model-based
  criterion is configured);
- ``summary.json``: counts per class and per criterion;
- ``oof_predictions.csv`` (model-based criteria): every training image's fold, probability of its
  class and predicted class;
- ``_done.json``: the completion marker; a rerun with the same config does no work.

Inputs dropped by ``data.on_bad_image: skip`` are listed in ``RUN/skipped_inputs.csv``
(:func:`discl.data.folder.record_skipped`, as every stage that builds the dataset does).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from discl.artifacts import (
    atomic_write_json,
    clean_stale_temp,
    is_complete,
    mark_complete,
    read_table,
    write_table,
)
from discl.config import RunConfig
from discl.digests import data_content, fold_models_digest, stage_fingerprints
from discl.mining.base import MiningInputs
from discl.mining.select import needs_predictions, select_hard, stratified_folds, summarize

log = logging.getLogger(__name__)

OUT = "mining"


def mining_digest(cfg: RunConfig, fingerprints: dict | None = None) -> str:
    """What the output depends on (:func:`discl.digests.mine_digest`, the digest ``discl run`` records too)."""
    from discl.digests import data_content, mine_digest

    return mine_digest(cfg, stage_fingerprints(cfg, "mine") if fingerprints is None else fingerprints,
                       content=data_content(cfg))


def mine(cfg: RunConfig, run_dir: Path) -> pd.DataFrame:
    """Select the hard training images; writes ``RUN/mining/*`` (see the module doc), returns hard.csv."""
    from discl.data import build_dataset
    from discl.data.folder import record_skipped

    out = Path(run_dir) / OUT
    clean_stale_temp(out)
    fingerprints = stage_fingerprints(cfg, "mine")
    digest = mining_digest(cfg, fingerprints)
    if is_complete(out / "_done.json", digest) and (out / "hard.csv").is_file():
        log.info("mining: already done (%s)", out)
        return read_table(out / "hard.csv")
    ds = build_dataset(cfg.data)
    record_skipped(ds, run_dir, "mine")
    train = ds.split("train")
    train = train.iloc[np.argsort(train["sample_id"].to_numpy().astype(str), kind="stable")]
    labels = train["label"].to_numpy().astype(np.int64)
    counts = ds.class_counts("train")
    proba = None
    if needs_predictions(cfg.mining):
        proba = _oof(cfg, ds, train, labels, out, fold_models_digest(cfg, fingerprints, content=data_content(cfg)))
    inputs = MiningInputs(labels=labels, class_counts=counts, oof_proba=proba)
    hard = select_hard(train, ds.classes, inputs, cfg.mining, seed=cfg.seed)
    write_table(out / "hard.csv", hard)
    summary = summarize(hard, ds.classes, counts, cfg.mining, len(train))
    atomic_write_json(out / "summary.json", summary)
    mark_complete(out / "_done.json", digest, n_hard=len(hard))
    log.info("mining: %d of %d training images are hard (%s)", len(hard), len(train),
             ", ".join(f"{k} {v}" for k, v in summary["per_criterion"].items()))
    return hard


def _oof(cfg: RunConfig, ds, train: pd.DataFrame, labels: np.ndarray, out: Path, digest: str) -> np.ndarray:
    from discl.mining.oof import out_of_fold_proba

    size, ch = cfg.data.image_size, cfg.data.channels
    ids = train["sample_id"].to_numpy()
    folds = stratified_folds(ids, labels, cfg.mining.folds, cfg.seed)
    val = ds.split("val")
    x_val = ds.tensors(list(val["sample_id"]), size, ch) if len(val) else None
    y_val = np.array(val["label"], dtype=np.int64) if len(val) else None
    fold_cfg = dataclasses.replace(cfg.training, epochs=cfg.mining.epochs)
    fit = None
    if fold_cfg.model == "clip":  # a CLIP's captions and zero-shot head need the class names
        from functools import partial

        from discl.training.loop import fit_classifier

        fit = partial(fit_classifier, class_names=list(ds.classes))
    proba = out_of_fold_proba(ds.tensors(list(ids), size, ch), labels, folds, x_val, y_val, fold_cfg,
                              len(ds.classes), cfg.seed, sample_ids=ids, cache_dir=out / "folds", digest=digest,
                              fit=fit)
    write_table(out / "oof_predictions.csv", pd.DataFrame({
        "sample_id": ids, "label": labels, "fold": folds,
        "oof_prob_gt": proba[np.arange(len(ids)), labels], "oof_pred": proba.argmax(1),
    }))
    return proba
