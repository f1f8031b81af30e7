"""Similarity scores (pure): cosines of L2-normalised embeddings and the CLIPScore convention."""

from __future__ import annotations

import numpy as np

SIM_COLUMNS = ("sim_text", "sim_prompt", "sim_image")
SCORE_COLUMN = {"text": "sim_text", "prompt": "sim_prompt", "image": "sim_image"}


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of row i of ``a`` with row i of ``b`` ([N, D] each). Rows need not be normalised;
    a row of NaN (e.g. a missing real source) gives NaN."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def clipscore(cos: np.ndarray | float, weight: float = 2.5) -> np.ndarray:
    """CLIPScore (Hessel et al. 2021): ``w * max(cos, 0)`` with w = 2.5; reporting only, the rules use cosines."""
    return weight * np.maximum(np.asarray(cos, dtype=np.float64), 0.0)


def similarity_columns(image: np.ndarray, prompt: np.ndarray, text: np.ndarray, real: np.ndarray) -> dict[str, np.ndarray]:
    """The filter's scores for N generated images from [N, D] embeddings of the image, its prompt,
    its plain class text and its real source image."""
    sim_prompt = rowwise_cosine(image, prompt)
    return {
        "sim_text": rowwise_cosine(image, text),
        "sim_prompt": sim_prompt,
        "sim_image": rowwise_cosine(image, real),
        "clipscore": clipscore(sim_prompt),
    }
