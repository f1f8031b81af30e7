"""Batches of a photo-folder spectrum grouped by exact aspect ratio vs by generation size.

Pure planning, no model: ``N`` sources with an ImageNet-like mix of sizes (illustrative weights,
not measured from ImageNet: 70 % from the common 500-px sizes, 30 % a long tail with the longest
side 500 or a free size), the default spectrum (6 levels x 8 seeds) at ``generation.batch_size``
64, planned by :func:`discl.generation.planning.batches` with and without the backend's size
function for three size policies (SDXL refiner 1024/8, SD 1.5 512/8, SD3 1024/16).
docs/generation.md quotes the result.

    OMP_NUM_THREADS=1 .venv/bin/python bench/batch_fill.py [--sources 2000] [--batch-size 64]
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np
import pandas as pd

COMMON = {(500, 375): 30, (500, 333): 12, (375, 500): 8, (500, 334): 4, (500, 500): 4, (333, 500): 4,
          (500, 400): 2, (500, 335): 1, (500, 332): 1, (400, 500): 1, (640, 480): 2, (500, 281): 1}
POLICIES = {"SDXL refiner (1024/8)": (1024, 8), "SD 1.5 (512/8)": (512, 8), "SD3 (1024/16)": (1024, 16)}


def photo_sizes(n: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    common, weights = list(COMMON), np.array(list(COMMON.values()), dtype=float)
    out = []
    for _ in range(n):
        u = rng.random()
        if u < 0.7:
            out.append(common[rng.choice(len(common), p=weights / weights.sum())])
        elif u < 0.9:  # longest side 500, the other anything from 200 to 500
            other = int(rng.integers(200, 501))
            out.append((500, other) if rng.random() < 0.7 else (other, 500))
        else:  # a free size
            out.append((int(rng.integers(150, 1600)), int(rng.integers(150, 1600))))
    return out


def main() -> None:
    from discl.generation.config import GenerationConfig
    from discl.generation.planning import batches, generation_size, plan_jobs

    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    g = GenerationConfig()
    ids = [f"s{i:05d}" for i in range(args.sources)]
    sizes = dict(zip(ids, photo_sizes(args.sources)))
    hard = pd.DataFrame({"sample_id": ids, "label": 0, "class_name": "a"})
    jobs = plan_jobs(hard, g.levels, g.seeds_per_level, g.base_seed, g.steps)
    print(f"{args.sources} sources, {len(set(sizes.values()))} distinct sizes, {len(jobs)} images, "
          f"batch size {args.batch_size}")

    def describe(name: str, planned) -> None:
        n = [len(b) for b in planned]
        print(f"  {name:<42} {len(planned):>6} batches, {sum(x == 1 for x in n):>6} of 1 image, "
              f"mean {np.mean(n):5.1f} images per batch")

    describe("exact aspect ratio (before)", batches(jobs, args.batch_size, sizes))
    for name, (longest, multiple) in POLICIES.items():
        size_of = partial(generation_size, longest=longest, multiple=multiple)
        describe(f"generation size, {name}", batches(jobs, args.batch_size, sizes, size_of))


if __name__ == "__main__":
    main()
