"""Training recipes: the library entry points the pipeline and the CLI call.

- :func:`train_baseline` — phase 0, real data only: ``ce``, ``bs`` (balanced softmax) or ``cb``
  (class-balanced resampling with cross-entropy);
- :func:`train_curriculum` — phase 2, a curriculum strategy over the filtered spectrum;
- :func:`evaluate_checkpoint` — a saved ``best.safetensors`` on a test split.

Each training run writes ``RUN/train/<name>/``: ``config.yaml`` (resolved), ``log.csv`` +
``log.jsonl`` (one row per epoch), ``checkpoint.safetensors`` (resumable state), ``best.safetensors``
+ ``best.json`` (selected on validation) and ``metrics.json`` (the selected weights on the test
split(s)). A finished run with the same config is not redone; an interrupted one resumes.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from discl.artifacts import ArtifactError, atomic_write_json, read_json, read_table
from discl.config import RunConfig, save_config
from discl.data import build_dataset
from discl.data.base import ImageDataset
from discl.data.folder import record_skipped
from discl.evaluation.metrics import compute_metrics
from discl.methods import BASELINES, INIT_BASELINES, init_baseline
from discl.training.checkpoint import load_weights, read_header
from discl.training.config import TrainConfig
from discl.training.loop import TensorData, fit, predict_logits, predict_streamed
from discl.training.models import classifier_header, create_classifier

logger = logging.getLogger(__name__)

__all__ = ["train_baseline", "train_curriculum", "curriculum_digest", "baseline_run_digest", "evaluate_checkpoint", "load_classifier", "build_classifier",
           "BASELINE_VARIANTS", "test_splits"]

# variant -> (loss, sampler)
BASELINE_VARIANTS = {"ce": ("ce", "none"), "bs": ("balanced_softmax", "none"), "cb": ("ce", "class_balanced"),
                     "flyp": ("flyp", "none")}
assert tuple(BASELINE_VARIANTS) == BASELINES
_LOSS_ALIASES = {"ce": "ce", "bs": "balanced_softmax", "balanced_softmax": "balanced_softmax", "flyp": "flyp"}


def test_splits(ds: ImageDataset) -> list[str]:
    """The splits a task is tested on: ``test`` and, where it exists, the OOD ``test_ood``."""
    return [s for s in ("test", "test_ood") if s in ds.splits]


def build_classifier(tcfg: TrainConfig, num_classes: int, in_channels: int, image_size: int,
                     class_names: list[str], seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """(model, header): the header is stored in checkpoints and rebuilds the same architecture."""
    header = classifier_header(tcfg, num_classes, in_channels, image_size, class_names)
    model = create_classifier(tcfg, num_classes, in_channels, image_size, class_names, seed)
    if tcfg.init_from:
        sd, _ = load_weights(Path(tcfg.init_from))
        model.load_state_dict(sd)
        logger.info("initialised from %s", tcfg.init_from)
    return model, header


def load_classifier(ckpt: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model saved in ``best.safetensors`` (or a training-state file), rebuilt from its header."""
    header = read_header(ckpt)
    if "model" not in header:
        raise ArtifactError(f"{ckpt} has no discl model header (not written by discl train/baseline)")
    tcfg = TrainConfig(model=header["model"], pretrained=False,
                       clip_model=header.get("clip_model", "ViT-B-16"), clip_pretrained=None)
    model, _ = build_classifier(tcfg, header["num_classes"], header["in_channels"], header["image_size"],
                                header["class_names"], seed=0)
    sd, _ = load_weights(ckpt)
    model.load_state_dict(sd)
    return model.eval(), header


def eval_view(cfg: RunConfig, memory: bool) -> str:
    """The transform that evaluates an image (a split's metrics, the adaptive probes, training items
    that are not augmented), the same on both data paths: the streamed path's evaluation transform
    for the training view (:func:`stream_mode`: a centre crop for ``random_resized_crop`` and
    ``clip``), the letterbox for ``pad_crop`` and for ``auto`` in memory (whose training view is the
    letterbox). So a config evaluates the same pixels whether ``data.in_memory_limit_mb`` holds the
    images in memory or streams them."""
    aug = cfg.training.augmentation
    if aug == "pad_crop" or (memory and aug == "auto"):
        return "letterbox"
    return stream_mode(cfg.training)


