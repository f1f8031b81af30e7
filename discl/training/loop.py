"""The training loop, readable top to bottom, run through Hugging Face ``accelerate``.

The same code trains on one CPU, one GPU (mixed precision), or several processes (DDP, launched
with ``accelerate launch`` or ``torchrun``). Batches are planned here: the epoch plan
(:mod:`discl.training.sampling`, or the curriculum's) lists pool indices, a generator seeded from
(seed, epoch) shuffles them, and process ``r`` of ``W`` takes every W-th item of each global batch,
cut from tensors in memory (:class:`TensorData`) or decoded from disk by DataLoader workers that
receive exactly those keys (:class:`~discl.data.streaming.StreamedSplit`). Nothing random uses the global RNG except layers such as dropout, whose RNG is re-seeded from
(seed, epoch) at each epoch start; so an interrupted run resumed from its last checkpoint ends with
exactly the weights of an uninterrupted one.

Per epoch the loop writes ``log.jsonl`` + ``log.csv`` (and accelerate trackers when
``cfg.log_with`` is set), a resumable ``checkpoint.safetensors`` and, when validation improves,
``best.safetensors`` + ``best.json``. The test split is never looked at here.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from discl.artifacts import atomic_write_json, atomic_write_text, clean_stale_temp, read_jsonl
from discl.curriculum.epochs import EpochPlanner, epoch_order, order_digest, rank_share
from discl.data.streaming import StreamedSplit, augment_samples
from discl.evaluation.metrics import compute_metrics
from discl.seeding import derive_seed, torch_generator
from discl.training.checkpoint import load_training_state, save_training_state, save_weights
from discl.training.config import TrainConfig
from discl.training.losses import classification_loss, log_prior
from discl.training.sampling import build_planner
from discl.training.transforms import augment_batch, to_float

logger = logging.getLogger(__name__)

__all__ = ["TensorData", "FitResult", "fit", "fit_classifier", "predict_proba", "evaluate", "lr_at",
           "create_accelerator", "build_optimizer"]


@dataclass
class TensorData:
    """Images uint8 [N, C, H, W] and labels int64 [N] held in memory."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self):
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(self.images.shape)}")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FitResult:
    model: nn.Module  # the selected weights (best on validation, or last)
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    completed: bool = True  # False when stopped early by ``stop_after_epoch``


# -- pieces -----------------------------------------------------------------------------------------


def create_accelerator(cfg: TrainConfig, project_dir: Path | None = None):
    """An Accelerator for this machine: CPU when no GPU, mixed precision only on GPU."""
    from accelerate import Accelerator

    use_cpu = not torch.cuda.is_available()
    mp = cfg.mixed_precision
    if use_cpu and mp != "no":
        logger.info("no GPU: mixed precision %s is off on the CPU", mp)
        mp = "no"
    kwargs: dict[str, Any] = {"cpu": use_cpu, "mixed_precision": mp}
    if cfg.log_with:
        kwargs["log_with"] = list(cfg.log_with)
        kwargs["project_dir"] = str(project_dir) if project_dir else None
    return Accelerator(**kwargs)


