"""``discl generate``: the synthetic-to-real spectrum (:func:`discl.generation.runner.generate_spectrum`), sharded by
``--shard i/n`` or by the launcher (torchrun / accelerate launch)."""

from __future__ import annotations

import argparse
import os

from discl.artifacts import confine
from discl.generation.planning import parse_shard
from discl.generation.runner import SPECTRUM_DIR, dry_run, finish_spectrum, generate_spectrum


def add_arguments(p: argparse.ArgumentParser) -> None:
    from discl.cli import add_config_arguments

    add_config_arguments(p)
    p.add_argument("--shard", default=None, help="i/n: generate only every n-th batch of the global batch plan, from batch i")
    p.add_argument("--dry-run", action="store_true", help="print the job count and denoiser cost, generate nothing")
    p.add_argument("--no-calibrate", action="store_true",
                   help="with --dry-run: count evaluations only, time no calibration batch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _distributed_shard():
    """(state, (i, n)) under torchrun / accelerate launch with several processes, else (None, None)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None, None
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return state, (state.process_index, state.num_processes)


def main(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from discl.cli import config_from_args

    cfg = config_from_args(args, command="generate")
    run_dir = cfg.run_path
    state, shard = _distributed_shard()
    if args.shard:
        shard = parse_shard(args.shard)
    shard = shard or (0, 1)
    if state is not None and cfg.generation.device == "auto":
        cfg = dataclasses.replace(cfg, generation=dataclasses.replace(cfg.generation, device=str(state.device)))
    if args.dry_run:
        print(json.dumps(dry_run(cfg, shard, calibrate=not args.no_calibrate), indent=2))
        return 0
    rows = generate_spectrum(cfg, run_dir, shard=shard, progress=not args.no_progress)
    if state is not None:
        state.wait_for_everyone()
        if state.is_main_process:
            finish_spectrum(cfg, run_dir)
    print(f"shard {shard[0]}/{shard[1]}: {len(rows)} images in {confine(run_dir, SPECTRUM_DIR)}")
    return 0
