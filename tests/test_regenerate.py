"""Retry candidates for dropped cells: deterministic per (row, attempt), written inside the run folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from conftest import TINY

from discl.config import load_config
from discl.generation.regenerate import make_regenerator


def test_regenerate_is_deterministic_and_new_per_attempt(tiny_run: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run / "spectrum", run / "spectrum")
    cfg = load_config("configs/fmnist-lt.yaml", TINY)
    row = pd.read_csv(run / "spectrum" / "metadata.csv").iloc[0].to_dict()
    regen = make_regenerator(cfg, run)
    a1 = regen(row, 1)
    bytes1 = (run / "spectrum" / a1["file_name"]).read_bytes()
    a2 = regen(row, 2)
    assert a1["file_name"].startswith("retries/") and a1["file_name"] != a2["file_name"]
    assert a1["seed"] != a2["seed"] and a1["seed"] != row["seed"]
    again = make_regenerator(cfg, run)(row, 1)
    assert again == a1 and (run / "spectrum" / a1["file_name"]).read_bytes() == bytes1


def test_a_retry_runs_the_schedule_length_its_dropped_image_ran():
    """A filter retry re-makes an image with the steps in its manifest row, whatever the config says now."""
    import pandas as pd

    from discl.generation.regenerate import _row_steps

    assert _row_steps(pd.Series({"steps": 100, "lam": 0.5}), 25) == 100
    assert _row_steps({"steps": 40.0}, 25) == 40
    assert _row_steps(pd.Series({"steps": float("nan")}), 25) == 25  # a manifest from before the column
    assert _row_steps({"lam": 0.5}, 25) == 25
