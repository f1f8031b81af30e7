"""What each curriculum epoch trains on: planning (pure) and the in-memory pool (IO).

An epoch of stage ``S`` (its synthetic levels, or real only) consists of
- a fresh seeded ``real_fraction`` of the real *non-hard* images of the non-tail classes,
- every real *hard* image of the non-tail classes,
- the kept synthetic variants of those hard images at the levels of ``S`` (at most
  ``synthetic_cap_per_class`` per class),
- with ``tail_quota`` (the authors' long-tail rule): each *tail* class gets the mean number of images
  per class of the others, filled with all its real images first, then with its synthetic variants
  at the levels of ``S``; what is still missing (always, in a real-only stage) is filled by
  oversampling its real images, so tail classes never fall back to their raw imbalance. When every
  class is a tail class there is no mean to match: each gets all its real images plus its synthetic
  variants at the levels of ``S`` (capped like the others).

An epoch of no item is an error (:class:`~discl.errors.BadInputError`), never a silent empty epoch.

In a per-class stage (``adaptive_class``) "the levels of ``S``" means, for each class listed in
``S.class_levels``, that class's own level (λ=1: no synthetic images for it), in both rules above.

Tail classes are the classes whose training images are mostly hard (share ≥
``tail_min_hard_share``): with the class-frequency criterion, exactly the rare classes. Held-out
hard images (adaptive validation) and their variants never enter the pool.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from discl.artifacts import confine
from discl.curriculum.base import CurriculumStrategy, Stage, is_real
from discl.curriculum.config import CurriculumConfig
from discl.curriculum.epochs import EpochPlan
from discl.errors import BadInputError
from discl.seeding import numpy_rng

logger = logging.getLogger(__name__)

__all__ = ["select_holdout", "tail_classes", "plan_stage_epoch", "tail_synthetic_share", "lowest_tail_synthetic_share", "tail_share_shortfall",
           "build_pool_meta", "load_spectrum_images", "needed_levels"]

META_COLUMNS = ("kind", "sample_id", "label", "lam", "hard", "tail")


# -- pure planning --------------------------------------------------------------------------------


def select_holdout(hard: pd.DataFrame, per_class: int, seed: int) -> list[str]:
    """Up to ``per_class`` hard images per class held out to measure progress (seeded).

    At least one hard image per class stays in training.
    """
    if per_class <= 0 or hard.empty:
        return []
    out: list[str] = []
    for c, group in hard.groupby("label", sort=True):
        ids = np.sort(group["sample_id"].astype(str).to_numpy())
        n = min(per_class, max(0, len(ids) - 1))
        out.extend(numpy_rng("curriculum-holdout", seed, int(c)).permutation(ids)[:n].tolist())
    return sorted(out)


def tail_classes(train_labels: np.ndarray, hard_labels: np.ndarray, num_classes: int, min_share: float) -> np.ndarray:
    """Classes whose share of hard images among their training images is at least ``min_share``."""
    total = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=num_classes)
    hard = np.bincount(np.asarray(hard_labels, dtype=np.int64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, hard / np.maximum(total, 1), 0.0)
    return np.flatnonzero((total > 0) & (share >= min_share))


def _cap_per_class(idx: np.ndarray, labels: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    if cap is None or len(idx) == 0:
        return idx
    out = []
    for c in np.unique(labels[idx]):
        members = idx[labels[idx] == c]
        out.append(members if len(members) <= cap else np.sort(rng.choice(members, cap, replace=False)))
    return np.concatenate(out) if out else idx[:0]


def _subsample_per_class(mask: np.ndarray, labels: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """``mask`` with only a seeded ``share`` of its members kept in each class (at least one)."""
    idx = np.flatnonzero(mask)
    out = np.zeros_like(mask)
    for c in np.unique(labels[idx]):
        members = idx[labels[idx] == c]
        n = max(1, int(round(share * len(members))))
        out[rng.choice(members, n, replace=False)] = True
    return out


def _oversample(members: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` items from ``members``: whole copies, then a seeded sample without replacement."""
    if n <= 0 or len(members) == 0:
        return members[:0]
    reps, rem = divmod(n, len(members))
    return np.concatenate([np.tile(members, reps), np.sort(rng.choice(members, rem, replace=False))])


