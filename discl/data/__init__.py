"""Datasets: the embedded Fashion-MNIST tasks and the user's own folders/CSVs behind one interface."""

from __future__ import annotations

from discl.data.base import ArrayImageDataset, ImageDataset, to_model_tensor
from discl.data.config import DataConfig

__all__ = ["ArrayImageDataset", "ImageDataset", "DataConfig", "build_dataset", "to_model_tensor"]


def build_dataset(cfg: DataConfig) -> ImageDataset:
    """The task's dataset from its config (embedded tasks are built in memory, deterministically)."""
    if cfg.task in ("fmnist-lt", "fmnist-lq"):
        from discl.data.tasks import build_task

        return build_task(cfg.task, seed=cfg.seed, folder=cfg.root, val_per_class=cfg.val_per_class,
                          test_limit=cfg.test_limit)
    if cfg.task == "folder":
        from discl.data.folder import load_folder_dataset

        return load_folder_dataset(cfg)
    if cfg.task == "csv":
        from discl.data.folder import load_csv_dataset

        return load_csv_dataset(cfg)
    if cfg.task == "iwildcam":
        from discl.data.wilds import load_iwildcam

        return load_iwildcam(cfg)
    raise ValueError(f"unknown task {cfg.task!r}")