def train_view(cfg: RunConfig, memory: bool) -> str:
    """The view the in-memory training tensors hold: the letterbox (the whole image, padded) when the
    trainer crops them (``augment`` on), else what the streamed path gives a training item that is not
    augmented: :func:`eval_view`."""
    return "letterbox" if cfg.training.augment else eval_view(cfg, memory)


def _view_tensors(ds: ImageDataset, sample_ids: list[str], cfg: RunConfig, mode: str) -> torch.Tensor:
    """uint8 tensors of ``sample_ids`` in view ``mode`` (:func:`eval_view`); the letterbox is ``ds.tensors``."""
    size, ch = cfg.data.image_size, cfg.data.channels
    if mode == "letterbox":
        return ds.tensors(sample_ids, size, ch)
    items, array = _stream_items(ds, sample_ids)
    return _decode_view(items, array, cfg, mode)


def _decode_view(items: list, array, cfg: RunConfig, mode: str) -> torch.Tensor:
    from discl.data.streaming import StreamedImages, decode_views, default_workers

    images = StreamedImages(items, np.zeros(len(items), dtype=np.int64), size=cfg.data.image_size,
                            channels=cfg.data.channels, mode=mode, seed=0, array=array,
                            max_pixels=cfg.data.max_image_pixels, background=cfg.data.alpha_background, augment=False)
    return decode_views(images, range(len(items)), default_workers(cfg.data.decode_workers))


def _spectrum_tensors(run_dir: Path, names: list[str], cfg: RunConfig, mode: str) -> torch.Tensor:
    """Spectrum images in view ``mode`` (the letterbox: :func:`load_spectrum_images`)."""
    from discl.artifacts import confine
    from discl.curriculum.stage_data import load_spectrum_images

    if mode == "letterbox":
        return load_spectrum_images(run_dir / "spectrum", names, cfg.data.image_size, cfg.data.channels)
    return _decode_view([str(confine(run_dir / "spectrum", n)) for n in names], None, cfg, mode)


def _tensors(ds: ImageDataset, split: str, cfg: RunConfig, run_dir: Path | None = None,
             mode: str = "letterbox") -> TensorData:
    """A split in memory, in view ``mode``; a user's image files are decoded once per run (:func:`_decoded_once`)."""
    frame = ds.split(split)
    ids = frame["sample_id"].tolist()
    size, ch = cfg.data.image_size, cfg.data.channels
    x = (_decoded_once(ds, ids, size, ch, run_dir, split, cfg, mode) if run_dir is not None
         else _view_tensors(ds, ids, cfg, mode))
    return TensorData(x, torch.as_tensor(frame["label"].to_numpy(dtype=np.int64).copy()))


def _decoded_once(ds: ImageDataset, sample_ids: list[str], size: int, channels: int, run_dir: Path, tag: str,
                  cfg: RunConfig, mode: str = "letterbox") -> torch.Tensor:
    """:func:`_view_tensors` cached in ``RUN/cache/decoded/``: the runs of a comparison (methods × seeds)
    decode a folder of image files once, not once each.

    The cache key covers the samples, their files' sizes and modification times, the view and the
    decoding settings, so an edited image or another ``image_size`` is decoded again. Embedded tasks
    (arrays in memory) are not cached.
    """
    import hashlib
    import json
    import os

    from safetensors.torch import load_file, save_file

    from discl.data.folder import FileImageDataset

    if not isinstance(ds, FileImageDataset) or not sample_ids:
        return _view_tensors(ds, sample_ids, cfg, mode)
    paths = [ds.root / p for p in ds.frame.loc[sample_ids, "path"]]
    stats = [(str(s), p.stat().st_size, p.stat().st_mtime_ns) for s, p in zip(sample_ids, paths)]
    view = [] if mode == "letterbox" else [mode]  # the letterbox keeps the keys of its existing caches
    key = hashlib.blake2b(json.dumps([str(ds.root), size, channels, ds.max_pixels, ds.background, stats, *view]).encode(),
                          digest_size=10).hexdigest()
    path = Path(run_dir) / "cache" / "decoded" / f"{tag}-{key}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))["images"]
        except Exception as e:  # noqa: BLE001 - a damaged cache file is decoded again, never trusted
            logger.warning("%s: unreadable cache (%s); decoding again", path, e)
    x = _view_tensors(ds, sample_ids, cfg, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"images": x.contiguous()}, str(tmp))
    os.replace(tmp, path)
    return x