def _at_stage_levels(lam: np.ndarray, labels: np.ndarray, stage: Stage) -> np.ndarray:
    """Rows whose λ is the stage's level for their class (``class_levels`` override ``levels``)."""
    lam6 = np.round(lam, 6)
    out = np.isin(lam6, np.round(np.asarray(stage.levels, dtype=np.float64), 6))
    for c, v in stage.class_levels:
        in_c = labels == c
        out[in_c] = (lam6[in_c] == round(v, 6)) & (not is_real(v))
    return out


def plan_stage_epoch(meta: pd.DataFrame, stage: Stage, epoch: int, seed: int, cfg: CurriculumConfig) -> EpochPlan:
    """Pool indices of one epoch (see the module docstring) and the counts to log."""
    rng = numpy_rng("curriculum-stage-data", seed, int(epoch))
    kind = meta["kind"].to_numpy()
    labels = meta["label"].to_numpy(dtype=np.int64)
    lam = meta["lam"].to_numpy(dtype=np.float64)
    hard = meta["hard"].to_numpy(dtype=bool)
    tail = meta["tail"].to_numpy(dtype=bool) if cfg.tail_quota else np.zeros(len(meta), dtype=bool)
    real = kind == "real"
    at_level = (~real) & _at_stage_levels(lam, labels, stage)
    if stage.share < 1.0:
        at_level = _subsample_per_class(at_level, labels, stage.share, rng)

    non_hard = np.flatnonzero(real & ~hard & ~tail)
    n_keep = int(round(cfg.real_fraction * len(non_hard)))
    sampled = np.sort(rng.choice(non_hard, n_keep, replace=False)) if n_keep < len(non_hard) else non_hard
    real_hard = np.flatnonzero(real & hard & ~tail)
    synthetic = _cap_per_class(np.flatnonzero(at_level & ~tail), labels, cfg.synthetic_cap_per_class, rng)
    parts = [sampled, real_hard, synthetic]

    info: dict[str, Any] = {"stage": str(stage), "synthetic_stage": not stage.real_only, "n_real_sampled": int(len(sampled)), "n_real_hard": int(len(real_hard))}
    tail_cls = np.unique(labels[tail])
    head_cls = np.unique(labels[real & ~tail])
    n_tail_real = n_tail_syn = n_tail_over = 0
    quota = None
    if len(tail_cls) and not len(head_cls):
        # no class to take the quota from (every class is mostly hard): each tail class trains on all
        # its real images plus its synthetic images at the stage's levels, as the non-tail rule does
        syn_tail = _cap_per_class(np.flatnonzero(at_level & tail), labels, cfg.synthetic_cap_per_class, rng)
        real_tail = np.flatnonzero(real & tail)
        parts.extend([real_tail, syn_tail])
        n_tail_real, n_tail_syn = len(real_tail), len(syn_tail)
    elif len(tail_cls):
        head_items = sum(len(p) for p in parts)
        quota = int(round(head_items / len(head_cls)))
        for c in tail_cls:
            r = np.flatnonzero(real & (labels == c))
            take = [r]
            missing = quota - len(r)
            if missing > 0 and not stage.real_only:
                s = np.flatnonzero(at_level & (labels == c))
                n = min(missing, len(s), cfg.synthetic_cap_per_class if cfg.synthetic_cap_per_class is not None else missing)
                if n > 0:
                    take.append(np.sort(rng.choice(s, n, replace=False)))
                    n_tail_syn += n
                    missing -= n
            if missing > 0:
                over = _oversample(r, missing, rng)
                take.append(over)
                n_tail_over += len(over)
            n_tail_real += len(r)
            parts.extend(take)
    indices = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
    if len(indices) == 0:
        raise BadInputError(
            f"curriculum epoch {epoch} (stage {stage}) has no training image: the pool holds {int(real.sum())} real "
            f"and {int((~real).sum())} synthetic images, none of which this stage takes; check mining/hard.csv, "
            "curriculum.real_fraction and filter/manifest.csv (kept images)")
    is_syn = ~real[indices]
    by_level = {f"{v:g}": int(np.isclose(lam[indices][is_syn], v).sum()) for v in stage.all_levels}
    if stage.class_levels:
        info["class_level"] = {str(c): v for c, v in stage.class_levels}
    info.update({
        "tail_quota": quota, "n_tail_real": n_tail_real, "n_tail_synthetic": n_tail_syn,
        "n_tail_oversampled": n_tail_over,
        "tail_synthetic_share": tail_synthetic_share(n_tail_real, n_tail_syn, n_tail_over),
        "n_real": int((~is_syn).sum()), "n_synthetic": int(is_syn.sum()),
        "synthetic_by_level": by_level, "n_items": int(len(indices)),
    })
    return EpochPlan(indices, info)


