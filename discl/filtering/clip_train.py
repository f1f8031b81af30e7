"""Contrastive training and zero-shot evaluation of the embedded CLIP.

Recipe (the defaults of :class:`ClipTrainRecipe`, recorded next to the weights):
- data: the clean Fashion-MNIST prior pool (20k images, 2k per class); never task images;
- captions: one random template of :data:`TRAIN_TEMPLATES` per image and step;
- loss: CLIP's symmetric InfoNCE with *multi-positive* targets (every caption of the image's class
  in the batch is a positive), because with 10 classes a batch holds many same-class pairs that
  plain InfoNCE would push apart;
- augmentation (images only): flips, small shifts/rescales/rotations, brightness/contrast jitter,
  a smooth grey background behind the object, mild blur and noise, so that the image tower embeds
  re-framed, lower-contrast images on backgrounds sensibly;
- AdamW, warm-up + cosine, a learnable logit scale. Every random draw comes from a
  ``torch.Generator`` seeded by :func:`discl.seeding.derive_seed`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from discl.filtering.captions import TRAIN_TEMPLATES, ZERO_SHOT_TEMPLATES, captions_for
from discl.filtering.embedded_clip import (
    build_embedded_clip,
    build_tokenizer,
    load_model_config,
    normalize_batch,
)
from discl.seeding import torch_generator

log = logging.getLogger(__name__)


@dataclass
class ClipTrainRecipe:
    steps: int = 950
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 150
    seed: int = 0
    augment_prob: float = 0.8
    templates_per_step: int = 8
    threads: int = 1
    max_minutes: float | None = None  # stop early (cosine schedule still spans ``steps``)


# -- augmentation ----------------------------------------------------------------------------------


def _smooth_fields(n: int, size: int, g: torch.Generator, cells: int = 4) -> torch.Tensor:
    coarse = torch.rand((n, 1, cells, cells), generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def _blur_batch(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur of [N, 1, H, W] with sigma [N] (grouped separable convolution)."""
    r = 2
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)
    n, _, h, w = x.shape
    y = x.reshape(1, n, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(n, 1, 1, -1), groups=n)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(n, 1, -1, 1), groups=n)
    return y.reshape(n, 1, h, w)


def augment(x: torch.Tensor, g: torch.Generator, prob: float = 0.8) -> torch.Tensor:
    """Augment float images [N, 1, H, W] in [0, 1] (object bright on black, like Fashion-MNIST)."""
    n, _, h, w = x.shape

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g)

    def coin(p):
        return torch.rand(n, generator=g) < p

    active = coin(prob)
    flip = coin(0.5)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    # geometry: rescale, shift, small rotation
    scale = torch.where(active, u(0.7, 1.1), torch.ones(n))
    angle = torch.where(active, u(-0.15, 0.15), torch.zeros(n))
    dx, dy = torch.where(active, u(-3, 3), torch.zeros(n)), torch.where(active, u(-3, 3), torch.zeros(n))
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, -dx * 2 / w], 1), torch.stack([sin, cos, -dy * 2 / h], 1)], 1
    )
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # background + object contrast
    bg_on = active & coin(0.6)
    level, amp = u(0.05, 0.5), u(0.0, 0.25)
    bg = (level[:, None, None, None] + amp[:, None, None, None] * (_smooth_fields(n, h, g) - 0.5) * 2).clamp(0, 1)
    contrast = u(0.45, 1.0)[:, None, None, None]
    composed = bg * (1 - x) + contrast * x
    x = torch.where(bg_on[:, None, None, None], composed, x)
    # global brightness / contrast jitter
    jit = active & coin(0.5)
    c, b = u(0.6, 1.2)[:, None, None, None], u(-0.15, 0.15)[:, None, None, None]
    x = torch.where(jit[:, None, None, None], (x - 0.5) * c + 0.5 + b, x)
    # blur, noise
    blur_on = active & coin(0.4)
    x = torch.where(blur_on[:, None, None, None], _blur_batch(x, u(0.3, 1.0)), x)
    noise_on = active & coin(0.5)
    std = u(0.0, 0.05)[:, None, None, None]
    x = torch.where(noise_on[:, None, None, None], x + torch.randn(x.shape, generator=g) * std, x)
    return x.clamp(0, 1)


