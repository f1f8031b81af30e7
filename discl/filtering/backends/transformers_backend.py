"""Hugging Face ``CLIPModel`` scorers: ``model`` is a hub id (``openai/clip-vit-base-patch32``) or a
local folder holding the model, its tokenizer and image-processor files."""

from __future__ import annotations

import logging
import os

import torch
from PIL import Image

from discl.errors import ModelNotFoundError
from discl.filtering.scorer import BatchedScorer

log = logging.getLogger(__name__)


def _features(out) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class TransformersClipScorer(BatchedScorer):
    def __init__(self, model: str, device: str = "auto", batch_size: int = 128):
        super().__init__(batch_size=batch_size, device=device)
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        from discl.hub import load_kwargs, unreachable_reason

        if (why := unreachable_reason(model)) is not None:  # at once, not after 30 s of hub retries
            how = ("pass an existing local folder" if model.startswith((".", "/", "~")) else
                   f"provide it by downloading once with network (`hf download {model}`) or pass a local folder")
            raise ModelNotFoundError(
                f"cannot load transformers CLIP {model!r}: {why}; {how} with config.json, the weights, the "
                "tokenizer and preprocessor_config.json as filtering.model=PATH")
        kw = load_kwargs(model)
        try:
            self.model = CLIPModel.from_pretrained(model, dtype=self.dtype, **kw).to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(model, **kw)
            self.processor = CLIPImageProcessor.from_pretrained(model, **kw)
        except Exception as e:  # noqa: BLE001 - OSError, HF hub errors, ValueError alike
            local = os.path.isdir(model)
            how = ("it is a folder without a saved CLIPModel: pass a folder with config.json, the weights, the "
                   "tokenizer and preprocessor_config.json (`CLIPModel.save_pretrained`, the tokenizer's and "
                   "processor's too)" if local else
                   f"provide it by downloading once with network (`hf download {model}`) or pass a local folder "
                   "with config.json, the weights, the tokenizer and preprocessor_config.json as filtering.model=PATH")
            raise ModelNotFoundError(f"cannot load transformers CLIP {model!r}: {str(e).rstrip('. ')}; {how}") from e
        self.id = f"transformers:{model}"
        self.max_length = int(self.model.config.text_config.max_position_embeddings)

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def _images(self, images: list[Image.Image]) -> torch.Tensor:
        pix = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        return _features(self.model.get_image_features(pixel_values=pix.to(self.device, self.dtype)))

    def _texts(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return _features(self.model.get_text_features(**{k: v.to(self.device) for k, v in tok.items()}))


def create(model: str, device: str = "auto", batch_size: int = 128) -> TransformersClipScorer:
    return TransformersClipScorer(model, device=device, batch_size=batch_size)