def tail_synthetic_share(n_real: int, n_synthetic: int, n_oversampled: int) -> float | None:
    """Synthetic share of an epoch's tail slots (real + synthetic + oversampled real); None without
    tail slots. The authors' ImageNet-LT epochs fill about 70 % of them with synthetic images."""
    total = n_real + n_synthetic + n_oversampled
    return round(n_synthetic / total, 4) if total else None


def lowest_tail_synthetic_share(log: pd.DataFrame) -> float | None:
    """The lowest ``tail_synthetic_share`` over a run's epochs that trained on synthetic images (its
    ``log.csv``); None for a run without tail slots or synthetic epochs. The number the authors'
    regime holds at >= 0.7 in every synthetic stage (issue 22); the real-only stage is not counted."""
    if "tail_synthetic_share" not in log.columns:
        return None
    if "synthetic_stage" in log.columns:  # logged per epoch: the stage takes synthetic levels (any class)
        synthetic = log["synthetic_stage"].astype(str).str.lower() == "true"
    else:  # logs written before that column: a real-only stage is labelled "real"
        synthetic = (log["stage"].astype(str) != "real" if "stage" in log.columns
                     else pd.to_numeric(log.get("n_synthetic", 0), errors="coerce") > 0)
    share = pd.to_numeric(log["tail_synthetic_share"], errors="coerce")[synthetic].dropna()
    return round(float(share.min()), 4) if len(share) else None


def tail_share_shortfall(info: dict[str, Any], stage: Stage, minimum: float | None) -> str | None:
    """Why an epoch plan's ``tail_synthetic_share`` is below ``minimum`` (a message), else None.

    Only a stage that trains on synthetic levels is held to it: a real-only stage fills its tail
    slots with real images by design."""
    share = info.get("tail_synthetic_share")
    if minimum is None or share is None or stage.real_only or share >= minimum:
        return None
    return (f"stage λ={stage}: synthetic images fill {share:.1%} of the tail slots ({info['n_tail_synthetic']} "
            f"synthetic, {info['n_tail_real']} real, {info['n_tail_oversampled']} oversampled real of "
            f"{info['tail_quota']} per tail class), below curriculum.min_tail_synthetic_share = {minimum:g}: "
            + _shortfall_hint(info))


def _shortfall_hint(info: dict[str, Any]) -> str:
    """What raises the share, from the counts: oversampled slots mean the variants ran out (more
    variants, or a smaller quota); none mean the quota itself is the limit (the tail's real images
    fill most of it, and a class with at least ``tail_quota`` real images gets no synthetic one)."""
    if info["n_tail_oversampled"] > 0:
        return ("the tail classes ran out of kept variants and real images were oversampled (generate more "
                "seeds per level, lower filtering.threshold, or lower curriculum.real_fraction, which shrinks "
                "the quota and the oversampling)")
    return ("no slot was oversampled: the quota is the limit, since each tail class's real images come first "
            "and a class with at least the quota's real images gets no synthetic image (raise "
            "curriculum.real_fraction, which raises the quota, or mine fewer tail classes)")


