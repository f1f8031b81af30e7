"""``discl evaluate``: a saved checkpoint on the task's test split(s), written as metrics JSON."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from discl.cli import add_config_arguments

    p.add_argument("--checkpoint", required=True, help="best.safetensors written by discl train / baseline")
    p.add_argument("--split", nargs="+", default=None, help="splits (default: test, and test_ood where it exists)")
    p.add_argument("--out", default=None, help="write the metrics here (default: eval-<split>.json next to the checkpoint)")
    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from discl.artifacts import atomic_write_json
    from discl.cli import config_from_args
    from discl.data import build_dataset
    from discl.training.recipe import evaluate_checkpoint, test_splits

    cfg = config_from_args(args)
    splits = args.split or test_splits(build_dataset(cfg.data))
    ckpt = Path(args.checkpoint)
    out = {split: evaluate_checkpoint(cfg, ckpt, split) for split in splits}
    path = Path(args.out) if args.out else ckpt.parent / f"eval-{'-'.join(splits)}.json"
    atomic_write_json(path, out)
    for split, m in out.items():
        bins = " ".join(f"{b} {100 * m[b]:.2f}" for b in ("many", "medium", "few") if m.get(b) is not None)
        print(f"{split}: top1 {100 * m['top1']:.2f} macro-F1 {100 * m['macro_f1']:.2f} {bins}")
    print(json.dumps({"written": str(path)}))
    return 0
