"""A small stand-in spectrum for tests and quick CPU checks of the training stage.

Real runs get ``RUN/spectrum`` from the diffusion stage and ``RUN/filter/manifest.csv`` from the
CLIP filter. To test curriculum training without those models, this writes the same artifacts from
a transparent rule: the variant at λ of a hard image is ``λ·image + (1 - λ)·prototype``, where the
prototype is the mean training image of its class (λ=0: prototypical, λ→1: the image itself),
plus seeded noise per variant k. Every variant is kept except a seeded share ``drop`` (to exercise
the ``keep`` column). Hard images are the images of the classes with fewer than ``rare_below``
training images (the class-frequency criterion).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from discl.artifacts import write_table
from discl.data.base import ImageDataset
from discl.seeding import numpy_rng


def write_toy_spectrum(run_dir: Path, ds: ImageDataset, levels=(0.1, 0.3, 0.5), k: int = 2, rare_below: int = 20,
                       hard_ids: list[str] | None = None, drop: float = 0.1, seed: int = 0, size: int = 28) -> pd.DataFrame:
    run_dir = Path(run_dir)
    train = ds.split("train")
    counts = ds.class_counts("train")
    if hard_ids is None:
        hard = train[counts[train["label"].to_numpy()] < rare_below]
    else:
        hard = train.loc[hard_ids]
    hard_frame = pd.DataFrame({"sample_id": hard["sample_id"], "label": hard["label"], "class_name": hard["class_name"],
                               "criterion": "class_frequency"})
    write_table(run_dir / "mining" / "hard.csv", hard_frame)
    x = ds.tensors(train["sample_id"].tolist(), size, 1).float().numpy()[:, 0]
    labels = train["label"].to_numpy()
    protos = {c: x[labels == c].mean(0) for c in np.unique(labels)}
    pos = {sid: i for i, sid in enumerate(train["sample_id"])}
    rows = []
    for sid, lab, name in zip(hard["sample_id"], hard["label"], hard["class_name"]):
        for lam in levels:
            for j in range(k):
                rng = numpy_rng("toy-spectrum", seed, sid, float(lam), j)
                img = lam * x[pos[sid]] + (1 - lam) * protos[lab] + rng.normal(0, 8, (size, size))
                fname = f"{lab}/{sid}_l{lam:g}_k{j}.png"
                path = run_dir / "spectrum" / fname
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8)).save(path)
                rows.append({"file_name": fname, "sample_id": sid, "label": int(lab), "class_name": name, "lam": float(lam),
                             "k": j, "seed": j, "keep": bool(rng.random() >= drop), "sim_text": 0.3})
    manifest = pd.DataFrame(rows)
    write_table(run_dir / "filter" / "manifest.csv", manifest)
    return manifest


def head_tail_pool_meta() -> pd.DataFrame:
    """A pool's ``meta`` (as :func:`discl.curriculum.stage_data.build_pool_meta` makes it) for tests of
    the epoch plans: 4 head classes x 100 real images (10 hard each), 2 tail classes x 5 real (all
    hard); each hard image has variants at λ 0.1 and 0.5, 6 per level for the tail, 1 for the head."""
    rows = []
    for c in range(6):
        n = 100 if c < 4 else 5
        for i in range(n):
            hard = c >= 4 or i < 10
            rows.append(("real", f"r{c}-{i}", c, 1.0, hard, c >= 4))
            if hard:
                for lam in (0.1, 0.5):
                    rows += [("synthetic", f"r{c}-{i}", c, lam, True, c >= 4)] * (6 if c >= 4 else 1)
    return pd.DataFrame(rows, columns=["kind", "sample_id", "label", "lam", "hard", "tail"])
