"""Images decoded from disk in DataLoader workers: memory flat in the dataset's size.

The trainer's streamed path (``data.in_memory: false``, or ``auto`` when the data would not fit in
``data.in_memory_limit_mb``) holds paths and labels, not pixels. :class:`StreamedImages` is a
map-style ``Dataset`` whose ``__getitem__`` opens and decodes one image; a
:class:`PlanBatchSampler` hands it the epoch plan the trainer built in the main process (the
curriculum's stage, the tail quota and the class-balanced sampler decide the indices, a generator
seeded from (seed, epoch) decides the order), so the workers only decode.

Keys are ``(epoch, position, index)`` for training items (``position``: the item's place in the
epoch plan, the same whatever the number of processes) and a plain ``index`` for evaluation.
A training item's augmentation comes from a ``torch.Generator`` seeded from (seed, epoch, position)
inside ``__getitem__``, never from a worker's global RNG: a sample looks the same whichever worker
decodes it, with any ``num_workers``, and a resumed run replays its epochs exactly.

Transforms (torchvision transforms v2 functionals, uint8 in, uint8 out):
- ``letterbox``: the in-memory path's :func:`~discl.data.base.to_model_tensor` (aspect kept,
  padded to a square); the trainer's batch ``pad_crop`` augmentation runs on top of it, so the
  streamed and in-memory paths give the same batches;
- ``random_resized_crop``: area 8-100 %, aspect 3/4-4/3, then a horizontal flip with p=0.5, from
  the full-resolution image (the ImageNet recipe); evaluation: resize the short side to
  ``size / 0.875``, centre crop ``size``;
- ``clip``: open_clip's training preprocessing (area 90-100 %, bicubic, no flip); evaluation:
  resize the short side to ``size``, centre crop (bicubic). Normalisation stays in the model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from discl.seeding import derive_seed

__all__ = ["StreamedImages", "StreamedSplit", "PlanBatchSampler", "decode_tensor", "eval_transform",
           "random_resized_crop_params", "train_transform", "augment_samples", "create_loader", "estimate_bytes",
           "check_files", "decode_letterboxed", "decode_views", "default_workers"]

Mode = Literal["letterbox", "random_resized_crop", "clip"]
RRC_SCALE = {"random_resized_crop": (0.08, 1.0), "clip": (0.9, 1.0)}
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def estimate_bytes(n_images: int, size: int, channels: int) -> int:
    """Bytes of ``n_images`` uint8 tensors at ``size`` (what the in-memory path holds)."""
    return int(n_images) * int(channels) * int(size) * int(size)


# -- pure transforms on one uint8 tensor [C, H, W] ----------------------------------------------------


def random_resized_crop_params(height: int, width: int, generator: torch.Generator,
                               scale: tuple[float, float], ratio: tuple[float, float] = RRC_RATIO) -> tuple[int, int, int, int]:
    """(top, left, h, w) as torchvision's ``RandomResizedCrop`` draws them, from ``generator``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    # fallback: the centre crop at the nearest allowed ratio (as torchvision does)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _interp(mode: Mode):
    from torchvision.transforms import InterpolationMode

    return InterpolationMode.BICUBIC if mode == "clip" else InterpolationMode.BILINEAR


def train_transform(x: torch.Tensor, size: int, mode: Mode, generator: torch.Generator) -> torch.Tensor:
    """A training view of uint8 ``x`` [C, H, W] → uint8 [C, size, size], drawn from ``generator``."""
    from torchvision.transforms.v2 import functional as TF

    top, left, h, w = random_resized_crop_params(x.shape[-2], x.shape[-1], generator, RRC_SCALE[mode])
    out = TF.resized_crop(x, top, left, h, w, [size, size], interpolation=_interp(mode), antialias=True)
    if mode == "random_resized_crop" and bool(torch.rand(1, generator=generator) < 0.5):
        out = TF.horizontal_flip(out)
    return out.contiguous()


