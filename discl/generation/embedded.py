"""The ``embedded`` backend: image-guided generation with the shipped Fashion-MNIST diffusion prior.

The prompt's class is the job's label (the prior is class-conditional, not text-conditional); the
prompt is still recorded in the manifest. Sources are converted to grayscale once per distinct
source and generated at their own aspect ratio (:meth:`EmbeddedGenerator.generation_size`: longest
side = the prior's resolution; the UNet is convolutional), then resized back to the source's size:
no letterbox bands, no stretching.

Sampling is SDEdit exactly as diffusers' img2img pipelines do it, with any diffusers scheduler
(``generation.scheduler``, default DDIM) built from the prior's own scheduler config: see
:mod:`discl.generation.schedulers`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from discl.configtools import ConfigError
from discl.errors import BadInputError
from discl.generation.base import GenerationBatch, split_by_size
from discl.generation.config import GenerationConfig
from discl.generation.planning import generation_size
from discl.generation.prior import Prior, denoise, from_model_space, load_prior, load_prior_config

logger = logging.getLogger(__name__)

DEFAULT_SCHEDULER = "DDIMScheduler"


def prior_scheduler(prior: Prior, name: str | None = None, kwargs: dict | None = None):
    """The configured scheduler from the prior's config. DDIM keeps the prior's sampling settings
    (``set_alpha_to_one=False``, ``steps_offset=0``: :meth:`Prior.ddim`) unless overridden."""
    from discl.generation.schedulers import build_scheduler

    base = dict(prior.scheduler_config)
    if (name or DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER:
        base |= {"set_alpha_to_one": False, "steps_offset": 0}
    return build_scheduler(name, base, kwargs, default=DEFAULT_SCHEDULER, noisers=("add_noise",))


@torch.inference_mode()
def sample(prior: Prior, scheduler, sources: torch.Tensor | None, labels: torch.Tensor, seeds: list[int],
           steps: int, strength: float, guidance_scale: float, text_to_image: bool = False,
           clipped_eps: bool = True) -> torch.Tensor:
    """Image-guided generation of one batch sharing ``strength`` and one size, with ``scheduler``.

    ``sources``: float [-1,1] [B,1,h,w]; each image's initial noise (and a stochastic scheduler's
    step noise) comes from its own generator seeded by its seed, so an image does not depend on its
    batch. Denoiser calls: ``len(img2img_timesteps(...))`` batched evaluations (2B rows under CFG).
    ``clipped_eps``: DDIM recomputes epsilon from the clipped x0 (:mod:`discl.generation.prior`).
    """
    from discl.generation.schedulers import img2img_timesteps, step_kwargs

    shape = tuple(sources.shape[1:]) if sources is not None else (1, prior.resolution, prior.resolution)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    noise = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(labels.device)
    if text_to_image:
        scheduler.set_timesteps(steps)
        timesteps = scheduler.timesteps
    else:
        timesteps = img2img_timesteps(scheduler, steps, strength)
    return denoise(prior, scheduler, sources, labels, noise, timesteps, guidance_scale,
                   step_kwargs(scheduler, gens, eta=0.0, use_clipped_model_output=clipped_eps), text_to_image)


def unet_multiple(unet_config) -> int:
    """The UNet halves the image once per down block: both sides must divide by this."""
    return 2 ** (len(unet_config["block_out_channels"]) - 1)


class EmbeddedGenerator:
    name = "embedded"

    def __init__(self, cfg: GenerationConfig):
        folder = None if cfg.model in ("", "embedded") else cfg.model
        self.prior = load_prior(folder)
        if cfg.condition_style is not None:
            try:
                self.prior = self.prior.with_condition(cfg.condition_style)
            except ValueError as e:
                raise ConfigError(f"generation.condition_style: {e}") from None
        self.model_id = "embedded" if folder is None else str(folder)
        self.device = torch.device("cpu" if cfg.device == "auto" and not torch.cuda.is_available()
                                   else ("cuda" if cfg.device == "auto" else cfg.device))
        self.prior.unet.to(self.device)
        self.scheduler_name, self.scheduler_kwargs = cfg.scheduler, dict(cfg.scheduler_kwargs)
        prior_scheduler(self.prior, cfg.scheduler, cfg.scheduler_kwargs)  # fail now, not mid-run
        self.multiple = unet_multiple(self.prior.unet.config)

    @classmethod
    def planning_size(cls, cfg: GenerationConfig) -> Callable[[int, int], tuple[int, int]]:
        """:meth:`generation_size` from the prior's config file alone (no weights): for planning."""
        meta = load_prior_config(cfg.model)
        return partial(generation_size, longest=int(meta["resolution"]), multiple=unet_multiple(meta["unet"]))

    @property
    def denoiser(self):
        return self.prior.unet

    def scheduler(self):
        """A fresh scheduler (schedulers keep per-run state such as a multistep solver's history)."""
        return prior_scheduler(self.prior, self.scheduler_name, self.scheduler_kwargs)

    def evaluations_per_image(self, steps: int, strength: float) -> int:
        from discl.generation.schedulers import evaluations_per_image

        return evaluations_per_image(self.scheduler(), steps, strength)

    def generation_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) at the prior's scale: longest side = its resolution, aspect ratio kept, both sides
        multiples of the UNet's downsampling factor. A square source gives the prior's square."""
        return generation_size(width, height, self.prior.resolution, self.multiple)

    def _to_model_space(self, img: Image.Image) -> torch.Tensor:
        """Grayscale float [-1, 1] [1, h, w] at the generation size (area downsampling)."""
        w, h = self.generation_size(*img.size)
        x = torch.from_numpy(np.asarray(img.convert("L"), dtype=np.uint8).copy()).float()[None, None] / 127.5 - 1.0
        if (x.shape[-1], x.shape[-2]) != (w, h):
            x = F.interpolate(x, size=(h, w), mode="area")
        return x[0]

    def generate(self, batch: GenerationBatch) -> list[Image.Image]:
        bad = [lab for lab in batch.labels if not 0 <= int(lab) < self.prior.num_classes]
        if bad:
            raise BadInputError(f"embedded prior knows classes 0..{self.prior.num_classes - 1}, got label {bad[0]}")
        encoded: dict[str, torch.Tensor] = {}  # each distinct source once
        for key, img in zip(batch.source_keys, batch.sources):
            if key not in encoded:
                encoded[key] = self._to_model_space(img)
        out: list[Image.Image | None] = [None] * len(batch.sources)
        sizes = [tuple(encoded[k].shape[-2:]) for k in batch.source_keys]
        for idx in split_by_size(sizes):  # one denoiser pass per generation size
            src = torch.stack([encoded[batch.source_keys[i]] for i in idx]).to(self.device)
            labels = torch.as_tensor([int(batch.labels[i]) for i in idx], device=self.device)
            x = sample(self.prior, self.scheduler(), src, labels, [batch.seeds[i] for i in idx], batch.steps,
                       batch.strength, batch.guidance_scale, text_to_image=batch.text_to_image).cpu()
            for j, i in enumerate(idx):
                img = batch.sources[i]
                u8 = from_model_space(x[j:j + 1], (img.size[1], img.size[0]))[0, 0].numpy()
                gen = Image.fromarray(u8, mode="L")
                out[i] = gen.convert("RGB") if img.mode not in ("L", "1", "I", "I;16", "F") else gen
        return out
