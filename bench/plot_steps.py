"""Step economy summary (issue 13): fidelity and DisCL accuracy against UNet evaluations.

Reads ``bench_steps.py --out`` (fidelity, run with ``--seeds`` ≥ 2) and ``bench_steps_train.py --out``
(accuracy), prints the two markdown tables of docs/generation.md and draws the figure.

Fidelity "within noise" of the reference, per level and measure: the paired difference (same
sources, same noise seeds: ``generation`` derives each variant's noise from (source, λ, k) only)
averaged over the seeds, against the reference's own seed-to-seed spread at that level (the largest
minus the smallest of its per-seed values): a setting is within noise at a level when
|mean paired difference| ≤ that spread. With 2 seeds this is a coarse yardstick, and says so.

    .venv/bin/python bench/plot_steps.py --fidelity F.json --train T.json [--reference ddim-T25] \\
        [--png docs/img/step-economy.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

MEASURES = ("acc", "ssim", "mmd2")


def noise_check(fid: dict, ref: str, levels: list[str]) -> dict:
    """{setting: {level: {measure: (mean paired diff, ref spread, within)}}}."""
    base = fid["settings"][ref]["rows"]
    out = {}
    for name, s in fid["settings"].items():
        per = {}
        for lv in levels:
            row, brow = s["rows"][lv].get("by_seed", {}), base[lv].get("by_seed", {})
            per[lv] = {}
            for m in MEASURES:
                if m not in row or m not in brow:
                    continue
                d = float(np.mean(np.asarray(row[m]) - np.asarray(brow[m])))
                spread = float(np.ptp(brow[m]))
                per[lv][m] = (d, spread, abs(d) <= spread)
        out[name] = per
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fidelity", required=True)
    p.add_argument("--train", default=None)
    p.add_argument("--reference", default="ddim-T25")
    p.add_argument("--judge-levels", nargs="+", default=["0.0", "0.1", "0.3", "0.5"],
                   help="levels the noise verdict uses (λ = 0 for the judge, the demo curriculum's levels)")
    p.add_argument("--png", default=None)
    args = p.parse_args(argv)
    fid = json.loads(Path(args.fidelity).read_text())
    tr = json.loads(Path(args.train).read_text()) if args.train else {"reference": args.reference, "settings": {}}
    ref = args.reference
    levels = list(fid["settings"][ref]["rows"])
    check = noise_check(fid, ref, levels)

    print(f"fidelity ({fid['n_hard']} hard images x {fid['seeds']} seeds per level; paired Δ vs {ref} "
          f"[its seed spread]; * = |Δ| above the spread)\n")
    head = ["setting", "evals/img/seed", "acc λ=0"] + [f"{m} {lv}" for lv in levels for m in ("SSIM", "MMD²")]
    print("| " + " | ".join(head) + " | within noise on " + ", ".join(args.judge_levels) + " |")
    print("|" + "---|" * (len(head) + 1))
    verdict = {}
    for name, s in fid["settings"].items():
        rows, c = s["rows"], check[name]

        def cell(lv, m, fmt, rows=rows, c=c, name=name):
            v = rows[lv][m]
            if name == ref or m not in c[lv]:
                return format(v, fmt) + (f" [{format(c[lv][m][1], fmt)}]" if m in c[lv] and name == ref else "")
            d, _, ok = c[lv][m]
            return f"{format(v, fmt)} ({d:+{fmt}}){'' if ok else '*'}"

        within = all(ok for lv in args.judge_levels for (_, _, ok) in c[lv].values())
        verdict[name] = within
        cells = [name, f"{s['evals_per_hard_image'] / fid['seeds']:.0f}", cell(levels[0], "acc", ".3f")]
        cells += [cell(lv, m, ".3f" if m == "ssim" else ".4f") for lv in levels for m in ("ssim", "mmd2")]
        print("| " + " | ".join(cells) + f" | {'yes' if within else 'no'} |")

    print(f"\nDisCL accuracy (test, %; mean over seeds; paired Δ vs {tr['reference']} with 95 % t interval)\n")
    print("| setting | spectrum UNet evals (× of ref) | synthetic in pool | seeds | overall | few | Δ overall | Δ few |")
    print("|---|---|---|---|---|---|---|---|")
    for name, s in tr["settings"].items():
        n = len(s["per_seed"])
        cells = [name, f"{s['spectrum_evals']:,} (×{s['evals_ratio']:.2f})",
                 "/".join(map(str, s.get("pool_synthetic", []))) or "—", str(n),
                 f"{s['mean']['overall'] * 100:.1f}", f"{s['mean']['few'] * 100:.1f}"]
        for k in ("overall", "few"):
            iv = s.get("paired", {}).get(k)
            cells.append("—" if iv is None else
                         f"{iv['mean'] * 100:+.1f} [{iv['low'] * 100:+.1f}, {iv['high'] * 100:+.1f}]")
        print("| " + " | ".join(cells) + " |")

    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
        fam = {}
        for name, s in fid["settings"].items():
            fam.setdefault(name.rsplit("-T", 1)[0], []).append(s)
        for i, (f, ss) in enumerate(fam.items()):
            ss = sorted(ss, key=lambda s: s["evals_per_hard_image"])
            x = [s["evals_per_hard_image"] / fid["seeds"] for s in ss]
            ax[0].plot(x, [s["rows"][levels[0]]["acc"] for s in ss], "o-", color=f"C{i}", label=f)
            for xi, s in zip(x, ss):  # each seed's value: the noise
                per = s["rows"][levels[0]].get("by_seed", {}).get("acc", [])
                ax[0].scatter([xi] * len(per), per, s=12, alpha=0.4, color=f"C{i}")
            for lv, ls in zip(args.judge_levels[1:], ("-", "--", ":")):
                ax[1].plot(x, [s["rows"][lv]["mmd2"] for s in ss], "o" + ls, color=f"C{i}", label=f"{f} λ={lv}")
        ax[0].set(xlabel="UNet evaluations per hard image and seed (6 levels, CFG)", ylabel="judge accuracy, λ = 0",
                  title="class fidelity at λ = 0 (line: mean; dots: seeds)")
        ax[1].set(xlabel="UNet evaluations per hard image and seed", ylabel="MMD² to real test images",
                  title="distance to real, curriculum levels")
        ax[0].legend(fontsize=7)
        ax[1].legend(fontsize=6, ncol=2)
        for name, s in tr["settings"].items():
            x = s["spectrum_evals"] / max(1, s["hard_images"]) / s["seeds_per_level"]
            for k, mk in (("overall", "o"), ("few", "s")):
                vals = [v[k] * 100 for v in s["per_seed"].values()]
                ax[2].scatter([x] * len(vals), vals, marker=mk, alpha=0.4, color="C0" if k == "overall" else "C1")
                ax[2].plot([x], [np.mean(vals)], mk, ms=9, color="C0" if k == "overall" else "C1",
                           label=k if name == tr["reference"] else None)
            ax[2].annotate(name, (x, s["mean"]["overall"] * 100), fontsize=7, xytext=(4, 4),
                           textcoords="offset points")
        ax[2].set(xlabel="UNet evaluations per hard image and seed", ylabel="DisCL test accuracy (%)",
                  title="DisCL accuracy (dots: seeds; big: mean)")
        ax[2].legend(fontsize=7)
        for a in ax:
            a.set_xlim(0, None)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"\nwrote {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