def eval_transform(x: torch.Tensor, size: int, mode: Mode) -> torch.Tensor:
    """Resize the short side, centre crop ``size``: uint8 [C, H, W] → uint8 [C, size, size]."""
    from torchvision.transforms.v2 import functional as TF

    short = size if mode == "clip" else int(round(size / 0.875))
    out = TF.resize(x, [short], interpolation=_interp(mode), antialias=True)
    return TF.center_crop(out, [size, size]).contiguous()


def augment_samples(x: torch.Tensor, positions: Sequence[int], seed: int, epoch: int, size: int, mode: Mode) -> torch.Tensor:
    """The streamed path's per-sample augmentation applied to in-memory uint8 images [N, C, H, W]."""
    out = []
    for img, position in zip(x, positions):
        g = torch.Generator()
        g.manual_seed(derive_seed("stream-augment", int(seed), int(epoch), int(position)))
        out.append(train_transform(img, size, mode, g))
    return torch.stack(out) if out else x[:, :, :size, :size]


def _decode_jpeg_fast(path: str, channels: int, max_pixels: int) -> torch.Tensor | None:
    """A plain L/RGB JPEG through ``torchvision.io`` (about 2.8x PIL's rate here, bench/bench_loader.py),
    or None for anything else, or any failure: the PIL path then decodes it or raises naming the file.

    The header is read by PIL first (no pixels decoded) for the decompression-bomb guard and the mode.
    ``torchvision.io``'s decoders are deprecated from torchvision 0.29 in favour of TorchCodec; when
    they go, this returns None and PIL decodes everything.
    """
    import warnings

    from PIL import Image

    try:
        with Image.open(path) as im:
            (w, h), mode, fmt = im.size, im.mode, im.format
        if fmt != "JPEG" or mode not in ("L", "RGB") or w * h > max_pixels:
            return None
        from torchvision.io import ImageReadMode, decode_jpeg, read_file

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return decode_jpeg(read_file(path), mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB,
                               apply_exif_orientation=True)
    except Exception:  # noqa: BLE001 - the PIL path gives the error that names the file
        return None


def decode_tensor(path: str | Path, channels: int, max_pixels: int, background: str) -> torch.Tensor:
    """One image file as uint8 [C, H, W] at full resolution (errors name the file)."""
    from discl.data.images import load_image

    if str(path).lower().endswith((".jpg", ".jpeg")):
        fast = _decode_jpeg_fast(str(path), channels, max_pixels)
        if fast is not None:
            return fast

    img = load_image(path, max_pixels, background).convert("L" if channels == 1 else "RGB")
    t = torch.from_numpy(np.array(img, dtype=np.uint8))
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


# -- checks and decoding of many files in worker processes ---------------------------------------------


class _CheckFiles(Dataset):
    def __init__(self, paths: Sequence[str], max_pixels: int, background: str):
        self.paths, self.max_pixels, self.background = list(paths), int(max_pixels), background

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> str | None:
        from discl.data.images import load_image
        from discl.errors import BadInputError

        try:
            load_image(self.paths[i], self.max_pixels, self.background)
        except BadInputError as e:
            return str(e)
        return None


def _as_list(batch):
    return list(batch)


def default_workers(configured: int | None) -> int:
    """``data.decode_workers``, or every CPU core this process may use."""
    if configured:
        return int(configured)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_files(paths: Sequence[str], max_pixels: int, background: str, workers: int = 1,
                min_parallel: int = 256) -> list[str | None]:
    """Fully decode every file, in ``workers`` processes: per file None, or the error naming it.

    Small sets (< ``min_parallel``) are checked in this process: starting workers costs more.
    """
    checker = _CheckFiles(paths, max_pixels, background)
    if workers <= 1 or len(paths) < min_parallel:
        return [checker[i] for i in range(len(paths))]
    loader = DataLoader(checker, batch_size=32, num_workers=int(workers), collate_fn=_as_list,
                        worker_init_fn=_worker_init)
    return [r for batch in loader for r in batch]


