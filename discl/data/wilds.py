"""WILDS iWildCam2020 (v2.0) as an :class:`~discl.data.base.ImageDataset` (the paper's low-quality task).

Needs the optional ``wilds`` package (``pip install 'discl[wilds]'``) and the downloaded data
(``python -c "import wilds; wilds.get_dataset('iwildcam', root_dir='ROOT', download=True)"``, about
11 GB), with ``data.root: ROOT``. The adapter reads WILDS' own files (``iwildcam_v2.0/metadata.csv``,
``categories.csv``, images under ``train/``) and maps the splits as the paper evaluates them:

    WILDS train -> train, id_val -> val (model selection), id_test -> test (in-distribution),
    test -> test_ood (new camera locations); WILDS' OOD ``val`` is not used.

Images are read lazily through :func:`discl.data.images.load_image`; sample ids are the file names.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from discl.data.config import DataConfig
from discl.data.folder import FileImageDataset
from discl.errors import DisclError

log = logging.getLogger(__name__)

SPLIT_MAP = {"train": "train", "id_val": "val", "id_test": "test", "test": "test_ood"}
HOW_TO_GET = (
    "install the optional extra with `pip install 'discl[wilds]'`, download the data with "
    "`python -c \"import wilds; wilds.get_dataset('iwildcam', root_dir='ROOT', download=True)\"` "
    "(about 11 GB), and set data.root=ROOT"
)


def load_iwildcam(cfg: DataConfig) -> FileImageDataset:
    try:
        import wilds  # noqa: F401 - required so that users get WILDS' licence terms and downloader
    except ImportError:
        raise DisclError(f"iWildCam needs the `wilds` package, which is not installed: {HOW_TO_GET}") from None
    root = Path(cfg.root or "data")
    folder = root / "iwildcam_v2.0"
    meta_path, cat_path = folder / "metadata.csv", folder / "categories.csv"
    if not meta_path.is_file():
        raise DisclError(f"iWildCam data not found: {meta_path} is missing; {HOW_TO_GET}")
    meta = pd.read_csv(meta_path)
    missing = {"split", "filename", "y"} - set(meta.columns)
    if missing:
        raise DisclError(f"{meta_path}: missing columns {sorted(missing)}; is this iWildCam v2.0 from WILDS?")
    n_classes = int(meta["y"].max()) + 1
    names = [str(i) for i in range(n_classes)]
    if cat_path.is_file():
        cats = pd.read_csv(cat_path)
        if {"y", "name"} <= set(cats.columns):
            for y, name in zip(cats["y"], cats["name"]):
                if 0 <= int(y) < n_classes:
                    names[int(y)] = str(name)
    meta = meta[meta["split"].isin(SPLIT_MAP)]
    frame = pd.DataFrame({
        "sample_id": meta["filename"].astype(str).to_numpy(),
        "path": ("train/" + meta["filename"].astype(str)).to_numpy(),
        "label": meta["y"].astype("int64").to_numpy(),
        "split": meta["split"].map(SPLIT_MAP).to_numpy(),
    })
    frame["class_name"] = [names[y] for y in frame["label"]]
    for col in ("location_remapped", "sequence", "datetime"):
        if col in meta.columns:
            frame[col] = meta[col].to_numpy()
    log.info("iWildCam: %d images, %d classes, splits %s", len(frame), n_classes, frame.groupby("split").size().to_dict())
    return FileImageDataset("iwildcam", names, frame, folder, cfg)
