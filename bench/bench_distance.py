"""How the report's per-λ distances grow with the number of classes: the class-conditional estimator
(``discl.evaluation.distance.level_distances`` with labels, what the report computes since 2026-12-07)
beside the pooled one (no labels), on synthetic CLIP-like embeddings at 10, 100 and 1,000 hard classes
(ImageNet-LT's count), measured side by side in one run.

Per class: ``--sources`` real hard sources, ``--seeds`` variants of each at each of ``--levels``
levels (so a level holds sources × seeds images of the class), and the reference the report draws:
``max(1000 // classes, 20)`` test images of the class. Embeddings are ``--dim``-d unit vectors
(class mean + noise), as CLIP image embeddings are. Reports seconds and the peak of Python-tracked
memory (``tracemalloc``: numpy buffers included) per call.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_distance.py [--classes 10 100 1000] [--out distance.json]
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
from bench_common import add_out_argument, bench_parser, write_result


def embeddings(rng: np.random.Generator, means: np.ndarray, labels: np.ndarray, spread: float) -> np.ndarray:
    x = means[labels] + spread * rng.normal(size=(len(labels), means.shape[1]))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def case(classes: int, sources: int, seeds: int, levels: int, dim: int, pooled_max_classes: int, seed: int = 0) -> dict:
    from discl.evaluation.distance import MAX_REFERENCE, MIN_REFERENCE_PER_CLASS, level_distances

    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim)) / np.sqrt(dim) * 3
    per_ref = max(MAX_REFERENCE // classes, MIN_REFERENCE_PER_CLASS)
    ref_y = np.repeat(np.arange(classes), per_ref)
    ref = embeddings(rng, means, ref_y, 1.0 / np.sqrt(dim))
    src_y = np.repeat(np.arange(classes), sources)
    real = embeddings(rng, means, src_y, 1.0 / np.sqrt(dim))
    src_ids = np.array([f"s{i}" for i in range(len(src_y))])
    syn, lab, ids = {}, {1.0: src_y}, {}
    for j in range(levels):
        lam = round(0.1 + 0.2 * j, 1)
        y = np.repeat(src_y, seeds)
        syn[lam] = embeddings(rng, means, y, (1.0 + 0.5 * (levels - j)) / np.sqrt(dim))
        lab[lam], ids[lam] = y, np.repeat(src_ids, seeds)
    out = {"classes": classes, "images_per_level": int(len(src_y) * seeds), "reference": int(len(ref))}
    estimators = [("class_conditional", {"labels": lab, "reference_labels": ref_y})]
    estimators += [("pooled", {})] if classes <= pooled_max_classes else []
    for name, kw in estimators:
        tracemalloc.start()
        t0 = time.perf_counter()
        table = level_distances(syn, real, ref, sources=ids, **kw)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[name] = {"seconds": round(seconds, 3), "peak_mb": round(peak / 2**20, 1),
                     "mmd2": [round(float(v), 4) for v in table["mmd2"]]}
    out["time_ratio"] = round(out["class_conditional"]["seconds"] / out["pooled"]["seconds"], 2) if "pooled" in out else None
    return out


def main(argv=None) -> int:
    p = bench_parser(__doc__)
    p.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--sources", type=int, default=10, help="hard sources per class")
    p.add_argument("--seeds", type=int, default=4, help="variants per source and level")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--pooled-max-classes", type=int, default=100,
                   help="time the pooled estimator up to this many classes (at 1,000 it takes ~13 min)")
    add_out_argument(p)
    args = p.parse_args(argv)
    import discl.evaluation.distance  # noqa: F401  (imports, torch's included, outside the timings)
    import discl.seeding  # noqa: F401

    rows = [case(c, args.sources, args.seeds, args.levels, args.dim, args.pooled_max_classes) for c in args.classes]
    print(f"{'classes':>7} {'images/level':>12} {'reference':>9} | {'class-cond. s':>13} {'MB':>6} | "
          f"{'pooled s':>8} {'MB':>6} | ratio")
    for r in rows:
        cc, po = r["class_conditional"], r.get("pooled")
        pooled = f"{po['seconds']:>8.2f} {po['peak_mb']:>6.1f} | {r['time_ratio']:.2f}" if po else f"{'—':>8} {'—':>6} | —"
        print(f"{r['classes']:>7} {r['images_per_level']:>12} {r['reference']:>9} | {cc['seconds']:>13.2f} "
              f"{cc['peak_mb']:>6.1f} | {pooled}")
    write_result(args.out, {"args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
