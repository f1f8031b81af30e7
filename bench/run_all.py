"""``make bench``: every benchmark that finishes in minutes, in a quick mode, one after the other.

Quick mode = the benchmark's own code path on tiny inputs (a few images, one epoch, one repeat): it
checks that each benchmark still runs and prints its table, not the documented figures; those come
from the commands in each benchmark's docstring and in docs/. Each runs in its own process (its
own thread settings and peak memory) from the repository root, its files under one temporary
folder; a table of wall times and exit codes comes last, and the exit code is non-zero when one
failed. The first eight took 7 min 20 s on the 2-core build machine (no GPU, load 8-9 from other jobs;
the slowest: bench_generation 2 min, bench_prior 1.5 min).

    .venv/bin/python bench/run_all.py [--only NAME ...] [--list]

Not run here: the benchmarks that train full runs or read finished ones (``results.py``,
``bench_steps_train.py``, ``leakage_thresholds.py``, ``progress_noise.py``, ``plot_steps.py``):
hours of CPU time; docs/results.md and docs/generation.md give their commands.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# name -> quick-mode arguments ("{tmp}" is the temporary output folder)
QUICK: dict[str, list[str]] = {
    "bench_filtering": ["--images", "32", "--batch-size", "16"],
    "bench_generation": ["--images", "2", "--seeds", "1", "--steps", "4", "--sd-steps", "2", "--sd-images", "1",
                         "--repeats", "1", "--batch-size", "8"],
    "bench_adaptive": ["--epochs", "1", "--hard-per-class", "4", "--k", "2"],
    "bench_loader": ["--only", "throughput", "--throughput-images", "128", "--batches", "4", "--repeats", "1",
                     "--out", "{tmp}/loader.json"],
    "bench_prior": ["--prior", "shipped=embedded", "--limit", "2", "--seeds", "1", "--test-per-class", "10",
                    "--classifier-epochs", "1", "--boot", "10", "--out", "{tmp}/prior.json"],
    "bench_analog": ["--prior", "shipped=embedded", "--limit", "2", "--lq-per-class", "1", "--seeds", "1",
                     "--test-per-class", "10", "--boot", "10", "--judge-per-class", "20", "--judge-epochs", "1",
                     "--no-judge-cache", "--out", "{tmp}/analog.json"],
    "bench_steps": ["--steps", "4", "--schedulers", "ddim", "--limit", "2", "--seeds", "1", "--test-per-class", "10",
                    "--classifier-epochs", "1", "--out", "{tmp}/steps.json"],
    "batch_makeup": [],
    "gpu_check": ["--tiny", "--workers", "0", "--out", "{tmp}/gpu_check.json"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=list(QUICK), help="run these benchmarks only")
    p.add_argument("--list", action="store_true", help="print the quick-mode commands and run nothing")
    p.add_argument("--timeout", type=int, default=900, help="seconds one benchmark may take")
    args = p.parse_args(argv)
    names = args.only or list(QUICK)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="discl-bench-") as tmp:
        for name in names:
            cmd = [sys.executable, str(BENCH / f"{name}.py"), *(a.format(tmp=tmp) for a in QUICK[name])]
            if args.list:
                print(" ".join(cmd[1:]))
                continue
            print(f"\n== {name}: {' '.join(cmd[1:])}", flush=True)
            t0 = time.perf_counter()
            try:
                rc = subprocess.run(cmd, cwd=BENCH.parent, env=env, timeout=args.timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            rows.append((name, time.perf_counter() - t0, rc))
    if rows:
        print("\n| benchmark | seconds | exit |\n|---|---|---|")
        for name, seconds, rc in rows:
            print(f"| {name} | {seconds:.0f} | {rc} |")
        print(f"total {sum(s for _, s, _ in rows):.0f} s")
    return int(any(rc != 0 for _, _, rc in rows))


if __name__ == "__main__":
    sys.exit(main())