def in_memory(cfg: RunConfig, ds: ImageDataset) -> bool:
    """Whether training holds the images as tensors (``data.in_memory``; ``auto``: when they fit).

    ``auto`` keeps the embedded tasks (already arrays) in memory, and a user's dataset when all its
    images at ``image_size`` fit in ``data.in_memory_limit_mb``. The decision depends on the real
    data only, so every method of a comparison (baselines, curricula with their synthetic images)
    takes the same path and the same augmentation. Only datasets of image files can be streamed.
    """
    from discl.data.base import ArrayImageDataset
    from discl.data.folder import FileImageDataset
    from discl.data.streaming import estimate_bytes

    choice = cfg.data.in_memory
    if not isinstance(ds, ArrayImageDataset | FileImageDataset):
        return True
    if choice != "auto":
        return bool(choice)
    if isinstance(ds, ArrayImageDataset):
        return True
    need = estimate_bytes(len(ds.frame), cfg.data.image_size, cfg.data.channels)
    return need <= cfg.data.in_memory_limit_mb * 2**20


def stream_mode(tcfg: TrainConfig) -> str:
    """The streamed path's transform (:mod:`discl.data.streaming`) for ``training.augmentation``."""
    if tcfg.augmentation == "pad_crop":
        return "letterbox"
    if tcfg.augmentation == "auto":
        return "clip" if tcfg.model == "clip" else "random_resized_crop"
    return tcfg.augmentation


def _stream_items(ds: ImageDataset, sample_ids) -> tuple[list, Any]:
    """(items, array) for :class:`~discl.data.streaming.StreamedImages`: file paths, or array rows."""
    from discl.data.base import ArrayImageDataset

    if isinstance(ds, ArrayImageDataset):
        return [int(r) for r in ds.frame.loc[list(sample_ids), "row"]], ds.images
    return [str(ds.root / p) for p in ds.frame.loc[list(sample_ids), "path"]], None


def _streamed(cfg: RunConfig, items, labels, array=None, train: bool = False):
    from discl.data.streaming import StreamedImages, StreamedSplit

    tcfg = cfg.training
    images = StreamedImages(items, labels, size=cfg.data.image_size, channels=cfg.data.channels, mode=stream_mode(tcfg),
                            seed=tcfg.seed, array=array, max_pixels=cfg.data.max_image_pixels,
                            background=cfg.data.alpha_background, augment=train and tcfg.augment)
    return StreamedSplit(images, num_workers=tcfg.num_workers, eval_batch_size=max(tcfg.batch_size, 64))


def _real_pool_tensors(ds: ImageDataset, train_frame, ids: list[str], cfg: RunConfig, run_dir: Path) -> torch.Tensor:
    """The curriculum pool's real images; image files come from the run's decoded train split."""
    from discl.data.folder import FileImageDataset

    size, ch = cfg.data.image_size, cfg.data.channels
    mode = train_view(cfg, True)
    train_ids = train_frame["sample_id"].tolist()
    where = pd.Index(train_ids).get_indexer(ids)
    if not isinstance(ds, FileImageDataset) or (where < 0).any():
        return _view_tensors(ds, ids, cfg, mode)
    return _decoded_once(ds, train_ids, size, ch, run_dir, "train", cfg, mode)[torch.as_tensor(where)]


