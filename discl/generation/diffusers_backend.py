"""The ``diffusers`` backend: stock image-to-image pipelines (SDXL refiner, SDXL, SD 1.5/2.x, SD3, ...).

Wraps, does not fork: the pipeline is loaded with ``from_pretrained`` from a hub id or a local folder
(``AutoPipelineForImage2Image`` unless ``generation.pipeline_class`` names a class) and called with
``strength = 1 - lambda`` and one ``torch.Generator`` per image. What this adapter adds:

- one pipeline call per batch of jobs that share a strength (the runner groups them);
- SD and SDXL families (:func:`pipeline_family`): each distinct prompt is encoded once
  (``encode_prompt`` on the unique prompts, then indexed) and each distinct source is VAE-encoded
  once: its latent is drawn from the VAE posterior with a generator seeded by the source id and
  passed to the pipeline as a 4-channel latent image, which these pipelines use as is (the stock
  path would re-encode the source per seed);
- other pipeline classes (SD3, Flux, ...): prompts and images are passed as they are and the
  pipeline encodes them itself (tested with tiny SD3, Flux and Chroma img2img pipelines);
- one pipeline call per generation size (a batch of mixed aspect ratios is split, order kept);
- resolution policy: keep the aspect ratio, longest side = ``generation.resolution`` or the model's
  native size, both sides rounded to a multiple of the VAE scale factor times a transformer's patch size
  and the pipeline's latent packing, their lcm (SD3 patchifies 2x2, Flux packs 2x2: 16 at VAE scale 8;
  Qwen-Image packs 2x2 and its transformer records that as patch size 2: 16 too; Flux's native size is the
  pipeline's ``default_sample_size``, 1024 px) (:class:`SizeRule`: written out for SD, SDXL, SD3 and
  Flux, measured on the class without weights for any other, :func:`measured_size_rule`: Qwen-Image,
  Chroma, the Flux variants, Z-Image, ... are passed height/width at their own multiple); batch
  planning reads the same policy from the model's config files, without loading it (:func:`size_policy`);
- step counts: SD/SDXL img2img run ``int(T * strength)`` of ``T`` steps, SD3 and Flux
  ``T - int(T - T * strength)`` (one more at a fractional product); the manifest, the cost estimate
  and the no-step shortcut follow the rule measured on the pipeline class's own ``get_timesteps``
  (:func:`measured_step_rule`; :data:`PIPELINE_STEP_RULES` where it cannot be called), which planning
  takes from the class named in the model's config files (:func:`step_policy`);
- ``generation.scheduler`` replaces the pipeline's scheduler (``from_config`` of its own config);
  ``generation.lora`` adapters are loaded and fused.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from discl.errors import DisclError, ModelNotFoundError
from discl.generation.base import GenerationBatch, split_by_size
from discl.generation.config import GenerationConfig
from discl.generation.planning import DEFAULT_STEP_RULE, STEP_RULES, generation_size, img2img_steps
from discl.seeding import derive_seed

logger = logging.getLogger(__name__)


def resolve_device_dtype(cfg: GenerationConfig) -> tuple[torch.device, torch.dtype]:
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    if cfg.dtype == "auto":
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, cfg.dtype)
    if device.type == "cpu" and dtype == torch.float16:
        logger.warning("float16 on CPU is slow and unsupported by some ops; using float32")
        dtype = torch.float32
    return device, dtype


@dataclass(frozen=True)
class SizeRule:
    """How a pipeline class family turns VAE scale and denoiser config into a generation size.

    ``packing``: the pipeline itself packs the latent ``packing x packing`` into one token (Flux: 2x2;
    its transformer's ``patch_size`` is 1) or has its image processor round the image to ``packing`` x
    VAE scale (Z-Image); the denoiser's ``patch_size`` (SD3: 2) patchifies a latent that is not packed.
    Both sides must be multiples of VAE scale x both, i.e. of VAE scale x lcm(patch size, packing): a
    transformer fed packed tokens cannot patchify them again, so where both are 2 they are the same 2x2
    (Qwen-Image's transformer records its pipeline's pack as ``patch_size`` 2: multiple 16, not 32).
    ``default_sample_size``:
    the pipeline's native latent size when it is fixed by the pipeline class (Flux: 128, i.e. 1024 px at
    VAE scale 8) rather than read from the denoiser's ``sample_size`` (None: UNet/SD3 transformer).
    ``sized_by_call``: the pipeline resizes the image to its ``height`` x ``width`` arguments, which
    default to a square of the native size (SD3, Flux), so the adapter passes the generation size.
    """

    packing: int = 1
    default_sample_size: int | None = None
    sized_by_call: bool = False


FLUX_SIZE_RULE = SizeRule(packing=2, default_sample_size=128, sized_by_call=True)
SD3_SIZE_RULE = SizeRule(sized_by_call=True)  # its img2img, too, resizes the image to height x width

# Pipeline classes (the loaded one: ``generation.pipeline_class``, or the family of model_index.json's
# ``_class_name`` that AutoPipelineForImage2Image loads) whose ``vae_scale_factor`` is
# ``2 ** (len(vae.config.block_out_channels) - 1)`` (8 without a VAE), so that :func:`size_policy`
# knows their generation size from config files, with their :class:`SizeRule`, written out: their
# plans and image sizes stay as they are whatever a diffusers release changes. Any other class's rule
# and VAE scale are measured on the class itself (:func:`measured_size_rule`, :func:`measured_vae_scale`).
SIZE_RULES: dict[str, SizeRule] = {
    "StableDiffusionPipeline": SizeRule(), "StableDiffusionImg2ImgPipeline": SizeRule(),
    "StableDiffusionXLPipeline": SizeRule(), "StableDiffusionXLImg2ImgPipeline": SizeRule(),
    "StableDiffusion3Pipeline": SD3_SIZE_RULE, "StableDiffusion3Img2ImgPipeline": SD3_SIZE_RULE,
    "FluxPipeline": FLUX_SIZE_RULE, "FluxImg2ImgPipeline": FLUX_SIZE_RULE,
}
CONFIG_SIZED_PIPELINES = frozenset(SIZE_RULES)


def _listed(table: Mapping[str, Any], pipeline_class: str | type, default: Any) -> Any:
    """``table``'s entry for a pipeline class: by name, or for a class its own or its nearest listed base's."""
    names = [pipeline_class] if isinstance(pipeline_class, str) else [c.__name__ for c in pipeline_class.__mro__]
    return next((table[n] for n in names if n in table), default)


def size_rule(pipeline_class: str | type) -> SizeRule:
    """The :class:`SizeRule` of a pipeline class (by name, or a class): listed in :data:`SIZE_RULES`
    (its own or its nearest listed base's), else measured on the class (:func:`measured_size_rule`; a
    name is the class diffusers exports, or for a text-to-image name the image-to-image class
    ``AutoPipelineForImage2Image`` loads for it), else the plain rule (no packing, no height/width
    passed, native size from the denoiser) for a class that cannot be imported or built."""
    listed = _listed(SIZE_RULES, pipeline_class, None)
    if listed is not None:
        return listed
    cls = pipeline_class if isinstance(pipeline_class, type) else _loaded_class(pipeline_class)
    if cls is None:
        return SizeRule()
    return _listed(SIZE_RULES, cls, None) or measured_size_rule(cls) or SizeRule()


def _loaded_class(name: Any) -> type | None:
    """The class a pipeline class name loads as (:func:`_img2img_class`); None for no name, a name
    diffusers does not know, or its stand-in for a class whose optional package is missing (which
    raises ImportError on any attribute)."""
    if not isinstance(name, str) or not name:
        return None
    try:
        cls = _img2img_class(name)
    except Exception:  # noqa: BLE001 - not importable here: the caller keeps its default
        return None
    return cls if isinstance(cls, type) else None


class _ConfigOnly:
    """A pipeline component that is only its config (a saved ``vae/config.json``): what a pipeline's
    ``__init__`` reads of it, ``vae.config.block_out_channels`` or ``vae.temperal_downsample`` (a
    model's config keys are attributes too), without building the model."""

    def __init__(self, config: Mapping):
        from diffusers.configuration_utils import FrozenDict

        self.config = FrozenDict(config)

    def __getattr__(self, name: str):
        try:
            return self.__dict__["config"][name]
        except KeyError:
            raise AttributeError(name) from None


def _weightless_pipeline(cls: type, **components):
    """An instance of the pipeline class with no weights: every component ``None`` (optional arguments
    at their defaults) but the given stand-ins. Its ``__init__`` sets what the class decides about
    sizes: ``vae_scale_factor``, the image processor's rounding, a fixed ``default_sample_size``.
    Raises what ``__init__`` raises (a class that needs a component, a missing optional package)."""
    params = inspect.signature(cls.__init__).parameters
    kwargs = {n: components.get(n) for n, p in params.items()
              if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
              and (p.default is p.empty or n in components)}
    quiet = logging.getLogger("diffusers")  # no "safety checker disabled" or deprecation notices here
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(**kwargs)
    finally:
        quiet.setLevel(level)


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


@cache
def measured_size_rule(cls: type) -> SizeRule | None:
    """The :class:`SizeRule` of a pipeline class, read off the class itself (no weights, no files, no
    network: the same rule on every machine for one diffusers version), for classes not in
    :data:`SIZE_RULES`. ``sized_by_call``: its ``__call__`` takes ``height`` and ``width`` (Qwen-Image,
    Chroma, the Flux variants, Z-Image, Sana Sprint: they resize the image to them, by default to a
    native square or the image's own size rounded their way). On :func:`_weightless_pipeline`:
    ``packing`` = its image processor's rounding / its ``vae_scale_factor`` (2 where the pipeline packs
    the latent 2x2, Qwen-Image, Chroma, Flux, or rounds the image to twice the VAE scale, Z-Image);
    ``default_sample_size`` = its own (128, 1024 px at VAE scale 8, for Qwen-Image, Chroma and Flux;
    None: the denoiser's ``sample_size``). None when the class cannot be built so."""
    try:
        call = inspect.signature(cls.__call__).parameters
        pipe = _weightless_pipeline(cls)
    except Exception:  # noqa: BLE001 - a class that cannot be built without its components: not measurable
        return None
    vae_scale = _positive_int(getattr(pipe, "vae_scale_factor", None))
    rounding = _positive_int(getattr(getattr(getattr(pipe, "image_processor", None), "config", None),
                                     "vae_scale_factor", None))
    packing = rounding // vae_scale if vae_scale and rounding and rounding % vae_scale == 0 else 1
    return SizeRule(packing=packing, default_sample_size=_positive_int(getattr(pipe, "default_sample_size", None)),
                    sized_by_call={"height", "width"} <= set(call))


def measured_vae_scale(cls: type, vae: Mapping | None) -> int | None:
    """The ``vae_scale_factor`` the pipeline class computes from a VAE config (``vae/config.json``; None:
    the model has no VAE), by its own ``__init__`` on :func:`_weightless_pipeline` holding the config
    alone (Qwen-Image: ``2 ** len(temperal_downsample)``; Sana: from ``encoder_block_out_channels``); for
    planning unlisted classes from config files. None when it cannot be measured so."""
    try:
        pipe = _weightless_pipeline(cls, **({} if vae is None else {"vae": _ConfigOnly(vae)}))
    except Exception:  # noqa: BLE001 - another layout (no ``vae`` argument, a VQ model): not measurable
        return None
    return _positive_int(getattr(pipe, "vae_scale_factor", None))


# Fallback for classes whose ``get_timesteps`` cannot be measured (:func:`measured_step_rule`: a
# class diffusers does not export, or another signature): these truncate the start index rather than
# the step count (:data:`discl.generation.planning.STEP_RULES`), ``T - int(T - T * strength)`` steps.
# Measured on diffusers 0.42 the same rule holds for 21 img2img/inpaint classes (Chroma, Flux and its
# Control/ControlNet/Fill/Kontext variants, QwenImage, SanaSprint, SD3 and SD3-PAG, Z-Image, ...); 33
# others (SD, SDXL and their variants) truncate the step count: ``int(T * strength)``.
PIPELINE_STEP_RULES: dict[str, str] = {
    "StableDiffusion3Pipeline": "truncate_start", "StableDiffusion3Img2ImgPipeline": "truncate_start",
    "FluxPipeline": "truncate_start", "FluxImg2ImgPipeline": "truncate_start",
}


def _img2img_class(pipeline_class: str | type):
    """The class whose ``get_timesteps`` runs: the class itself (by name: the one diffusers exports),
    or, for a text-to-image class, the image-to-image class ``AutoPipelineForImage2Image`` loads for
    it (``StableDiffusion3Pipeline`` -> ``StableDiffusion3Img2ImgPipeline``); None when unknown."""
    import diffusers

    cls = pipeline_class if isinstance(pipeline_class, type) else getattr(diffusers, str(pipeline_class), None)
    if cls is not None and callable(getattr(cls, "get_timesteps", None)):
        return cls
    name = pipeline_class.__name__ if isinstance(pipeline_class, type) else str(pipeline_class)
    try:
        from diffusers.pipelines.auto_pipeline import AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, _get_task_class

        return _get_task_class(AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, name)
    except Exception:  # noqa: BLE001 - an unmapped class (or another diffusers layout): the table decides
        return cls


class _ProbeScheduler:
    """The scheduler state ``get_timesteps`` reads: three timesteps of order 1."""

    order = 1

    def __init__(self):
        import torch

        self.timesteps = torch.tensor([900.0, 600.0, 300.0])
        self.config = {"num_train_timesteps": 1000}

    def set_begin_index(self, index: int) -> None:
        self.begin_index = index


def measured_step_rule(pipeline_class: str | type) -> str | None:
    """The step rule of the class's own ``get_timesteps`` (:func:`_img2img_class`), measured by
    calling it unbound at T = 3, strength 0.7, where the two rules differ (2 or 3 steps), on a
    stand-in of the pipeline holding only a scheduler; None when it cannot be called so."""
    import inspect
    from types import SimpleNamespace

    try:  # a class whose optional package is missing is a placeholder that raises ImportError on any attribute
        cls = _img2img_class(pipeline_class)
        fn = getattr(cls, "get_timesteps", None) if cls is not None else None
    except ImportError:
        return None  # the table decides; loading the pipeline names the missing package
    if not callable(fn):
        return None
    try:
        kwargs = {"device": "cpu"} if "device" in inspect.signature(fn).parameters else {}
        out = fn(SimpleNamespace(scheduler=_ProbeScheduler()), 3, 0.7, **kwargs)
        n = int(out[1]) if isinstance(out, tuple) and len(out) > 1 else len(out[0] if isinstance(out, tuple) else out)
    except Exception:  # noqa: BLE001 - another signature or state: not measurable here
        return None
    return next((r for r in STEP_RULES if img2img_steps(3, 0.7, r) == n), None)


def step_rule(pipeline_class: str | type) -> str:
    """The img2img step rule of a pipeline class (a name, or a class): measured on its own
    ``get_timesteps`` (:func:`measured_step_rule`), else looked up in :data:`PIPELINE_STEP_RULES` (its
    own or its nearest listed base's name), else ``truncate_steps``."""
    measured = measured_step_rule(pipeline_class)
    if measured is not None:
        return measured
    return _listed(PIPELINE_STEP_RULES, pipeline_class, DEFAULT_STEP_RULE)


def longest_and_multiple(rule: SizeRule, vae_scale: int, denoiser: Mapping, resolution: int | None) -> tuple[int, int]:
    """(longest side, multiple) of the generation size: the one rule :func:`size_policy` (config files)
    and :class:`DiffusersGenerator` (a loaded pipeline) share. Longest side: ``resolution``, else the
    native latent size x VAE scale, else 512; multiple: VAE scale x lcm(denoiser patch size, packing)
    (:class:`SizeRule`; for the listed classes the product, as one factor is 1 in each)."""
    multiple = vae_scale * math.lcm(int(denoiser.get("patch_size") or 1), rule.packing)
    native = rule.default_sample_size or denoiser.get("sample_size")
    native = native[0] if isinstance(native, list | tuple) else native
    return int(resolution or (native * vae_scale if native else 512)), multiple


def names_a_path(model: str) -> bool:
    """True when ``model`` is written as a file-system path (not a hub id ``org/name``), existing or not."""
    return model.startswith((".", "/", "~")) or os.sep in model and model.count("/") > 1


def load_model_config(model: str, name: str) -> dict:
    """One config file of a diffusers model (``model_index.json``, ``unet/config.json``): from a local
    folder, the local hub cache, or (online) a download of that small file alone into discl's cache
    folder (``$DISCL_CACHE_DIR``...``/hub-configs``), never into the shared hub cache (a snapshot there
    without weights would pass for complete in a later load); never weights."""
    if os.path.isdir(model):
        return json.loads((Path(model) / name).read_text())
    if names_a_path(model):
        raise ModelNotFoundError(f"local folder {model} does not exist")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return json.loads(Path(hf_hub_download(model, name, local_files_only=True)).read_text())
    except LocalEntryNotFoundError:
        pass
    from discl.fingerprint import cache_path
    from discl.hub import offline, unreachable_reason

    if offline():
        raise ModelNotFoundError(f"{model}/{name} is not in the local hub cache and the hub is off (HF_HUB_OFFLINE)")
    if (why := unreachable_reason(model)) is not None:
        raise ModelNotFoundError(why)
    # the small file alone, into discl's own cache folder: the shared hub cache then holds no
    # snapshot without weights, which a later load would take for complete
    return json.loads(Path(hf_hub_download(model, name, cache_dir=cache_path().parent / "hub-configs")).read_text())


def size_policy(cfg: GenerationConfig) -> tuple[int, int]:
    """(longest side, multiple) that :class:`DiffusersGenerator` will use, from the model's config
    files alone: the same :func:`longest_and_multiple` and :func:`size_rule` as its ``multiple`` and
    ``longest`` (the agreement is tested on tiny SD, SDXL-refiner, SD3, Flux and Chroma pipelines).
    The VAE scale: the listed formula for :data:`CONFIG_SIZED_PIPELINES`, else the class's own,
    measured on its ``vae/config.json`` (:func:`measured_vae_scale`). Raises when the class is unknown
    or not importable, its VAE scale cannot be measured so, or a config cannot be read."""
    index = load_model_config(cfg.model, "model_index.json")
    name = cfg.pipeline_class or index.get("_class_name")
    listed = name in CONFIG_SIZED_PIPELINES
    cls = None if listed else _loaded_class(name)
    rule = size_rule(name) if listed else (size_rule(cls) if cls is not None else None)
    if rule is None:
        raise DisclError(f"pipeline class {name!r}: its VAE scale factor is not known from config files")

    def component(name: str) -> dict | None:
        entry = index.get(name)
        present = isinstance(entry, list | tuple) and len(entry) == 2 and entry[1] is not None
        return load_model_config(cfg.model, f"{name}/config.json") if present else None

    vae = component("vae")
    if listed:
        vae_scale = 2 ** (len(vae["block_out_channels"]) - 1) if vae is not None else 8
    elif (vae_scale := measured_vae_scale(cls, vae)) is None:
        raise DisclError(f"pipeline class {name!r}: its VAE scale factor is not known from config files")
    denoiser = component("unet") or component("transformer") or {}
    return longest_and_multiple(rule, vae_scale, denoiser, cfg.resolution)


def configured_pipeline_class(cfg: GenerationConfig) -> str:
    """The name of the pipeline class the configured model loads as, from config files alone:
    ``generation.pipeline_class``, else ``_class_name`` of its ``model_index.json`` (whose family
    ``AutoPipelineForImage2Image`` loads). Raises when that file cannot be read."""
    if cfg.pipeline_class:
        return cfg.pipeline_class
    return str(load_model_config(cfg.model, "model_index.json").get("_class_name") or "")


def step_policy(cfg: GenerationConfig) -> str:
    """The img2img step rule :class:`DiffusersGenerator` will follow (:func:`step_rule`), from config
    files alone, for the plan's ``denoise_steps``. Unlike the size policy it has no safe fallback
    (a wrong rule records wrong step counts), so an unreadable ``model_index.json`` is an error here,
    as it would be when the pipeline loads."""
    try:
        return step_rule(configured_pipeline_class(cfg))
    except ModelNotFoundError as e:
        raise ModelNotFoundError(f"generation.model: {how_to_provide(cfg.model)} ({e})") from None
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"generation.model: cannot read {cfg.model}/model_index.json "
                                 f"({str(e).splitlines()[0][:300]}); {how_to_provide(cfg.model)}") from None