def decode_letterboxed(dataset: StreamedImages, indices: Sequence[int], workers: int = 1,
                       min_parallel: int = 256) -> torch.Tensor:
    """uint8 [N, C, size, size] of ``dataset``'s items at ``indices`` (the in-memory path's tensors),
    decoded in ``workers`` processes for large sets."""
    idx = [int(i) for i in indices]
    if not idx:
        return torch.zeros((0, dataset.channels, dataset.size, dataset.size), dtype=torch.uint8)
    if workers <= 1 or len(idx) < min_parallel:
        return torch.stack([dataset.letterbox(i) for i in idx])
    loader = DataLoader(_Letterboxed(dataset), batch_size=64, num_workers=int(workers), worker_init_fn=_worker_init,
                        sampler=idx)
    return torch.cat(list(loader))


def decode_views(dataset: StreamedImages, indices: Sequence[int], workers: int = 1,
                 min_parallel: int = 256) -> torch.Tensor:
    """uint8 [N, C, size, size]: ``dataset``'s evaluation view of the items at ``indices`` (its
    ``mode``'s evaluation transform: a centre crop for ``random_resized_crop`` and ``clip``, the
    letterbox otherwise), what the streamed path evaluates, for the in-memory path to hold."""
    idx = [int(i) for i in indices]
    if not idx:
        return torch.zeros((0, dataset.channels, dataset.size, dataset.size), dtype=torch.uint8)
    if workers <= 1 or len(idx) < min_parallel:
        return torch.stack([dataset[i][0] for i in idx])
    loader = DataLoader(_EvalViews(dataset), batch_size=64, num_workers=int(workers), worker_init_fn=_worker_init,
                        sampler=idx)
    return torch.cat(list(loader))


class _EvalViews(Dataset):
    def __init__(self, dataset: StreamedImages):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.dataset[int(i)][0]


class _Letterboxed(Dataset):
    def __init__(self, dataset: StreamedImages):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.dataset.letterbox(int(i))


# -- the dataset, the sampler, the loader -------------------------------------------------------------


class StreamedImages(Dataset):
    """Items that are image files (``str``) or rows of an in-memory uint8 array (``int``), decoded on demand.

    Picklable (paths and the optional array, no open files), so DataLoader workers get a copy.
    """

    def __init__(self, items: Sequence[str | int], labels, *, size: int, channels: int, mode: Mode, seed: int,
                 array: np.ndarray | None = None, max_pixels: int = 89_478_485, background: str = "black",
                 augment: bool = True):
        self.items = list(items)
        self.labels = torch.as_tensor(np.array(labels, dtype=np.int64))
        if len(self.items) != len(self.labels):
            raise ValueError(f"{len(self.items)} items but {len(self.labels)} labels")
        self.size, self.channels, self.mode, self.seed = int(size), int(channels), mode, int(seed)
        self.array, self.max_pixels, self.background = array, int(max_pixels), background
        self.augment = bool(augment)  # False: training items get the evaluation transform

    def __len__(self) -> int:
        return len(self.items)

    def full_image(self, index: int) -> torch.Tensor:
        item = self.items[index]
        if isinstance(item, str):
            return decode_tensor(item, self.channels, self.max_pixels, self.background)
        arr = torch.from_numpy(np.ascontiguousarray(self.array[int(item)]))
        x = arr.unsqueeze(0) if arr.ndim == 2 else arr.permute(2, 0, 1)
        if x.shape[0] != self.channels:
            x = x.expand(self.channels, -1, -1) if x.shape[0] == 1 else x.float().mean(0, keepdim=True).round().to(torch.uint8)
        return x.contiguous()

    def letterbox(self, index: int) -> torch.Tensor:
        from PIL import Image

        from discl.data.base import to_model_tensor
        from discl.data.images import load_image

        item = self.items[index]
        img = (load_image(item, self.max_pixels, self.background) if isinstance(item, str)
               else Image.fromarray(np.asarray(self.array[int(item)])))
        return to_model_tensor(img, self.size, self.channels)

    def __getitem__(self, key) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple) and self.augment:  # training: (epoch, position, index)
            epoch, position, index = (int(k) for k in key)
            if self.mode == "letterbox":
                x = self.letterbox(index)
            else:
                g = torch.Generator()
                g.manual_seed(derive_seed("stream-augment", self.seed, epoch, position))
                x = train_transform(self.full_image(index), self.size, self.mode, g)
        else:
            index = int(key[-1]) if isinstance(key, tuple) else int(key)
            x = self.letterbox(index) if self.mode == "letterbox" else eval_transform(self.full_image(index), self.size, self.mode)
        return x, int(self.labels[index])


