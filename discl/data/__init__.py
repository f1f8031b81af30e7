"""Datasets: the embedded Fashion-MNIST tasks and the user's own folders/CSVs behind one interface."""

from __future__ import annotations

from discl.data.base import ArrayImageDataset, ImageDataset, to_model_tensor
from discl.data.config import DataConfig

__all__ = ["ArrayImageDataset", "ImageDataset", "DataConfig", "build_dataset", "to_model_tensor"]


def build_dataset(cfg: DataConfig) -> ImageDataset:
    """The task's dataset from its config (embedded tasks are built in memory, deterministically).

    Datasets are read-only; the last few are cached per config and data listing
    (:func:`discl.data.identity.listing_digest`) so that the stages of one run (and the report) do
    not rebuild them, and a dataset changed on disk in the same process (a sweep, a notebook) is
    read again, never served from the cache.
    """
    import json

    from discl.configtools import to_dict
    from discl.data.identity import listing_digest

    key = json.dumps(to_dict(cfg), sort_keys=True) + listing_digest(cfg)
    if key not in _CACHE:
        while len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _build(cfg)
    return _CACHE[key]


_CACHE: dict[str, ImageDataset] = {}


def _build(cfg: DataConfig) -> ImageDataset:
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
    if cfg.task == "split_files":
        from discl.data.folder import load_split_files

        return load_split_files(cfg)
    if cfg.task == "iwildcam":
        from discl.data.wilds import load_iwildcam

        return load_iwildcam(cfg)
    raise ValueError(f"unknown task {cfg.task!r}")