def needed_levels(strategy: CurriculumStrategy, cfg: CurriculumConfig, epochs: int) -> list[float]:
    """The synthetic levels a strategy can ask for (non-adaptive: the union of its stages)."""
    if strategy.uses_holdout or strategy.needs_feedback:
        levels = {round(float(v), 6) for v in cfg.levels if not is_real(v)}
    else:
        levels = {lv for e in range(epochs) for lv in strategy.stage(e).levels}
    return sorted(levels)


# -- the pool (IO) -----------------------------------------------------------------------------------


def build_pool_meta(
    train: pd.DataFrame, hard: pd.DataFrame, manifest: pd.DataFrame, levels: list[float], holdout: list[str],
    num_classes: int, min_hard_share: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(real rows, synthetic rows) of the training pool, both with :data:`META_COLUMNS` (+ file_name).

    Synthetic rows are the kept variants of training hard images at ``levels``; held-out images and
    their variants are left out.
    """
    hard_ids = set(hard["sample_id"].astype(str))
    unknown = hard_ids - set(train["sample_id"].astype(str))
    if unknown:
        raise BadInputError(f"hard.csv lists {len(unknown)} ids that are not training images, e.g. {sorted(unknown)[0]!r}")
    held = set(holdout)
    t = train[~train["sample_id"].astype(str).isin(held)]
    tails = set(tail_classes(train["label"].to_numpy(), hard["label"].to_numpy(), num_classes, min_hard_share).tolist())
    real = pd.DataFrame({
        "kind": "real", "sample_id": t["sample_id"].astype(str).to_numpy(), "label": t["label"].to_numpy(dtype=np.int64),
        "lam": 1.0, "hard": t["sample_id"].astype(str).isin(hard_ids).to_numpy(),
    })
    real["tail"] = real["label"].isin(tails)
    m = manifest
    if len(m):
        keep = m["keep"].astype(str).str.lower().isin(["true", "1"]) if m["keep"].dtype != bool else m["keep"]
        m = m[keep.to_numpy() & m["sample_id"].astype(str).isin(hard_ids - held).to_numpy()]
        m = m[np.isin(np.round(m["lam"].to_numpy(dtype=np.float64), 6), np.round(levels, 6))]
    syn = pd.DataFrame({
        "kind": "synthetic", "sample_id": m["sample_id"].astype(str).to_numpy() if len(m) else [],
        "label": m["label"].to_numpy(dtype=np.int64) if len(m) else np.zeros(0, dtype=np.int64),
        "lam": m["lam"].to_numpy(dtype=np.float64) if len(m) else np.zeros(0),
        "hard": True, "file_name": m["file_name"].astype(str).to_numpy() if len(m) else [],
    })
    syn["tail"] = syn["label"].isin(tails)
    return real.reset_index(drop=True), syn.reset_index(drop=True)


def load_spectrum_images(spectrum_dir: Path, file_names, size: int, channels: int) -> torch.Tensor:
    """uint8 [N, C, size, size] of the synthetic PNGs (read once; small and medium runs)."""
    from PIL import Image

    from discl.data.base import to_model_tensor

    out = []
    for name in file_names:
        path = confine(Path(spectrum_dir), name)
        try:
            with Image.open(path) as img:
                out.append(to_model_tensor(img, size, channels))
        except FileNotFoundError:
            raise BadInputError(f"synthetic image {path} listed in filter/manifest.csv is missing") from None
        except OSError as e:
            raise BadInputError(f"synthetic image {path} cannot be read: {e}") from None
    if not out:
        return torch.zeros((0, channels, size, size), dtype=torch.uint8)
    return torch.stack(out)
