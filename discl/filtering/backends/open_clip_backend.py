"""open_clip models as scorers: ``model`` is ``"ARCH/PRETRAINED"``.

``PRETRAINED`` is an open_clip pretrained tag (``ViT-B-32/openai``, what the authors used), a local
checkpoint file (``ViT-B-32//models/vit_b_32.safetensors``: everything after the first ``/``), or
``none`` for random weights (tests only). ``hf-hub:org/repo`` names are passed through whole.
"""

from __future__ import annotations

import logging

from PIL import Image

from discl.errors import ModelNotFoundError
from discl.filtering.scorer import BatchedScorer

log = logging.getLogger(__name__)


def parse_model(spec: str) -> tuple[str, str | None]:
    if spec.startswith("hf-hub:"):
        return spec, None
    if "/" not in spec:
        raise ModelNotFoundError(
            f"open_clip model {spec!r} needs a pretrained part: 'ARCH/PRETRAINED', e.g. 'ViT-B-32/openai', "
            "'ViT-B-32/path/to/weights.safetensors', or 'ARCH/none' for random weights"
        )
    arch, pretrained = spec.split("/", 1)
    return arch, None if pretrained.lower() == "none" else pretrained


class OpenClipScorer(BatchedScorer):
    def __init__(self, spec: str, device: str = "auto", batch_size: int = 128):
        super().__init__(batch_size=batch_size, device=device)
        import open_clip

        arch, pretrained = parse_model(spec)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=self.device)
            self.tokenizer = open_clip.get_tokenizer(arch)
        except Exception as e:  # noqa: BLE001 - open_clip raises RuntimeError/HF/OS errors alike
            raise ModelNotFoundError(
                f"cannot load open_clip model {arch!r} with pretrained {pretrained!r}: {e}. Provide it by "
                "downloading once with network (open_clip caches it under ~/.cache/huggingface), or pass a "
                f"local checkpoint as 'filtering.model={arch}/PATH/TO/weights.safetensors'; known architectures: "
                "open_clip.list_models()"
            ) from e
        if pretrained is None:
            log.warning("open_clip %s has random weights (pretrained 'none'): scores are meaningless", arch)
        self.model = model.to(self.device, self.dtype).eval()
        self.preprocess = preprocess
        self.id = f"open_clip:{spec}"
        self._dim = int(getattr(model, "embed_dim", None) or model.text_projection.shape[-1])

    @property
    def embed_dim(self) -> int:
        return self._dim

    def _images(self, images: list[Image.Image]):
        import torch

        x = torch.stack([self.preprocess(img.convert("RGB")) for img in images])
        return self.model.encode_image(x.to(self.device, self.dtype))

    def _texts(self, texts: list[str]):
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


def create(model: str, device: str = "auto", batch_size: int = 128) -> OpenClipScorer:
    return OpenClipScorer(model, device=device, batch_size=batch_size)
