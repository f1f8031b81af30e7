"""Batch transforms on uint8 tensors: scaling to [0, 1] and seeded augmentation.

Augmentation is the CIFAR recipe (random crop after edge padding + horizontal flip), vectorised
over the batch and driven by an explicit ``torch.Generator`` so that a resumed run sees the same
crops. Edge (replicate) padding rather than zeros: the embedded tasks have textured backgrounds and
a black frame would be a give-away artefact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["to_float", "augment_batch", "crop_padding"]


def to_float(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def crop_padding(image_size: int) -> int:
    """2 pixels at 28x28 (the embedded tasks), proportionally more for larger images."""
    return max(1, round(image_size / 14))


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int | None = None, flip: bool = True) -> torch.Tensor:
    """Random crop (padding ``pad``) + horizontal flip of a uint8 or float batch; returns float [0, 1]."""
    x = to_float(x)
    b, _, h, w = x.shape
    if b == 0:
        return x
    pad = crop_padding(h) if pad is None else pad
    offs = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        rows = (offs[:, 0:1] + torch.arange(h)).view(b, 1, h, 1)
        cols = (offs[:, 1:2] + torch.arange(w)).view(b, 1, 1, w)
        bi = torch.arange(b).view(b, 1, 1, 1)
        ci = torch.arange(x.shape[1]).view(1, -1, 1, 1)
        x = padded[bi, ci, rows, cols]
    if flip:
        x = torch.where(flips.view(b, 1, 1, 1), x.flip(-1), x)
    return x