def how_to_provide(model: str) -> str:
    if names_a_path(model) or os.path.isabs(model) or model.count("/") > 1 or os.path.isdir(os.path.expanduser(model)):
        return (f"the diffusion model folder {model!r} is not a saved pipeline. Write one there with "
                f"`pipeline.save_pretrained({model!r})` (it needs model_index.json), point generation.model at "
                f"another folder or a hub id, or use generation.backend=embedded for the offline demo")
    return (f"the diffusion model {model!r} is not available offline. Provide it one of these ways: "
            f"(1) set generation.model to a local folder saved with `save_pretrained` (with model_index.json); "
            f"(2) on an online machine run `huggingface-cli download {model}` and point HF_HOME at that cache "
            f"(set HF_HUB_OFFLINE=1 to stay offline); (3) use generation.backend=embedded for the offline demo")


def load_pipeline(cfg: GenerationConfig, device: torch.device, dtype: torch.dtype):
    import diffusers
    from huggingface_hub.errors import HfHubHTTPError

    if cfg.pipeline_class:
        cls = getattr(diffusers, cfg.pipeline_class, None)
        if cls is None:
            raise DisclError(f"generation.pipeline_class: diffusers has no class {cfg.pipeline_class!r}")
    else:
        cls = diffusers.AutoPipelineForImage2Image
    from diffusers.utils import deprecation_utils

    from discl.hub import load_kwargs, unreachable_reason

    # `dtype` where this diffusers deprecates `torch_dtype` (it warns on every load), else the old name
    kwargs = {"dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") else "torch_dtype": dtype}
    local = os.path.isdir(cfg.model)
    if not local and names_a_path(cfg.model):
        raise ModelNotFoundError(f"generation.model: local folder {cfg.model} does not exist; " + how_to_provide(cfg.model))
    if (why := unreachable_reason(cfg.model)) is not None:  # at once, not after 30 s of hub retries
        raise ModelNotFoundError(f"generation.model: {how_to_provide(cfg.model)} ({why})")
    kwargs.update(load_kwargs(cfg.model))
    try:
        pipe = cls.from_pretrained(cfg.model, **kwargs)
    except (OSError, ValueError, HfHubHTTPError) as e:
        raise ModelNotFoundError(how_to_provide(cfg.model) + f" (loader said: {str(e).splitlines()[0][:300]})") from None
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if denoiser is not None and getattr(denoiser, "dtype", dtype) != dtype:
        # a diffusers whose loader ignored the dtype keyword chosen above: cast, so fp16 is fp16 in every version
        logger.info("generation: the pipeline loaded in %s, cast to %s", denoiser.dtype, dtype)
        pipe.to(dtype=dtype)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    for comp in pipe.components.values():
        if isinstance(comp, torch.nn.Module):
            comp.eval()
    return pipe


