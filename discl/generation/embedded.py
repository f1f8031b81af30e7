"""The ``embedded`` backend: image-guided generation with the shipped Fashion-MNIST diffusion prior.

The prompt's class is the job's label (the prior is class-conditional, not text-conditional); the
prompt is still recorded in the manifest. Sources are converted to grayscale at the prior's
resolution once per distinct source; outputs are upsampled back to each source's size.
"""

from __future__ import annotations

import logging

import torch
from PIL import Image

from discl.data.base import to_model_tensor
from discl.errors import BadInputError
from discl.generation.base import GenerationBatch
from discl.generation.config import GenerationConfig
from discl.generation.prior import from_model_space, load_prior, sdedit, to_model_space

logger = logging.getLogger(__name__)


class EmbeddedGenerator:
    name = "embedded"

    def __init__(self, cfg: GenerationConfig):
        folder = None if cfg.model in ("", "embedded") else cfg.model
        self.prior = load_prior(folder)
        self.model_id = "embedded" if folder is None else str(folder)
        self.device = torch.device("cpu" if cfg.device == "auto" and not torch.cuda.is_available()
                                   else ("cuda" if cfg.device == "auto" else cfg.device))
        self.prior.unet.to(self.device)

    @property
    def denoiser(self):
        return self.prior.unet

    def generate(self, batch: GenerationBatch) -> list[Image.Image]:
        r = self.prior.resolution
        bad = [lab for lab in batch.labels if not 0 <= int(lab) < self.prior.num_classes]
        if bad:
            raise BadInputError(f"embedded prior knows classes 0..{self.prior.num_classes - 1}, got label {bad[0]}")
        # each distinct source once
        encoded: dict[str, tuple[torch.Tensor, tuple[int, int], str]] = {}
        for key, img in zip(batch.source_keys, batch.sources):
            if key not in encoded:
                side = max(img.size)
                u8 = to_model_tensor(img, side, 1)[None]
                encoded[key] = (to_model_space(u8, r)[0], (img.size[1], img.size[0]), img.mode)
        src = torch.stack([encoded[k][0] for k in batch.source_keys]).to(self.device)
        noise = torch.stack([torch.randn((1, r, r), generator=torch.Generator().manual_seed(int(s)))
                             for s in batch.seeds]).to(self.device)
        labels = torch.as_tensor([int(v) for v in batch.labels], device=self.device)
        x = sdedit(self.prior, src, labels, noise, batch.steps, batch.strength, batch.guidance_scale,
                   text_to_image=batch.text_to_image).cpu()
        out = []
        for i, key in enumerate(batch.source_keys):
            _, size, mode = encoded[key]
            u8 = from_model_space(x[i:i + 1], size)[0, 0].numpy()
            img = Image.fromarray(u8, mode="L")
            out.append(img.convert("RGB") if mode not in ("L", "1", "I", "I;16", "F") else img)
        return out