def _split_data(ds: ImageDataset, split: str, cfg: RunConfig, memory: bool, train: bool = False,
                run_dir: Path | None = None):
    """A split as :class:`TensorData` (in memory, in :func:`train_view` for training, else
    :func:`eval_view`) or a streamed split decoded by loader workers."""
    if memory:
        return _tensors(ds, split, cfg, run_dir, train_view(cfg, True) if train else eval_view(cfg, True))
    frame = ds.split(split)
    items, array = _stream_items(ds, frame["sample_id"].tolist())
    return _streamed(cfg, items, frame["label"].to_numpy(dtype=np.int64), array, train)


def _evaluate(model: nn.Module, ds: ImageDataset, cfg: RunConfig, split: str, train_counts,
              memory: bool = True, run_dir: Path | None = None) -> dict[str, Any]:
    data = _split_data(ds, split, cfg, memory, run_dir=run_dir)
    if memory:
        pred = predict_logits(model, data.images).argmax(-1)
    else:
        pred = predict_streamed(model, data)
    return compute_metrics(data.labels.numpy(), pred.numpy(), train_counts, cfg.data.many_threshold,
                           cfg.data.few_threshold, ds.classes)


def evaluate_checkpoint(cfg: RunConfig, ckpt: str | Path, split: str = "test") -> dict[str, Any]:
    """Metrics of a saved classifier on ``split`` (bins from the training-set class counts)."""
    ds = build_dataset(cfg.data)
    if split not in ds.splits:
        raise ArtifactError(f"task {ds.name} has no split {split!r} (splits: {', '.join(ds.splits)})")
    model, _ = load_classifier(Path(ckpt))
    return _evaluate(model, ds, cfg, split, ds.class_counts("train"), in_memory(cfg, ds))


def _finish(out_dir: Path, cfg: RunConfig, ds: ImageDataset, result, digest: str, extra: dict[str, Any],
            memory: bool = True) -> dict[str, Any]:
    counts = ds.class_counts("train")
    metrics: dict[str, Any] = {"digest": digest, **extra, "torch_threads": torch.get_num_threads(), "best": result.best,
                               "epochs": len(result.history),
                               "synthetic_seen": int(sum(r.get("n_synthetic", 0) for r in result.history)),
                               "train_seen": int(sum(r.get("train_seen", 0) for r in result.history))}
    for split in test_splits(ds):
        metrics[split] = _evaluate(result.model, ds, cfg, split, counts, memory, out_dir.parent.parent)
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def _done(out_dir: Path, digest: str) -> dict[str, Any] | None:
    path = out_dir / "metrics.json"
    if path.is_file():
        try:
            m = read_json(path)
        except ArtifactError:
            return None
        if m.get("digest") == digest:
            logger.info("%s is complete; not retraining", out_dir)
            return m
    return None


