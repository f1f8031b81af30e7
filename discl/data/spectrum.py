"""The synthetic-to-real spectrum of a run as a dataset: for PyTorch, Hugging Face ``datasets`` and the hub.

``RUN/spectrum/`` holds the images (``images/<label>/<sample>_l<λ>_k<k>.png``) and ``metadata.csv``
(``discl generate``: every provenance column); ``RUN/filter/manifest.csv`` adds the CLIP scores and
the ``keep`` flag (``discl filter``). :func:`load_spectrum` joins them into a :class:`Spectrum`.

For ``datasets.load_dataset(RUN/spectrum)`` the folder carries a dataset card (``README.md``) whose
``configs`` section names the data files, the hub's convention. Without it, ``datasets``' imagefolder
infers splits from file names (sample ids such as ``train-00012`` or ``test-3`` would make splits or
fail), drops the metadata and labels by folder names sorted as strings (class 10 → label 1). After
``discl filter``, the card's default config reads ``metadata.parquet`` (provenance + scores + ``keep``),
written into the folder by the filter; ``generated-<digest>`` is the spectrum as ``discl generate``
wrote it. Config names carry a digest of their metadata, because ``datasets`` caches a local folder by
its name (every run's is ``spectrum``) and config name, whatever the files hold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from discl.artifacts import ArtifactError, atomic_write_text, confine, read_table, write_table
from discl.errors import BadInputError

__all__ = ["Spectrum", "load_spectrum", "open_spectrum_image", "write_dataset_card", "write_filtered_metadata"]

GENERATED_METADATA = "metadata.csv"
# provenance fields that are text: an empty one (no negative prompt, a source without a path) reads as
# "" (the manifest's own value), never as NaN, so ``item["negative_prompt"]`` is always a string
TEXT_FIELDS = ("file_name", "sample_id", "source_sample_id", "source_path", "class_name", "prompt", "model",
               "backend", "mode", "negative_prompt", "image_key", "condition_style", "drop_reason")
FILTERED_METADATA = "metadata.parquet"


def _data_patterns(file_names) -> list[str]:
    """The image globs of a config: one per top-level folder the rows' images are in."""
    tops = sorted({Path(str(f)).parts[0] for f in file_names if len(Path(str(f)).parts) > 1})
    return [f"{t}/**" for t in tops] or ["images/**"]


def _content_digest(path: Path) -> str:
    """Digest of a metadata file's bytes and of where the folder is: ``datasets`` caches the image paths
    too, so a copy of the same spectrum elsewhere needs its own cache entry."""
    import hashlib

    path = Path(path)
    h = hashlib.blake2b(str(path.parent.resolve()).encode() + b"\0", digest_size=6)
    h.update(path.read_bytes())
    return h.hexdigest()


def write_dataset_card(spectrum_dir: Path) -> Path:
    """(Re)write ``spectrum_dir/README.md``: a hub dataset card whose ``configs`` name the data files.

    The default config reads the filtered metadata when ``discl filter`` has written it, else
    ``metadata.csv``; ``generated-<digest>`` is always ``metadata.csv``. Naming the files stops split
    inference from file names. The digest (metadata bytes and folder location) in each config name
    keeps ``datasets``' cache, keyed by folder name and config name only (datasets 5.2, measured),
    from serving one run's spectrum for another's, an older version of this one, or image paths of a
    deleted copy. Call it again after moving a run folder.
    """
    spectrum_dir = Path(spectrum_dir)
    generated = read_table(spectrum_dir / GENERATED_METADATA)
    patterns = _data_patterns(generated["file_name"])
    generated_name = f"generated-{_content_digest(spectrum_dir / GENERATED_METADATA)}"
    configs = []
    if (spectrum_dir / FILTERED_METADATA).is_file():
        filtered = pd.read_parquet(spectrum_dir / FILTERED_METADATA, columns=["file_name"])
        configs.append((f"filtered-{_content_digest(spectrum_dir / FILTERED_METADATA)}", FILTERED_METADATA,
                        _data_patterns(filtered["file_name"])))
    configs.append((generated_name, GENERATED_METADATA, patterns))
    lines = ["---", "configs:"]
    for i, (name, meta, globs) in enumerate(configs):
        lines += [f"- config_name: {name}"] + (["  default: true"] if i == 0 else [])
        lines += ["  data_files:", "  - split: train", "    path:", f"    - {meta}"]
        lines += [f"    - \"{g}\"" for g in globs]
    lines += ["---", "", "# DisCL synthetic-to-real spectrum", "",
              "Written by `discl generate` / `discl filter`. Load it with `datasets.load_dataset(\"<this folder>\", "
              "split=\"train\")`: every provenance column, the integer `label` of the source dataset and, after "
              "`discl filter`, the CLIP scores and the `keep` flag (keep only `keep == True` to train as discl "
              "does). The `generated-…` config is the spectrum as generated (metadata.csv). Config names carry a "
              "digest of their metadata and of this folder's location: `datasets` caches a local folder by its "
              "name and config only, so another run's `spectrum` folder, or this one regenerated, is never read "
              "from a stale cache (after moving the folder, rewrite this card with "
              "`discl.data.spectrum.write_dataset_card(folder)`). Do not use "
              "`load_dataset(\"imagefolder\", data_dir=...)`: it ignores this card and infers splits from file names.",
              ""]
    path = spectrum_dir / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def write_filtered_metadata(spectrum_dir: Path, manifest: pd.DataFrame) -> None:
    """Put the filter's manifest (provenance + scores + ``keep``) next to the images for ``datasets``,
    then refresh the card. Only rows whose image is inside the folder are listed."""
    spectrum_dir = Path(spectrum_dir)
    write_table(spectrum_dir / FILTERED_METADATA, manifest.reset_index(drop=True))
    write_dataset_card(spectrum_dir)


def open_spectrum_image(path: Path):
    """A spectrum image fully read into memory (file closed), or an error naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise BadInputError(f"spectrum image {path} is missing (listed in the spectrum's metadata)") from None
    except OSError as e:
        raise BadInputError(f"spectrum image {path} cannot be read: {e}") from None


def _keep_mask(frame: pd.DataFrame) -> np.ndarray:
    keep = frame["keep"]
    if keep.dtype == bool:
        return keep.to_numpy()
    return keep.astype(str).str.lower().isin(["true", "1"]).to_numpy()


class Spectrum:
    """A run's synthetic variants as a map-style dataset (``torch.utils.data.Dataset`` protocol).

    ``spectrum[i]`` is a dict: ``image`` (PIL, or ``transform(image)``), ``label`` (the source
    dataset's integer class), ``lam`` (λ: 0 = prompt-driven, 1 = the real image), ``seed``, ``k``,
    ``sample_id`` (the real source image's id), ``class_name``, ``prompt``, the CLIP scores
    (``sim_text``, ``sim_image``, ...; NaN before ``discl filter``), ``keep`` and ``file_name``.
    Text fields are strings, ``""`` when empty (no negative prompt), as the manifest wrote them.
    ``frame`` holds every row's fields (no pixels: images are opened in ``__getitem__``), so
    selections are plain pandas. ``to_hf_dataset()`` gives the same rows as a ``datasets.Dataset``.
    """

    def __init__(self, frame: pd.DataFrame, root: Path, transform: Callable | None = None,
                 run_dir: Path | None = None):
        self.frame = frame.reset_index(drop=True)
        self.root = Path(root)
        self.transform = transform
        self.run_dir = Path(run_dir) if run_dir is not None else None

    def __len__(self) -> int:
        return len(self.frame)

    def path(self, i: int) -> Path:
        """The image file of row ``i`` (confined to the spectrum folder)."""
        return confine(self.root, str(self.frame.at[int(i), "file_name"]))

    def image(self, i: int):
        """Row ``i``'s image as a PIL image, fully read (the file is closed)."""
        return open_spectrum_image(self.path(i))

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"spectrum index {i} out of range ({len(self)} images)")
        i %= len(self)
        row = self.frame.iloc[i]
        item = {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in self.frame.columns}
        image = self.image(i)
        item["image"] = self.transform(image) if self.transform is not None else image
        return item

    @property
    def labels(self) -> np.ndarray:
        """int64 class of every row (the source dataset's label)."""
        return self.frame["label"].to_numpy(dtype=np.int64)

    @property
    def levels(self) -> list[float]:
        """The λ values present, sorted."""
        return sorted({round(float(v), 6) for v in self.frame["lam"]})

    def to_hf_dataset(self):
        """The same rows as a Hugging Face ``datasets.Dataset`` (``image`` decoded on access)."""
        import datasets

        cols = {c: self.frame[c].tolist() for c in self.frame.columns}
        cols["image"] = [str(self.path(i)) for i in range(len(self))]
        ds = datasets.Dataset.from_dict(cols)
        return ds.cast_column("image", datasets.Image())


def load_spectrum(run_dir: str | Path, kept_only: bool = True, transform: Callable | None = None) -> Spectrum:
    """The spectrum of a ``discl run`` folder: by default only the images the CLIP filter kept.

    Reads ``RUN/filter/manifest.csv`` (provenance, CLIP scores, ``keep``); with ``kept_only=False``
    and no filter run yet, ``RUN/spectrum/metadata.csv`` (every generated image, no scores).
    ``transform`` is applied to each PIL image in ``__getitem__``.
    """
    run_dir = Path(run_dir)
    spectrum_dir = run_dir / "spectrum"
    manifest = run_dir / "filter" / "manifest.csv"
    if manifest.is_file():
        frame = read_table(manifest)
    elif kept_only:
        raise ArtifactError(f"missing {manifest}: the kept spectrum needs `discl filter` (or `discl run`) on {run_dir}; "
                            "load_spectrum(..., kept_only=False) reads the unfiltered spectrum/metadata.csv")
    elif (spectrum_dir / GENERATED_METADATA).is_file():
        frame = read_table(spectrum_dir / GENERATED_METADATA)
        frame["keep"] = True
    else:
        raise ArtifactError(f"missing {spectrum_dir / GENERATED_METADATA}: run `discl generate` (or `discl run`) on {run_dir}")
    for col in ("file_name", "label", "lam", "sample_id"):
        if col not in frame.columns:
            raise ArtifactError(f"{manifest if manifest.is_file() else spectrum_dir / GENERATED_METADATA} has no {col!r} column")
    frame["keep"] = _keep_mask(frame)
    if kept_only:
        frame = frame[frame["keep"]]
    frame["label"] = frame["label"].astype(np.int64)
    for col in TEXT_FIELDS:
        if col in frame.columns:
            frame[col] = frame[col].fillna("").astype(str)
    return Spectrum(frame, spectrum_dir, transform, run_dir)
