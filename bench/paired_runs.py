"""Paired 95 % intervals against DisCL over finished run folders, per data split and pooled.

    .venv/bin/python bench/paired_runs.py runs/ev-lt-d0=0 runs/ev-lt-d1=1 runs/ev-lt-d2=2 \
        [--metrics test.top1 test.few] [--reference discl] [--out table.md]

Each ``FOLDER=DATA_SEED[:METHOD,...][@SUFFIX]`` is a ``discl run`` folder (its ``results.csv``); a
(data seed, training seed) pair counts only where both methods finished; the data seed must be the folder's (its config.yaml).
Intervals: per data split (t over its training seeds), and pooled over the splits in two ways
(:mod:`discl.evaluation.stats`): ``stratified`` (for these splits) and ``between`` (over the split
means: what generalises to another draw of the data). ``:METHOD,...`` takes only
those methods from the folder (e.g. ``text_only`` from a folder whose spectrum adds λ = 0, where the
``ce`` rows repeat the main folder's); ``@SUFFIX`` renames its methods to ``METHOD@SUFFIX`` (a
``discl sweep`` value folder: ``.../filtering.threshold/0.5=0:discl@thr0.5``). A method with two runs
for one pair is refused, never averaged. Also prints each run's mean ``tail_synthetic_share``
per curriculum level from its ``log.csv`` (issue 22: the authors' regime fills >= 70 % of the tail
slots with synthetic images).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from discl.evaluation.stats import paired_table  # noqa: E402


def parse_spec(spec: str) -> tuple[str, int, list[str], str]:
    """``FOLDER=DATA_SEED[:METHOD,...][@SUFFIX]`` -> (folder, data seed, methods or [], suffix or '')."""
    folder, eq, rest = spec.rpartition("=")
    if not eq:
        folder, rest = spec, "0"
    rest, _, suffix = rest.partition("@")
    seed, _, methods = rest.partition(":")
    return folder, int(seed or 0), [m for m in methods.split(",") if m], suffix


def check_data_seed(spec: str, folder: Path, seed: int) -> None:
    """The spec's data seed must be the one the folder's runs used (its config.yaml): a typo would
    pair runs of different splits."""
    import yaml

    cfg = folder / "config.yaml"
    if not cfg.is_file():
        return
    used = ((yaml.safe_load(cfg.read_text()) or {}).get("data") or {}).get("seed", 0)
    if int(used) != seed:
        raise SystemExit(f"{spec}: the runs in {folder} used data.seed {used} ({cfg}), not {seed}")


def load(specs: list[str]) -> pd.DataFrame:
    frames = []
    for spec in specs:
        folder, seed, methods, suffix = parse_spec(spec)
        check_data_seed(spec, Path(folder), seed)
        r = pd.read_csv(Path(folder) / "results.csv")
        r = r[r["status"] == "ok"].copy()
        if methods:
            missing = set(methods) - set(r["method"])
            if missing:
                raise SystemExit(f"{spec}: no finished run of {sorted(missing)} in {folder}/results.csv")
            r = r[r["method"].isin(methods)]
        if suffix:
            r["method"] = r["method"] + "@" + suffix
        r["data_seed"] = seed
        r["folder"] = folder
        frames.append(r)
    return pd.concat(frames, ignore_index=True)


def tail_shares(specs: list[str]) -> pd.DataFrame:
    """Mean tail_synthetic_share per curriculum level of each run the specs name (their methods only)."""
    rows = []
    for spec in specs:
        folder, seed, methods, suffix = parse_spec(spec)
        for log in sorted(Path(folder).glob("train/*/log.csv")):
            method = log.parent.name.rpartition("-s")[0]
            if methods and method not in methods:
                continue
            df = pd.read_csv(log)
            if "tail_synthetic_share" not in df.columns or "stage" not in df.columns:
                continue
            name = f"{method}@{suffix}" if suffix else method
            for level, g in df.groupby("stage", sort=False):
                rows.append({"run": f"d{seed} {name}-s{log.parent.name.rpartition('-s')[2]}", "level": level,
                             "tail_synthetic_share": g["tail_synthetic_share"].mean(), "epochs": len(g)})
    return pd.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="FOLDER=DATA_SEED")
    ap.add_argument("--metrics", nargs="+", default=["test.top1", "test.few"])
    ap.add_argument("--reference", default="discl")
    ap.add_argument("--out", help="markdown file for the tables")
    args = ap.parse_args()
    res = load(args.runs)
    lines = []
    means = res.groupby("method")[args.metrics].agg(["mean", "std", "count"]) * ([100, 100, 1] * len(args.metrics))
    lines += ["mean ± std over every (data seed, training seed) pair, %:", "", means.round(1).to_string(), ""]
    splits = [(f"data seed {d} (t over its training seeds)", res[res["data_seed"] == d], "t")
              for d in sorted(res["data_seed"].unique())]
    pooled = [] if res["data_seed"].nunique() < 2 else [
        ("pooled over these splits (stratified: the mean of the split means, error from the within-split "
         "spread, df = N - k)", res, "stratified"),
        ("across splits (t over the split means, df = k - 1: what generalises to another draw of the data)",
         res, "between")]
    for name, part, kind in splits + pooled:
        t = paired_table(part, args.metrics, reference=args.reference, kind=kind)
        cols = ["method"] + [f"{m}.text" for m in args.metrics if f"{m}.text" in t.columns]
        lines += [f"paired difference to {args.reference}, {name}:", "", t[cols].to_string(index=False), ""]
    shares = tail_shares(args.runs)
    shares = shares.dropna(subset=["tail_synthetic_share"]) if len(shares) else shares  # no tail quota: None
    if len(shares):
        lines += ["mean tail_synthetic_share per level:", "",
                  shares.pivot_table(index="run", columns="level", values="tail_synthetic_share").round(3).to_string(), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
