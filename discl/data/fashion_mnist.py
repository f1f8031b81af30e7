"""Locate and read the real Fashion-MNIST files (the four standard idx .gz files).

Looked for, in order: ``$DISCL_FMNIST_DIR``, an explicit folder, Debian's ``dataset-fashion-mnist``
(/usr/share/datasets/fashion-mnist), and torchvision's download cache when ``download=True``.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from discl.errors import DisclError

CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "DISCL_FMNIST_DIR"
HOW_TO_GET = (
    "Fashion-MNIST was not found. Get it one of these ways: "
    "(1) `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, offline mirror); "
    f"(2) put the four idx .gz files in a folder and set {ENV_VAR}=/that/folder (or data.root); "
    "(3) when online, `discl data fetch` downloads them with torchvision."
)


class DataNotFoundError(DisclError, FileNotFoundError):
    pass


def _has_files(folder: Path) -> bool:
    return all((folder / name).is_file() or (folder / name[:-3]).is_file() for name in FILES.values())


def candidate_dirs(explicit: str | Path | None = None) -> list[Path]:
    dirs = []
    if explicit:
        dirs.append(Path(explicit))
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]))
    dirs.append(DEBIAN_DIR)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "discl" / "FashionMNIST" / "raw"
    dirs.append(cache)
    return dirs


def find_dir(explicit: str | Path | None = None) -> Path:
    for d in candidate_dirs(explicit):
        if _has_files(d):
            return d
    if explicit:
        raise DataNotFoundError(f"{explicit} does not hold the four Fashion-MNIST idx files. {HOW_TO_GET}")
    raise DataNotFoundError(HOW_TO_GET)


def download(dest: Path | None = None) -> Path:
    """Download with torchvision (needs network); returns the folder with the raw files."""
    from torchvision.datasets import FashionMNIST

    root = dest or candidate_dirs()[-1].parent.parent
    FashionMNIST(str(root), train=True, download=True)
    FashionMNIST(str(root), train=False, download=True)
    return Path(root) / "FashionMNIST" / "raw"


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataNotFoundError(f"cannot read {path}: {e}") from e
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataNotFoundError(f"{path} is not an unsigned-byte idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DataNotFoundError(f"{path} is truncated: {len(data) - offset} bytes for shape {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


@lru_cache(maxsize=4)
def load_split(split: str, folder: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of the official ``train`` or ``test`` split."""
    if split not in ("train", "test"):
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    d = find_dir(folder)

    def path(kind: str) -> Path:
        p = d / FILES[(split, kind)]
        return p if p.is_file() else p.with_suffix("")

    images = _read_idx(path("images"))
    labels = _read_idx(path("labels")).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DataNotFoundError(f"{d}: {split} has {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels
