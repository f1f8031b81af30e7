"""``discl train``: train a classifier with a curriculum over the guidance level (phase 2).

Reads ``RUN/mining/hard.csv`` and ``RUN/filter/manifest.csv`` (+ the images under
``RUN/spectrum``); writes ``RUN/train/<method>-s<seed>/``, the folder ``discl run`` and the report
use for the same method (:func:`discl.methods.method_for`): ``discl`` for the configured strategy with
``training.loss``, ``mixed`` for another strategy, ``bs+discl`` for another loss. Under ``accelerate launch`` or
``torchrun`` the same command trains with several processes (DDP).
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from discl.cli import add_config_arguments

    p.add_argument("--curriculum", default=None, help="strategy name (default, or `discl`: curriculum.strategy; `discl curricula`)")
    p.add_argument("--loss", choices=["ce", "bs", "flyp"], default=None, help="default: training.loss")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds (default: the config's seeds)")
    p.add_argument("--name", default=None, help="run name under RUN/train (default: <method>-s<seed>, as discl run names it)")
    p.add_argument("--run-dir", default=None, help="run folder (default: the config's run_dir)")
    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from discl.cli import config_from_args
    from discl.training.recipe import train_curriculum
    from discl.training.report import print_summary

    cfg = config_from_args(args)
    # "discl" is what `discl run` calls the configured strategy (methods: [discl]): the same here
    strategy = cfg.curriculum.strategy if args.curriculum in (None, "discl") else args.curriculum
    seeds = args.seeds if args.seeds is not None else cfg.seeds
    run_dir = Path(args.run_dir) if args.run_dir else cfg.run_path
    results = {}
    for seed in seeds:
        name = f"{args.name}-s{seed}" if args.name and len(seeds) > 1 else args.name
        results[(strategy, seed)] = train_curriculum(cfg, run_dir, strategy, seed, loss=args.loss, name=name)
    print_summary(results)
    return 0
