"""``discl baseline``: classifiers trained on the real task data only (phase 0).

Variants: ``--loss ce`` (cross-entropy), ``--loss bs`` (balanced softmax), ``--sampler
class_balanced`` (class-balanced resampling, with CE), ``--loss flyp`` (CLIP models). Each (variant, seed) writes
``RUN/train/<variant>-s<seed>/``; a summary with mean ± std over seeds is printed.
"""

from __future__ import annotations

import argparse
import logging

from discl.methods import BASELINES

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from discl.cli import add_config_arguments

    p.add_argument("--loss", nargs="+", choices=["ce", "bs", "flyp"], default=None,
                   help="losses to train (default: the baselines among the config's methods)")
    p.add_argument("--sampler", choices=["none", "class_balanced"], default="none",
                   help="class_balanced: also train the class-balanced resampling baseline (CE)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds (default: the config's seeds)")
    p.add_argument("--run-dir", default=None, help="run folder (default: the config's run_dir)")
    add_config_arguments(p)


def variants_from_args(losses: list[str], sampler: str) -> list[str]:
    out = list(dict.fromkeys(losses))
    if sampler == "class_balanced":
        out.append("cb")
    return out


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from discl.cli import config_from_args
    from discl.training.recipe import train_baseline
    from discl.training.report import print_summary

    cfg = config_from_args(args)
    if args.loss:
        variants = variants_from_args(args.loss, args.sampler)
    else:
        variants = [m for m in cfg.methods if m in BASELINES] or ["ce"]
        variants = variants_from_args(variants, args.sampler)
    seeds = args.seeds if args.seeds is not None else cfg.seeds
    run_dir = Path(args.run_dir) if args.run_dir else cfg.run_path
    results = {}
    for variant in variants:
        for seed in seeds:
            logger.info("baseline %s seed %d", variant, seed)
            results[(variant, seed)] = train_baseline(cfg, run_dir, variant, seed)
    print_summary(results)
    return 0