class PlanBatchSampler(Sampler):
    """Hands the loader the batches of keys the trainer planned for the current epoch.

    Iterated in the main process (also with persistent workers), so :meth:`set_batches` before
    each ``iter(loader)`` decides what the workers decode.
    """

    def __init__(self):
        self.batches: list[list] = []

    def set_batches(self, batches: list[list]) -> None:
        self.batches = [list(b) for b in batches]

    def __iter__(self) -> Iterator[list]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _collate(batch):
    """Stack a batch; in a worker process straight into shared memory, as torch's ``default_collate``
    does, so the batch is not copied a second time when it is handed to the main process."""
    xs, ys = zip(*batch)
    out = None
    if torch.utils.data.get_worker_info() is not None and xs:
        n = len(xs) * xs[0].numel()
        out = xs[0].new(xs[0].untyped_storage()._new_shared(n * xs[0].element_size())).resize_(len(xs), *xs[0].shape)
    return torch.stack(xs, out=out), torch.as_tensor(ys, dtype=torch.int64)


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # one decode per core; workers must not oversubscribe the CPUs


def create_loader(dataset: StreamedImages, num_workers: int, pin_memory: bool = False) -> tuple[DataLoader, PlanBatchSampler]:
    """A DataLoader over ``dataset`` driven by a :class:`PlanBatchSampler` (persistent workers)."""
    sampler = PlanBatchSampler()
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=int(num_workers), collate_fn=_collate,
                        pin_memory=pin_memory, persistent_workers=num_workers > 0,
                        worker_init_fn=_worker_init if num_workers > 0 else None,
                        prefetch_factor=4 if num_workers > 0 else None)
    return loader, sampler


def _clean_errors(batches):
    """Re-raise a worker's :class:`BadInputError` with its own one-line message (the DataLoader wraps
    it in the worker's traceback), so a bad file stops training with the same line as elsewhere."""
    from discl.errors import BadInputError

    try:
        yield from batches
    except BadInputError as e:
        text = str(e)
        if "Traceback" in text:
            last = [ln for ln in text.splitlines() if "BadInputError: " in ln]
            if last:
                raise BadInputError(last[-1].split("BadInputError: ", 1)[1]) from None
        raise


@dataclass
class StreamedSplit:
    """The trainer's streamed counterpart of :class:`~discl.training.loop.TensorData`.

    ``batch_augment``: the trainer applies its batch ``pad_crop`` augmentation (letterbox mode);
    otherwise each sample's augmentation happens in ``__getitem__``.
    """

    dataset: StreamedImages
    num_workers: int = 0
    eval_batch_size: int = 256

    def __post_init__(self):
        self.labels = self.dataset.labels
        self._loader = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def batch_augment(self) -> bool:
        return self.dataset.mode == "letterbox"

    def loader(self, pin_memory: bool = False) -> tuple[DataLoader, PlanBatchSampler]:
        """The split's loader, created once and reused every epoch (persistent workers)."""
        if self._loader is None:
            self._loader = create_loader(self.dataset, self.num_workers, pin_memory)
        return self._loader

    def iter_eval(self, indices: Sequence[int] | None = None, pin_memory: bool = False):
        """(images uint8, labels) batches of ``indices`` (default all) in order, untransformed by augmentation."""
        loader, sampler = self.loader(pin_memory)
        idx = list(range(len(self))) if indices is None else [int(i) for i in indices]
        sampler.set_batches([idx[i : i + self.eval_batch_size] for i in range(0, len(idx), self.eval_batch_size)])
        yield from _clean_errors(loader)

    def iter_train(self, batches: list[list], pin_memory: bool = False):
        """Batches of the planned keys (see the module docstring)."""
        loader, sampler = self.loader(pin_memory)
        sampler.set_batches(batches)
        return _clean_errors(loader)

    def close(self) -> None:
        self._loader = None  # the workers end with their loader
