"""``discl run``: every stage in order (:func:`discl.pipeline.run`), then the headline table."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from discl.evaluation.results import collect_results, headline_table
from discl.pipeline import run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_file", nargs="?", help="YAML run config (configs/fmnist-lt.yaml)")
    p.add_argument("--config", "-c", dest="config", help="same as the positional CONFIG")
    p.add_argument("--run-dir", help="run folder (default: the config's run_dir)")
    p.add_argument("--force", action="store_true", help="rerun every stage even when complete")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. training.epochs=5")


def main(args: argparse.Namespace) -> int:
    from discl.cli import config_from_args

    cfg = config_from_args(args)  # a config (or --run-dir's own) is required, and validated before any work
    run_dir = Path(args.run_dir) if args.run_dir else cfg.run_path
    t0 = time.perf_counter()
    status = run(cfg, run_dir, force=args.force, validated=True)  # config_from_args ran the full check
    results = collect_results(cfg, run_dir)
    table = headline_table(cfg, results)
    ran = [k for k, v in status.items() if v == "ran" and k != "report"]
    print(f"\nDisCL run '{cfg.name}' finished in {time.perf_counter() - t0:.0f} s "
          f"({'stages run: ' + ', '.join(ran) if ran else 'nothing to redo: every stage was complete'})")
    print(f"Report: {run_dir / 'report.html'}  (summary: {run_dir / 'report.md'})\n")
    print(table)  # the report wrote it to headline.md too
    return 0
