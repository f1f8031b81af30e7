"""Replacement images for cells the CLIP filter dropped (the authors' long-tail retry rule).

``make_regenerator`` returns the ``regenerate(row, attempt)`` callable that
:func:`discl.filtering.retry.retry_dropped` expects: it generates one new image for the row's
(sample, λ) with another prompt choice and another seed, both derived from the row's ids and the
attempt number, writes it atomically under ``RUN/spectrum/retries/`` and returns the changed fields.
The same row and attempt always give the same image, so a rerun reproduces (and the filter's retry
log reuses) every candidate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from discl.artifacts import atomic_write_bytes, confine
from discl.generation.base import GenerationBatch, create_generator
from discl.generation.planning import strength_for
from discl.prompts.builder import resolve_descriptions, retry_prompt
from discl.seeding import derive_seed

RETRY_DIR = "retries"


def retry_seed(base_seed: int, sample_id: str, lam: float, k: int, attempt: int) -> int:
    return derive_seed(int(base_seed), str(sample_id), float(lam), int(k), "retry", int(attempt))


def make_regenerator(cfg, run_dir: Path, dataset=None, generator=None):
    """``regenerate(row, attempt) -> {file_name, prompt, seed}`` for ``filtering.retries``."""
    g = cfg.generation
    state: dict[str, Any] = {"gen": generator, "dataset": dataset}
    spectrum = Path(run_dir) / "spectrum"

    def regenerate(row: dict, attempt: int) -> dict:
        if state["dataset"] is None:
            from discl.data import build_dataset

            state["dataset"] = build_dataset(cfg.data)
        if state["gen"] is None:
            state["gen"] = create_generator(g)
        ds = state["dataset"]
        sid, lam, k = str(row["sample_id"]), float(row["lam"]), int(row["k"])
        descriptions = resolve_descriptions(cfg.prompts, ds.classes)
        # another prompt than the dropped image's whenever the class has more than one
        prompt = retry_prompt(cfg.prompts, str(row["class_name"]), sid, k, attempt, str(row["prompt"]), descriptions)
        seed = retry_seed(g.base_seed, sid, lam, k, attempt)
        (img,) = state["gen"].generate(GenerationBatch(
            sources=[ds.image(sid)], source_keys=[sid], labels=[int(row["label"])], prompts=[prompt], seeds=[seed],
            strength=strength_for(lam), steps=_row_steps(row, g.steps_at(lam)), guidance_scale=g.guidance_scale,
            negative_prompt=g.negative_prompt, text_to_image=bool(g.text_to_image_at_zero and lam == 0.0)))
        stem = Path(str(row["file_name"])).stem
        rel = f"{RETRY_DIR}/{stem}_r{int(attempt)}.{g.image_format}"
        from discl.generation.runner import _encode

        atomic_write_bytes(confine(spectrum, rel), _encode(img, g.image_format))
        return {"file_name": rel, "prompt": prompt, "seed": seed}

    return regenerate


def _row_steps(row: Any, default: int) -> int:
    """The schedule length the dropped image was made with (its manifest row's ``steps``), else ``default``."""
    value = row.get("steps") if hasattr(row, "get") else None
    try:
        return int(value) if value is not None and value == value else default  # NaN != NaN
    except (TypeError, ValueError):
        return default