def _prepare_out(out_dir: Path, cfg: RunConfig, digest: str) -> None:
    """Save the resolved config; a stale checkpoint from another config is set aside, not resumed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / "digest.json"
    if marker.is_file() and read_json(marker).get("digest") != digest:
        for name in ("checkpoint.safetensors", "best.safetensors", "best.json", "metrics.json", "log.csv", "log.jsonl"):
            p = out_dir / name
            if p.exists():
                p.unlink()
        logger.info("%s: its inputs changed (config, data, upstream artifacts or weights), starting over", out_dir)
    atomic_write_json(marker, {"digest": digest})
    save_config(cfg, out_dir / "config.yaml")


def _baseline_config(cfg: RunConfig, variant: str, seed: int) -> RunConfig:
    """``cfg`` as baseline ``variant`` trains with it: its loss and sampler, the seed, no baseline init."""
    if variant not in BASELINE_VARIANTS:
        raise ValueError(f"unknown baseline variant {variant!r} ({', '.join(BASELINE_VARIANTS)})")
    loss, sampler = BASELINE_VARIANTS[variant]
    init = None if cfg.training.init_from in INIT_BASELINES else cfg.training.init_from  # a baseline starts fresh
    tcfg = dataclasses.replace(cfg.training, loss=loss, sampler=sampler, seed=int(seed), init_from=init)
    return dataclasses.replace(cfg, training=tcfg)


def baseline_run_digest(cfg: RunConfig, variant: str = "ce", seed: int = 0, fingerprints: dict | None = None) -> str:
    """The digest a baseline run records in its metrics.json (and ``discl run`` in its marker):
    :func:`discl.digests.baseline_digest` of the config as the run uses it."""
    from discl.digests import baseline_digest, data_content, stage_fingerprints

    cfg = _baseline_config(cfg, variant, seed)
    return baseline_digest(cfg, variant, seed, stage_fingerprints(cfg, "train") if fingerprints is None else fingerprints,
                           content=data_content(cfg))


def train_baseline(cfg: RunConfig, run_dir: str | Path | None = None, variant: str = "ce", seed: int = 0,
                   accelerator=None, stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train on the real data only; writes ``RUN/train/<variant>-s<seed>/`` and returns metrics.json."""
    digest = baseline_run_digest(cfg, variant, seed)
    cfg = _baseline_config(cfg, variant, seed)
    tcfg = cfg.training
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_path
    out_dir = run_dir / "train" / f"{variant}-s{seed}"
    if (done := _done(out_dir, digest)) is not None:
        return done
    ds = build_dataset(cfg.data)
    # weights are loaded before the run's folder is made: a bad weights file leaves nothing behind
    model, header = build_classifier(tcfg, len(ds.classes), cfg.data.channels, cfg.data.image_size, ds.classes, seed)
    _prepare_out(out_dir, cfg, digest)
    record_skipped(ds, run_dir, f"baseline {variant}-s{seed}")
    memory = in_memory(cfg, ds)
    train = _split_data(ds, "train", cfg, memory, train=True, run_dir=run_dir)
    val = _split_data(ds, "val", cfg, memory, run_dir=run_dir)
    result = fit(model, train, val, tcfg, num_classes=len(ds.classes), out_dir=out_dir, seed=seed,
                 accelerator=accelerator, train_counts=ds.class_counts("train"), many=cfg.data.many_threshold,
                 few=cfg.data.few_threshold, class_names=ds.classes, header=header, stop_after_epoch=stop_after_epoch)
    if not result.completed:
        return {"completed": False}
    return _finish(out_dir, cfg, ds, result, digest, {"kind": "baseline", "variant": variant, "seed": int(seed)}, memory)


def baseline_checkpoint(init_from: str | None, run_dir: Path, seed: int, cfg: RunConfig | None = None) -> Path | None:
    """The checkpoint ``training.init_from`` names when it is a baseline of this run (``ce``, ``bs``,
    ``cb``): the same seed's ``RUN/train/<baseline>-s<seed>/best.safetensors``, which must exist.
    The authors fine-tune the long-tail curriculum from a CE model; ``init_from: ce`` does that
    inside one run (``discl run`` trains the baseline first). None for a file path or no init.

    With ``cfg``, the baseline must also be a *finished* run of that config (its metrics.json holds
    the digest the config gives it): ``best.safetensors`` is written at every validation improvement,
    so an interrupted baseline, or one trained before a ``training.*`` change, is refused rather than
    fine-tuned from."""
    if init_from not in BASELINE_VARIANTS:
        return None
    path = Path(run_dir) / "train" / f"{init_from}-s{seed}" / "best.safetensors"
    make = (f"`discl baseline -c CONFIG --seeds {seed}` with {init_from!r} in methods, or `discl run`, which "
            f"trains it before the curriculum")
    if not path.is_file():
        raise ArtifactError(f"training.init_from={init_from!r}: {path} does not exist; train that baseline first ({make})")
    if cfg is not None:
        metrics = path.parent / "metrics.json"
        try:
            recorded = read_json(metrics).get("digest") if metrics.is_file() else None
        except ArtifactError:
            recorded = None
        if recorded != baseline_run_digest(cfg, init_from, seed):
            state = "is unfinished (no metrics.json)" if recorded is None else "was trained with other settings"
            raise ArtifactError(f"training.init_from={init_from!r}: {path.parent} {state}; finish or retrain that "
                                f"baseline with this config first ({make})")
    return path


