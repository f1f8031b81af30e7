"""The embedded diffusion prior: a small class-conditional pixel-space diffusion model.

It stands in for Stable Diffusion in the offline demo: a diffusers ``UNet2DModel`` with a class
embedding row per Fashion-MNIST class (per (style, class) plus a style-agnostic ``any`` row per class
when the prior learns the pool in several styles: :func:`style_slots`) and a last *null* row
(:attr:`Prior.null_class`) used for classifier-free guidance, trained with the DDPM epsilon objective
on the prior pool and sampled with DDIM, conditioned on one style (:meth:`Prior.condition`). Image-guided generation is SDEdit exactly as diffusers' img2img pipelines do it
(see :func:`img2img_timesteps`).

Why guidance used to hurt (the feasibility prototype saw samples degrade at g = 2-3, and so did this
model with diffusers' default DDIM step): classifier-free guidance extrapolates
``eps_null + g * (eps_class - eps_null)``, which pushes the x0 estimate out of [-1, 1]. DDIM's
``clip_sample`` clips that x0 but, by default (``use_clipped_model_output=False``), keeps the
*unclipped* epsilon for the "direction to x_t" term, so every step mixes a clipped x0 with a noise
direction that points elsewhere; the inconsistency grows with g and compounds over steps into
saturated blobs. Recomputing epsilon from the clipped x0 (``use_clipped_model_output=True``) makes
the step consistent, and samples stay clean and class-faithful at g = 2-5 (measured in
docs/generation.md). The unconditional branch also has to be trained: the null class replaces the
label with probability ``p_uncond = 0.15``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from discl.assets import (
    PRIOR_CONFIG_NAME,
    PRIOR_DIR,
    PRIOR_RECIPE_NAME,
    PRIOR_WEIGHTS_NAME,
    stored_condition_style,
)
from discl.configtools import check, from_dict, load_yaml
from discl.errors import ModelNotFoundError

logger = logging.getLogger(__name__)

# the shipped prior's files (located in discl.assets, which the fingerprint reads too)
ASSET_DIR, WEIGHTS_NAME, CONFIG_NAME, RECIPE_NAME = PRIOR_DIR, PRIOR_WEIGHTS_NAME, PRIOR_CONFIG_NAME, PRIOR_RECIPE_NAME


@dataclass
class PriorRecipe:
    """Everything that decides the shipped prior's weights (``discl/assets/prior/recipe.yaml``)."""

    resolution: int = 16
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1
    attention_at_lowest: bool = True
    num_classes: int = 10
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    p_uncond: float = 0.15  # null-class dropout: trains the unconditional branch CFG needs
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1.5e-3
    warmup_steps: int = 200
    # cosine: decay to 0 over ``steps``; constant: lr after the warmup, so the EMA weights after N
    # steps do not depend on ``steps`` (a checkpoint at step N *is* the recipe with steps = N)
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    seed: int = 0
    data_seed: int = 0  # the prior pool's seed: must be discl.data.tasks.PRIOR_SEED (one pool for every task seed)
    threads: int = 1
    # progressive resolution (as SD trains at 256 px before 512): the first ``low_res_steps`` steps
    # see the pool area-downsampled to ``low_resolution``, which costs ~4x less per step at 16 vs 28 px;
    # the convolutional UNet then fine-tunes at ``resolution``. 0 = every step at ``resolution``.
    low_res_steps: int = 0
    low_resolution: int = 16
    checkpoint_every: int = 0  # also save the EMA weights to OUT/checkpoint every N steps (0 = never)
    # warm start: a prior folder (or ``git:REV``, the prior shipped at that revision of this repository)
    # whose weights initialise the UNet; the architecture must match (the resolution may differ: the
    # UNet is convolutional). "" = random init.
    init_from: str = ""
    # what the prior learns from: the prior pool in these styles (discl.data.tasks.PRIOR_STYLES), as
    # Stable Diffusion's web data holds photos of every kind. With more than one style the class
    # embedding is per (style, class) plus a style-agnostic "any" slot per class (a label's style is
    # replaced by "any" with probability ``p_any_style``), so generation can condition on one style:
    # ``condition_style`` (stored with the weights) is the analog of the prompt "a photo of a <class>".
    styles: list[str] = field(default_factory=lambda: ["clean"])
    p_any_style: float = 0.0
    condition_style: str = "clean"
    # the class embedding's learning rate as a multiple of ``lr``: new (style, class) rows start as
    # copies of their class's row and must move apart within a fine-tune (textual inversion likewise
    # trains embeddings at a higher rate than the network)
    class_embedding_lr_scale: float = 1.0

    def __post_init__(self):
        levels = 2 ** (len(self.block_out_channels) - 1)
        check(self.resolution % levels == 0, "resolution",
              f"must be divisible by 2^(levels-1) for {len(self.block_out_channels)} levels")
        check(0 <= self.low_res_steps < max(self.steps, 1), "low_res_steps", "must be in [0, steps)")
        if self.low_res_steps:
            check(self.low_resolution % levels == 0 and 0 < self.low_resolution <= self.resolution, "low_resolution",
                  f"must be divisible by {levels} and at most resolution")
        check(self.checkpoint_every >= 0, "checkpoint_every", "must be >= 0")
        check(self.lr_schedule in ("cosine", "constant"), "lr_schedule", "must be cosine or constant")
        check(0.0 < self.p_uncond < 1.0, "p_uncond", "must be in (0, 1): CFG needs a trained null class")
        check(self.steps >= 1 and self.batch_size >= 1, "steps", "steps and batch_size must be >= 1")
        from discl.data.tasks import PRIOR_STYLES

        check(len(self.styles) >= 1 and len(set(self.styles)) == len(self.styles)
              and all(x in PRIOR_STYLES for x in self.styles), "styles",
              f"must be distinct names from {list(PRIOR_STYLES)}")
        check(0.0 <= self.p_any_style < 1.0 and (len(self.styles) > 1 or self.p_any_style == 0.0), "p_any_style",
              "must be in [0, 1), and 0 with a single style")
        from discl.data.tasks import PRIOR_SEED

        check(self.data_seed == PRIOR_SEED, "data_seed",
              f"must be {PRIOR_SEED}: there is one prior pool for every task seed (discl.data.tasks.PRIOR_SEED)")
        check(self.class_embedding_lr_scale > 0, "class_embedding_lr_scale", "must be > 0")
        check(self.condition_style in style_slots(self.styles), "condition_style",
              f"must be one of {list(style_slots(self.styles))}")


