"""``discl filter``: score the spectrum with CLIP and apply the keep rules (:func:`discl.filtering.runner.filter_run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from discl.filtering.runner import filter_run


def add_arguments(p: argparse.ArgumentParser) -> None:
    from discl.cli import add_config_arguments

    add_config_arguments(p)
    p.add_argument("--run-dir", default=None, help="run folder (default: the config's run_dir)")


def main(args) -> int:
    from discl.cli import config_from_args

    cfg = config_from_args(args)
    manifest = filter_run(cfg, Path(args.run_dir) if args.run_dir else cfg.run_path)
    kept = int(manifest["keep"].sum())
    print(f"kept {kept} of {len(manifest)} images; encoded {manifest.attrs.get('images_encoded', 0)} new images")
    return 0
