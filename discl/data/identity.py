"""What identifies a dataset's content, at two costs, so that a stage reruns when the data changes.

The data config names the data (``data.root``, the task, the split files); the stage digests
(:mod:`discl.digests`) also need what is behind those names, or a user who appends images to a class,
edits a CSV or replaces an image in place gets results of the old data reported as current.

- :func:`listing_digest`: the data's listing, without reading any image: the bytes of the files that
  list the samples (the CSV, the ``split_files``, the ``class_map``, iWildCam's ``metadata.csv`` and
  ``categories.csv``) and the (relative path, size, mtime_ns) of every image the loader can read (a
  folder task's class folders as walked, a CSV's or split file's rows). The row list (sample ids,
  labels, splits) is a pure function of this listing and the data config, and the pixels are
  identified by the images' sizes and times, so mining and training, which read the whole dataset,
  depend on it. One ``stat`` per image: ImageNet-LT's 116k files cost about a second; reading every
  byte on every ``discl run`` would cost minutes. A rewrite that keeps both the size and the mtime
  of an image (``cp -p`` of another image of exactly the same size) is the one change it misses:
  ``discl run --force`` redoes everything then.
- :func:`source_keys`: a content digest (blake2b) of each source image the spectrum and the filter
  use, through the file-digest cache of :mod:`discl.fingerprint` (keyed by path, size, mtime, inode
  and ctime, so any rewrite is noticed and an unchanged file is read once). Those images are few
  (the hard set) and what depends on them is expensive (diffusion, CLIP), so the key follows the
  bytes: an image replaced in place gets new variants and new CLIP embeddings, a touched or
  re-copied image with the same bytes keeps its own.

Embedded Fashion-MNIST tasks (``fmnist-lt``, ``fmnist-lq``) have an empty identity: their rows and
pixels are a pure function of the data config and the four published Fashion-MNIST idx files, which
have the same bytes wherever :func:`discl.data.fashion_mnist.find_dir` finds them (a Debian package,
``$DISCL_FASHION_MNIST``, the download cache; gzipped or not), and :func:`_read_idx` refuses a
truncated file. Their path or mtime would only rerun every stage after a reinstall of the same data.

During :func:`snapshot` (``discl run``, the report) a listing is computed once per data config: the
stages of one run then see one version of the data, and a run of many training digests stats the
files once rather than once per digest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from discl.data.images import IMAGE_EXTENSIONS

EMBEDDED_TASKS = frozenset({"fmnist-lt", "fmnist-lq"})
FOLDER_DEPTH = 2  # root/<split>/<class>/image: the loader looks no deeper

_SNAPSHOT: dict[str, str] | None = None


@contextmanager
def snapshot() -> Iterator[None]:
    """Within this block, :func:`listing_digest` lists each data config once (nested blocks share one)."""
    global _SNAPSHOT
    if _SNAPSHOT is not None:
        yield
        return
    _SNAPSHOT = {}
    try:
        yield
    finally:
        _SNAPSHOT = None


def listing_digest(data) -> str:
    """16 hex digits identifying the dataset's rows and images (see the module doc); "" for an
    embedded task of ``data.seed`` 0 (its images never changed). ``data`` is a :class:`~discl.data.config.DataConfig`."""
    if data.task in EMBEDDED_TASKS:
        from discl.data.tasks import task_definition

        return task_definition(int(data.seed))
    from discl.configtools import to_dict

    key = json.dumps(to_dict(data), sort_keys=True, default=str)
    if _SNAPSHOT is not None and key in _SNAPSHOT:
        return _SNAPSHOT[key]
    h = hashlib.blake2b(digest_size=8)
    for entry in _listing(data):
        h.update(json.dumps(entry).encode())
        h.update(b"\n")
    out = h.hexdigest()
    if _SNAPSHOT is not None:
        _SNAPSHOT[key] = out
    return out


def _stat(path: Path) -> list[int] | str:
    try:
        st = os.stat(path)  # follows symlinks: the image's own size and time
    except OSError:
        return "missing"
    return [st.st_size, st.st_mtime_ns]


def _bytes_digest(path: Path) -> str:
    try:
        return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
    except OSError:
        return "missing"


def _listing(data) -> Iterable[list]:
    """The entries :func:`listing_digest` hashes, in a fixed order."""
    root = Path(data.root or "").expanduser()
    if data.task == "folder":
        yield from _walk(root)
    elif data.task == "csv":
        yield ["list", "csv", _bytes_digest(root)]
        yield from _rows(root.parent, _csv_paths(root))
    elif data.task == "split_files":
        if data.class_map:
            yield ["list", "class_map", _bytes_digest(Path(data.class_map).expanduser())]
        for split, list_file in sorted(data.split_files.items()):
            path = Path(list_file).expanduser()
            yield ["list", split, _bytes_digest(path)]
            yield from _rows(root, _split_file_paths(path))
    elif data.task == "iwildcam":
        folder = root / "iwildcam_v2.0"
        yield ["list", "categories", _bytes_digest(folder / "categories.csv")]
        meta = folder / "metadata.csv"
        yield ["list", "metadata", _bytes_digest(meta)]
        yield from _rows(folder / "train", _csv_paths(meta, column="filename"))
    else:  # a task this module does not know: its identity would silently be empty
        raise ValueError(f"no content listing for data.task {data.task!r}; add it to discl.data.identity")


def _walk(root: Path) -> Iterator[list]:
    """Every image file of a folder task, as the loader walks it (hidden entries skipped, symlinks followed)."""
    if not root.is_dir():
        yield ["missing", str(root)]
        return
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            yield ["unreadable", folder.relative_to(root).as_posix()]
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir():
                if depth < FOLDER_DEPTH:
                    subdirs.append(Path(e.path))
            elif Path(e.name).suffix.lower() in IMAGE_EXTENSIONS:
                yield [Path(e.path).relative_to(root).as_posix(), _stat(Path(e.path))]
        stack += [(d, depth + 1) for d in reversed(subdirs)]


def _rows(root: Path, paths: Iterable[str]) -> Iterator[list]:
    for p in paths:
        yield [p, _stat(root / p)]


def _csv_paths(path: Path, column: str = "path") -> list[str]:
    """The path column of a CSV as the loader strips it ([] when it cannot be read: its bytes are
    in the listing, and loading it gives the clear error)."""
    try:
        text = path.read_text(encoding="utf-8")
        reader = csv.reader(io.StringIO(text), skipinitialspace=True)
        header = [c.strip() for c in next(reader, [])]
        if column not in header:
            return []
        i = header.index(column)
        return [row[i].strip() for row in reader if len(row) > i and row[i].strip()]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _split_file_paths(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [parts[0] for ln in lines if len(parts := ln.strip().rsplit(None, 1)) == 2]


def source_keys(dataset, sample_ids: Iterable[str]) -> dict[str, str]:
    """{sample_id: content digest of its image file} for a dataset read from files; "" for each
    sample of an in-memory (embedded) dataset, whose pixels the data config fixes (module doc)."""
    ids = [str(s) for s in sample_ids]
    root = getattr(dataset, "root", None)
    frame = dataset.frame
    if root is None or "path" not in frame.columns:
        return {s: "" for s in ids}
    from discl.fingerprint import file_digests

    paths = {s: Path(root) / frame.at[s, "path"] for s in dict.fromkeys(ids)}
    present = [s for s, p in paths.items() if p.is_file()]  # a missing one: loading it gives the clear error
    out = {s: "missing" for s in paths}
    out.update({s: d[:16] for s, d in zip(present, file_digests([paths[s] for s in present]))})
    return out