def style_slots(styles) -> dict[str, int]:
    """Embedding slot of each conditioning style: one slot when the prior knows one style (the class
    embedding is then ``num_classes + 1`` rows, as before styles existed), else one per style + "any"."""
    styles = list(styles)
    if len(styles) == 1:
        return {styles[0]: 0}
    return {**{x: i for i, x in enumerate(styles)}, "any": len(styles)}


def class_embedding_rows(num_classes: int, styles) -> int:
    """Rows of the class embedding: ``num_classes`` per slot, then the null class (CFG's unconditional)."""
    return num_classes * len(style_slots(styles)) + 1


def load_recipe(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PriorRecipe:
    data = load_yaml(path or ASSET_DIR / RECIPE_NAME)
    data.update(overrides or {})
    return from_dict(PriorRecipe, data, prefix="prior")


def unet_config(recipe: PriorRecipe) -> dict[str, Any]:
    """The ``UNet2DModel`` config of a recipe (stored next to the weights)."""
    n = len(recipe.block_out_channels)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if recipe.attention_at_lowest:
        down[-1] = "AttnDownBlock2D"
        up[0] = "AttnUpBlock2D"
    return {
        "sample_size": recipe.resolution,
        "in_channels": 1,
        "out_channels": 1,
        "block_out_channels": list(recipe.block_out_channels),
        "layers_per_block": recipe.layers_per_block,
        "down_block_types": down,
        "up_block_types": up,
        "norm_num_groups": 8,
        "attention_head_dim": 8,
        "num_class_embeds": class_embedding_rows(recipe.num_classes, recipe.styles),  # + the null class (CFG)
    }


def scheduler_config(recipe: PriorRecipe) -> dict[str, Any]:
    return {
        "num_train_timesteps": recipe.num_train_timesteps,
        "beta_schedule": recipe.beta_schedule,
        "prediction_type": "epsilon",
        "clip_sample": True,  # clip the x0 estimate each step; essential under CFG
        "clip_sample_range": 1.0,
    }


def build_unet(recipe: PriorRecipe):
    from diffusers import UNet2DModel

    return UNet2DModel(**unet_config(recipe))


@dataclass
class Prior:
    """A loaded prior: the UNet, its scheduler config and class count."""

    unet: Any
    scheduler_config: dict[str, Any]
    num_classes: int
    resolution: int
    name: str = "embedded"
    styles: tuple[str, ...] = ("clean",)
    condition_style: str = "clean"
    # classifier-free guidance's other branch: None = the null class (CFG as trained); a style = the
    # same class in that style, the analog of a negative prompt ("a grainy photo of a <class>")
    negative_style: str | None = None

    @property
    def null_class(self) -> int:
        return class_embedding_rows(self.num_classes, self.styles) - 1

    def with_condition(self, style: str) -> Prior:
        """The same weights conditioned on ``style`` (one of :func:`style_slots`), checked here once."""
        from dataclasses import replace

        if style not in style_slots(self.styles):
            raise ValueError(f"condition_style {style!r}: this prior knows {list(style_slots(self.styles))}")
        return replace(self, condition_style=style)

    def condition(self, labels: torch.Tensor) -> torch.Tensor:
        """The class-embedding rows of ``labels`` under ``condition_style`` (the prompt's analog)."""
        return labels.long() + self.num_classes * style_slots(self.styles)[self.condition_style]

    def negative(self, labels: torch.Tensor) -> torch.Tensor:
        """Guidance's other branch for ``labels``: the null class, or the class in ``negative_style``."""
        if self.negative_style is None:
            return torch.full_like(labels.long(), self.null_class)
        slots = style_slots(self.styles)
        if self.negative_style not in slots:
            raise ValueError(f"negative_style {self.negative_style!r}: this prior knows {list(slots)}")
        return labels.long() + self.num_classes * slots[self.negative_style]

    def ddim(self):
        from diffusers import DDIMScheduler

        return DDIMScheduler(**self.scheduler_config, set_alpha_to_one=False, steps_offset=0)


def to_model_space(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 [N,1,H,W] -> float [-1, 1] at the prior's resolution (area downsampling)."""
    x = images.float() / 127.5 - 1.0
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="area")
    return x


def from_model_space(x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """float [-1, 1] -> uint8 [N,1,h,w], bicubic-upsampled to ``size`` (the source image's)."""
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# -- training --------------------------------------------------------------------------------------


def train_prior(recipe: PriorRecipe, images: torch.Tensor, labels: torch.Tensor, out_dir: Path | None = None,
                log_every: int = 200, progress: bool = True, style_index: torch.Tensor | None = None,
                resume: bool = False) -> Prior:
    """DDPM training (epsilon objective, null-class dropout, EMA weights). Deterministic for a recipe.

    ``images``: uint8 [N,1,H,W]; ``labels``: int [N]; ``style_index``: int [N], each image's position
    in ``recipe.styles`` (None: all the first style). Writes the EMA weights + config to ``out_dir``.
    With ``checkpoint_every``, ``OUT/checkpoint/`` holds the EMA weights and the whole training state
    (weights, optimiser, EMA, data RNG, step) every N steps; ``resume=True`` continues from it, and the
    result is the one an uninterrupted run gives (``tests/test_prior.py``).
    """
    from diffusers import DDPMScheduler

    torch.set_num_threads(recipe.threads)
    g = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)  # parameter init of the UNet
    unet = build_unet(recipe)
    init_info = {}
    if recipe.init_from:
        init_dir = resolve_prior_folder(recipe.init_from)
        unet.load_state_dict(_warm_start_state(load_prior(init_dir), recipe))
        init_info = {"init_from": recipe.init_from,
                     "init_sha256": hashlib.sha256((Path(init_dir) / WEIGHTS_NAME).read_bytes()).hexdigest()}
        logger.info("initialised from %s (sha256 %s)", recipe.init_from, init_info["init_sha256"][:12])
    ema = build_unet(recipe)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    sched = DDPMScheduler(**scheduler_config(recipe))
    data = to_model_space(images, recipe.resolution)
    data_low = to_model_space(images, recipe.low_resolution) if recipe.low_res_steps else data
    slots = style_slots(recipe.styles)
    style_index = torch.zeros(len(labels), dtype=torch.long) if style_index is None else style_index.long()
    check(len(style_index) == len(labels) and int(style_index.max()) < len(recipe.styles), "styles",
          "every image needs a style among the recipe's styles")
    cond = labels.long() + recipe.num_classes * style_index  # slot i of style i (one style: slot 0)
    any_offset = recipe.num_classes * slots.get("any", 0)
    null = class_embedding_rows(recipe.num_classes, recipe.styles) - 1
    emb = list(unet.class_embedding.parameters())
    rest = [q for q in unet.parameters() if all(q is not e for e in emb)]
    opt = torch.optim.AdamW([{"params": rest, "scale": 1.0},
                             {"params": emb, "scale": recipe.class_embedding_lr_scale}],
                            lr=recipe.lr, weight_decay=recipe.weight_decay)

    def lr_at(step: int) -> float:
        if step < recipe.warmup_steps:
            return recipe.lr * (step + 1) / recipe.warmup_steps
        if recipe.lr_schedule == "constant":
            return recipe.lr
        p = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return recipe.lr * 0.5 * (1 + math.cos(math.pi * p))

    first, seconds_before = 0, 0.0
    ckpt = Path(out_dir) / "checkpoint" if out_dir is not None else None
    if resume and ckpt is not None and (ckpt / TRAIN_STATE_NAME).is_file():
        state = torch.load(ckpt / TRAIN_STATE_NAME, weights_only=True)
        if state["recipe"] != _resume_key(recipe):
            now = _resume_key(recipe)
            diff = ", ".join(f"{k}: {state['recipe'].get(k)!r} -> {now.get(k)!r}"
                             for k in sorted(set(now) | set(state["recipe"])) if state["recipe"].get(k) != now.get(k))
            raise ValueError(f"{ckpt / TRAIN_STATE_NAME} was written by another recipe ({diff}); remove it or train "
                             "afresh (only steps and checkpoint_every may change between pieces)")
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        g.set_state(state["rng"])
        first, seconds_before = int(state["step"]), float(state["seconds"])
        if first > recipe.steps:
            raise ValueError(f"{ckpt / TRAIN_STATE_NAME} is at step {first}, past this recipe's {recipe.steps} steps: "
                             "resume with at least that many steps (its EMA weights are in the checkpoint folder)")
        init_info = state["init_info"]
        logger.info("resumed from %s at step %d", ckpt, first)
        if progress:
            print(f"resumed from {ckpt} at step {first}", flush=True)
    n_params = sum(p.numel() for p in unet.parameters())
    logger.info("training prior: %d params, %d images at %dpx (styles %s), %d steps (the first %d at %dpx)", n_params,
                len(data), recipe.resolution, recipe.styles, recipe.steps, recipe.low_res_steps, recipe.low_resolution)
    unet.train()
    t0 = time.perf_counter() - seconds_before
    running = 0.0
    for step in range(first, recipe.steps):
        idx = torch.randint(0, len(data), (recipe.batch_size,), generator=g)
        x0, y = (data_low if step < recipe.low_res_steps else data)[idx], cond[idx].clone()
        if any_offset:
            to_any = torch.rand(recipe.batch_size, generator=g) < recipe.p_any_style
            y[to_any] = labels[idx][to_any].long() + any_offset
        drop = torch.rand(recipe.batch_size, generator=g) < recipe.p_uncond
        y[drop] = null
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, recipe.num_train_timesteps, (recipe.batch_size,), generator=g)
        xt = sched.add_noise(x0, noise, t)
        loss = F.mse_loss(unet(xt, t, class_labels=y).sample, noise)
        for group in opt.param_groups:
            group["lr"] = lr_at(step) * group["scale"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(recipe.ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(pm, 1 - decay)
        running += loss.item()
        if (step + 1) % log_every == 0 or step + 1 == recipe.steps:
            el = time.perf_counter() - t0
            n_logged = min(log_every, step + 1 - first)
            logger.info("step %d/%d loss %.4f  %.2f s/step  elapsed %.0fs", step + 1, recipe.steps,
                        running / n_logged, el / (step + 1), el)
            if progress:
                print(f"step {step + 1}/{recipe.steps} loss {running / n_logged:.4f} "
                      f"{el / (step + 1):.2f} s/step elapsed {el:.0f}s", flush=True)
            running = 0.0
        last = step + 1 == recipe.steps
        if ckpt is not None and recipe.checkpoint_every and ((step + 1) % recipe.checkpoint_every == 0 or last):
            seconds = time.perf_counter() - t0
            if not last:  # the last step's EMA weights are the output itself
                save_prior(_as_prior(ema, recipe), ckpt, recipe=recipe, steps_done=step + 1, train_seconds=seconds,
                           **init_info)
            # the whole state also at the last step, so a finished piece can be extended with --resume
            _atomic_torch_save({"unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                                "rng": g.get_state(), "step": step + 1, "seconds": seconds, "init_info": init_info,
                                "recipe": _resume_key(recipe)}, ckpt / TRAIN_STATE_NAME)
    ema.eval()
    prior = _as_prior(ema, recipe)
    if out_dir is not None:
        save_prior(prior, Path(out_dir), recipe=recipe, train_seconds=time.perf_counter() - t0, **init_info)
    return prior


TRAIN_STATE_NAME = "train_state.pt"


def _as_prior(unet, recipe: PriorRecipe) -> Prior:
    return Prior(unet, scheduler_config(recipe), recipe.num_classes, recipe.resolution,
                 styles=tuple(recipe.styles), condition_style=recipe.condition_style)


def _resume_key(recipe: PriorRecipe) -> dict:
    """What must match for a checkpoint to continue a run: everything but its length and checkpointing.

    ``lr_schedule: constant`` makes the length irrelevant to the steps already done; with ``cosine``
    the learning rate depends on ``steps``, so it must match too.
    """
    key = asdict(recipe)
    key.pop("checkpoint_every")
    if recipe.lr_schedule == "constant":
        key.pop("steps")
    return key


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _warm_start_state(init: Prior, recipe: PriorRecipe) -> dict:
    """The init prior's weights for this recipe's UNet. The class embedding is mapped by style name:
    each (style, class) row starts from the init's row of that style and class, or, for a style the
    init does not know, from its style-agnostic ``any`` row (a one-style init: its only rows); the
    null row from the init's null row. Every other weight must match in shape."""
    state = dict(init.unet.state_dict())
    key = "class_embedding.weight"
    check(init.num_classes == recipe.num_classes, "init_from", "the init prior must have the recipe's classes")
    old, n = state[key], recipe.num_classes
    old_slots = style_slots(init.styles)
    fallback = old_slots.get("any", 0 if len(old_slots) == 1 else None)
    new_slots = style_slots(recipe.styles)
    new = torch.empty(class_embedding_rows(n, recipe.styles), old.shape[1], dtype=old.dtype)
    for name, slot in new_slots.items():
        src = old_slots.get(name, fallback)
        check(src is not None, "init_from",
              f"the init prior knows styles {list(old_slots)} and no 'any' row to start style {name!r} from")
        new[slot * n:(slot + 1) * n] = old[src * n:(src + 1) * n]
    new[-1] = old[init.null_class]
    state[key] = new
    return state


def resolve_prior_folder(where: str) -> Path:
    """A prior folder, or ``git:REV``: the prior shipped at that revision, extracted to a temporary folder."""
    if not where.startswith("git:"):
        return Path(where)
    import subprocess
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="discl-prior-"))
    root = ASSET_DIR.parents[2]
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        blob = subprocess.run(["git", "-C", str(root), "show", f"{where[4:]}:discl/assets/prior/{name}"],
                              check=True, capture_output=True).stdout
        (out / name).write_bytes(blob)
    return out


