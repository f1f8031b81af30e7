"""``discl prompts``: the prompt of every (hard image, k), written to ``RUN/prompts/prompts.csv``.

The generation stage computes the same prompts itself (they are a pure function of the config); this
stage makes them inspectable and editable-by-config before any image is generated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from discl.artifacts import confine, read_table, write_table
from discl.config import RunConfig
from discl.prompts.builder import build_prompt, resolve_descriptions

logger = logging.getLogger(__name__)


def build_prompt_table(cfg: RunConfig, hard: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """One row per (hard sample, k < seeds_per_level): sample_id, k, label, class_name, prompt."""
    descriptions = resolve_descriptions(cfg.prompts, classes)
    rows = [{"sample_id": str(r.sample_id), "k": k, "label": int(r.label), "class_name": str(r.class_name),
             "prompt": build_prompt(cfg.prompts, str(r.class_name), str(r.sample_id), k, descriptions)}
            for r in hard.reset_index(drop=True).sort_values("sample_id").itertuples(index=False)
            for k in range(cfg.generation.seeds_per_level)]
    return pd.DataFrame(rows, columns=["sample_id", "k", "label", "class_name", "prompt"])


def write_prompts(cfg: RunConfig, run_dir: Path, classes: Sequence[str] | None = None) -> pd.DataFrame:
    run_dir = Path(run_dir)
    hard = read_table(confine(run_dir, "mining/hard.csv"))
    if classes is None:
        from discl.data import build_dataset

        classes = build_dataset(cfg.data).classes
    table = build_prompt_table(cfg, hard, classes)
    write_table(confine(run_dir, "prompts/prompts.csv"), table)
    return table
