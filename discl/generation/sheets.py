"""Contact sheets of generated images (for docs and eyeballing the spectrum)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from discl.artifacts import atomic_write_bytes


def save_grid(images: torch.Tensor | list[Image.Image], nrow: int, path: Path, pad: int = 2, scale: int = 2) -> None:
    """Tile uint8 [N,C,H,W] tensors (or same-size PIL images) row-major into one PNG."""
    if isinstance(images, list):
        arrs = [np.asarray(im.convert("L")) for im in images]
    else:
        arrs = [im[0].numpy() if im.shape[0] == 1 else im.float().mean(0).round().byte().numpy() for im in images]
    h, w = arrs[0].shape
    rows = (len(arrs) + nrow - 1) // nrow
    sheet = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=np.uint8)
    for i, a in enumerate(arrs):
        r, c = divmod(i, nrow)
        sheet[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = a
    img = Image.fromarray(sheet, mode="L")
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
