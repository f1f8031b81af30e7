"""Does an embedded-prior image depend on the make-up of the batch it was generated in?

Generates the tiny demo spectrum (TINY settings of tests/conftest.py, λ ∈ {0, 0.5}, 2 seeds, 4
steps) with batch sizes 1, 7 and 64 and counts the images whose bytes differ from batch size 1.
docs/reliability.md quotes the result (why the spectrum reuses whole batches of unchanged make-up).

    OMP_NUM_THREADS=1 .venv/bin/python bench/batch_makeup.py
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from conftest import TINY

    from discl.config import load_config
    from discl.data import build_dataset
    from discl.generation.runner import generate_spectrum
    from discl.mining.runner import mine

    base = [*TINY, "generation.levels=[0.5, 0.0]", "generation.seeds_per_level=2", "generation.steps=4"]
    out: dict[int, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for bs in (1, 7, 64):
            cfg = load_config(ROOT / "configs" / "fmnist-lt.yaml", [*base, f"generation.batch_size={bs}"])
            run = Path(tmp) / f"bs{bs}"
            mine(cfg, run)
            generate_spectrum(cfg, run, dataset=build_dataset(cfg.data), progress=False)
            out[bs] = {p.name: hashlib.blake2b(p.read_bytes()).hexdigest() for p in (run / "spectrum").rglob("*.png")}
    for bs in (7, 64):
        diff = sum(out[1][k] != out[bs][k] for k in out[1])
        print(f"batch size {bs} vs 1: {diff} of {len(out[1])} images differ")


if __name__ == "__main__":
    main()
