"""``discl leakage``: kept synthetic images that nearly copy a validation/test image
(:func:`discl.evaluation.leakage.check_leakage`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from discl.evaluation.leakage import PIXEL_SIZE, THRESHOLDS, check_leakage


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (with config.yaml and filter/manifest.csv)")
    p.add_argument("--k", type=int, default=3, help="nearest real images kept per synthetic image, space and split")
    p.add_argument("--clip-threshold", type=float, default=THRESHOLDS["clip"], help="CLIP cosine counted as a duplicate")
    p.add_argument("--pixel-threshold", type=float, default=THRESHOLDS["pixel"],
                   help=f"pixel cosine ({PIXEL_SIZE}x{PIXEL_SIZE} grayscale, mean-centred) counted as a duplicate")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch")


def main(args: argparse.Namespace) -> int:
    from discl.errors import BadInputError

    if args.k < 1 or args.batch_size < 1:
        raise BadInputError(f"--k and --batch-size must be >= 1, got {args.k} and {args.batch_size}")
    summary = check_leakage(Path(args.run), k=args.k, batch=args.batch_size,
                            thresholds={"clip": args.clip_threshold, "pixel": args.pixel_threshold})
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary.to_string(index=False))
    n = int(summary["images_with_duplicate"].sum())
    print(f"\n{n} (synthetic image, space, split) cases with a near duplicate; details: {Path(args.run) / 'leakage'}")
    return 0
