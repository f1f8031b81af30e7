"""Pure decisions of hard-sample mining: fold assignment and the hard-image table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from discl.mining.base import MiningInputs, get_criterion
from discl.mining.config import MiningConfig
from discl.seeding import numpy_rng

HARD_COLUMNS = ["sample_id", "label", "class_name", "criteria", "class_count", "oof_prob_gt", "oof_pred"]


def needs_predictions(cfg: MiningConfig) -> bool:
    return any(get_criterion(c).needs_predictions for c in cfg.criteria)


def stratified_folds(sample_ids: Sequence[str], labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of every image: per class a seeded shuffle dealt round-robin, the dealing
    continuing from class to class so that the folds stay within one image of each other in size.

    Depends only on (ids, labels, k, seed), not on the order of the input.
    """
    ids = np.asarray(sample_ids, dtype=object)
    labels = np.asarray(labels)
    folds = np.full(len(ids), -1, dtype=np.int64)
    dealt = 0
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(ids[members].astype(str), kind="stable")]
        members = numpy_rng("mining-folds", seed, k, int(c)).permutation(members)
        folds[members] = (dealt + np.arange(len(members))) % k
        dealt += len(members)
    return folds


def select_hard(
    frame: pd.DataFrame,
    class_names: Sequence[str],
    inputs: MiningInputs,
    cfg: MiningConfig,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per hard image (columns :data:`HARD_COLUMNS`), sorted by sample id.

    ``frame`` holds the judged images' ``sample_id`` in the order of ``inputs``. ``criteria`` lists
    the criteria an image matched (';'-joined); with ``combine: all`` an image must match every
    configured criterion. ``max_per_class`` keeps the lowest ground-truth probabilities, or a seeded
    random subset when no predictions were made.
    """
    ids = frame["sample_id"].to_numpy()
    if len(ids) != len(inputs.labels):
        raise ValueError(f"{len(ids)} sample ids but {len(inputs.labels)} labels")
    masks = {name: get_criterion(name)(inputs, cfg) for name in cfg.criteria}
    stack = np.stack([masks[n] for n in cfg.criteria]) if masks else np.zeros((0, len(ids)), bool)
    hard = stack.all(0) if cfg.combine == "all" else stack.any(0)
    prob_gt, pred = inputs.prob_gt, inputs.pred
    out = pd.DataFrame({
        "sample_id": ids,
        "label": inputs.labels.astype(np.int64),
        "class_name": [class_names[int(c)] for c in inputs.labels],
        "criteria": [";".join(n for n in cfg.criteria if masks[n][i]) for i in range(len(ids))],
        "class_count": inputs.class_counts[inputs.labels].astype(np.int64),
        "oof_prob_gt": prob_gt.astype(np.float64),
        "oof_pred": np.where(pred >= 0, pred, np.nan),
    })[hard]
    if cfg.max_per_class is not None:
        out = _cap_per_class(out, cfg.max_per_class, seed)
    return out.sort_values("sample_id", kind="stable").reset_index(drop=True)[HARD_COLUMNS]


def _cap_per_class(out: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    kept = []
    for label, group in out.groupby("label", sort=True):
        group = group.sort_values("sample_id", kind="stable")
        if group["oof_prob_gt"].notna().all():
            group = group.sort_values(["oof_prob_gt", "sample_id"], kind="stable")
        else:
            group = group.iloc[numpy_rng("mining-cap", seed, int(label)).permutation(len(group))]
        kept.append(group.iloc[:cap])
    return pd.concat(kept) if kept else out


def summarize(hard: pd.DataFrame, class_names: Sequence[str], class_counts: np.ndarray, cfg: MiningConfig,
              n_judged: int) -> dict:
    """Counts per class and per criterion (``summary.json``)."""
    per_criterion = {n: int(hard["criteria"].str.split(";").apply(lambda cs, n=n: n in cs).sum()) for n in cfg.criteria}
    per_class = {
        name: {"train": int(class_counts[i]), "hard": int((hard["label"] == i).sum())}
        for i, name in enumerate(class_names)
    }
    return {"n_train": int(n_judged), "n_hard": int(len(hard)), "criteria": list(cfg.criteria),
            "combine": cfg.combine, "per_criterion": per_criterion, "per_class": per_class}
