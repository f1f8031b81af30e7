"""The embedded CLIP: a small open_clip model for 28x28 grayscale images, shipped with the package.

It stands in for CLIP ViT-B/32 on the embedded Fashion-MNIST tasks. The architecture is data
(``discl/assets/clip/discl-fmnist-clip.json``, open_clip's model-config format plus a
``preprocess_cfg``); the weights are a safetensors file trained by ``discl clip train`` on the clean
prior pool only (see :mod:`discl.filtering.clip_train` and docs/filtering.md).

Images are converted to 28x28 grayscale (aspect kept, black padding), scaled to [0, 1], normalised
with the Fashion-MNIST mean/std and repeated to 3 channels (open_clip's ViT stem takes RGB).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from discl.assets import CLIP_CONFIG_PATH, CLIP_DIR, CLIP_MODEL_NAME, CLIP_WEIGHTS_PATH
from discl.errors import BadInputError, ModelNotFoundError

log = logging.getLogger(__name__)

# the shipped CLIP's files (located in discl.assets, which the fingerprint reads too)
ASSET_DIR, MODEL_NAME, CONFIG_PATH, WEIGHTS_PATH = CLIP_DIR, CLIP_MODEL_NAME, CLIP_CONFIG_PATH, CLIP_WEIGHTS_PATH


def load_model_config(path: str | Path | None = None) -> dict[str, Any]:
    path = Path(path) if path else CONFIG_PATH
    if not path.is_file():
        raise ModelNotFoundError(f"embedded CLIP config {path} is missing; reinstall discl or pass a config file")
    return json.loads(path.read_text(encoding="utf-8"))


def build_embedded_clip(config: dict[str, Any] | None = None):
    """The open_clip ``CLIP`` of the embedded config with freshly initialised weights (no IO but the config)."""
    import open_clip

    cfg = config or load_model_config()
    return open_clip.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=dict(cfg["vision_cfg"]), text_cfg=dict(cfg["text_cfg"]))


def build_tokenizer(config: dict[str, Any] | None = None):
    """open_clip's shipped BPE tokenizer (no download) at the config's context length."""
    from open_clip.tokenizer import SimpleTokenizer

    cfg = config or load_model_config()
    return SimpleTokenizer(context_length=int(cfg["text_cfg"]["context_length"]))


def normalize_batch(x: torch.Tensor, config: dict[str, Any] | None = None) -> torch.Tensor:
    """uint8 or [0, 1] float images [N, 1, H, W] -> the model's normalised float input [N, 3, H, W]."""
    cfg = (config or load_model_config())["preprocess_cfg"]
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    x = (x - cfg["mean"]) / cfg["std"]
    return x.expand(-1, int(cfg["expand_to"]), -1, -1)


def pil_to_uint8(images: Sequence[Image.Image], config: dict[str, Any] | None = None) -> torch.Tensor:
    from discl.data.base import to_model_tensor

    size = int((config or load_model_config())["vision_cfg"]["image_size"])
    if not images:
        return torch.zeros((0, 1, size, size), dtype=torch.uint8)
    return torch.stack([to_model_tensor(img, size, 1) for img in images])


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Weights as fp16 safetensors (the shipped file stays a few MB), written atomically."""
    from safetensors.torch import save

    from discl.artifacts import atomic_write_bytes

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(Path(path), save(state, metadata=metadata or {}))


def load_weights(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(
            f"embedded CLIP weights {path} are missing; train them with `discl clip train --out {path}` "
            "or reinstall discl (the package ships discl/assets/clip/discl-fmnist-clip.safetensors)"
        )
    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise BadInputError(f"embedded CLIP weights {path}: not a readable safetensors file ({e})") from None
    ref = model.state_dict()
    missing, unexpected = sorted(set(ref) - set(state)), sorted(set(state) - set(ref))
    wrong = sorted(k for k in set(ref) & set(state) if tuple(state[k].shape) != tuple(ref[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{len(v)} {name} (e.g. {v[0]!r})" for name, v in
                 (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)) if v]
        raise BadInputError(f"embedded CLIP weights {path}: not the embedded CLIP's tensors ({', '.join(parts)}); "
                            f"give a file written by `discl clip train`")
    state = {k: v.to(ref[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model


def create_embedded_clip(weights: str | Path | None = None, config: str | Path | None = None):
    """(model in eval mode with the shipped or given weights, tokenizer, model config)."""
    cfg = load_model_config(config)
    model = build_embedded_clip(cfg)
    load_weights(model, weights or WEIGHTS_PATH)
    model.eval()
    return model, build_tokenizer(cfg), cfg