def log_world(accelerator, global_batch: int, per_process: int) -> None:
    """Say at the start of training how many processes train, so a launch that silently started
    fewer than asked is seen at once, not after the run: ``accelerate launch --num_processes 2 --cpu``
    starts *one* process (accelerate's simple launcher; torchrun starts W processes on CPUs)."""
    world = accelerator.num_processes
    if accelerator.is_main_process:
        logger.info("training on %d process(es) (world size %d, ranks 0..%d, %s, device %s); global batch %d = "
                    "%d per process", world, world, world - 1, accelerator.distributed_type.value,
                    accelerator.device, global_batch, per_process)
    if world == 1 and os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true":
        logger.warning("accelerate launch --cpu runs one process whatever --num_processes says; for several CPU "
                       "processes use torchrun --nproc_per_node N -m discl ...")


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Learning rate at global ``step`` and training ``progress`` in [0, 1] (epochs done / epochs).

    Linear warm-up over the first ``warmup_steps`` steps, then cosine decay to 0 over the progress.
    Progress rather than a step count, because curriculum epochs differ in size. Stateless.
    """
    scale = 1.0
    if cfg.warmup_steps > 0:
        scale = min(1.0, (step + 1) / cfg.warmup_steps)
    if cfg.schedule == "cosine":
        scale *= 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return cfg.lr * scale


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 512, device: torch.device | str | None = None) -> torch.Tensor:
    """Softmax probabilities [N, K] of uint8 images [N, C, H, W] (eval mode, no augmentation)."""
    logits = predict_logits(model, x, batch_size, device)
    return logits.softmax(-1)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512, device: torch.device | str | None = None) -> torch.Tensor:
    was_training = model.training
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    outs = []
    try:
        for i in range(0, len(x), batch_size):
            outs.append(model(to_float(x[i : i + batch_size].to(device))).float().cpu())
    finally:
        model.train(was_training)
    if not outs:
        return torch.zeros((0, 0))
    return torch.cat(outs)


def evaluate(model: nn.Module, data: TensorData | StreamedSplit, train_counts, many: int = 100, few: int = 20,
             class_names=None, batch_size: int = 512, accelerator=None) -> dict[str, Any]:
    """Metrics of ``model`` on ``data``; a streamed split is shared among the processes, gathered on all."""
    if isinstance(data, StreamedSplit):
        pred = predict_streamed(model, data, accelerator)
    else:
        pred = predict_logits(model, data.images, batch_size).argmax(-1)
    return compute_metrics(data.labels.numpy(), pred.numpy(), train_counts, many, few, class_names)


@torch.no_grad()
def predict_streamed(model: nn.Module, data: StreamedSplit, accelerator=None, logits: bool = False) -> torch.Tensor:
    """Predicted classes [N] (or logits [N, K]) of a streamed split, decoded in batches by its loader.

    With several processes, process r predicts items r, r+W, ... and the results are gathered, so
    each image is decoded once in all; every process gets the full result.
    """
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    mine = np.arange(rank, len(data), world)
    outs = []
    try:
        for x, _ in data.iter_eval(mine, pin_memory=device.type == "cuda"):
            out = model(to_float(x.to(device, non_blocking=True))).float().cpu()
            outs.append(out if logits else out.argmax(-1))
    finally:
        model.train(was_training)
    part = torch.cat(outs) if outs else torch.zeros((0,) if not logits else (0, 0))
    if world == 1:
        return part
    from accelerate.utils import gather_object

    pieces = gather_object([(mine, part)])
    full = None
    for where, values in pieces:
        if full is None:
            full = torch.zeros((len(data), *values.shape[1:]), dtype=values.dtype)
        full[torch.as_tensor(where)] = values
    return full


def _epoch_stream(train: StreamedSplit, items: np.ndarray, batches: list[np.ndarray], epoch: int, rank: int,
                  world: int, device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's share of each planned batch, decoded by the split's loader workers.

    A key carries the item's position in the epoch plan, so its augmentation does not depend on
    the number of processes or workers.
    """
    keys = [[(epoch, int(p), int(items[p])) for p in rank_share(positions, rank, world)] for positions in batches]
    return train.iter_train(keys, pin_memory=getattr(device, "type", str(device)) == "cuda")


def _sync_buffers(model: nn.Module, accelerator) -> None:
    """Give every process rank 0's batch-norm statistics so that evaluations agree across ranks."""
    if accelerator.num_processes == 1:
        return
    from accelerate.utils import broadcast

    for buf in model.buffers():
        buf.copy_(broadcast(buf.detach().clone(), from_process=0))


# -- the loop -------------------------------------------------------------------------------------


