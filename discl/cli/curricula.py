"""``discl curricula``: list the registered curriculum strategies (optionally a schedule preview)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preview", type=int, metavar="EPOCHS", help="print each non-adaptive strategy's stage per epoch")
    from discl.cli import add_config_arguments

    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    from discl.cli import config_from_args
    from discl.curriculum.base import create_strategy, list_strategies

    strategies = list_strategies()
    width = max(map(len, strategies))
    for name, desc in strategies.items():
        print(f"{name:<{width}}  {desc}")
    if args.preview:
        cfg = config_from_args(args, validate=False, defaults_ok=True)
        print()
        for name in strategies:
            try:
                s = create_strategy(name, cfg.curriculum, args.preview, cfg.seed)
            except ValueError as e:  # ConfigError: e.g. single without fixed_level
                print(f"{name:<{width}}  (not available with this config: {e})")
                continue
            note = "  (adaptive: later stages depend on measured progress)" if s.needs_feedback else ""
            print(f"{name:<{width}}  {' '.join(str(s.stage(e)) for e in range(args.preview))}{note}")
    return 0
