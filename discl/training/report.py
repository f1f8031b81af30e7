"""Console summaries of training results (mean ± std over seeds)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

METRIC_KEYS = (("test", "top1"), ("test", "many"), ("test", "medium"), ("test", "few"), ("test", "macro_f1"),
               ("test_ood", "macro_f1"))


def summarize(results: dict[tuple[str, int], dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """{name: {"split.metric": (mean, std, n)}} over seeds; std is the sample std (0 for one seed)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for (name, _seed), m in results.items():
        groups[name].append(m)
    out = {}
    for name, ms in groups.items():
        row = {}
        for split, key in METRIC_KEYS:
            vals = [m[split][key] for m in ms if split in m and m[split].get(key) is not None]
            if vals:
                row[f"{split}.{key}"] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                                         len(vals))
        synth = [m.get("synthetic_seen", 0) for m in ms]
        row["synthetic_seen"] = (float(np.mean(synth)), 0.0, len(synth))
        out[name] = row
    return out


def print_summary(results: dict[tuple[str, int], dict]) -> None:
    """One line per method; under DDP (torchrun / accelerate launch) only rank 0 prints it."""
    import os

    if int(os.environ.get("RANK", "0") or 0) != 0:
        return
    for name, row in summarize(results).items():
        parts = [f"{k} {100 * m:.2f}±{100 * s:.2f}" for k, (m, s, _n) in row.items() if k != "synthetic_seen"]
        n = max((v[2] for v in row.values()), default=0)
        print(f"{name} (n={n}): " + ", ".join(parts))