def fit(
    model: nn.Module,
    train: TensorData | StreamedSplit,
    val: TensorData | StreamedSplit | None,
    cfg: TrainConfig,
    *,
    num_classes: int,
    planner: EpochPlanner | None = None,
    out_dir: Path | None = None,
    seed: int | None = None,
    accelerator=None,
    train_counts=None,
    many: int = 100,
    few: int = 20,
    class_names=None,
    header: dict[str, Any] | None = None,
    stop_after_epoch: int | None = None,
    progress: bool | None = None,
) -> FitResult:
    """Train ``model`` on ``train`` for ``cfg.epochs`` epochs; select on ``val`` (never test).

    ``planner`` decides which pool items each epoch visits (default: all of them, or class-balanced
    resampling when ``cfg.sampler`` says so). ``out_dir``, when given, receives the logs and
    checkpoints, and a run found there is resumed from its last completed epoch.
    ``train_counts`` (per class, for the many/medium/few bins; default: the pool's label counts)
    and ``header`` (extra fields for best.safetensors, e.g. how to rebuild the model) are recorded.
    ``stop_after_epoch`` ends the run after that epoch as if interrupted (resume tests).
    """
    seed = cfg.seed if seed is None else int(seed)
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        clean_stale_temp(out_dir)
    accelerator = accelerator or create_accelerator(cfg, out_dir)
    device = accelerator.device
    labels_np = train.labels.numpy()
    planner = planner or build_planner(cfg.sampler, labels_np, seed)
    if train_counts is None:
        train_counts = np.bincount(labels_np, minlength=num_classes)
    world, rank = accelerator.num_processes, accelerator.process_index
    per_process = max(1, math.ceil(cfg.batch_size / world))
    global_batch = per_process * world
    log_world(accelerator, global_batch, per_process)

    model = model.to(device)
    optimizer = build_optimizer(model, cfg)

    start_epoch, step, best_score, history = 0, 0, -math.inf, []
    best_metrics: dict[str, Any] = {}
    best_state: dict[str, torch.Tensor] | None = None  # in-memory runs keep the best weights here
    ckpt_path = out_dir / "checkpoint.safetensors" if out_dir else None
    if ckpt_path is not None and ckpt_path.is_file():
        state = load_training_state(ckpt_path, model, optimizer)
        start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
        best_score = float(state.get("best_score", -math.inf))
        best_metrics = state.get("best", {})
        planner.load_state_dict(state.get("planner", {}))
        history = [r for r in read_jsonl(out_dir / "log.jsonl") if int(r["epoch"]) < start_epoch]
        logger.info("resuming %s after epoch %d of %d (step %d)", out_dir, start_epoch, cfg.epochs, step)

    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    if cfg.log_with:
        accelerator.init_trackers(out_dir.name if out_dir else "discl", config=_flat_config(cfg))
    show_bar = (sys.stderr.isatty() and accelerator.is_main_process) if progress is None else progress
    streamed = isinstance(train, StreamedSplit)
    batch_augment = train.batch_augment if streamed else True
    sample_mode = None if streamed or cfg.augmentation in ("auto", "pad_crop") else cfg.augmentation

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(derive_seed("train-global-rng", seed, epoch))  # dropout etc.: replayable
        plan = planner.plan(epoch)
        items = np.asarray(plan.indices, dtype=np.int64)
        prior = log_prior(np.bincount(labels_np[items], minlength=num_classes)).to(device)
        batches = epoch_order(len(items), global_batch, world, seed, epoch)
        aug_gen = torch_generator("train-augment", seed, epoch, rank)
        model.train()
        loss_sum, seen, n_steps, wait_s = 0.0, 0, len(batches), 0.0
        bar = _bar(n_steps, epoch, cfg.epochs, show_bar)
        stream = _epoch_stream(train, items, batches, epoch, rank, world, device) if streamed else None
        for b, positions in enumerate(batches):
            idx = rank_share(items[positions], rank, world)
            if stream is None:
                x, y = train.images[idx], train.labels[idx]
            else:
                t_wait = time.perf_counter()
                x, y = next(stream)
                wait_s += time.perf_counter() - t_wait
            if not cfg.augment or not batch_augment:
                x = to_float(x)
            elif sample_mode is not None:  # in memory, the streamed path's per-sample augmentation
                x = to_float(augment_samples(x, rank_share(positions, rank, world), seed, epoch, x.shape[-1], sample_mode))
            else:
                x = augment_batch(x, aug_gen)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            lr = lr_at(cfg, step, (epoch + b / max(n_steps, 1)) / cfg.epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with accelerator.autocast():
                if cfg.loss == "flyp":
                    loss = model(x, y)  # the CLIP classifier returns its contrastive loss given labels
                else:
                    loss = classification_loss(cfg.loss, model(x), y, prior)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if cfg.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.3f}", lr=f"{lr:.2e}")
        if bar is not None:
            bar.close()
        train_time = time.perf_counter() - t0

        # -- end of epoch: curriculum feedback, validation, logs, checkpoints ----------------------
        _sync_buffers(raw_model, accelerator)
        t1 = time.perf_counter()
        feedback = planner.after_epoch(epoch, lambda x: predict_proba(raw_model, x))
        feedback_time = time.perf_counter() - t1
        seen_all = int(accelerator.reduce(torch.tensor([seen], device=device), reduction="sum").item())
        row: dict[str, Any] = {
            "epoch": epoch, "step": step, "lr": lr_at(cfg, step, (epoch + 1) / cfg.epochs),
            "train_loss": loss_sum / max(seen, 1), "train_seen": seen_all,
            "train_time_s": round(train_time, 3), "feedback_time_s": round(feedback_time, 3),
            "order_digest": order_digest(np.concatenate([items[p] for p in batches]) if batches else items[:0]),
            **({"data_wait_s": round(wait_s, 3)} if streamed else {}),
            **_loggable(plan.info), **_loggable(feedback),
        }
        val_metrics = None
        if val is not None and len(val) and ((epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1):
            val_metrics = evaluate(raw_model, val, train_counts, many, few, class_names, accelerator=accelerator)
            row.update({"val_top1": val_metrics["top1"], "val_macro_f1": val_metrics["macro_f1"],
                        "val_few": val_metrics["few"], "val_many": val_metrics["many"], "val_medium": val_metrics["medium"]})
        score = _selection_score(cfg.select_on, val_metrics, epoch)
        improved = score is not None and score > best_score
        if improved:
            best_score = score
            best_metrics = {"epoch": epoch, "select_on": cfg.select_on, "score": score,
                            "val": {k: v for k, v in (val_metrics or {}).items() if k not in ("confusion",)}}
        row["best_epoch"] = best_metrics.get("epoch")
        history.append(row)
        if accelerator.is_main_process:
            logger.info("epoch %d/%d loss %.4f%s%s", epoch + 1, cfg.epochs, row["train_loss"],
                        f" val top1 {row['val_top1']:.4f}" if "val_top1" in row else "",
                        f" level λ={plan.info['stage']}" if plan.info.get("stage") else "")  # labelled: "λ=0.5", "λ=real"
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                if improved:
                    save_weights(out_dir / "best.safetensors", raw_model, {**(header or {}), "best": best_metrics})
                    atomic_write_json(out_dir / "best.json", best_metrics)
                _write_logs(out_dir, history)
                if (epoch + 1) % cfg.checkpoint_every == 0 or epoch == cfg.epochs - 1:
                    save_training_state(ckpt_path, raw_model, optimizer, {
                        "epoch": epoch, "step": step, "best_score": best_score, "best": best_metrics,
                        "planner": planner.state_dict(), "seed": seed, "world_size": world,
                    })
            elif improved:
                best_state = {k: v.detach().clone() for k, v in raw_model.state_dict().items()}
        if cfg.log_with:
            accelerator.log({k: v for k, v in row.items() if isinstance(v, int | float)}, step=epoch)
        accelerator.wait_for_everyone()
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < cfg.epochs - 1:
            if cfg.log_with:
                accelerator.end_training()
            return FitResult(raw_model, history, best_metrics, completed=False)

    if cfg.log_with:
        accelerator.end_training()
    # hand back the selected weights
    if cfg.select_on != "last" and best_metrics:
        if out_dir is not None and (out_dir / "best.safetensors").is_file():
            from discl.training.checkpoint import load_weights

            sd, _ = load_weights(out_dir / "best.safetensors")
            raw_model.load_state_dict(sd)
        elif best_state is not None:
            raw_model.load_state_dict(best_state)
    return FitResult(raw_model, history, best_metrics)


def _selection_score(select_on: str, val_metrics: dict | None, epoch: int) -> float | None:
    if select_on == "last":
        return float(epoch)
    if val_metrics is None:
        return None
    return float(val_metrics["top1" if select_on == "val_accuracy" else "macro_f1"])


def _loggable(d: dict[str, Any]) -> dict[str, Any]:
    """Flatten one level of nested dicts (``level_weights.0.1``) so rows fit a CSV."""
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                out[f"{k}.{kk}"] = vv
        elif isinstance(v, list | tuple):
            out[k] = " ".join(str(x) for x in v)
        else:
            out[k] = v
    return out


def _write_logs(out_dir: Path, history: list[dict[str, Any]]) -> None:
    import json

    atomic_write_text(out_dir / "log.jsonl", "".join(json.dumps(r, default=float) + "\n" for r in history))
    atomic_write_text(out_dir / "log.csv", pd.DataFrame(history).to_csv(index=False))


def _flat_config(cfg: TrainConfig) -> dict[str, Any]:
    from discl.configtools import to_dict

    return {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in to_dict(cfg).items()}


def _bar(total: int, epoch: int, epochs: int, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)


# -- convenience for other stages --------------------------------------------------------------------


def fit_classifier(
    x_train: torch.Tensor,
    y_train,
    x_val: torch.Tensor | None,
    y_val,
    cfg: TrainConfig,
    num_classes: int,
    seed: int,
    class_names: list[str] | None = None,
) -> nn.Module:
    """A classifier (``cfg.model``) trained in memory on uint8 images; best on val when given.

    Used by hard-sample mining for out-of-fold predictions; nothing is written to disk. A CLIP
    classifier (``model: clip``) needs ``class_names`` for its captions and zero-shot head.
    """
    from discl.training.models import create_classifier

    model = create_classifier(cfg, num_classes, x_train.shape[1], x_train.shape[-1], class_names, seed)
    val = TensorData(x_val, y_val) if x_val is not None and len(x_val) else None
    with torch.random.fork_rng(devices=[]):  # the loop re-seeds the global RNG per epoch; keep the caller's
        result = fit(model, TensorData(x_train, y_train), val, cfg, num_classes=num_classes, seed=seed, progress=False)
    return result.model.eval()
