"""How similar are *distinct* real images of a task? Sets the near-duplicate thresholds of
``discl leakage`` (discl/evaluation/leakage.py THRESHOLDS) above what distinct images reach.

    .venv/bin/python bench/leakage_thresholds.py configs/fmnist-lt.yaml [key=value ...]

For every training image of the task: its nearest test image in CLIP image space (the config's
filtering scorer) and in pixel space; prints quantiles and the maximum of those similarities.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from discl.config import load_config
    from discl.data import build_dataset
    from discl.evaluation.leakage import _embed, nearest
    from discl.filtering.scorer import create_scorer

    cfg = load_config(sys.argv[1], sys.argv[2:])
    ds = build_dataset(cfg.data)
    fc = cfg.filtering
    scorer = create_scorer(fc.backend, fc.model, device=fc.device, batch_size=fc.batch_size)
    emb = {s: _embed(ds.split(s)["sample_id"].astype(str).tolist(), ds.image, scorer, 256) for s in ("train", "test")}
    print(f"task {cfg.data.task} (data.seed {cfg.data.seed}): {len(emb['train'][0])} train vs {len(emb['test'][0])} test images")
    for i, space in enumerate(("clip", "pixel")):
        sim, _ = nearest(emb["train"][i], emb["test"][i], 1)
        q = np.quantile(sim[:, 0], [0.5, 0.99, 0.999, 1.0])
        print(f"{space:5s} nearest test image of each train image: median {q[0]:.4f}, 99% {q[1]:.4f}, "
              f"99.9% {q[2]:.4f}, max {q[3]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
