"""Baselines derived from the same seed's CE model (the long-tail field's cheap controls).

- ``la`` — post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment",
  ICLR 2021, eq. 9): predict ``argmax_y f_y(x) - τ·log π_y`` with ``π`` the training-set class
  frequencies. No retraining. ``τ`` is chosen on the validation split from :data:`LA_TAUS` with the
  run's selection metric (``training.select_on``); ties go to the smallest ``τ`` (the least change).
- ``crt`` — classifier re-training (Kang et al., "Decoupling Representation and Classifier for
  Long-Tailed Recognition", ICLR 2020, cRT): the CE model's representation is kept fixed (every
  backbone weight *and* batch-norm statistic), the linear head is re-initialised and trained alone
  with class-balanced sampling, for ``training.epochs`` epochs: the epochs a DisCL run fine-tuned
  from CE (``training.init_from: ce``) gets, so it is that run's equal-compute control.
- ``ce_long`` — CE continued from the CE checkpoint for those same epochs (fresh optimizer, the
  same learning-rate schedule a fine-tuned DisCL run gets): the control for "more CE epochs".

Each writes ``RUN/train/<method>-s<seed>/metrics.json`` in the format of the other runs (``kind``
``derived``, ``base`` the CE run it starts from); its digest holds the CE checkpoint's content
digest, so a retrained CE model redoes it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from discl.config import RunConfig
from discl.data import build_dataset
from discl.data.folder import record_skipped
from discl.evaluation.metrics import compute_metrics
from discl.methods import DERIVED

logger = logging.getLogger(__name__)

__all__ = ["DERIVED", "LA_TAUS", "log_prior", "adjust_logits", "choose_tau", "classifier_head", "freeze_all_but_head",
           "train_derived"]

BASE = "ce"  # every DERIVED method starts from the same seed's ``ce`` run
LA_TAUS = tuple(round(0.25 * i, 2) for i in range(9))  # 0, 0.25, ..., 2.0 (Menon et al. use τ = 1)
_SELECT_METRIC = {"val_accuracy": "top1", "val_macro_f1": "macro_f1", "last": "top1"}


# -- pure decisions -------------------------------------------------------------------------------


def log_prior(class_counts: Sequence[int]) -> np.ndarray:
    """log of the training class frequencies; an absent class gets the frequency of half an image
    (finite, and lower than any present class) so that its adjusted logit stays finite."""
    counts = np.asarray(class_counts, dtype=np.float64)
    counts = np.where(counts > 0, counts, 0.5)
    return np.log(counts / counts.sum())


def adjust_logits(logits: np.ndarray, prior_log: np.ndarray, tau: float) -> np.ndarray:
    """Menon et al.'s post-hoc adjustment: ``logits - τ·log π``."""
    return np.asarray(logits, dtype=np.float64) - float(tau) * np.asarray(prior_log, dtype=np.float64)[None, :]


def choose_tau(val_logits: np.ndarray, val_labels: np.ndarray, prior_log: np.ndarray, taus: Sequence[float],
               metric: str, score_fn) -> tuple[float, dict[float, float]]:
    """(chosen τ, {τ: validation score}): the best ``score_fn(labels, predictions)[metric]``; ties go to
    the smallest τ. Only the validation split is read (never the test split)."""
    if not len(taus):
        raise ValueError("choose_tau: empty grid of τ values")
    scores = {}
    for tau in sorted(float(t) for t in taus):
        pred = adjust_logits(val_logits, prior_log, tau).argmax(-1)
        scores[tau] = float(score_fn(val_labels, pred)[metric])
    best = max(scores.values())
    return next(t for t, s in scores.items() if s == best), scores


# -- models ---------------------------------------------------------------------------------------


def classifier_head(model: nn.Module) -> nn.Linear:
    """The final linear layer of a discl / timm / torchvision classifier (``fc``, ``classifier`` or
    ``head``, inside the ``Normalized`` wrapper)."""
    net = getattr(model, "net", model)
    for attr in ("fc", "classifier", "head"):
        head = getattr(net, attr, None)
        if isinstance(head, nn.Linear):
            return head
        if isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear):
            return head[-1]
    raise ValueError(f"crt needs a classifier with a linear head (fc/classifier/head); {type(net).__name__} has none "
                     "(a CLIP classifier's head is its text tower: use ce_long or la instead)")


