"""The embedded Fashion-MNIST tasks.

The 60k official training images are split per class into
- the **prior pool** (2,000 images per class, one fixed draw, ``PRIOR_SEED``, whatever the task's
  seed): stands in for the web-scale data behind Stable Diffusion and CLIP; only the embedded
  diffusion prior, the embedded CLIP and the independent judge (:mod:`discl.evaluation.judge`) train
  on it, shown clean and, like the web's photos of every kind, through the tasks' own acquisition
  style and corruptions (:func:`build_prior_pool` ``styles``);
- the **task pool** (the other 4,000 per class): each task draws its train and validation images
  from it, in an order set by the task's seed, so no task image of any seed is a prior-pool image
  (``tests/test_tasks.py``). The official 10k test split is the test set.

Task images carry what the prior pool lacks, so that text-only synthetic images are clean
prototypes that differ from the user's data, as Stable Diffusion's do from real photos:
- ``fmnist-lt``: an *acquisition style* per image (scale and position change, a smooth textured
  background, lower object contrast, mild blur, sensor noise) and a long-tailed class profile from
  500 down to 5 images per class (imbalance 100), class order fixed by the seed;
- ``fmnist-lq``: *low-quality* images, each degraded by one corruption family (noise, blur, low
  contrast, occlusion) or left clean, a moderately imbalanced profile (400 down to 80); the ID test
  uses the same families, the OOD test families never seen in training (pixelation, salt-and-pepper
  noise, fog).

Everything is a pure function of (seed, image index): the same seed gives the same task.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from discl.data import fashion_mnist as fm
from discl.data.base import ArrayImageDataset
from discl.seeding import numpy_rng

PRIOR_PER_CLASS = 2000
PRIOR_SEED = 0  # the one prior pool: the prior, CLIP and judge train on it, no task of any seed draws from it
PRIOR_STYLES = ("clean", "acquisition", "low_quality")
LQ_ID_FAMILIES = ("gaussian_noise", "blur", "low_contrast", "occlusion")
LQ_OOD_FAMILIES = ("pixelate", "salt_pepper", "fog")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    head: int  # images of the most frequent class
    tail: int  # images of the rarest class
    val_per_class: int


LT = TaskSpec("fmnist-lt", head=500, tail=5, val_per_class=20)
LQ = TaskSpec("fmnist-lq", head=400, tail=80, val_per_class=20)


def class_profile(head: int, tail: int, n_classes: int = 10) -> list[int]:
    """Exponential profile from ``head`` down to ``tail`` images per class (ImageNet-LT's shape)."""
    if n_classes == 1:
        return [head]
    ratio = tail / head
    return [int(round(head * ratio ** (i / (n_classes - 1)))) for i in range(n_classes)]


def split_train_pool(labels: np.ndarray, seed: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(prior-pool indices, {class: task-pool indices in seeded order}) of the official train split.

    The prior pool is the same for every ``seed`` (drawn with ``PRIOR_SEED``); ``seed`` only orders the
    rest, the task pool. For ``seed == PRIOR_SEED`` the order is the one every earlier release used,
    so seed-0 tasks are unchanged; before, other seeds re-drew the prior pool too, and a third of their
    task images were images the shipped prior and CLIP had trained on.
    """
    prior, pool = [], {}
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        perm = numpy_rng("fmnist-split", PRIOR_SEED, c).permutation(idx)
        prior.append(perm[:PRIOR_PER_CLASS])
        rest = perm[PRIOR_PER_CLASS:]
        pool[c] = rest if seed == PRIOR_SEED else numpy_rng("fmnist-task-pool", seed, c).permutation(rest)
    return np.sort(np.concatenate(prior)), pool


def _sid(split: str, i: int) -> str:
    return f"fmnist-{split}-{int(i):05d}"


# -- image styling (pure functions of (seed, source split, index)) ------------------------------


def _gaussian_kernel(sigma: float, radius: int = 2) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    if sigma <= 1e-3:
        k = (x == 0).float()
    else:
        k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    k = _gaussian_kernel(sigma, radius=max(1, int(np.ceil(2.5 * sigma))))
    r = (len(k) - 1) // 2
    x = img[None, None]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return x[0, 0]


def _affine(img: torch.Tensor, scale: float, dx: float, dy: float) -> torch.Tensor:
    h, w = img.shape
    theta = torch.tensor([[1 / scale, 0, -dx * 2 / w / scale], [0, 1 / scale, -dy * 2 / h / scale]], dtype=torch.float32)
    grid = F.affine_grid(theta[None], [1, 1, h, w], align_corners=False)
    return F.grid_sample(img[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]


def _smooth_field(rng: np.random.Generator, size: int, cells: int = 4) -> torch.Tensor:
    coarse = torch.from_numpy(rng.random((cells, cells)).astype(np.float32))
    return F.interpolate(coarse[None, None], size=(size, size), mode="bicubic", align_corners=False)[0, 0]


def acquisition_style(img: np.ndarray, seed: int, split: str, index: int) -> np.ndarray:
    """The ``fmnist-lt`` look: re-framed object on a textured background, lower contrast, blur, noise."""
    return acquisition_style_batch(img[None], seed, split, [index])[0]


def _style_params(rng: np.random.Generator, size: int) -> dict[str, np.ndarray | float]:
    """One image's random draws, in a fixed order (the order is part of the task's definition)."""
    p: dict[str, np.ndarray | float] = {}
    p["scale"], p["dx"], p["dy"] = rng.uniform(0.72, 1.0), rng.uniform(-3, 3), rng.uniform(-3, 3)
    p["bg_level"], p["bg_amp"] = rng.uniform(0.18, 0.42), rng.uniform(0.08, 0.22)
    p["coarse"] = rng.random((4, 4)).astype(np.float32)
    p["fine"] = rng.normal(0, 0.04, (size, size)).astype(np.float32)
    p["contrast"] = rng.uniform(0.55, 0.95)
    p["sigma"] = rng.uniform(0.2, 0.7)
    p["noise"] = rng.normal(0, 0.03, (size, size)).astype(np.float32)
    return p


def _blur_batch(x: torch.Tensor, sigmas: list[float]) -> torch.Tensor:
    """Separable Gaussian blur of [N, H, W] with one sigma per image (the kernels of :func:`_blur`).

    Written as a fixed-order sum of shifted copies (elementwise ops only), so an image's result does
    not depend on which other images share its batch.
    """
    kernels = [_gaussian_kernel(s, radius=max(1, int(np.ceil(2.5 * s)))) for s in sigmas]
    r = max((len(k) - 1) // 2 for k in kernels)
    weight = torch.stack([F.pad(k, (r - (len(k) - 1) // 2,) * 2) for k in kernels])  # [N, 2r+1], zero taps outside
    h, w = x.shape[-2:]
    xp = F.pad(x[:, None], (r, r, 0, 0), mode="replicate")[:, 0]
    y = torch.zeros_like(x)
    for j in range(2 * r + 1):
        y = y + weight[:, j].view(-1, 1, 1) * xp[:, :, j : j + w]
    yp = F.pad(y[:, None], (0, 0, r, r), mode="replicate")[:, 0]
    out = torch.zeros_like(x)
    for j in range(2 * r + 1):
        out = out + weight[:, j].view(-1, 1, 1) * yp[:, j : j + h, :]
    return out


def acquisition_style_batch(imgs: np.ndarray, seed: int, split: str, indices) -> np.ndarray:
    """:func:`acquisition_style` of many images [N, H, W] at once; image i's draws depend only on
    (seed, split, indices[i]), so batching does not change any image."""
    n, size = imgs.shape[0], imgs.shape[-1]
    if n == 0:
        return imgs.copy()
    ps = [_style_params(numpy_rng("fmnist-style", seed, split, int(i)), size) for i in indices]
    col = {k: np.array([p[k] for p in ps]) for k in ps[0]}
    x = torch.from_numpy(imgs.astype(np.float32) / 255.0)
    scale, dx, dy = (torch.from_numpy(col[k]).float() for k in ("scale", "dx", "dy"))
    # the affine grid of F.affine_grid, computed elementwise (a batched matmul may round differently)
    base = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1
    gx = base.view(1, 1, size) / scale.view(n, 1, 1) + (-dx * 2 / size / scale).view(n, 1, 1)
    gy = base.view(1, size, 1) / scale.view(n, 1, 1) + (-dy * 2 / size / scale).view(n, 1, 1)
    grid = torch.stack([gx.expand(n, size, size), gy.expand(n, size, size)], dim=-1)
    x = F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    coarse = torch.from_numpy(col["coarse"])[:, None]
    field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    level = torch.from_numpy(col["bg_level"]).float().view(n, 1, 1)
    amp = torch.from_numpy(col["bg_amp"]).float().view(n, 1, 1)
    bg = level + amp * (field - 0.5) * 2
    bg = (bg + _blur_batch(torch.from_numpy(col["fine"]), [0.7] * n)).clamp(0, 1)
    contrast = torch.from_numpy(col["contrast"]).float().view(n, 1, 1)
    out = bg * (1 - x) + contrast * x
    out = _blur_batch(out, list(col["sigma"]))
    out = out + torch.from_numpy(col["noise"])
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def corrupt(img: np.ndarray, family: str, severity: float, seed: int, split: str, index: int) -> np.ndarray:
    """One low-quality corruption of ``family`` at ``severity`` in [0, 1] (deterministic per image)."""
    rng = numpy_rng("fmnist-corrupt", seed, split, int(index), family)
    x = torch.from_numpy(img.astype(np.float32) / 255.0)
    size = x.shape[-1]
    s = float(severity)
    if family == "clean":
        out = x
    elif family == "gaussian_noise":
        out = x + torch.from_numpy(rng.normal(0, 0.2 + 0.25 * s, x.shape).astype(np.float32))
    elif family == "blur":
        out = _blur(x, 1.2 + 1.3 * s)
    elif family == "low_contrast":
        c = 0.25 - 0.15 * s
        out = 0.5 + (x - 0.5) * c + rng.uniform(-0.15, 0.15)
    elif family == "occlusion":
        out = x.clone()
        side = int(round(size * (0.4 + 0.25 * s)))
        y0, x0 = rng.integers(0, size - side + 1, 2)
        out[y0 : y0 + side, x0 : x0 + side] = float(rng.uniform(0.0, 1.0))
    elif family == "pixelate":
        k = 4 + int(round(3 * s))
        small = F.interpolate(x[None, None], size=(size // k, size // k), mode="area")
        out = F.interpolate(small, size=(size, size), mode="nearest")[0, 0]
    elif family == "salt_pepper":
        p = 0.15 + 0.2 * s
        u = torch.from_numpy(rng.random(x.shape).astype(np.float32))
        out = x.clone()
        out[u < p / 2] = 0.0
        out[(u >= p / 2) & (u < p)] = 1.0
    elif family == "fog":
        fog = _smooth_field(rng, size, cells=3)
        a = 0.5 + 0.3 * s
        out = x * (1 - a) + a * (0.5 + 0.5 * fog)
    else:
        raise ValueError(f"unknown corruption family {family!r}")
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


# -- task construction ---------------------------------------------------------------------------


def _class_order(seed: int) -> np.ndarray:
    """Which class gets which rank of the long-tail profile."""
    return numpy_rng("fmnist-class-order", seed).permutation(10)


def build_prior_pool(seed: int = 0, folder: str | None = None, styles: tuple[str, ...] = ("clean",)) -> ArrayImageDataset:
    """The prior pool (2,000 images per class, the same for every task seed), once per style.

    ``styles`` (``PRIOR_STYLES``): ``clean`` (the Fashion-MNIST images as they are), ``acquisition``
    (the fmnist-lt acquisition style) and ``low_quality`` (one of fmnist-lq's in-distribution
    corruptions, never clean). Styled copies use the tasks' own functions with the draws of source
    ``"prior"``, so no styled copy repeats a task image's draws; a row's ``style`` column says which.
    ``seed`` is kept for callers; the pool does not depend on it (``PRIOR_SEED``).
    """
    del seed
    unknown = [s for s in styles if s not in PRIOR_STYLES]
    if unknown or not styles:
        raise ValueError(f"unknown prior-pool style(s) {unknown or styles!r}: choose from {PRIOR_STYLES}")
    images, labels = fm.load_split("train", folder)
    prior, _ = split_train_pool(labels, PRIOR_SEED)
    frames, arrays = [], []
    with _one_torch_thread():
        for style in styles:
            arrays.append(_prior_style(images[prior], prior, style))
            frames.append(pd.DataFrame({
                "sample_id": [_sid("train", i) + ("" if style == "clean" else f"-{style}") for i in prior],
                "label": labels[prior],
                "class_name": [fm.CLASSES[c] for c in labels[prior]],
                "split": "prior",
                "source_index": prior,
                "style": style,
            }))
    return ArrayImageDataset("fmnist-prior", fm.CLASSES, pd.concat(frames, ignore_index=True), np.concatenate(arrays))


def _prior_style(images: np.ndarray, indices: np.ndarray, style: str) -> np.ndarray:
    if style == "clean":
        return images.copy()
    if style == "acquisition":
        out = images.copy()
        for start in range(0, len(images), 2048):
            out[start:start + 2048] = acquisition_style_batch(images[start:start + 2048], PRIOR_SEED, "prior",
                                                              indices[start:start + 2048])
        return out
    out = np.empty_like(images)
    for j, (img, i) in enumerate(zip(images, indices)):
        fam, sev = _lq_assignment(PRIOR_SEED, "prior", int(i), LQ_ID_FAMILIES, clean_share=0.0)
        out[j] = corrupt(img, fam, sev, PRIOR_SEED, "prior", int(i))
    return out


def _lq_assignment(seed: int, split: str, index: int, families: tuple[str, ...], clean_share: float) -> tuple[str, float]:
    rng = numpy_rng("fmnist-lq-assign", seed, split, int(index))
    if rng.random() < clean_share:
        return "clean", 0.0
    return families[int(rng.integers(len(families)))], float(rng.uniform(0.0, 1.0))


@contextmanager
def _one_torch_thread():
    """Per-image ops on 28x28 tensors gain nothing from intra-op threads and lose up to 10x to
    thread hand-offs on a busy CPU (measured: fmnist-lq 7.5 s -> 0.7 s); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_task(
    name: str,
    seed: int = 0,
    folder: str | None = None,
    val_per_class: int | None = None,
    test_limit: int | None = None,
) -> ArrayImageDataset:
    """``fmnist-lt`` or ``fmnist-lq`` with splits train / val / test (+ test_ood for lq).

    ``test_limit`` keeps a seeded, class-stratified subset of the test split (for tests and quick
    runs); the documented figures use the whole split.
    """
    if name not in ("fmnist-lt", "fmnist-lq"):
        raise ValueError(f"unknown embedded task {name!r} (fmnist-lt or fmnist-lq)")
    with _one_torch_thread():
        return _build_task(name, seed, folder, val_per_class, test_limit)


def _build_task(name: str, seed: int, folder: str | None, val_per_class: int | None,
                test_limit: int | None) -> ArrayImageDataset:
    spec = LT if name == "fmnist-lt" else LQ
    n_val = spec.val_per_class if val_per_class is None else val_per_class
    tr_images, tr_labels = fm.load_split("train", folder)
    te_images, te_labels = fm.load_split("test", folder)
    _, pool = split_train_pool(tr_labels, seed)
    profile = class_profile(spec.head, spec.tail)
    order = _class_order(seed)
    count = {int(c): profile[rank] for rank, c in enumerate(order)}

    rows, arrays = [], []

    def add(split: str, src: str, idx: int, label: int, img: np.ndarray, **meta):
        rows.append({"sample_id": _sid(src, idx), "label": int(label), "class_name": fm.CLASSES[label], "split": split,
                     "source_index": int(idx), **meta})
        arrays.append(img)

    def styled(img, src, idx, split):
        if name == "fmnist-lt":
            return img, {}  # styled below in batches (same result as acquisition_style per image)
        families = LQ_OOD_FAMILIES if split == "test_ood" else LQ_ID_FAMILIES
        clean_share = 0.0 if split == "test_ood" else 0.25
        fam, sev = _lq_assignment(seed, src if split != "test_ood" else "test-ood", idx, families, clean_share)
        return corrupt(img, fam, sev, seed, src, idx), {"corruption": fam, "severity": round(sev, 4)}

    for c in range(10):
        idx = pool[c]
        for split, chosen in (("val", idx[:n_val]), ("train", idx[n_val : n_val + count[c]])):
            for i in chosen:
                img, meta = styled(tr_images[i], "train", i, split)
                add(split, "train", i, c, img, **meta)
    test_idx = np.arange(len(te_labels))
    if test_limit is not None:
        per = max(1, test_limit // 10)
        test_idx = np.sort(np.concatenate(
            [numpy_rng("fmnist-test-limit", seed, c).permutation(np.flatnonzero(te_labels == c))[:per] for c in range(10)]
        ))
    test_splits = ("test",) if name == "fmnist-lt" else ("test", "test_ood")
    for split in test_splits:
        for i in test_idx:
            img, meta = styled(te_images[i], "test", i, split)
            sid_src = "test" if split == "test" else "testood"
            add(split, sid_src, i, te_labels[i], img, **meta)
    frame = pd.DataFrame(rows)
    images = np.stack(arrays)
    if name == "fmnist-lt":
        src = frame["sample_id"].str.split("-").str[1].to_numpy()
        for part in ("train", "test"):
            rows_of = np.flatnonzero(src == part)
            for start in range(0, len(rows_of), 2048):
                chunk = rows_of[start : start + 2048]
                images[chunk] = acquisition_style_batch(images[chunk], seed, part, frame["source_index"].to_numpy()[chunk])
    return ArrayImageDataset(name, fm.CLASSES, frame, images)


def task_definition(seed: int) -> str:
    """What identifies an embedded task's images beyond its config, for the stage digests: "" for
    seed ``PRIOR_SEED`` (its images never changed, so its run folders stay valid), else the task
    definition's version. Version 2 (issue 22) fixed the prior pool for every seed, which changed
    which images a seed >= 1 task holds: runs made before then are redone, not silently reused."""
    return "" if int(seed) == PRIOR_SEED else "fmnist-task-v2"
