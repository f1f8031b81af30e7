from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from discl.configtools import check


@dataclass
class LoraConfig:
    """One LoRA adapter for the diffusers backend: a local folder or ``.safetensors`` file and its scale."""

    path: str
    scale: float = 1.0
    weight_name: str | None = None  # the file inside ``path`` when it is a folder holding several

    def __post_init__(self):
        check(bool(self.path), "path", "needs a local LoRA folder or file")


@dataclass
class GenerationConfig:
    """The synthetic-to-real spectrum (phase 1c). ``levels`` are image-guidance values lambda;
    the img2img ``strength`` is ``1 - lambda``; lambda = 1 is the real image itself."""

    backend: Literal["embedded", "diffusers"] = "embedded"
    model: str = "embedded"  # diffusers: hub id or local folder (e.g. stabilityai/stable-diffusion-xl-refiner-1.0); a local folder relative to the config file is resolved against its folder
    pipeline_class: str | None = None  # diffusers: e.g. StableDiffusionXLImg2ImgPipeline; None = AutoPipelineForImage2Image
    levels: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.5, 0.7, 0.9])
    seeds_per_level: int = 8
    steps: int = 50
    steps_per_level: dict[float, int] = field(default_factory=dict)  # e.g. {0.7: 100, 0.9: 100}: the schedule length at these levels, `steps` at the others; img2img runs int(steps x strength) of them (SD3/Flux: steps - int(steps - steps x strength)), 2 at λ 0.9 of 25; a level not generated is ignored (with a warning)
    guidance_scale: float = 10.0
    condition_style: str | None = None  # embedded: condition the prior on this style (one of its styles, or any: the class alone) instead of the one stored with its weights; the prompt's analog
    negative_prompt: str | None = None
    text_to_image_at_zero: bool = False  # lambda = 0 as true text-to-image instead of strength-1 img2img
    base_seed: int = 0
    batch_size: int = 64
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"  # auto: fp16 on CUDA, fp32 on CPU
    device: str = "auto"
    resolution: int | None = None  # diffusers: longest side; None = the model's default
    image_format: Literal["png", "jpg"] = "png"
    scheduler: str | None = None  # a diffusers scheduler class (e.g. DPMSolverMultistepScheduler), from_config of the model's own; None = the model's (DDIM for embedded)
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)  # overrides for from_config, e.g. {algorithm_type: dpmsolver++}
    lora: list[LoraConfig] = field(default_factory=list)  # diffusers: [{path: folder or .safetensors, scale: 1.0, weight_name: null}], load_lora_weights + fused

    def __post_init__(self):
        check(len(self.levels) > 0, "levels", "needs at least one guidance level")
        for i, lam in enumerate(self.levels):
            check(0.0 <= lam < 1.0, f"levels[{i}]", f"lambda must be in [0, 1) (1 is the real image), got {lam}")
        check(len(set(self.levels)) == len(self.levels), "levels", f"has duplicates: {self.levels}")
        check(self.seeds_per_level >= 1, "seeds_per_level", f"must be >= 1, got {self.seeds_per_level}")
        check(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        canonical: dict[float, int] = {}
        for lam, n in self.steps_per_level.items():
            check(0.0 <= lam < 1.0, f"steps_per_level.{lam}", f"λ must be in [0, 1), got {lam}")
            check(n >= 1, f"steps_per_level.{lam}", f"must be >= 1, got {n}")
            key = round(float(lam), 6)  # the planner's λ: 0.5 and 0.5000001 are one level
            check(key not in canonical, f"steps_per_level.{lam}", f"names λ {key:g} twice")
            canonical[key] = int(n)
        self.steps_per_level = canonical
        check(self.guidance_scale >= 0.0, "guidance_scale", f"must be >= 0, got {self.guidance_scale}")
        check(self.base_seed >= 0, "base_seed", f"must be >= 0, got {self.base_seed}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(not self.lora or self.backend == "diffusers", "lora",
              "LoRA adapters are loaded by the diffusers backend only (generation.backend: diffusers)")
        if self.scheduler is not None or self.scheduler_kwargs:
            from discl.generation.schedulers import check_scheduler

            # without a name the kwargs apply to the model's default scheduler, known only once loaded
            if self.scheduler is not None:
                for n in sorted({self.steps, *self.steps_per_level.values()}):
                    check_scheduler(self.scheduler, self.scheduler_kwargs, n,
                                    noisers=("add_noise",) if self.backend == "embedded" else ("add_noise", "scale_noise"))

    def steps_at(self, lam: float) -> int:
        """The denoising schedule length at level ``lam`` (``steps_per_level`` or ``steps``; pure)."""
        return self.steps_per_level.get(round(float(lam), 6), self.steps)  # keys canonical since __post_init__

    def unused_steps_levels(self) -> list[float]:
        """The ``steps_per_level`` keys that are not generated levels (pure): ignored, reported as a warning."""
        levels = {round(float(v), 6) for v in self.levels}
        return sorted(float(k) for k in self.steps_per_level if round(float(k), 6) not in levels)

    def steps_text(self) -> str:
        """``25 steps`` or ``25 steps (λ 0.5: 100, λ 0.9: 100)`` for logs and reports."""
        unused = set(self.unused_steps_levels())
        extra = ", ".join(f"λ {k:g}: {n}" for k, n in sorted(self.steps_per_level.items()) if float(k) not in unused)
        return f"{self.steps} steps" + (f" ({extra})" if extra else "")
