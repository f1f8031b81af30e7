"""Images scored per second by the embedded CLIP on the CPU: batched vs one image at a time.

    .venv/bin/python bench/bench_filtering.py --images 512 --batch-size 128 --threads 1

Scoring = what the filter does per generated image: PIL image -> embedding (the image tower), then
its cosines with precomputed text/real embeddings (negligible next to the tower). Texts are encoded
once per run and are not part of the timing. Prints one Markdown table row per mode and the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from discl.data.tasks import build_task
    from discl.filtering.scorer import create_scorer

    task = build_task("fmnist-lt", seed=0, test_limit=max(10, args.images))
    ids = list(task.split("test")["sample_id"])[: args.images]
    images = [task.image(s) for s in ids]
    text = create_scorer("embedded", "embedded", device="cpu").encode_texts(["a photo of a Bag"])[0]

    results = {}
    for mode, bs in (("batched", args.batch_size), ("one at a time", 1)):
        scorer = create_scorer("embedded", "embedded", device="cpu", batch_size=bs)
        scorer.encode_images(images[:bs])  # warm-up
        start = time.perf_counter()
        emb = scorer.encode_images(images)
        _ = (emb @ text).numpy()
        seconds = time.perf_counter() - start
        results[mode] = (len(images) / seconds, seconds, bs)
    if not np.allclose(*(create_scorer("embedded", "embedded", device="cpu", batch_size=b).encode_images(images[:32])
                         for b in (32, 1)), atol=1e-5):
        raise SystemExit("batched and single-image embeddings differ")
    cpu = platform.processor() or platform.machine()
    print(f"machine: {os.cpu_count()} CPU cores ({cpu}), no GPU; torch {torch.__version__}, "
          f"{args.threads} thread(s); {len(images)} fmnist-lt test images (28x28)")
    print("| mode | batch size | images/s | seconds |")
    print("|---|---|---|---|")
    for mode, (ips, sec, bs) in results.items():
        print(f"| {mode} | {bs} | {ips:.0f} | {sec:.2f} |")
    print(f"batched / one at a time: {results['batched'][0] / results['one at a time'][0]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
