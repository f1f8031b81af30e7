"""Tiny real CLIP components and a tiny spectrum folder, for tests and demos (offline, seconds).

The tiny models have random weights: they exercise the real open_clip / transformers code paths,
not the quality of the scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from discl.seeding import numpy_rng

TINY_OPEN_CLIP = "discl-tiny-test-clip"
TINY_OPEN_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 1, "width": 32, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def register_tiny_open_clip(folder: Path) -> str:
    """Write the tiny config as ``folder/<name>.json``, register it with open_clip, return the name."""
    import open_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TINY_OPEN_CLIP}.json"
    path.write_text(json.dumps(TINY_OPEN_CLIP_CONFIG))
    open_clip.add_model_config(path)
    return TINY_OPEN_CLIP


def save_tiny_transformers_clip(folder: Path, seed: int = 0) -> Path:
    """A tiny ``CLIPModel`` + byte-level ``CLIPTokenizer`` (a few merges) + image processor in ``folder``."""
    import torch
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = Path(folder)
    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = [("o", "f</w>"), ("p", "h"), ("ph", "o"), ("pho", "t"), ("phot", "o</w>")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=merges)
    tok.model_max_length = 16
    tok.save_pretrained(folder)
    cfg = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16,
                     "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
                     "pad_token_id": vocab["<|endoftext|>"]},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(cfg).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_tiny_spectrum(run_dir: Path, images: dict[str, np.ndarray], classes: list[str], labels: dict[str, int],
                       levels=(0.0, 0.5, 0.9), seeds: int = 2, seed: int = 0) -> pd.DataFrame:
    """``RUN/spectrum`` with one noisy variant of each real image per (λ, k): the closer λ is to 1,
    the less noise (a stand-in for a generator, enough to exercise the filter)."""
    spectrum = Path(run_dir) / "spectrum"
    rows = []
    for sid, img in images.items():
        for lam in levels:
            for k in range(seeds):
                rng = numpy_rng("tiny-spectrum", seed, sid, float(lam), k)
                noise = rng.normal(0, 120 * (1 - lam), img.shape)
                out = np.clip(img.astype(float) + noise, 0, 255).astype(np.uint8)
                name = f"{sid}/lam{lam:.2f}_k{k}.png"
                (spectrum / sid).mkdir(parents=True, exist_ok=True)
                Image.fromarray(out).save(spectrum / name)
                c = labels[sid]
                rows.append({"file_name": name, "sample_id": sid, "label": c, "class_name": classes[c], "lam": lam,
                             "strength": round(1 - lam, 6), "seed": int(rng.integers(2**31)), "k": k,
                             "prompt": f"a 8k real photo: a {classes[c]}", "model": "tiny-test", "steps": 10,
                             "denoise_steps": int(10 * (1 - lam)), "guidance_scale": 7.5})
    frame = pd.DataFrame(rows)
    frame.to_csv(spectrum / "metadata.csv", index=False)
    return frame
