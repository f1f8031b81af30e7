"""The one dataset interface every stage uses.

A dataset is a table of samples (``sample_id``, ``label``, ``class_name``, ``split``, optional
``path`` and metadata columns) plus a way to fetch each sample's image. Embedded tasks keep their
images in memory; folder/CSV datasets read files lazily with clear errors on bad files.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

REQUIRED_COLUMNS = ("sample_id", "label", "class_name", "split")


class ImageDataset:
    """Samples of one task. ``frame`` is indexed by ``sample_id``."""

    def __init__(self, name: str, classes: Sequence[str], frame: pd.DataFrame):
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"dataset {name}: frame lacks columns {missing}")
        if frame["sample_id"].duplicated().any():
            dup = frame.loc[frame["sample_id"].duplicated(), "sample_id"].iloc[0]
            raise ValueError(f"dataset {name}: duplicate sample id {dup!r}")
        self.name = name
        self.classes = list(classes)
        self.frame = frame.set_index("sample_id", drop=False)

    # -- table views -------------------------------------------------------------------------
    def split(self, split: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == split]

    @property
    def splits(self) -> list[str]:
        return sorted(self.frame["split"].unique())

    def class_counts(self, split: str = "train") -> np.ndarray:
        labels = self.split(split)["label"].to_numpy()
        return np.bincount(labels, minlength=len(self.classes))

    # -- images ------------------------------------------------------------------------------
    def image(self, sample_id: str) -> Image.Image:
        raise NotImplementedError

    def tensors(self, sample_ids: Sequence[str], size: int, channels: int) -> torch.Tensor:
        """uint8 tensor [N, C, size, size] of the samples, converted by :func:`to_model_tensor`."""
        if len(sample_ids) == 0:
            return torch.zeros((0, channels, size, size), dtype=torch.uint8)
        return torch.stack([to_model_tensor(self.image(s), size, channels) for s in sample_ids])


class ArrayImageDataset(ImageDataset):
    """Images held in a uint8 array [N, H, W] or [N, H, W, C]; ``frame.row`` indexes it."""

    def __init__(self, name: str, classes: Sequence[str], frame: pd.DataFrame, images: np.ndarray):
        if "row" not in frame.columns:
            frame = frame.assign(row=np.arange(len(frame)))
        super().__init__(name, classes, frame)
        self.images = images

    def image(self, sample_id: str) -> Image.Image:
        arr = self.images[int(self.frame.at[sample_id, "row"])]
        return Image.fromarray(arr)

    def tensors(self, sample_ids: Sequence[str], size: int, channels: int) -> torch.Tensor:
        rows = self.frame.loc[list(sample_ids), "row"].to_numpy()
        arr = torch.from_numpy(np.ascontiguousarray(self.images[rows]))
        if arr.ndim == 3:
            arr = arr.unsqueeze(1)
        else:
            arr = arr.permute(0, 3, 1, 2)
        if arr.shape[-1] != size:
            return super().tensors(sample_ids, size, channels)
        if arr.shape[1] != channels:
            arr = arr.expand(-1, channels, -1, -1).contiguous() if arr.shape[1] == 1 else (
                arr.float().mean(1, keepdim=True).round().to(torch.uint8)
            )
        return arr


def to_model_tensor(img: Image.Image, size: int, channels: int) -> torch.Tensor:
    """An image as uint8 [C, size, size]: aspect ratio kept, padded with black to a square."""
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        w, h = img.size
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
        canvas = Image.new(img.mode, (size, size))
        canvas.paste(img, ((size - nw) // 2, (size - nh) // 2))
        img = canvas
    arr = np.asarray(img, dtype=np.uint8)
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
