"""Out-of-fold predictions: each training image is judged by a model that never trained on it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from discl.seeding import derive_seed

log = logging.getLogger(__name__)


def out_of_fold_proba(
    x: torch.Tensor,
    labels: np.ndarray,
    folds: np.ndarray,
    x_val: torch.Tensor | None,
    y_val: np.ndarray | None,
    train_cfg,
    num_classes: int,
    seed: int,
    sample_ids: np.ndarray | None = None,
    cache_dir: Path | None = None,
    digest: str = "",
    fit=None,
    predict=None,
) -> np.ndarray:
    """Softmax [N, K]: fold k's images scored by a model fitted on the other folds.

    ``x`` is uint8 [N, C, H, W]. The fold models select their checkpoint on (``x_val``, ``y_val``),
    a split disjoint from the judged images. ``fit``/``predict`` default to
    :func:`discl.training.loop.fit_classifier` / ``predict_proba`` (same signatures). With ``cache_dir``, each finished fold is saved
    (``fold{k}-{digest}.parquet``) and reused by a rerun, so an interrupted mining resumes.
    """
    from discl.artifacts import write_table
    if fit is None or predict is None:
        from discl.training.loop import fit_classifier, predict_proba

        fit, predict = fit or fit_classifier, predict or predict_proba
    n, k_folds = len(labels), int(folds.max()) + 1
    proba = np.full((n, num_classes), np.nan)
    ids = np.asarray(sample_ids if sample_ids is not None else np.arange(n).astype(str), dtype=str)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    cols = [f"p{c}" for c in range(num_classes)]
    for k in range(k_folds):
        held = np.flatnonzero(folds == k)
        cache = Path(cache_dir) / f"fold{k}-{digest}.parquet" if cache_dir is not None else None
        if cache is not None and cache.is_file():
            saved = pd.read_parquet(cache)
            if list(saved["sample_id"]) == list(ids[held]):
                proba[held] = saved[cols].to_numpy()
                log.info("fold %d/%d: reused %s", k + 1, k_folds, cache.name)
                continue
        train = np.flatnonzero(folds != k)
        log.info("fold %d/%d: fitting on %d images, judging %d", k + 1, k_folds, len(train), len(held))
        model = fit(x[train], y[train], x_val, y_val, train_cfg, num_classes,
                               seed=derive_seed("mining-fold-model", seed, k))
        p = predict(model, x[held]).double().numpy()
        proba[held] = p
        if cache is not None:
            write_table(cache, pd.DataFrame({"sample_id": ids[held], **{c: p[:, i] for i, c in enumerate(cols)}}))
    return proba
