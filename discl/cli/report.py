"""``discl report``: the HTML + Markdown report of a run (:func:`discl.evaluation.report.write_report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from discl.evaluation.report import write_report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder (holds config.yaml)")


def main(args: argparse.Namespace) -> int:
    from discl.config import load_config

    run_dir = Path(args.run_dir)
    cfg = load_config(run_dir / "config.yaml")
    out = write_report(cfg, run_dir)
    print(out)
    return 0