def load_curriculum_inputs(run_dir: Path, needs_manifest: bool = True) -> tuple[Any, Any]:
    """(hard set, filtered spectrum manifest) of a run; clear errors when a stage has not run.

    A strategy that trains on no synthetic level (``real_only``) needs no manifest: a run whose only
    curriculum method is ``real_only`` has no generate/filter stages, and gets an empty one."""
    hard_path, manifest_path = run_dir / "mining" / "hard.csv", run_dir / "filter" / "manifest.csv"
    if not hard_path.is_file():
        raise ArtifactError(f"missing {hard_path}: run `discl mine` first")
    if not needs_manifest and not manifest_path.is_file():
        return read_table(hard_path), pd.DataFrame(columns=["sample_id", "label", "lam", "keep", "file_name"])
    if not manifest_path.is_file():
        raise ArtifactError(f"missing {manifest_path}: run `discl generate` and `discl filter` first")
    return read_table(hard_path), read_table(manifest_path)


def _curriculum_config(cfg: RunConfig, strategy_name: str | None, seed: int, loss: str | None) -> RunConfig:
    """``cfg`` as a curriculum run trains with it: its strategy, loss and seed, and ``init_from:
    baseline`` resolved to the baseline of that loss."""
    strategy_name = strategy_name or cfg.curriculum.strategy
    loss_name = _LOSS_ALIASES.get(loss or cfg.training.loss)
    if loss_name is None:
        raise ValueError(f"unknown loss {loss!r} (ce, bs, flyp)")
    init = init_baseline(cfg.training.init_from, loss_name) or cfg.training.init_from
    tcfg = dataclasses.replace(cfg.training, loss=loss_name, seed=int(seed), init_from=init)
    return dataclasses.replace(cfg, training=tcfg, curriculum=dataclasses.replace(cfg.curriculum, strategy=strategy_name))


def curriculum_digest(cfg: RunConfig, run_dir: str | Path | None = None, strategy_name: str | None = None,
                      seed: int = 0, loss: str | None = None, fingerprints: dict | None = None) -> str:
    """The digest a curriculum run records in its metrics.json (and ``discl run`` in its marker):
    :func:`discl.digests.curriculum_run_digest` of the config as the run uses it, with ``hard.csv``,
    the filter manifest and a baseline checkpoint it starts from taken by content from ``run_dir``."""
    from discl.digests import (
        FILTER,
        HARD,
        curriculum_run_digest,
        data_content,
        file_digest,
        stage_fingerprints,
    )

    cfg = _curriculum_config(cfg, strategy_name, seed, loss)
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_path
    init = ""
    if cfg.training.init_from in BASELINE_VARIANTS:  # "" until the baseline exists (then the run cannot start)
        init = file_digest(run_dir / "train" / f"{cfg.training.init_from}-s{seed}" / "best.safetensors") or "missing"
    fps = stage_fingerprints(cfg, "train") if fingerprints is None else fingerprints
    return curriculum_run_digest(cfg, seed, file_digest(run_dir / HARD), file_digest(run_dir / FILTER), init, fps,
                                 content=data_content(cfg))


