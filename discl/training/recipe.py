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
from discl.config import RunConfig, save_config, section_digest
from discl.data import build_dataset
from discl.data.base import ImageDataset
from discl.evaluation.metrics import compute_metrics
from discl.methods import BASELINES
from discl.training.checkpoint import load_weights, read_header
from discl.training.config import TrainConfig
from discl.training.loop import TensorData, fit, predict_logits

logger = logging.getLogger(__name__)

__all__ = ["train_baseline", "train_curriculum", "curriculum_digest", "evaluate_checkpoint", "load_classifier", "build_classifier",
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
    header = {"model": tcfg.model, "num_classes": num_classes, "in_channels": in_channels,
              "image_size": image_size, "class_names": list(class_names)}
    if tcfg.model == "clip":
        from discl.training.clip import create_clip_classifier

        header.update({"clip_model": tcfg.clip_model, "clip_pretrained": tcfg.clip_pretrained})
        model = create_clip_classifier(tcfg.clip_model, tcfg.clip_pretrained, class_names, seed=seed)
    else:
        from discl.training.models import create_model

        model = create_model(tcfg.model, num_classes, in_channels, image_size,
                             pretrained=tcfg.pretrained_path or tcfg.pretrained, seed=seed)
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


def _tensors(ds: ImageDataset, split: str, cfg: RunConfig) -> TensorData:
    frame = ds.split(split)
    x = ds.tensors(frame["sample_id"].tolist(), cfg.data.image_size, cfg.data.channels)
    return TensorData(x, torch.as_tensor(frame["label"].to_numpy(dtype=np.int64).copy()))


def _evaluate(model: nn.Module, ds: ImageDataset, cfg: RunConfig, split: str, train_counts) -> dict[str, Any]:
    data = _tensors(ds, split, cfg)
    pred = predict_logits(model, data.images).argmax(-1)
    return compute_metrics(data.labels.numpy(), pred.numpy(), train_counts, cfg.data.many_threshold,
                           cfg.data.few_threshold, ds.classes)


def evaluate_checkpoint(cfg: RunConfig, ckpt: str | Path, split: str = "test") -> dict[str, Any]:
    """Metrics of a saved classifier on ``split`` (bins from the training-set class counts)."""
    ds = build_dataset(cfg.data)
    if split not in ds.splits:
        raise ArtifactError(f"task {ds.name} has no split {split!r} (splits: {', '.join(ds.splits)})")
    model, _ = load_classifier(Path(ckpt))
    return _evaluate(model, ds, cfg, split, ds.class_counts("train"))


def _finish(out_dir: Path, cfg: RunConfig, ds: ImageDataset, result, digest: str, extra: dict[str, Any]) -> dict[str, Any]:
    counts = ds.class_counts("train")
    metrics: dict[str, Any] = {"digest": digest, **extra, "torch_threads": torch.get_num_threads(), "best": result.best,
                               "epochs": len(result.history),
                               "synthetic_seen": int(sum(r.get("n_synthetic", 0) for r in result.history)),
                               "train_seen": int(sum(r.get("train_seen", 0) for r in result.history))}
    for split in test_splits(ds):
        metrics[split] = _evaluate(result.model, ds, cfg, split, counts)
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
        logger.info("%s: the config changed, starting over", out_dir)
    atomic_write_json(marker, {"digest": digest})
    save_config(cfg, out_dir / "config.yaml")


def train_baseline(cfg: RunConfig, run_dir: str | Path | None = None, variant: str = "ce", seed: int = 0,
                   accelerator=None, stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train on the real data only; writes ``RUN/train/<variant>-s<seed>/`` and returns metrics.json."""
    if variant not in BASELINE_VARIANTS:
        raise ValueError(f"unknown baseline variant {variant!r} ({', '.join(BASELINE_VARIANTS)})")
    loss, sampler = BASELINE_VARIANTS[variant]
    init = None if cfg.training.init_from in BASELINE_VARIANTS else cfg.training.init_from  # a baseline starts fresh
    tcfg = dataclasses.replace(cfg.training, loss=loss, sampler=sampler, seed=int(seed), init_from=init)
    cfg = dataclasses.replace(cfg, training=tcfg)
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_path
    out_dir = run_dir / "train" / f"{variant}-s{seed}"
    digest = section_digest(cfg, "data", "training") + f"-baseline-{variant}" + weights_suffix(cfg, ("training",))
    if (done := _done(out_dir, digest)) is not None:
        return done
    _prepare_out(out_dir, cfg, digest)
    ds = build_dataset(cfg.data)
    train, val = _tensors(ds, "train", cfg), _tensors(ds, "val", cfg)
    model, header = build_classifier(tcfg, len(ds.classes), cfg.data.channels, cfg.data.image_size, ds.classes, seed)
    result = fit(model, train, val, tcfg, num_classes=len(ds.classes), out_dir=out_dir, seed=seed,
                 accelerator=accelerator, train_counts=ds.class_counts("train"), many=cfg.data.many_threshold,
                 few=cfg.data.few_threshold, class_names=ds.classes, header=header, stop_after_epoch=stop_after_epoch)
    if not result.completed:
        return {"completed": False}
    return _finish(out_dir, cfg, ds, result, digest, {"kind": "baseline", "variant": variant, "seed": int(seed)})


def baseline_checkpoint(init_from: str | None, run_dir: Path, seed: int) -> Path | None:
    """The checkpoint ``training.init_from`` names when it is a baseline of this run (``ce``, ``bs``,
    ``cb``): the same seed's ``RUN/train/<baseline>-s<seed>/best.safetensors``, which must exist.
    The authors fine-tune the long-tail curriculum from a CE model; ``init_from: ce`` does that
    inside one run (``discl run`` trains the baseline first). None for a file path or no init."""
    if init_from not in BASELINE_VARIANTS:
        return None
    path = Path(run_dir) / "train" / f"{init_from}-s{seed}" / "best.safetensors"
    if not path.is_file():
        raise ArtifactError(
            f"training.init_from={init_from!r}: {path} does not exist; train that baseline first "
            f"(`discl baseline -c CONFIG --seeds {seed}` with {init_from!r} in methods, or `discl run`, which "
            f"trains it before the curriculum)")
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


def weights_suffix(cfg: RunConfig, sections: tuple[str, ...]) -> str:
    """``-w<digest>`` of the weights the given config sections load (:mod:`discl.fingerprint`), or ""
    when they load none: a run whose synthetic images or pretrained weights changed behind the same
    config is trained again instead of returning its old metrics."""
    from discl.fingerprint import fingerprints_digest, model_fingerprints

    fps = model_fingerprints(cfg, sections)
    return f"-w{fingerprints_digest(fps)}" if fps else ""


def curriculum_digest(cfg: RunConfig) -> str:
    """Digest of what a curriculum training run depends on. Curriculum keys read only by other
    strategies are left out (:func:`discl.curriculum.config.digest_view`): a new option does not
    retrain finished runs of the strategies that ignore it.
    """
    from types import SimpleNamespace

    from discl.curriculum.config import digest_view

    sections = ("data", "training", "curriculum", "mining", "generation", "filtering")
    view = SimpleNamespace(**{s: getattr(cfg, s) for s in sections})
    view.curriculum = digest_view(cfg.curriculum)
    return section_digest(view, *sections) + "-curriculum"


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
    from discl.curriculum.stage_data import (
        CurriculumPlanner,
        build_pool_meta,
        load_spectrum_images,
        needed_levels,
        select_holdout,
    )
    from discl.methods import method_for, run_folder

    name = name or run_folder(method_for(strategy_name, loss, cfg.curriculum.strategy, cfg.training.loss), seed)
    strategy_name = strategy_name or cfg.curriculum.strategy
    loss_name = _LOSS_ALIASES.get(loss or cfg.training.loss)
    if loss_name is None:
        raise ValueError(f"unknown loss {loss!r} (ce, bs, flyp)")
    tcfg = dataclasses.replace(cfg.training, loss=loss_name, seed=int(seed))
    cfg = dataclasses.replace(cfg, training=tcfg, curriculum=dataclasses.replace(cfg.curriculum, strategy=strategy_name))
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_path
    out_dir = run_dir / "train" / name
    digest = curriculum_digest(cfg) + weights_suffix(cfg, ("generation", "filtering", "training"))
    if (init_ckpt := baseline_checkpoint(tcfg.init_from, run_dir, seed)) is not None:
        from discl.fingerprint import file_digests

        digest += f"-init-{file_digests([init_ckpt])[0][:16]}"  # fine-tuned from exactly these weights
        tcfg = dataclasses.replace(tcfg, init_from=str(init_ckpt))
    if (done := _done(out_dir, digest)) is not None:
        return done
    ds = build_dataset(cfg.data)
    strategy = create_strategy(strategy_name, cfg.curriculum, tcfg.epochs, seed)
    synthetic = strategy.needs_feedback or bool(needed_levels(strategy, cfg.curriculum, tcfg.epochs))
    hard, manifest = load_curriculum_inputs(run_dir, needs_manifest=synthetic)
    _prepare_out(out_dir, cfg, digest)
    k = len(ds.classes)
    train_frame = ds.split("train")
    holdout = select_holdout(hard, cfg.curriculum.holdout_per_class, cfg.seed) if strategy.uses_holdout else []
    levels = needed_levels(strategy, cfg.curriculum, tcfg.epochs)
    available = set(np.round(manifest["lam"].to_numpy(dtype=float), 6)) if len(manifest) else set()
    missing = [lv for lv in levels if round(lv, 6) not in available]
    if missing:
        raise ArtifactError(f"strategy {strategy_name!r} needs λ={missing} but {run_dir}/filter/manifest.csv has "
                            f"only {sorted(available)}; generate those levels or change curriculum.levels")
    real_meta, syn_meta = build_pool_meta(train_frame, hard, manifest, levels, holdout, k,
                                          cfg.curriculum.tail_min_hard_share)
    size, ch = cfg.data.image_size, cfg.data.channels
    x_real = ds.tensors(real_meta["sample_id"].tolist(), size, ch)
    x_syn = load_spectrum_images(run_dir / "spectrum", syn_meta["file_name"].tolist(), size, ch)
    meta = pd.concat([real_meta, syn_meta.drop(columns=["file_name"])], ignore_index=True)
    pool = TensorData(torch.cat([x_real, x_syn]), torch.as_tensor(meta["label"].to_numpy(dtype=np.int64).copy()))
    probes = _probes(ds, manifest, holdout, cfg, run_dir) if strategy.needs_feedback else {}
    planner = CurriculumPlanner(strategy, meta, cfg.curriculum, seed, probes)
    logger.info("curriculum %s: %d real + %d synthetic images in the pool, %d held out, levels %s",
                strategy_name, len(real_meta), len(syn_meta), len(holdout), levels)
    val = _tensors(ds, "val", cfg)
    model, header = build_classifier(tcfg, k, ch, size, ds.classes, seed)
    result = fit(model, pool, val, tcfg, num_classes=k, planner=planner, out_dir=out_dir, seed=seed,
                 accelerator=accelerator, train_counts=ds.class_counts("train"), many=cfg.data.many_threshold,
                 few=cfg.data.few_threshold, class_names=ds.classes, header=header, stop_after_epoch=stop_after_epoch)
    if not result.completed:
        return {"completed": False}
    return _finish(out_dir, cfg, ds, result, digest, {
        "kind": "curriculum", "strategy": strategy_name, "loss": loss_name, "seed": int(seed),
        "holdout": len(holdout), "pool_real": len(real_meta), "pool_synthetic": len(syn_meta),
    })


def _probes(ds: ImageDataset, manifest, holdout: list[str], cfg: RunConfig, run_dir: Path):
    """Held-out images per candidate level: their kept variants at λ, and the real images for λ=1."""
    from discl.curriculum.base import is_real
    from discl.curriculum.stage_data import load_spectrum_images

    size, ch = cfg.data.image_size, cfg.data.channels
    frame = ds.frame.loc[holdout] if holdout else ds.frame.iloc[:0]
    probes = {}
    keep = manifest["keep"].astype(str).str.lower().isin(["true", "1"]).to_numpy() if len(manifest) else []
    for lv in cfg.curriculum.levels:
        if is_real(lv):
            x = ds.tensors(list(holdout), size, ch)
            y = torch.as_tensor(frame["label"].to_numpy(dtype=np.int64).copy())
        else:
            rows = manifest[keep & manifest["sample_id"].astype(str).isin(set(holdout)).to_numpy()
                            & np.isclose(manifest["lam"].to_numpy(dtype=float), lv)]
            rows = rows.sort_values(["sample_id", "k"] if "k" in rows.columns else ["sample_id"])
            x = load_spectrum_images(run_dir / "spectrum", rows["file_name"].tolist(), size, ch)
            y = torch.as_tensor(rows["label"].to_numpy(dtype=np.int64).copy())
        probes[round(float(lv), 6)] = (x, y)
    return probes
