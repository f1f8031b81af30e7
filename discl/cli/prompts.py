"""``discl prompts``: the prompt of every (hard image, k) (:func:`discl.prompts.runner.write_prompts`)."""

from __future__ import annotations

import argparse

from discl.prompts.runner import write_prompts


def add_arguments(p: argparse.ArgumentParser) -> None:
    from discl.cli import add_config_arguments

    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    from discl.cli import config_from_args

    cfg = config_from_args(args)
    table = write_prompts(cfg, cfg.run_path)
    print(f"{len(table)} prompts ({table['prompt'].nunique()} distinct) in {cfg.run_path / 'prompts/prompts.csv'}")
    return 0