def pipeline_family(pipe) -> str:
    """``sd`` / ``sdxl``: this adapter encodes each distinct prompt once with their ``encode_prompt``
    and VAE-encodes each source once; ``other`` (SD3, Flux, ...): prompts and images go to the
    pipeline as they are and it encodes them itself (per image)."""
    import diffusers

    sdxl = tuple(getattr(diffusers, n) for n in ("StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLPipeline")
                 if hasattr(diffusers, n))
    sd = tuple(getattr(diffusers, n) for n in ("StableDiffusionImg2ImgPipeline", "StableDiffusionPipeline")
               if hasattr(diffusers, n))
    if isinstance(pipe, sdxl):
        return "sdxl"
    if isinstance(pipe, sd):
        return "sd"
    return "other"


def load_loras(pipe, cfg: GenerationConfig) -> None:
    """Load ``generation.lora`` with diffusers' ``load_lora_weights``, then fuse them into the weights.

    Fusing folds ``scale * B @ A`` into each adapted layer once, so generation runs at the speed of
    the plain model; the adapters are then unloaded (the fused weights stay).
    """
    if not hasattr(pipe, "load_lora_weights"):
        raise DisclError(f"generation.lora: {type(pipe).__name__} cannot load LoRA adapters")
    names = []
    for i, lora in enumerate(cfg.lora):
        path = os.path.expanduser(lora.path)
        if not os.path.exists(path):
            raise ModelNotFoundError(f"generation.lora[{i}].path: {path} does not exist (a local LoRA folder or file)")
        folder, weight_name = (path, lora.weight_name) if os.path.isdir(path) else os.path.split(path)
        name = f"discl_lora_{i}"
        try:
            kwargs = {"weight_name": weight_name} if weight_name else {}
            pipe.load_lora_weights(folder, adapter_name=name, **kwargs)
        except (ValueError, OSError, KeyError) as e:
            hint = " (diffusers needs the `peft` package for LoRA: pip install peft)" if "PEFT" in str(e) else ""
            raise DisclError(f"generation.lora[{i}]: cannot load {path}: {str(e).splitlines()[0][:300]}{hint}") from None
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[float(lora.scale) for lora in cfg.lora])
    pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
    pipe.unload_lora_weights()


