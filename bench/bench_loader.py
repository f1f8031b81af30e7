"""The streamed data path at scale: memory flat in the dataset's size, and worker throughput.

1. ``rss``: peak RSS of a one-epoch baseline training run (``train_baseline``, streamed:
   ``data.in_memory=false``, ``training.num_workers``) on a 224-px ImageFolder of JPEGs made on the
   fly from Fashion-MNIST, at two sizes ``--small`` and ``--small * 10``. Each run is a fresh process;
   its own peak RSS (``ru_maxrss``) and the largest of its loader workers' are reported.
   Target: the main process grows by at most 15 % for 10x the images.
2. ``throughput``: images/s of the training loader (JPEG decode + random resized crop + flip at
   224 px, batches of 32) with 2 workers vs in the main process, alternating --repeats times (median
   ratio). Target: >= 1.7x on 2 cores. With each pass, the CPU time per image (main process +
   workers, the loader's own overhead) and the cores kept busy (CPU time / wall), so that a shortfall
   can be told apart: overhead raises the CPU per image, a machine that does not give the workers
   both cores lowers the cores busy.
   Also PIL (``discl.data.images.load_image``, what the loader uses) vs ``torchvision.io`` decoding
   of the same JPEGs in one process.

The machine's load average is printed with the figures: on a shared machine, re-measure idle.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_loader.py --small 2000 --out bench_loader.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_loader.py --only throughput
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_folder(root: Path, n: int, side: int = 224, seed: int = 0) -> Path:
    """``n`` JPEGs (quality 90, ``side`` px, RGB) from Fashion-MNIST training images, root/<class>/*.jpg."""
    from PIL import Image

    from discl.data.fashion_mnist import load_split

    images, labels = load_split("train")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=n, replace=n > len(images))
    for i, j in enumerate(pick):
        d = root / f"c{int(labels[j])}"
        d.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(images[j]).resize((side, side), Image.Resampling.BILINEAR).convert("RGB")
        img.save(d / f"{i:06d}.jpg", quality=90)
    return root


def _train_once(folder: str, run_dir: str, workers: int, model: str) -> None:
    """In a fresh process: one streamed epoch; prints peak RSS (MB) of itself and of its workers."""
    from discl.config import load_config
    from discl.training.recipe import train_baseline

    cfg = load_config(str(ROOT / "configs" / "fmnist-lt.yaml"), [
        "data.task=folder", f"data.root={folder}", "data.image_size=224", "data.channels=3", "data.in_memory=false",
        "data.verify_images=false", f"training.model={model}", "training.epochs=1", "training.batch_size=64",
        f"training.num_workers={workers}", "training.select_on=last", f"run_dir={run_dir}"])
    t0 = time.perf_counter()
    train_baseline(cfg, seed=0)
    wall = time.perf_counter() - t0
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                      "wall_s": round(wall, 1)}))


def bench_rss(tmp: Path, small: int, workers: int, model: str) -> dict:
    out = {}
    for n in (small, small * 10):
        folder = tmp / f"folder{n}"
        t0 = time.perf_counter()
        make_folder(folder, n)
        made = time.perf_counter() - t0
        cmd = [sys.executable, __file__, "--_train", str(folder), str(tmp / f"run{n}"), str(workers), model]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"})
        if p.returncode != 0:
            raise SystemExit(p.stderr)
        out[n] = {**json.loads(p.stdout.strip().splitlines()[-1]), "make_folder_s": round(made, 1)}
        print(f"rss n={n}: {out[n]}", file=sys.stderr)
    lo, hi = out[small]["rss_mb"], out[small * 10]["rss_mb"]
    return {"sizes": out, "growth": round(hi / lo - 1, 3), "target_growth": 0.15}


def bench_throughput(tmp: Path, n_images: int, batches: int, repeats: int = 3) -> dict:
    import torch

    from discl.data.streaming import StreamedImages, StreamedSplit

    folder = make_folder(tmp / "tp", n_images, side=320)
    paths = sorted(str(p) for p in folder.rglob("*.jpg"))
    ds = StreamedImages(paths, np.zeros(len(paths), dtype=np.int64), size=224, channels=3,
                        mode="random_resized_crop", seed=0)
    keys = [[(0, p, p % len(paths)) for p in range(b * 32, (b + 1) * 32)] for b in range(batches)]
    # the two loaders alternate ``repeats`` times (one pair = one ratio); the median ratio is reported,
    # since one pass of each, measured at different moments, varies by +-20 % on a shared machine
    import psutil  # installed with accelerate

    rates: dict[int, list[float]] = {0: [], 2: []}
    cpu_ms: dict[int, list[float]] = {0: [], 2: []}  # CPU time per image, main process + workers
    busy: dict[int, list[float]] = {0: [], 2: []}  # cores busy during the pass (CPU time / wall)
    me = psutil.Process()
    for _ in range(repeats):
        for workers in (0, 2):
            split = StreamedSplit(ds, num_workers=workers)
            loader, sampler = split.loader()
            sampler.set_batches(keys[:2])  # start the workers before timing
            for _ in loader:
                pass
            procs = [me, *me.children()]
            c0 = sum(sum(p.cpu_times()[:2]) for p in procs)
            sampler.set_batches(keys)
            t0 = time.perf_counter()
            n = sum(len(x) for x, _ in loader)
            wall = time.perf_counter() - t0
            cpu = sum(sum(p.cpu_times()[:2]) for p in procs) - c0
            rates[workers].append(n / wall)
            cpu_ms[workers].append(1e3 * cpu / n)
            busy[workers].append(cpu / wall)
            split.close()
    ratios = sorted(b / a for a, b in zip(rates[0], rates[2]))
    # decoders, one process
    from torchvision.io import ImageReadMode, decode_image, read_file

    from discl.data.streaming import decode_tensor

    sample = paths[: min(300, len(paths))]
    t0 = time.perf_counter()
    for p in sample:
        decode_tensor(p, 3, 89_478_485, "black")
    pil = len(sample) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for p in sample:
        decode_image(read_file(p), mode=ImageReadMode.RGB)
    tvio = len(sample) / (time.perf_counter() - t0)
    torch.set_num_threads(torch.get_num_threads())
    return {"images_per_s": {"main_process": [round(r, 1) for r in rates[0]], "workers_2": [round(r, 1) for r in rates[2]]},
            "speedup": round(float(np.median(ratios)), 2), "speedups": [round(r, 2) for r in ratios],
            # where a shortfall comes from: CPU per image (the workers' overhead) and cores kept busy
            "cpu_ms_per_image": {k: round(float(np.median(v)), 3) for k, v in (("main_process", cpu_ms[0]), ("workers_2", cpu_ms[2]))},
            "cores_busy": {k: round(float(np.median(v)), 2) for k, v in (("main_process", busy[0]), ("workers_2", busy[2]))},
            "target_speedup": 1.7,
            "decode_per_s_one_process": {"pil_load_image": round(pil, 1), "torchvision_io": round(tvio, 1)}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=2000, help="images in the smaller folder (the larger has 10x)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default="timm:mobilenetv3_small_050")
    ap.add_argument("--throughput-images", type=int, default=3200)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="alternating passes of each loader (median ratio)")
    ap.add_argument("--only", choices=["rss", "throughput"])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--_train", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._train:
        folder, run_dir, workers, model = args._train
        _train_once(folder, run_dir, int(workers), model)
        return
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
                    "load_avg_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "throughput"):
            result["throughput"] = bench_throughput(Path(tmp), args.throughput_images, args.batches, args.repeats)
        if args.only in (None, "rss"):
            result["rss"] = bench_rss(Path(tmp), args.small, args.workers, args.model)
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
