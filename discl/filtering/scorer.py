"""The CLIP scorer interface and its registry of backends.

A scorer turns images and texts into L2-normalised embeddings in one joint space; every similarity
the filter uses is a dot product of two such rows (see :mod:`discl.filtering.scores`). Backends live
one per module under :mod:`discl.filtering.backends` and are imported only when created, so
open_clip and transformers are loaded only by the backend that needs them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger(__name__)


@runtime_checkable
class ClipScorer(Protocol):
    """What the filter needs from a CLIP model."""

    #: stable identifier of backend + model + weights; cached scores are keyed by it
    id: str

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """float32 CPU tensor [N, D], rows L2-normalised."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """float32 CPU tensor [N, D], rows L2-normalised."""
        ...


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class BatchedScorer:
    """Batching, ``no_grad``, normalisation and call counting shared by the backends.

    Subclasses implement ``_images(list[PIL]) -> Tensor`` and ``_texts(list[str]) -> Tensor`` for one
    batch. ``images_encoded`` / ``texts_encoded`` count the inputs actually sent to the model (the
    resume tests check that a rerun sends none).
    """

    id: str = "unset"

    def __init__(self, batch_size: int = 128, device: str = "auto"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.device = resolve_device(device)
        # fp16 on CUDA (what the authors ran); fp32 on CPU where half precision is slow and inexact
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.images_encoded = 0
        self.texts_encoded = 0

    def _images(self, images: list[Image.Image]) -> torch.Tensor:
        raise NotImplementedError

    def _texts(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def _run(self, items: Sequence, fn: Callable[[list], torch.Tensor]) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for i in range(0, len(items), self.batch_size):
                emb = fn(list(items[i : i + self.batch_size]))
                out.append(F.normalize(emb.float(), dim=-1).cpu())
        if not out:
            return torch.zeros((0, self.embed_dim), dtype=torch.float32)
        return torch.cat(out)

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        self.images_encoded += len(images)
        return self._run(images, self._images)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        self.texts_encoded += len(texts)
        return self._run(texts, self._texts)

    @property
    def embed_dim(self) -> int:
        raise NotImplementedError


# name -> "module" (exposing ``create(model, device, batch_size)``) or a factory callable
_BACKENDS: dict[str, str | Callable[..., ClipScorer]] = {
    "embedded": "discl.filtering.backends.embedded",
    "open_clip": "discl.filtering.backends.open_clip_backend",
    "transformers": "discl.filtering.backends.transformers_backend",
}


def register_backend(name: str, factory: str | Callable[..., ClipScorer]) -> None:
    """Add a backend: a module path exposing ``create(model, device, batch_size)``, or the factory itself."""
    _BACKENDS[name] = factory


def list_backends() -> list[str]:
    return sorted(_BACKENDS)


def create_scorer(backend: str, model: str, device: str = "auto", batch_size: int = 128) -> ClipScorer:
    """A ready scorer (weights loaded, eval mode). Raises ModelNotFoundError when weights are missing."""
    if backend not in _BACKENDS:
        raise ValueError(f"unknown CLIP backend {backend!r} (registered: {', '.join(list_backends())})")
    factory = _BACKENDS[backend]
    if isinstance(factory, str):
        factory = importlib.import_module(factory).create
    scorer = factory(model, device=device, batch_size=batch_size)
    log.info("CLIP scorer %s on %s", scorer.id, getattr(scorer, "device", "?"))
    return scorer
