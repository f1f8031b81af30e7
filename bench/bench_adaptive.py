"""Share of training time the adaptive curriculum spends measuring progress, on fmnist-lq.

The spectrum is the stand-in of :mod:`discl.curriculum.testing` (the measuring cost depends on how
many held-out variants are scored, not on how they were generated): ``--hard-per-class`` seeded
hard images per class, ``--k`` kept variants per level at λ ∈ {0.5, 0.7, 0.9}, the fmnist-lq recipe's
``holdout_per_class`` (4) held out. Prints one JSON line; target: measure share ≤ 15%.
``--strategy adaptive_class`` measures the per-class variant (same probes; the per-class choice adds
only numpy work on the probabilities already computed).

    .venv/bin/python bench/bench_adaptive.py --epochs 8 --threads 1
    .venv/bin/python bench/bench_adaptive.py --epochs 8 --threads 1 --strategy adaptive_class
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from discl.config import load_config
from discl.curriculum.testing import write_toy_spectrum
from discl.data import build_dataset
from discl.seeding import numpy_rng
from discl.training.recipe import train_curriculum


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hard-per-class", type=int, default=40)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--strategy", choices=["adaptive", "adaptive_class"], default="adaptive")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config("configs/fmnist-lq.yaml", [f"training.epochs={args.epochs}", "data.test_limit=1000"])
    ds = build_dataset(cfg.data)
    train = ds.split("train")
    hard = [sid for c, g in train.groupby("label")
            for sid in numpy_rng("bench-hard", c).permutation(g["sample_id"].to_numpy())[: args.hard_per_class]]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        write_toy_spectrum(run, ds, levels=(0.5, 0.7, 0.9), k=args.k, hard_ids=hard, drop=0.0)
        t0 = time.perf_counter()
        metrics = train_curriculum(cfg, run, args.strategy, seed=0)
        wall = time.perf_counter() - t0
        from discl.methods import method_for, run_folder

        folder = run_folder(method_for(args.strategy, None, cfg.curriculum.strategy, cfg.training.loss), 0)
        log = pd.read_csv(run / "train" / folder / "log.csv")
    measure = float(log["measure_time_s"].fillna(0).sum()) if "measure_time_s" in log else 0.0
    train_t = float(log["train_time_s"].sum())
    checks = log[log["measure_time_s"].notna()] if "measure_time_s" in log else log.iloc[:0]
    own = [c for c in log.columns if c.startswith("chosen_class_level.")]
    per_class = {"classes_choosing_own_level": [int(r[own].notna().sum()) for _, r in checks.iterrows()]} if own else {}
    print(json.dumps({
        "task": "fmnist-lq", "strategy": args.strategy, "epochs": args.epochs, "threads": args.threads, "machine": platform.processor() or platform.machine(),
        "train_time_s": round(train_t, 2), "measure_time_s": round(measure, 2),
        "measure_share": round(measure / (train_t + measure), 4), "checks": len(checks),
        "heldout": metrics["holdout"], "pool_real": metrics["pool_real"], "pool_synthetic": metrics["pool_synthetic"],
        "levels_chosen": log.get("chosen_level", pd.Series(dtype=float)).dropna().tolist(), **per_class,
        "test_macro_f1": round(metrics["test"]["macro_f1"], 4), "test_ood_macro_f1": round(metrics["test_ood"]["macro_f1"], 4),
        "wall_s": round(wall, 1), "mean_train_items_per_epoch": float(np.mean(log["n_items"])),
    }))


if __name__ == "__main__":
    main()