class DiffusersGenerator:
    name = "diffusers"

    def __init__(self, cfg: GenerationConfig, pipe=None):
        self.cfg = cfg
        self.device, self.dtype = resolve_device_dtype(cfg)
        self.pipe = pipe if pipe is not None else load_pipeline(cfg, self.device, self.dtype)
        self.model_id = cfg.model
        if cfg.scheduler is not None or cfg.scheduler_kwargs:
            from discl.generation.schedulers import build_scheduler

            own = self.pipe.scheduler
            self.pipe.scheduler = build_scheduler(cfg.scheduler, own.config, cfg.scheduler_kwargs,
                                                  default=type(own).__name__)
        if cfg.lora:
            load_loras(self.pipe, cfg)
        self._params = set(inspect.signature(self.pipe.__call__).parameters)
        self._t2i = None
        vae = getattr(self.pipe, "vae", None)
        self.vae_scale = int(getattr(self.pipe, "vae_scale_factor", 8) or 8)
        self.family = pipeline_family(self.pipe)
        # the SD/SDXL img2img pipelines take a 4-channel latent as the image and use it as is
        self._latent_path = (self.family in ("sd", "sdxl") and vae is not None
                             and getattr(vae.config, "latent_channels", None) == 4)
        self.size_rule = size_rule(type(self.pipe))
        self.step_rule = step_rule(type(self.pipe))  # the steps its img2img runs at a strength
        denoiser = getattr(self.denoiser, "config", None) or {}
        self.longest, self.multiple = longest_and_multiple(self.size_rule, self.vae_scale, denoiser, cfg.resolution)
        # a pipeline that sizes its output by height/width (default: a native square) is told the size
        self._size_kwargs = self.size_rule.sized_by_call and {"height", "width"} <= self._params

    @classmethod
    def planning_size(cls, cfg: GenerationConfig) -> Callable[[int, int], tuple[int, int]]:
        """:meth:`generation_size` from the model's config files alone (:func:`size_policy`): for
        planning, which must not load the pipeline."""
        longest, multiple = size_policy(cfg)
        return partial(generation_size, longest=longest, multiple=multiple)

    @classmethod
    def planning_step_rule(cls, cfg: GenerationConfig) -> str:
        """:attr:`step_rule` from the model's config files alone (:func:`step_policy`): for planning."""
        return step_policy(cfg)

    @property
    def denoiser(self):
        return getattr(self.pipe, "unet", None) or getattr(self.pipe, "transformer", None)

    # -- encoding once --------------------------------------------------------------------------
    def _encode_prompts(self, prompts: list[str], negative: str | None, cfg_on: bool) -> dict:
        if self.family == "other":  # the pipeline's own prompt encoding (SD3, Flux, ...), per image
            out = {"prompt": prompts}
            if negative and "negative_prompt" in self._params:
                out["negative_prompt"] = [negative] * len(prompts)
            return out
        uniq = sorted(set(prompts))
        pos = {p: i for i, p in enumerate(uniq)}
        idx = torch.as_tensor([pos[p] for p in prompts])
        neg = [negative] * len(uniq) if negative else None
        if self.family == "sdxl":
            pe, npe, pooled, npooled = self.pipe.encode_prompt(
                prompt=uniq, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=cfg_on,
                negative_prompt=neg)
            out = {"prompt_embeds": pe[idx], "pooled_prompt_embeds": pooled[idx]}
            if cfg_on:
                out |= {"negative_prompt_embeds": npe[idx], "negative_pooled_prompt_embeds": npooled[idx]}
            return out
        pe, npe = self.pipe.encode_prompt(uniq, self.device, 1, cfg_on, negative_prompt=neg)
        out = {"prompt_embeds": pe[idx]}
        if cfg_on:
            out["negative_prompt_embeds"] = npe[idx]
        return out

    def _prepare(self, img: Image.Image) -> Image.Image:
        img = img.convert("RGB")
        size = self.generation_size(*img.size)
        return img if img.size == size else img.resize(size, Image.Resampling.BICUBIC)

    def _encode_sources(self, keys: list[str], images: list[Image.Image]) -> torch.Tensor:
        vae = self.pipe.vae
        uniq = list(dict.fromkeys(keys))
        first = {k: images[keys.index(k)] for k in uniq}
        pixels = self.pipe.image_processor.preprocess([first[k] for k in uniq])
        upcast = bool(getattr(vae.config, "force_upcast", False)) and self.dtype == torch.float16
        enc_dtype = torch.float32 if upcast else self.dtype
        if upcast:
            vae.to(torch.float32)
        dist = vae.encode(pixels.to(self.device, enc_dtype)).latent_dist
        if upcast:
            vae.to(self.dtype)
        noise = torch.stack([torch.randn(dist.mean.shape[1:], generator=torch.Generator().manual_seed(
            derive_seed("vae-posterior", k))) for k in uniq]).to(self.device, enc_dtype)
        lat = (dist.mean + dist.std * noise).to(self.dtype)
        sf = vae.config.scaling_factor
        mean = getattr(vae.config, "latents_mean", None)
        std = getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            m = torch.tensor(mean).view(1, -1, 1, 1).to(lat)
            s = torch.tensor(std).view(1, -1, 1, 1).to(lat)
            lat = (lat - m) * sf / s
        else:
            lat = lat * sf
        pos = {k: i for i, k in enumerate(uniq)}
        return lat[torch.as_tensor([pos[k] for k in keys])]

    # -- generation -----------------------------------------------------------------------------
    def generation_size(self, width: int, height: int) -> tuple[int, int]:
        """The (w, h) a source of this size is generated at: aspect ratio kept, longest side fixed."""
        return generation_size(width, height, self.longest, self.multiple)

    def evaluations_per_image(self, steps: int, strength: float) -> int:
        """Denoiser evaluations per image and CFG branch at ``strength``: what the pipeline runs."""
        from discl.generation.schedulers import evaluations_per_image

        return evaluations_per_image(self.pipe.scheduler.__class__.from_config(self.pipe.scheduler.config),
                                     steps, strength, self.step_rule)

    def generate(self, batch: GenerationBatch) -> list[Image.Image]:
        prepared = [self._prepare(img) for img in batch.sources]
        out: list[Image.Image | None] = [None] * len(prepared)
        for idx in split_by_size([im.size for im in prepared]):  # one pipeline call per generation size
            images = self._generate_one_size(batch.subset(idx), [prepared[i] for i in idx])
            for i, im in zip(idx, images):
                out[i] = im
        return out

    def _generate_one_size(self, batch: GenerationBatch, prepared: list[Image.Image]) -> list[Image.Image]:
        cfg_on = batch.guidance_scale > 1.0
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in batch.seeds]
        w, h = prepared[0].size
        with torch.inference_mode():
            embeds = self._encode_prompts(batch.prompts, batch.negative_prompt, cfg_on)
            common = dict(num_inference_steps=batch.steps, guidance_scale=batch.guidance_scale, generator=gens,
                          output_type="pil", **embeds)
            if batch.text_to_image:
                return self._text_to_image(common, w, h)
            if img2img_steps(batch.steps, batch.strength, self.step_rule) < 1:  # no step: the image is its source
                return [im.copy() for im in prepared]
            image = self._encode_sources(batch.source_keys, prepared) if self._latent_path else prepared
            if self._size_kwargs:
                common |= {"height": h, "width": w}
            return self.pipe(image=image, strength=batch.strength, **common).images

    def _text_to_image(self, kwargs: dict, w: int, h: int) -> list[Image.Image]:
        if self._t2i is None:
            from diffusers import AutoPipelineForText2Image

            try:
                self._t2i = AutoPipelineForText2Image.from_pipe(self.pipe)
            except (ValueError, TypeError, KeyError) as e:
                raise DisclError(f"generation.text_to_image_at_zero: {self.model_id} has no text-to-image "
                                 f"pipeline ({e}); set text_to_image_at_zero=false") from None
            self._t2i.set_progress_bar_config(disable=True)
        try:
            return self._t2i(height=h, width=w, **kwargs).images
        except ValueError as e:
            raise DisclError(f"generation.text_to_image_at_zero: {self.model_id} cannot generate from text alone "
                             f"({str(e)[:200]}); set text_to_image_at_zero=false") from None
