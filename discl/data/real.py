"""The real images of a ``discl run`` folder's dataset as a map-style torch Dataset.

A user's own loop needs its real training set with the ``sample_id`` values the run mined and generated
from (:func:`discl.create_curriculum` matches the spectrum to the real images by them). For a run's own
data (an embedded task, a folder, a CSV) :func:`load_real_split` rebuilds the dataset from the
resolved config the run saved, so the ids and labels are exactly the ones ``discl train`` uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from discl.artifacts import ArtifactError

__all__ = ["RealSplit", "load_real_split"]


class RealSplit:
    """One split of a run's dataset: ``split[i]`` is ``(transform(image), label)`` (a PIL image without
    ``transform``); ``sample_ids`` and ``labels`` list every item in order, without decoding images.

    Images come in the run's mode (``channels``: 1 → ``L``, 3 → ``RGB``), as ``discl train`` sees
    them, whatever mode each file has: one transform then fits a folder of mixed RGB and grayscale
    files (default collate would otherwise fail on a [1, H, W] beside a [3, H, W] tensor)."""

    def __init__(self, dataset, split: str, transform: Callable | None = None, channels: int | None = None):
        if split not in dataset.splits:
            raise ArtifactError(f"the run's dataset {dataset.name!r} has no split {split!r} (splits: {', '.join(dataset.splits)})")
        frame = dataset.split(split)
        self.dataset, self.split, self.transform = dataset, split, transform
        self.sample_ids: list[str] = frame["sample_id"].astype(str).tolist()
        self.labels: np.ndarray = frame["label"].to_numpy(dtype=np.int64)
        self.classes: list[str] = list(dataset.classes)
        self.mode = {1: "L", 3: "RGB"}.get(channels) if channels else None

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, i: int):
        image = self.dataset.image(self.sample_ids[int(i)])
        if self.mode is not None and image.mode != self.mode:
            image = image.convert(self.mode)
        return (self.transform(image) if self.transform is not None else image), int(self.labels[int(i)])


def load_real_split(run_dir: str | Path, split: str = "train", transform: Callable | None = None) -> RealSplit:
    """``split`` of the dataset a run was made from (its saved ``RUN/config.yaml``)."""
    from discl.config import load_config
    from discl.data import build_dataset

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ArtifactError(f"missing {path}: not a `discl run` folder (or the run has not started)")
    cfg = load_config(path)
    return RealSplit(build_dataset(cfg.data), split, transform, channels=cfg.data.channels)