def save_prior(prior: Prior, out_dir: Path, recipe: PriorRecipe | None = None, **info: Any) -> None:
    from safetensors.torch import save

    from discl.artifacts import atomic_write_bytes, atomic_write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in prior.unet.state_dict().items()}
    atomic_write_bytes(out_dir / WEIGHTS_NAME, save(state))  # the usual file mode, not mkstemp's 0600
    atomic_write_json(out_dir / CONFIG_NAME, {
        "unet": dict(prior.unet.config) if hasattr(prior.unet.config, "items") else unet_config(recipe),
        "scheduler": prior.scheduler_config,
        "num_classes": prior.num_classes,
        "resolution": prior.resolution,
        "styles": list(prior.styles),
        "condition_style": prior.condition_style,
        "recipe": asdict(recipe) if recipe else None,
        **info,
    })


def prior_folder(folder: str | Path | None = None) -> Path:
    """The folder of a prior: ``folder``, or the shipped one for None, "" or "embedded"."""
    return Path(folder) if folder not in (None, "", "embedded") else ASSET_DIR


def load_prior_config(folder: str | Path | None = None) -> dict[str, Any]:
    """A prior's config (UNet config, scheduler, resolution, ...) without its weights."""
    cpath = prior_folder(folder) / CONFIG_NAME
    if not cpath.is_file():
        raise ModelNotFoundError(f"embedded prior config not found: {cpath}")
    return json.loads(cpath.read_text())


