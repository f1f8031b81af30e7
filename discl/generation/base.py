"""The generator interface and its registry.

A generator turns a batch of requests that share one ``strength`` (so one timestep schedule) into
images. Backends live one per file and register by name; ``create_generator`` builds one from the
generation config. Backends are imported only when created, so the diffusers adapter is not
imported unless it is used.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from discl.generation.config import GenerationConfig

logger = logging.getLogger(__name__)


@dataclass
class GenerationBatch:
    """Images to generate in one batched call; all share ``strength`` and ``steps``.

    ``source_keys`` identify the sources (the sample id): a backend encodes each distinct source once.
    ``seeds`` give each image its own noise generator, so an image does not depend on its batch.
    """

    sources: list[Image.Image]
    source_keys: list[str]
    labels: list[int]
    prompts: list[str]
    seeds: list[int]
    strength: float
    steps: int
    guidance_scale: float
    negative_prompt: str | None = None
    text_to_image: bool = False  # lambda = 0 as true text-to-image (no source at all)

    def __post_init__(self):
        n = len(self.sources)
        if not (len(self.source_keys) == len(self.labels) == len(self.prompts) == len(self.seeds) == n):
            raise ValueError("GenerationBatch: sources, source_keys, labels, prompts and seeds differ in length")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"GenerationBatch: strength must be in [0, 1], got {self.strength}")


    def subset(self, indices: list[int]) -> GenerationBatch:
        """The batch of the items at ``indices`` (same strength, steps and guidance)."""
        import dataclasses

        pick = lambda xs: [xs[i] for i in indices]  # noqa: E731
        return dataclasses.replace(self, sources=pick(self.sources), source_keys=pick(self.source_keys),
                                   labels=pick(self.labels), prompts=pick(self.prompts), seeds=pick(self.seeds))


def split_by_size(sizes: list[tuple[int, int]]) -> list[list[int]]:
    """Indices grouped by generation size, groups in order of first appearance, indices in order.

    A backend runs one denoiser call per group and puts the images back in the batch's order, so a
    batch of mixed aspect ratios works at any batch size (the planner keeps batches to one size when
    it can: :func:`discl.generation.planning.batches`).
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(tuple(size), []).append(i)
    return list(groups.values())


@runtime_checkable
class Generator(Protocol):
    name: str  # the registered backend name
    model_id: str  # what the manifest's ``model`` column records

    @property
    def denoiser(self) -> Any:
        """The torch module evaluated once per denoising step (tests count its forward calls)."""

    def evaluations_per_image(self, steps: int, strength: float) -> int:
        """Denoiser evaluations one image needs (per CFG branch) with the configured scheduler."""

    def generation_size(self, width: int, height: int) -> tuple[int, int]:
        """The (w, h) a source of this size is generated at (aspect ratio kept)."""

    def generate(self, batch: GenerationBatch) -> list[Image.Image]: ...


# name -> "module:attribute" of a factory taking a GenerationConfig. A factory may also have, all
# read from the model's config files, no weights: ``planning_size(cfg) -> (width, height) -> (w, h)``,
# its generation size (:func:`planning_size`); ``planning_step_rule(cfg) -> str``, the img2img step
# rule its generators' ``step_rule`` attribute holds (:func:`planning_step_rule`).
_REGISTRY: dict[str, str | Callable[[GenerationConfig], Generator]] = {
    "embedded": "discl.generation.embedded:EmbeddedGenerator",
    "diffusers": "discl.generation.diffusers_backend:DiffusersGenerator",
}


def register_generator(name: str) -> Callable:
    """Decorator registering a generator factory (class or function taking a GenerationConfig)."""

    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


def list_generators() -> list[str]:
    return sorted(_REGISTRY)


def _factory(name: str) -> Callable[[GenerationConfig], Generator]:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(f"unknown generation backend {name!r} (registered: {', '.join(list_generators())})")
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = getattr(importlib.import_module(module), attr)
    return entry


def create_generator(cfg: GenerationConfig) -> Generator:
    """Build (and load the weights of) the configured backend."""
    return _factory(cfg.backend)(cfg)


_FALLBACK_LOGGED: set[tuple[str, str, str]] = set()  # logged once per process


def planning_size(cfg: GenerationConfig) -> Callable[[int, int], tuple[int, int]] | None:
    """The configured backend's generation size of a (width, height) source, known without loading
    weights (the factory's ``planning_size``, which reads the model's config files); None when it
    cannot be known before loading: a backend without ``planning_size``, a pipeline whose size policy
    is not mirrored, configs that cannot be read (offline, a hub id not in the local cache). Batches then
    group by exact aspect ratio (:func:`discl.generation.planning.batches`), which is always correct,
    only less full; planning never fails here, and never loads a model.
    """
    policy = getattr(_factory(cfg.backend), "planning_size", None)
    why = f"backend {cfg.backend!r} has no planning_size"
    if policy is not None:
        try:
            return policy(cfg)
        except Exception as e:  # noqa: BLE001 - any reason to fall back is logged; exact ratios stay correct
            why = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
    if (cfg.backend, cfg.model, why) not in _FALLBACK_LOGGED:
        _FALLBACK_LOGGED.add((cfg.backend, cfg.model, why))
        logger.info("generation: batches grouped by exact aspect ratio, not generation size: the generation "
                    "size of %s is not known before loading it (%s)", cfg.model, why)
    return None


def planning_step_rule(cfg: GenerationConfig) -> str:
    """The img2img step rule (:data:`discl.generation.planning.STEP_RULES`) the configured backend's
    generator follows, known without loading weights (the factory's ``planning_step_rule``; the
    ``truncate_steps`` rule of SD and the embedded backend when it has none), so the plan records the
    steps that run. Errors propagate: unlike a size, a wrong step count has no safe fallback."""
    from discl.generation.planning import DEFAULT_STEP_RULE

    rule = getattr(_factory(cfg.backend), "planning_step_rule", None)
    return DEFAULT_STEP_RULE if rule is None else rule(cfg)