def freeze_all_but_head(model: nn.Module, head: nn.Module) -> None:
    """Only ``head`` trains: every other parameter stops requiring gradients, and ``model.train()``
    keeps every module but the head in eval mode -- leaves and containers alike (timm's
    ``BatchNormAct2d`` is a batch norm with children; its ``forward_head`` reads the root's flag for
    dropout) -- so batch-norm statistics and dropout of the fixed representation do not change
    either (Kang et al.'s fixed features)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    module_train = type(model).train

    def train(self: nn.Module, mode: bool = True) -> nn.Module:
        module_train(self, False)
        head.train(mode)
        return self

    object.__setattr__(model, "train", train.__get__(model))
    model.train(model.training)


# -- runners --------------------------------------------------------------------------------------


def train_derived(cfg: RunConfig, run_dir: str | Path, method: str, seed: int = 0,
                  taus: Sequence[float] = LA_TAUS, stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Build ``la`` / ``crt`` / ``ce_long`` of ``seed`` from ``RUN/train/ce-s<seed>/best.safetensors``."""
    from discl.training.recipe import baseline_checkpoint

    if method not in DERIVED:
        raise ValueError(f"unknown derived baseline {method!r} ({', '.join(DERIVED)})")
    run_dir = Path(run_dir)
    ckpt = baseline_checkpoint(BASE, run_dir, seed, cfg)
    if method == "la":
        return _train_la(cfg, run_dir, ckpt, seed, taus)
    return _train_finetune(cfg, run_dir, method, ckpt, seed, stop_after_epoch)


def derived_digest(cfg: RunConfig, run_dir: str | Path, method: str, seed: int = 0,
                   fingerprints: dict | None = None, taus: Sequence[float] = LA_TAUS) -> str:
    """The digest a derived run records in its metrics.json (and ``discl run`` in its marker): the
    CE run's own digest (the data and training keys it reads, its weights), the content of the CE
    checkpoint it starts from (a retrained CE model redoes it), the method and, for ``la``, its τ grid."""
    from discl.digests import digest_of, file_digest
    from discl.training.recipe import baseline_run_digest

    ckpt = Path(run_dir) / "train" / f"{BASE}-s{seed}" / "best.safetensors"
    return digest_of({"derived": method, "seed": int(seed), "base_run": baseline_run_digest(cfg, BASE, seed, fingerprints),
                      "base_weights": file_digest(ckpt) or "missing",
                      "taus": sorted({round(float(t), 6) for t in taus}) if method == "la" else None})


def _base_cfg(cfg: RunConfig, seed: int, **training: Any) -> RunConfig:
    tcfg = dataclasses.replace(cfg.training, seed=int(seed), init_from=None, **training)
    return dataclasses.replace(cfg, training=tcfg)