def load_prior(folder: str | Path | None = None, condition_style: str | None = None) -> Prior:
    """The shipped prior (``discl/assets/prior``) or one written by ``discl prior train --out``."""
    from diffusers import UNet2DModel
    from safetensors.torch import load_file

    folder = prior_folder(folder)
    wpath = folder / WEIGHTS_NAME
    if not wpath.is_file() or not (folder / CONFIG_NAME).is_file():
        raise ModelNotFoundError(
            f"embedded prior weights not found in {folder} (need {WEIGHTS_NAME} and {CONFIG_NAME}); "
            "train them with `discl prior train --out FOLDER` or reinstall discl (the package ships them)"
        )
    meta = load_prior_config(folder)
    keep = set(UNet2DModel._get_init_keys(UNet2DModel)) - {"self"}
    unet = UNet2DModel(**{k: v for k, v in meta["unet"].items() if k in keep})
    unet.load_state_dict(load_file(str(wpath)))
    unet.eval().requires_grad_(False)
    styles = tuple(meta.get("styles") or ("clean",))
    prior = Prior(unet, meta["scheduler"], int(meta["num_classes"]), int(meta["resolution"]), styles=styles,
                  condition_style=stored_condition_style(meta))
    return prior.with_condition(condition_style) if condition_style else prior


