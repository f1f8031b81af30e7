"""What the prior and step benchmarks share: their arguments, the fidelity set-up (the demo's hard
images, real test images, the MMD bandwidth, an independent classifier) and writing the result.

bench_prior.py and bench_steps.py judge spectra against the same references; bench_steps_train.py
shares the config and output arguments. One copy here keeps their numbers comparable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT), str(ROOT / "bench")):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's parser: its docstring's first line as description."""
    return argparse.ArgumentParser(description=doc.split("\n")[0])


def add_config_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=str(ROOT / "configs" / "fmnist-lt.yaml"))


def add_out_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="JSON file for every figure")


def add_fidelity_arguments(p: argparse.ArgumentParser) -> None:
    """The references of a fidelity benchmark and its quick-check limits."""
    p.add_argument("--test-per-class", type=int, default=300, help="real test images per hard class for MMD²")
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="first N hard images only (a quick check)")
    p.add_argument("--seeds", type=int, default=None, help="override generation.seeds_per_level (a quick check)")
    p.add_argument("--data-root", default=None)


def write_result(path: str | None, result: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=2))
        print(f"wrote {path}")


def generate(gen, g, hard, images: np.ndarray, lam: float, seeds: int, steps: int,
             text_to_image_at_zero: bool = False) -> np.ndarray:
    """The spectrum at one λ with the demo's seeds (``g``: its generation config): uint8
    [n_hard * seeds, 28, 28], source-major, k minor."""
    from PIL import Image

    from discl.generation.base import GenerationBatch
    from discl.generation.planning import job_seed, strength_for

    sids, labels = list(hard["sample_id"]), [int(v) for v in hard["label"]]
    jobs = [(i, k) for i in range(len(sids)) for k in range(seeds)]
    out = []
    for s in range(0, len(jobs), g.batch_size):
        chunk = jobs[s:s + g.batch_size]
        batch = GenerationBatch(
            sources=[Image.fromarray(images[i]) for i, _ in chunk], source_keys=[sids[i] for i, _ in chunk],
            labels=[labels[i] for i, _ in chunk], prompts=[""] * len(chunk),
            seeds=[job_seed(g.base_seed, sids[i], lam, k) for i, k in chunk], strength=strength_for(lam),
            steps=steps, guidance_scale=g.guidance_scale, text_to_image=bool(text_to_image_at_zero and lam == 0.0))
        out += [np.asarray(im.convert("L")) for im in gen.generate(batch)]
    return np.stack(out)


