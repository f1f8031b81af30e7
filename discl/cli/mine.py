"""``discl mine``: select the hard training images (:func:`discl.mining.runner.mine`)."""

from __future__ import annotations

import argparse

from discl.mining.runner import OUT, mine


def add_arguments(p: argparse.ArgumentParser) -> None:
    from discl.cli import add_config_arguments

    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    from discl.cli import config_from_args
    from discl.config import save_config

    cfg = config_from_args(args)
    run_dir = cfg.run_path
    save_config(cfg, run_dir / "config.yaml")
    hard = mine(cfg, run_dir)
    per_class = hard.groupby("class_name").size().to_dict() if len(hard) else {}
    print(f"{len(hard)} hard images -> {run_dir / OUT / 'hard.csv'}")
    for name, n in sorted(per_class.items(), key=lambda kv: -kv[1]):
        print(f"  {name}: {n}")
    return 0
