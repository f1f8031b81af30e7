"""``discl evaluate``: evaluate a checkpoint on the test split(s)."""

from __future__ import annotations

import argparse
import json

from discl.evaluation.runner import check_checkpoint_matches


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
    from discl.training.checkpoint import read_header
    from discl.training.recipe import evaluate_checkpoint, test_splits

    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise FileNotFoundError(f"--checkpoint {ckpt.resolve()} does not exist")
    cfg = config_from_args(args, run_config=ckpt.parent / "config.yaml", data=True, weights=False)
    ds = build_dataset(cfg.data)
    check_checkpoint_matches(read_header(ckpt), cfg, ds.classes, ckpt)
    splits = args.split or test_splits(ds)
    if not splits:
        from discl.errors import ArtifactError

        raise ArtifactError(f"task {ds.name} has no test split (splits: {', '.join(ds.splits)}); name one with --split")
    out = {split: evaluate_checkpoint(cfg, ckpt, split) for split in splits}
    path = Path(args.out) if args.out else ckpt.parent / f"eval-{'-'.join(splits)}.json"
    atomic_write_json(path, out)
    for split, m in out.items():
        bins = " ".join(f"{b} {100 * m[b]:.2f}" for b in ("many", "medium", "few") if m.get(b) is not None)
        print(f"{split}: top1 {100 * m['top1']:.2f} macro-F1 {100 * m['macro_f1']:.2f} {bins}")
    print(json.dumps({"written": str(path)}))
    return 0