def parse(p: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Parse, and set torch's CPU threads (``--threads``: timings are per thread count)."""
    import torch

    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args


def hard_set(cfg, ds):
    """The demo's hard images: every training image of a class below ``mining.frequency_below``."""
    if list(cfg.mining.criteria) != ["class_frequency"]:
        raise SystemExit("the fidelity benchmarks reproduce the class_frequency miner only")
    train = ds.split("train")
    counts = ds.class_counts("train")
    hard = train[counts[train["label"].to_numpy()] < cfg.mining.frequency_below]
    return hard.iloc[np.argsort(hard["sample_id"].to_numpy().astype(str), kind="stable")]


@dataclass
class Fidelity:
    """The references a spectrum is judged against (see bench_prior.py's docstring)."""

    cfg: Any
    ds: Any
    hard: Any
    classes: list[int]
    src: np.ndarray  # uint8 [n_hard, 28, 28], the hard sources
    real_test: np.ndarray  # uint8 [n, 28, 28], real test images of the hard classes
    real_feat: np.ndarray
    bandwidth: float
    classifier: Any
    real_accuracy: float  # the classifier on clean real test images of the hard classes
    classifier_seconds: float


def fidelity_setup(args: argparse.Namespace, test_key: str) -> Fidelity:
    """The six-level grid of bench/spectrum_grid.py on ``args.config``; ``test_key`` seeds the draw
    of the real test images (each benchmark keeps its own, so its documented figures stay)."""
    import torch
    from spectrum_grid import six_level_overrides

    from discl.config import load_config
    from discl.data import fashion_mnist as fm
    from discl.data.tasks import build_prior_pool, build_task
    from discl.evaluation import fidelity as fd
    from discl.generation.prior_eval import accuracy, train_classifier

    cfg = load_config(args.config, six_level_overrides())  # the grid the documented figures use, not the demo's
    ds = build_task(cfg.data.task, seed=cfg.data.seed, folder=args.data_root)
    hard = hard_set(cfg, ds)[:args.limit]
    classes = sorted(int(c) for c in hard["label"].unique())
    src = ds.tensors(list(hard["sample_id"]), 28, 1)[:, 0].numpy()
    real_test = real_test_sample(ds, classes, test_key, cfg.data.seed, args.test_per_class)
    real_feat = fd.flatten_pixels(real_test)
    bw = fd.median_bandwidth(real_feat)

    # the independent classifier: trained on balanced clean real data, scored on clean real test images
    t0 = time.perf_counter()
    pool = build_prior_pool(0, args.data_root)
    clf = train_classifier(pool.tensors(list(pool.frame["sample_id"]), 28, 1),
                           torch.as_tensor(pool.frame["label"].to_numpy().copy()).long(), args.classifier_epochs)
    te_x, te_y = fm.load_split("test", args.data_root)
    keep = np.isin(te_y, classes)
    real_acc = accuracy(clf, torch.from_numpy(te_x[keep].copy())[:, None], torch.from_numpy(te_y[keep].astype(np.int64)))
    return Fidelity(cfg, ds, hard, classes, src, real_test, real_feat, bw, clf, real_acc,
                    time.perf_counter() - t0)


def real_test_sample(ds, classes, test_key: str, seed: int, per_class: int, split: str = "test") -> np.ndarray:
    """uint8 [n, 28, 28]: up to ``per_class`` real test images of each class, a seeded draw
    (``test_key``, the task's seed, the class), class-major."""
    from discl.seeding import numpy_rng

    test = ds.split(split)
    ids = np.concatenate([numpy_rng(test_key, seed, c).permutation(test.index[test["label"] == c].to_numpy())
                          [:per_class] for c in classes])
    return ds.tensors(list(ids), 28, 1)[:, 0].numpy()


def spectrum_measures(x: np.ndarray, src_rep: np.ndarray, real_feat: np.ndarray, bandwidth: float,
                      boot: int, seeds: int) -> dict[str, float]:
    """One level's model-free measures: SSIM / PSNR to the sources, HF energy, MMD² [95 % interval]
    to the real test images. ``x`` is source-major with ``seeds`` variants per source (as
    :func:`generate` returns it): MMD² pairs variants of two sources only and resamples whole
    sources (:func:`discl.evaluation.fidelity.mmd2_interval`'s ``groups_x``), as the sources' own row."""
    from discl.evaluation import fidelity as fd

    m = fd.mmd2_interval(fd.flatten_pixels(x), real_feat, bandwidth=bandwidth, n_boot=boot, seed=0,
                         groups_x=np.repeat(np.arange(len(x) // seeds), seeds))
    return {"ssim": fd.ssim(x, src_rep), "psnr": fd.psnr(x, src_rep), "hf": fd.hf_energy(x), "mmd2": m["mmd2"],
            "mmd2_lo": m["low"], "mmd2_hi": m["high"]}


def resolve_prior(spec: str, tmp: Path) -> tuple[str, str]:
    """``NAME=WHERE`` -> (name, folder or "embedded"); ``git:REV`` is extracted under ``tmp``."""
    import subprocess

    name, _, where = spec.partition("=")
    if not where:
        name, where = spec, spec
    if where.startswith("git:"):
        rev = where[4:]
        out = tmp / name
        out.mkdir(parents=True, exist_ok=True)
        for f in ("prior.safetensors", "prior_config.json"):
            blob = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:discl/assets/prior/{f}"],
                                  check=True, capture_output=True).stdout
            (out / f).write_bytes(blob)
        return name, str(out)
    return name, where
