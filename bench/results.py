"""The results table: every method of the paper's comparison on an embedded task, several seeds.

    .venv/bin/python bench/results.py --task fmnist-lt --seeds 0 1 2
    .venv/bin/python bench/results.py --task fmnist-lq --seeds 0 1 2

Runs ``discl run`` with the full method list in ``runs/bench-<task>`` (mining, generation and
filtering are shared by the methods; each (method, seed) trains once and is skipped when rerun),
then writes ``docs/results-<task>.md`` with mean ± std, the synthetic images each row trained on and
the denoiser steps spent making the synthetic images it could draw from.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = {
    "fmnist-lt": [
        "ce", "bs", "cb", "text_only", "single@0.1", "single@0.3", "single@0.5",
        "mixed", "mixed_equal", "random_order", "reverse", "discl", "adaptive", "bs+discl",
    ],
    "fmnist-lq": [
        "ce", "bs", "cb", "text_only", "single@0.5", "single@0.9",
        "mixed", "mixed_equal", "random_order", "reverse", "fixed", "discl", "adaptive_class", "random_level",
        "bs+discl",
    ],
}
LABELS = {
    "ce": "CE (real only)", "bs": "BS (real only)", "cb": "CE + class-balanced resampling",
    "text_only": "CE + text-only synthetic (λ=0)", "mixed": "CE + all levels mixed",
    "mixed_equal": "CE + all levels mixed, equal synthetic budget", "random_order": "CE + random order",
    "reverse": "CE + reverse order (real → synthetic)", "fixed": "CE + DisCL non-adaptive",
    "adaptive": "CE + DisCL adaptive", "bs+discl": "BS + DisCL",
    "random_level": "CE + random level per stage (control for adaptive)",
    "adaptive_class": "CE + DisCL adaptive, level per class",
}


def label(method: str, strategy: str) -> str:
    if method == "discl":
        return f"CE + DisCL ({'adaptive' if strategy == 'adaptive' else 'non-adaptive'})"
    if method.startswith("single@"):
        return f"CE + single λ={method.split('@')[1]}"
    return LABELS.get(method, method)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(METHODS), default="fmnist-lt")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", help="subset of the method list")
    ap.add_argument("--run-dir", help="default: runs/bench-<task>")
    ap.add_argument("--doc", help="where to write the table (default: docs/results-<task>.md)")
    ap.add_argument("overrides", nargs="*", help="config overrides")
    args, extra = ap.parse_known_args()
    args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    from discl.config import load_config
    from discl.pipeline import collect_results, run

    methods = args.methods or METHODS[args.task]
    seeds = "[" + ", ".join(map(str, args.seeds)) + "]"
    cfg = load_config(ROOT / "configs" / f"{args.task}.yaml",
                      [f"name=bench-{args.task}", f"methods=[{', '.join(repr(m) for m in methods)}]", f"seeds={seeds}",
                       *args.overrides])
    run_dir = Path(args.run_dir) if args.run_dir else ROOT / "runs" / f"bench-{args.task}"
    t0 = time.perf_counter()
    run(cfg, run_dir)
    wall = time.perf_counter() - t0
    results = collect_results(cfg, run_dir)
    text = render(cfg, results, args, wall)
    out = Path(args.doc) if args.doc else ROOT / "docs" / f"results-{args.task}.md"
    out.write_text(text)
    print(text)
    return 0


def render(cfg, results, args, wall: float) -> str:
    import numpy as np

    task = cfg.data.task
    if task == "fmnist-lt":
        cols = [("test.top1", "overall"), ("test.many", "many"), ("test.medium", "medium"), ("test.few", "few")]
    else:
        cols = [("test.macro_f1", "ID macro-F1"), ("test_ood.macro_f1", "OOD macro-F1"), ("test.top1", "ID acc"),
                ("test_ood.top1", "OOD acc")]
    cols = [(k, n) for k, n in cols if k in results.columns]
    head = "| method | " + " | ".join(n for _, n in cols) + " | synthetic images seen | denoiser steps (pool) |"
    lines = [head, "|---|" + "---|" * (len(cols) + 2)]
    for method in cfg.methods:
        r = results[results["method"] == method]
        if "status" in r.columns:  # a seed without a finished run of this config is named, never averaged away
            gone = r[r["status"] != "ok"]
            if len(gone):
                raise SystemExit(f"{method}: no finished run of this config for seeds {gone['seed'].tolist()} "
                                 f"({'; '.join(gone['reason'].astype(str))})")
        if not len(r):
            continue
        cells = [f"{100 * r[k].astype(float).mean():.1f} ± {100 * r[k].astype(float).std(ddof=1):.1f}" for k, _ in cols]
        seen = int(np.mean(r["synthetic_seen"])) if "synthetic_seen" in r else 0
        steps = int(np.mean(r["denoiser_steps"])) if "denoiser_steps" in r else 0
        lines.append(f"| {label(method, cfg.curriculum.strategy)} | " + " | ".join(cells) + f" | {seen:,} | {steps:,} |")
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}"
    cmd = f".venv/bin/python bench/results.py --task {task} --seeds {' '.join(map(str, args.seeds))}"
    if args.overrides:
        cmd += " " + " ".join(args.overrides)
    return "\n".join([
        f"## {task}: test split, %, mean ± sample std (ddof = 1) over seeds {args.seeds}",
        "",
        *lines,
        "",
        f"Command: `{cmd}` — {len(results)} training runs, {wall / 60:.0f} min wall on {machine}, "
        f"{time.strftime('%Y-%m-%d')}. Model `{cfg.training.model}`, {cfg.training.epochs} epochs, checkpoint "
        "selected on the validation split. *Synthetic images seen*: synthetic samples drawn over the whole "
        "training run; *denoiser steps (pool)*: UNet evaluations spent generating the synthetic images the "
        "method could draw from (its levels, kept or not; ×2 for classifier-free guidance).",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