def _train_la(cfg: RunConfig, run_dir: Path, ckpt: Path, seed: int, taus: Sequence[float]) -> dict[str, Any]:
    from discl.artifacts import atomic_write_json
    from discl.training.loop import predict_logits, predict_streamed
    from discl.training.recipe import (
        _done,
        _prepare_out,
        _split_data,
        in_memory,
        load_classifier,
        test_splits,
    )

    grid = sorted({round(float(t), 6) for t in taus})
    digest = derived_digest(cfg, run_dir, "la", seed, taus=grid)  # of the config as discl run sees it
    cfg = _base_cfg(cfg, seed, loss="ce", sampler="none")
    out_dir = run_dir / "train" / f"la-s{seed}"
    if (done := _done(out_dir, digest)) is not None:
        return done
    _prepare_out(out_dir, cfg, digest)
    ds = build_dataset(cfg.data)
    record_skipped(ds, run_dir, f"la-s{seed}")
    counts = ds.class_counts("train")
    model, _ = load_classifier(ckpt)
    prior_log = log_prior(counts)
    d = cfg.data

    def score(labels, pred):
        return compute_metrics(labels, pred, counts, d.many_threshold, d.few_threshold, ds.classes)

    memory = in_memory(cfg, ds)  # the same images and evaluation transform as the CE run it adjusts

    def logits(data) -> np.ndarray:
        return (predict_logits(model, data.images) if memory else predict_streamed(model, data, logits=True)).numpy()

    val = _split_data(ds, "val", cfg, memory, run_dir=run_dir)
    metric = _SELECT_METRIC[cfg.training.select_on]
    tau, scores = choose_tau(logits(val), val.labels.numpy(), prior_log, grid, metric, score)
    logger.info("la seed %d: τ = %s chosen on val %s (%s)", seed, tau, metric,
                ", ".join(f"{t:g}: {s:.4f}" for t, s in scores.items()))
    metrics: dict[str, Any] = {
        "digest": digest, "kind": "derived", "variant": "la", "base": f"{BASE}-s{seed}", "seed": int(seed),
        "torch_threads": torch.get_num_threads(), "tau": tau, "tau_select_on": f"val.{metric}",
        "tau_grid": grid, "tau_val_scores": {str(t): s for t, s in scores.items()},
        "best": {"select_on": f"val.{metric}", "score": scores[tau], "tau": tau},
        "epochs": 0, "synthetic_seen": 0, "train_seen": 0,
    }
    for split in test_splits(ds):
        data = _split_data(ds, split, cfg, memory, run_dir=run_dir)
        pred = adjust_logits(logits(data), prior_log, tau).argmax(-1)
        metrics[split] = score(data.labels.numpy(), pred)
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def _train_finetune(cfg: RunConfig, run_dir: Path, method: str, ckpt: Path, seed: int,
                    stop_after_epoch: int | None) -> dict[str, Any]:
    from discl.training.loop import fit
    from discl.training.recipe import _done, _finish, _prepare_out, _split_data, build_classifier, in_memory
    from discl.training.sampling import build_planner

    sampler = "class_balanced" if method == "crt" else "none"
    digest = derived_digest(cfg, run_dir, method, seed)  # of the config as discl run sees it
    cfg = _base_cfg(cfg, seed, loss="ce", sampler=sampler)
    tcfg = cfg.training
    out_dir = run_dir / "train" / f"{method}-s{seed}"
    if (done := _done(out_dir, digest)) is not None:
        return done
    _prepare_out(out_dir, cfg, digest)
    ds = build_dataset(cfg.data)
    record_skipped(ds, run_dir, f"{method}-s{seed}")
    memory = in_memory(cfg, ds)  # the path and augmentation the CE run it starts from took
    train = _split_data(ds, "train", cfg, memory, train=True, run_dir=run_dir)
    val = _split_data(ds, "val", cfg, memory, run_dir=run_dir)
    k = len(ds.classes)
    model, header = build_classifier(dataclasses.replace(tcfg, init_from=str(ckpt)), k, cfg.data.channels,
                                     cfg.data.image_size, ds.classes, seed)
    extra: dict[str, Any] = {"kind": "derived", "variant": method, "base": f"{BASE}-s{seed}", "seed": int(seed)}
    if method == "crt":
        head = classifier_head(model)
        from discl.seeding import derive_seed

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed("crt-head-init", int(seed)))
            head.reset_parameters()  # Kang et al. re-initialise the classifier before re-training it
        freeze_all_but_head(model, head)
        labels = train.labels.numpy()
        draws = np.bincount(labels[build_planner(sampler, labels, seed).plan(0).indices], minlength=k)
        extra.update({"trainable_params": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
                      "epoch0_class_draws": [int(c) for c in draws]})
    result = fit(model, train, val, tcfg, num_classes=k, out_dir=out_dir, seed=seed,
                 train_counts=ds.class_counts("train"), many=cfg.data.many_threshold, few=cfg.data.few_threshold,
                 class_names=ds.classes, header=header, stop_after_epoch=stop_after_epoch)
    if not result.completed:
        return {"completed": False}
    return _finish(out_dir, cfg, ds, result, digest, extra, memory)