# -- loss ------------------------------------------------------------------------------------------


def multi_positive_clip_loss(img: torch.Tensor, txt: torch.Tensor, img_labels: torch.Tensor,
                             txt_labels: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where every same-label caption (image) counts as a positive of an image (caption)."""
    logits = scale * img @ txt.t()
    same = (img_labels[:, None] == txt_labels[None, :]).float()
    has_i, has_t = same.sum(1) > 0, same.sum(0) > 0
    i2t = -((same / same.sum(1, keepdim=True).clamp_min(1)) * logits.log_softmax(1)).sum(1)[has_i].mean()
    t2i = -((same.t() / same.sum(0)[:, None].clamp_min(1)) * logits.t().log_softmax(1)).sum(1)[has_t].mean()
    return (i2t + t2i) / 2


# -- training ----------------------------------------------------------------------------------------


def train_embedded_clip(recipe: ClipTrainRecipe, images: torch.Tensor, labels: np.ndarray, classes: list[str],
                        progress=None):
    """Train the embedded CLIP on uint8 images [N, 1, 28, 28]; returns (model, training log rows)."""
    torch.set_num_threads(recipe.threads)
    cfg = load_model_config()
    torch.manual_seed(recipe.seed)  # open_clip's initialisers draw from the global RNG
    model = build_embedded_clip(cfg)
    model.train()
    tokenizer = build_tokenizer(cfg)
    caps = captions_for(TRAIN_TEMPLATES, classes)
    tokens = tokenizer([c for row in caps for c in row]).view(len(TRAIN_TEMPLATES), len(classes), -1)
    labels_t = torch.tensor(np.asarray(labels), dtype=torch.long)
    data = images.float() / 255.0

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr, betas=(0.9, 0.98), eps=1e-6,
    )

    def lr_at(step):
        if step < recipe.warmup:
            return recipe.lr * (step + 1) / recipe.warmup
        t = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return recipe.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    g = torch_generator("embedded-clip-train", recipe.seed)
    rows, start, n = [], time.monotonic(), len(data)
    perm, pos = torch.randperm(n, generator=g), 0
    for step in range(recipe.steps):
        if pos + recipe.batch_size > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos : pos + recipe.batch_size]
        pos += recipe.batch_size
        y = labels_t[idx]
        x = normalize_batch(augment(data[idx], g, recipe.augment_prob), cfg)
        # a few templates per step, each image captioned by one of them; each distinct caption is
        # encoded once (the text tower then costs little next to the image tower)
        chosen = torch.randperm(len(TRAIN_TEMPLATES), generator=g)[: recipe.templates_per_step]
        tmpl = chosen[torch.randint(len(chosen), (len(idx),), generator=g)]
        pair = torch.unique(tmpl * len(classes) + y)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(tokens[pair // len(classes), pair % len(classes)]), dim=-1)
        loss = multi_positive_clip_loss(img, txt, y, pair % len(classes), model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        elapsed = time.monotonic() - start
        if step % 50 == 0 or step == recipe.steps - 1:
            rows.append({"step": step, "loss": float(loss.detach()), "lr": lr_at(step),
                         "logit_scale": float(model.logit_scale.detach().exp()), "seconds": round(elapsed, 1)})
            log.info("step %d/%d loss %.4f scale %.1f %.0fs", step, recipe.steps, float(loss.detach()),
                     float(model.logit_scale.detach().exp()), elapsed)
            if progress:
                progress(rows[-1])
        if recipe.max_minutes is not None and elapsed > recipe.max_minutes * 60:
            log.warning("stopping at step %d: max_minutes=%s reached", step, recipe.max_minutes)
            rows.append({"step": step, "loss": float(loss.detach()), "lr": lr_at(step),
                         "logit_scale": float(model.logit_scale.detach().exp()), "seconds": round(elapsed, 1), "stopped": True})
            break
    model.eval()
    return model, rows


def recipe_dict(recipe: ClipTrainRecipe) -> dict:
    return {**asdict(recipe), "templates": list(TRAIN_TEMPLATES), "zero_shot_templates": list(ZERO_SHOT_TEMPLATES)}
