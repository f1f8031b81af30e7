"""Shared test setup: offline, quiet, small thread counts, a fresh run folder per test."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# the weights-digest cache (discl.fingerprint) goes to a throwaway folder, not the user's ~/.cache
os.environ.setdefault("DISCL_CACHE_DIR", tempfile.mkdtemp(prefix="discl-test-cache-"))

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    return d


ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "data.test_limit=200",
    "generation.levels=[0.0, 0.5]",
    "generation.seeds_per_level=2",
    "generation.steps=10",
    "curriculum.levels=[0.0, 0.5]",
    "curriculum.stages=[0.34, 0.33, 0.33]",
    "training.epochs=3",
    "methods=[ce, discl]",
    "seeds=[0]",
]


def discl(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONHASHSEED": "random"}
    p = subprocess.run([sys.executable, "-m", "discl", *args], cwd=ROOT, env=env, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"discl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("e2e") / "run"
    p = discl("run", "configs/fmnist-lt.yaml", "--run-dir", str(run), *TINY)
    (run / "_stdout.txt").write_text(p.stdout)
    return run