def train_curriculum(cfg: RunConfig, run_dir: str | Path | None = None, strategy_name: str | None = None,
                     seed: int = 0, loss: str | None = None, name: str | None = None, accelerator=None,
                     stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train with a curriculum over the filtered spectrum; writes ``RUN/train/<name>/``.

    ``name`` defaults to ``<method>-s<seed>`` (:func:`discl.methods.method_for`: ``discl`` for the
    configured strategy, ``bs+mixed`` for another strategy and loss), the folder ``discl run`` and
    the report use for the same method. The held-out progress images are chosen from
    the run seed (``cfg.seed``), so every training seed and every strategy that uses them trains on
    the same pool.
    """
    from discl.curriculum.base import create_strategy
    from discl.curriculum.sampler import Curriculum
    from discl.curriculum.stage_data import needed_levels
    from discl.methods import method_for, run_folder

    run_dir = Path(run_dir) if run_dir is not None else cfg.run_path
    digest = curriculum_digest(cfg, run_dir, strategy_name, seed, loss)
    name = name or run_folder(method_for(strategy_name, loss, cfg.curriculum.strategy, cfg.training.loss), seed)
    cfg = _curriculum_config(cfg, strategy_name, seed, loss)
    tcfg, strategy_name, loss_name = cfg.training, cfg.curriculum.strategy, cfg.training.loss
    out_dir = run_dir / "train" / name
    if not (run_dir / "mining" / "hard.csv").is_file():  # the earliest missing stage is named first
        load_curriculum_inputs(run_dir)
    if (init_ckpt := baseline_checkpoint(tcfg.init_from, run_dir, seed, cfg)) is not None:
        tcfg = dataclasses.replace(tcfg, init_from=str(init_ckpt))  # fine-tuned from exactly these weights (in the digest)
    if (done := _done(out_dir, digest)) is not None:
        return done
    ds = build_dataset(cfg.data)
    strategy = create_strategy(strategy_name, cfg.curriculum, tcfg.epochs, seed)
    synthetic = strategy.needs_feedback or bool(needed_levels(strategy, cfg.curriculum, tcfg.epochs))
    hard, manifest = load_curriculum_inputs(run_dir, needs_manifest=synthetic)
    levels = needed_levels(strategy, cfg.curriculum, tcfg.epochs)
    available = {round(float(v), 6) for v in manifest["lam"]} if len(manifest) else set()
    missing = [lv for lv in levels if round(lv, 6) not in available]
    if missing:  # before the run's folder exists: nothing half-made is left behind
        own = strategy_name in ("text_only", "single")  # their level is not curriculum.levels
        raise ArtifactError(f"strategy {strategy_name!r} needs λ = {', '.join(f'{v:g}' for v in missing)} but "
                            f"{run_dir}/filter/manifest.csv has only λ = {', '.join(f'{v:g}' for v in sorted(available))}; "
                            f"add them to generation.levels and rerun generate and filter"
                            + ("" if own else " (or change curriculum.levels)"))
    k = len(ds.classes)
    # weights are loaded before the run's folder is made: a bad weights file leaves nothing behind
    model, header = build_classifier(tcfg, k, cfg.data.channels, cfg.data.image_size, ds.classes, seed)
    _prepare_out(out_dir, cfg, digest)
    record_skipped(ds, run_dir, f"train {name}")
    train_frame = ds.split("train")
    # the same object a user's own loop drives (discl.create_curriculum): one implementation of the epochs
    memory = in_memory(cfg, ds)
    planner = Curriculum.from_frames(strategy, cfg.curriculum, train_frame, hard, manifest, tcfg.epochs, k, seed, cfg.seed,
                                     probes=lambda held: _probes(ds, manifest, held, cfg, run_dir, memory))
    meta, holdout = planner.meta, planner.holdout
    real_meta = meta[meta["kind"] == "real"]
    syn_meta = pd.DataFrame({"file_name": planner.synthetic_files, "lam": meta.loc[meta["kind"] != "real", "lam"].to_numpy()})
    if memory:
        x_real = _real_pool_tensors(ds, train_frame, real_meta["sample_id"].tolist(), cfg, run_dir)
        x_syn = _spectrum_tensors(run_dir, syn_meta["file_name"].tolist(), cfg, train_view(cfg, True))
        pool = TensorData(torch.cat([x_real, x_syn]), torch.as_tensor(meta["label"].to_numpy(dtype=np.int64).copy()))
    else:
        from discl.artifacts import confine

        real_items, array = _stream_items(ds, real_meta["sample_id"].tolist())
        syn_items = [str(confine(run_dir / "spectrum", name)) for name in syn_meta["file_name"]]
        pool = _streamed(cfg, real_items + syn_items, meta["label"].to_numpy(dtype=np.int64), array, train=True)
    logger.info("curriculum %s: %d real + %d synthetic images in the pool, %d held out, levels %s",
                strategy_name, len(real_meta), len(syn_meta), len(holdout), levels)
    kept = set(np.round(syn_meta["lam"].to_numpy(dtype=float), 6)) if "lam" in syn_meta and len(syn_meta) else set()
    if empty := [lv for lv in levels if round(lv, 6) not in kept]:  # a stage of that level trains on real images only
        logger.warning("curriculum %s: no synthetic image of λ = %s is in the pool (none kept by the filter, or all "
                       "held out); its stages train on real images only: lower filtering.threshold or check "
                       "filter/manifest.csv", strategy_name, ", ".join(f"{v:g}" for v in empty))
    val = _split_data(ds, "val", cfg, memory, run_dir=run_dir)
    result = fit(model, pool, val, tcfg, num_classes=k, planner=planner, out_dir=out_dir, seed=seed,
                 accelerator=accelerator, train_counts=ds.class_counts("train"), many=cfg.data.many_threshold,
                 few=cfg.data.few_threshold, class_names=ds.classes, header=header, stop_after_epoch=stop_after_epoch)
    if not result.completed:
        return {"completed": False}
    if levels and len(syn_meta) and not any(r.get("n_synthetic", 0) for r in result.history):
        logger.warning("curriculum %s: no synthetic image was drawn in any epoch although %d are in the pool "
                       "(the tail slots were filled by real images: see n_tail_* in log.csv); this run is "
                       "real-only in effect", strategy_name, len(syn_meta))
    return _finish(out_dir, cfg, ds, result, digest, {
        "kind": "curriculum", "strategy": strategy_name, "loss": loss_name, "seed": int(seed),
        "holdout": len(holdout), "pool_real": len(real_meta), "pool_synthetic": len(syn_meta),
    }, memory)


def _probes(ds: ImageDataset, manifest, holdout: list[str], cfg: RunConfig, run_dir: Path, memory: bool):
    """Held-out images per candidate level: their kept variants at λ, and the real images for λ=1,
    all in the evaluation view of the training view (:func:`eval_view`), on both data paths: the
    learning progress is measured on what the model is evaluated on, not on another transform."""
    from discl.curriculum.base import is_real

    mode = eval_view(cfg, memory)
    frame = ds.frame.loc[holdout] if holdout else ds.frame.iloc[:0]
    probes = {}
    keep = manifest["keep"].astype(str).str.lower().isin(["true", "1"]).to_numpy() if len(manifest) else []
    for lv in cfg.curriculum.levels:
        if is_real(lv):
            x = _view_tensors(ds, list(holdout), cfg, mode)
            y = torch.as_tensor(frame["label"].to_numpy(dtype=np.int64).copy())
            ids = [str(h) for h in holdout]
        else:
            rows = manifest[keep & manifest["sample_id"].astype(str).isin(set(holdout)).to_numpy()
                            & np.isclose(manifest["lam"].to_numpy(dtype=float), lv)]
            rows = rows.sort_values(["sample_id", "k"] if "k" in rows.columns else ["sample_id"])
            x = _spectrum_tensors(run_dir, rows["file_name"].tolist(), cfg, mode)
            y = torch.as_tensor(rows["label"].to_numpy(dtype=np.int64).copy())
            ids = rows["sample_id"].astype(str).tolist()
        probes[round(float(lv), 6)] = (x, y, ids)  # ids: the paired gap in the log
    return probes
