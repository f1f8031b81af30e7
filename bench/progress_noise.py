"""How noisy the adaptive curriculum's progress signal is: per check, each level's progress ± its
standard error, and the gap between the two largest progress values in units of the larger of
their standard errors (a gap below ~2 means the choice is close to a coin flip).

    .venv/bin/python bench/progress_noise.py runs/fmnist-lq-flyp/train/discl-s0/log.jsonl [more logs]

Each log ends with a summary: the checks whose top-2 gap is at least 2 standard errors, out of all
checks (issue 22's target for an adaptive signal: at least half of them) and out of the checks after
the first (the first compares against zero and separates the levels whenever every level gains).

Reads the ``progress.<λ>``, ``progress_se.<λ>`` and ``progress_n.<λ>`` columns that ``adaptive`` /
``adaptive_class`` write at every check (docs/training.md); older logs without them are reported as such.

Two measures of the gap's noise, both reported: (1) the gap over the larger of the two levels'
own standard errors (each level's spread over its held-out values, as if the two levels were
measured on different images); (2) paired: the ``progress_gap_paired*`` columns (logs from
2026-12-07 on), per held-out image its progress at the top level minus at the second, so the part
of the noise that both levels share (an image's own learnability) cancels; the ratio is a paired t.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def checks(rows: list[dict]) -> list[dict]:
    """Pure: one dict per check (epoch, chosen level, per-level progress/se/n, top-2 gap in standard errors)."""
    out = []
    for r in rows:
        if "chosen_level" not in r:
            continue
        prog = {k[len("progress."):]: float(v) for k, v in r.items() if k.startswith("progress.")}
        se = {k[len("progress_se."):]: float(v) for k, v in r.items() if k.startswith("progress_se.")}
        n = {k[len("progress_n."):]: int(v) for k, v in r.items() if k.startswith("progress_n.")}
        ranked = sorted((lv for lv in prog if math.isfinite(prog[lv])), key=lambda lv: -prog[lv])
        gap = prog[ranked[0]] - prog[ranked[1]] if len(ranked) > 1 else float("nan")
        top_se = max(se.get(lv, float("nan")) for lv in ranked[:2]) if len(ranked) > 1 and se else float("nan")
        pg, pse = float(r.get("progress_gap_paired", "nan")), float(r.get("progress_gap_paired_se", "nan"))
        out.append({"epoch": int(r["epoch"]), "chosen": r["chosen_level"], "progress": prog, "se": se, "n": n,
                    "gap": gap, "gap_in_se": gap / top_se if top_se and math.isfinite(top_se) else float("nan"),
                    "paired": {"top2": r.get("progress_top2"), "gap": pg, "se": pse, "n": int(r.get("progress_gap_paired_n", 0)),
                               "t": pg / pse if pse > 0 and math.isfinite(pse) else float("nan")}
                    if "progress_gap_paired_se" in r else None})
    return out


def separated(found: list[dict], k: float = 2.0, paired: bool = False) -> dict:
    """Pure: how many checks (with standard errors) have a top-2 gap of at least ``k`` standard errors,
    over all checks and over the checks after the first, and the median gap (in SE) of each set;
    ``paired``: the gap in its paired standard errors (checks logged without them are left out)."""
    import statistics

    # a check whose gap has no finite standard error (a level with one value, no image at both levels)
    # counts as not separated: it is a check the choice was made at, on no measurable signal
    if paired:
        gaps = [c["paired"]["t"] for c in found if c.get("paired")]
    else:
        gaps = [c["gap_in_se"] for c in found if c["se"]]
    gaps = [g if math.isfinite(g) else float("-inf") for g in gaps]
    later = gaps[1:]
    finite, later_finite = [g for g in gaps if math.isfinite(g)], [g for g in later if math.isfinite(g)]
    return {"checks": len(gaps), "separated": sum(g >= k for g in gaps),
            "later_checks": len(later), "later_separated": sum(g >= k for g in later),
            "unmeasured": len(gaps) - len(finite),
            "median_gap_in_se": statistics.median(finite) if finite else float("nan"),
            "later_median_gap_in_se": statistics.median(later_finite) if later_finite else float("nan")}


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    for path in paths:
        if not path.endswith(".jsonl"):
            print(f"{path}: give a training run's log.jsonl (its log.csv holds the same columns as text)", file=sys.stderr)
            return 2
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        found = checks(rows)
        print(f"{path}: {len(found)} checks")
        for c in found:
            if not c["se"]:
                print(f"  epoch {c['epoch']}: no progress_se columns (a log written before they were recorded)")
                continue
            levels = ", ".join(f"λ{lv} {c['progress'][lv]:+.4f} ± {c['se'].get(lv, float('nan')):.4f} (n={c['n'].get(lv, 0)})"
                               for lv in c["progress"])
            pr = c.get("paired")
            paired = (f"; paired ({pr['top2']}, {pr['n']} images): {pr['gap']:+.4f} ± {pr['se']:.4f} = {pr['t']:.2f} SE"
                      if pr else "")
            print(f"  epoch {c['epoch']}: chose {c['chosen']}; {levels}; top-2 gap {c['gap']:.4f} = {c['gap_in_se']:.2f} SE{paired}")
        for name, sep in (("per-level SE", separated(found)), ("paired SE", separated(found, paired=True))):
            if sep["checks"]:
                share = sep["separated"] / sep["checks"]
                print(f"  {name}: gap >= 2 SE at {sep['separated']} of {sep['checks']} checks ({share:.0%}; target >= 50 %: "
                      f"{'met' if share >= 0.5 else 'missed'}; {sep['unmeasured']} without a finite SE, counted as not separated), "
                      f"median {sep['median_gap_in_se']:.2f} SE; after the first check: "
                      f"{sep['later_separated']} of {sep['later_checks']}, median {sep['later_median_gap_in_se']:.2f} SE")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
