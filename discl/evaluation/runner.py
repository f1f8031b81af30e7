"""``discl evaluate``: a saved checkpoint on the task's test split(s), written as metrics JSON.

The config is the checkpoint's own: ``config.yaml`` next to it (every training run saves its
resolved config there), else ``RUN/config.yaml`` of ``--run-dir``. An explicit ``CONFIG`` is
checked against the checkpoint: other classes, channels or image size are an error, since the
numbers would describe another task.
"""

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


def checkpoint_mismatches(header: dict, channels: int, image_size: int, classes: list[str]) -> list[str]:
    """What a config says differently from a checkpoint's header (pure)."""
    out = []
    names = header.get("class_names")
    if names is not None and list(names) != list(classes):
        out.append(f"classes: the checkpoint has {len(names)} ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}), "
                   f"the config's data has {len(classes)} ({', '.join(classes[:6])}{', ...' if len(classes) > 6 else ''})")
    if header.get("in_channels") is not None and int(header["in_channels"]) != int(channels):
        out.append(f"data.channels: the checkpoint takes {header['in_channels']}, the config says {channels}")
    if header.get("image_size") is not None and int(header["image_size"]) != int(image_size):
        out.append(f"data.image_size: the checkpoint was trained at {header['image_size']}, the config says {image_size}")
    return out


def check_checkpoint_matches(header: dict, cfg, classes: list[str], ckpt) -> None:
    from discl.configtools import ConfigError

    bad = checkpoint_mismatches(header, cfg.data.channels, cfg.data.image_size, classes)
    if bad:
        raise ConfigError(f"the config does not match --checkpoint {ckpt}: " + "; ".join(bad)
                          + f". Leave out CONFIG to use the run's own ({ckpt.parent / 'config.yaml'})")