# -- sampling --------------------------------------------------------------------------------------


def img2img_timesteps(scheduler, steps: int, strength: float) -> tuple[torch.Tensor, int]:
    """The timesteps img2img runs for ``strength``: diffusers' ``get_timesteps`` logic.

    ``set_timesteps(steps)``; ``init = min(int(steps * strength), steps)``; start at
    ``steps - init``. ``strength`` is rounded to 6 decimals first so 1 - 0.9 gives 5 of 50 steps.
    """
    scheduler.set_timesteps(steps)
    init = min(int(round(steps * strength, 6)), steps)
    t_start = max(steps - init, 0)
    return scheduler.timesteps[t_start * scheduler.order:], init


@torch.inference_mode()
def denoise(prior: Prior, scheduler, sources: torch.Tensor | None, labels: torch.Tensor, noises: torch.Tensor,
            timesteps: torch.Tensor, guidance_scale: float, step_args: dict, text_to_image: bool = False) -> torch.Tensor:
    """The one SDEdit sampling loop: :func:`sdedit` (the prior's DDIM) and the ``embedded`` generation
    backend (any diffusers scheduler, :func:`discl.generation.embedded.sample`) both run it, so the
    two cannot drift apart. The callers choose the timesteps (their strength rounding differs) and
    ``step_args`` (what their scheduler's ``step`` takes); ``noises`` start each image (text to
    image) or are added to its source at the first timestep. No timestep: the sources unchanged.
    """
    if text_to_image:
        x = noises * scheduler.init_noise_sigma
    else:
        if len(timesteps) == 0:
            return sources.clone()
        x = scheduler.add_noise(sources, noises, timesteps[:1].repeat(len(sources)))
    cfg = guidance_scale > 1.0
    y = torch.cat([prior.condition(labels), prior.negative(labels)]) if cfg else prior.condition(labels)
    for t in timesteps:
        inp = scheduler.scale_model_input(torch.cat([x, x]) if cfg else x, t)  # DDIM: the input unchanged
        eps = prior.unet(inp, t, class_labels=y).sample
        if cfg:
            cond, uncond = eps.chunk(2)
            eps = uncond + guidance_scale * (cond - uncond)
        x = scheduler.step(eps, t, x, **step_args).prev_sample
    return x


