"""``discl sweep``: one config key over several values, related to the results (:func:`discl.sweep.run_sweep`)."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from discl.configtools import ConfigError
from discl.sweep import run_sweep, sweep_dir

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from discl.cli import add_config_arguments

    add_config_arguments(p, required=True)
    p.add_argument("--key", required=True, help="dotted config key to sweep, e.g. filtering.threshold")
    p.add_argument("--values", nargs="+", required=True, help="values, parsed like key=value overrides")
    p.add_argument("--methods", nargs="+", default=None, help="methods to train per value (default: the config's)")
    p.add_argument("--seeds", nargs="+", default=None, help="training seeds per value (default: the config's)")


def _split_overrides(args: argparse.Namespace) -> None:
    """``--values a b key=v``: argparse gives trailing overrides to the list option; move them back."""
    overrides = list(args.overrides or [])
    for name in ("values", "methods", "seeds"):
        items = getattr(args, name) or []
        keep = [v for v in items if not _OVERRIDE.match(v)]
        overrides += [v for v in items if _OVERRIDE.match(v)]
        setattr(args, name, keep if items else getattr(args, name))
    args.overrides = overrides


def main(args: argparse.Namespace) -> int:
    from discl.cli import config_from_args

    _split_overrides(args)
    if args.methods:
        args.overrides.append(f"methods=[{', '.join(args.methods)}]")
    if args.seeds:
        bad = [s for s in args.seeds if not s.isdigit()]
        if bad:
            raise ConfigError(f"--seeds: {bad[0]!r} is not a seed (integers >= 0)")
        args.overrides.append(f"seeds=[{', '.join(args.seeds)}]")
    cfg = config_from_args(args)
    base_dir = Path(args.run_dir) if args.run_dir else cfg.run_path
    t0 = time.perf_counter()
    run_sweep(cfg, args.key, args.values, base_dir)
    out = sweep_dir(base_dir, args.key.strip())
    print(f"\nSweep of {args.key} over {len(args.values)} values finished in {time.perf_counter() - t0:.0f} s")
    print(f"Summary: {out / 'summary.csv'}  ({out / 'summary.md'}, {out / 'summary.png'})\n")
    print((out / "summary.md").read_text(encoding="utf-8"))
    return 0
