"""The embedded CLIP (a small open_clip model shipped with discl) as a scorer.

``model`` is ``"embedded"`` for the shipped weights or a path to another ``.safetensors`` file
trained by ``discl clip train``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from discl.filtering.embedded_clip import WEIGHTS_PATH, create_embedded_clip, normalize_batch, pil_to_uint8
from discl.filtering.scorer import BatchedScorer


def weights_digest(weights: str | Path | None = None) -> str:
    """A short digest of the weights file: cached scores of other weights (a retrained model) don't match.

    The content digest of :mod:`discl.fingerprint` (cached by path, size and mtime), shortened.
    """
    from discl.fingerprint import file_digests

    path = Path(weights) if weights else WEIGHTS_PATH
    if not path.is_file():
        return "missing"
    return file_digests([path])[0][:12]


class EmbeddedClipScorer(BatchedScorer):
    def __init__(self, weights: str | Path | None = None, device: str = "auto", batch_size: int = 128):
        super().__init__(batch_size=batch_size, device=device)
        path = Path(weights) if weights else WEIGHTS_PATH
        self.model, self.tokenizer, self.config = create_embedded_clip(path)
        self.model.to(self.device, self.dtype)
        self.id = f"embedded:{weights_digest(path)}"

    @property
    def embed_dim(self) -> int:
        return int(self.config["embed_dim"])

    def encode_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of uint8 images [N, 1, 28, 28] (skips PIL; used by training checks and benchmarks)."""
        self.images_encoded += len(x)
        return self._run(x, lambda b: self.model.encode_image(
            normalize_batch(torch.stack(b), self.config).to(self.device, self.dtype)))

    def _images(self, images: list[Image.Image]) -> torch.Tensor:
        x = normalize_batch(pil_to_uint8(images, self.config), self.config)
        return self.model.encode_image(x.to(self.device, self.dtype))

    def _texts(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


def create(model: str = "embedded", device: str = "auto", batch_size: int = 128) -> EmbeddedClipScorer:
    return EmbeddedClipScorer(None if model in ("", "embedded") else model, device=device, batch_size=batch_size)