@torch.inference_mode()
def sdedit(prior: Prior, sources: torch.Tensor | None, labels: torch.Tensor, noises: torch.Tensor,
           steps: int, strength: float, guidance_scale: float, text_to_image: bool = False,
           clipped_eps: bool = True) -> torch.Tensor:
    """Image-guided generation of one batch sharing ``strength`` (so the same timesteps).

    ``sources``: float [-1,1] [B,1,r,r] (ignored with ``text_to_image``); ``noises``: [B,1,r,r] drawn
    per image from that image's own generator, so the result does not depend on the batch.
    Denoiser calls: ``int(steps * strength)`` batched evaluations (one batch of 2B under CFG).
    ``clipped_eps``: recompute epsilon from the clipped x0 in each DDIM step (see the module doc);
    False is diffusers' default and only kept for the ablation in ``discl prior evaluate``.
    """
    sched = prior.ddim()
    if text_to_image:
        sched.set_timesteps(steps)
        timesteps = sched.timesteps
    else:
        timesteps, _ = img2img_timesteps(sched, steps, strength)
    return denoise(prior, sched, sources, labels, noises, timesteps, guidance_scale,
                   {"eta": 0.0, "use_clipped_model_output": clipped_eps}, text_to_image)


def class_samples(prior: Prior, labels: torch.Tensor, seed: int, steps: int = 50, guidance_scale: float = 2.0,
                  batch_size: int = 500, clipped_eps: bool = True) -> torch.Tensor:
    """Text-to-image (class-conditional) samples, float [-1,1] at the prior's resolution."""
    from discl.seeding import torch_generator

    out = []
    r = prior.resolution
    for s in range(0, len(labels), batch_size):
        lab = labels[s:s + batch_size]
        noise = torch.stack([torch.randn((1, r, r), generator=torch_generator("prior-sample", seed, s + i))
                             for i in range(len(lab))])
        out.append(sdedit(prior, None, lab, noise, steps, 1.0, guidance_scale, text_to_image=True,
                          clipped_eps=clipped_eps))
    return torch.cat(out)
