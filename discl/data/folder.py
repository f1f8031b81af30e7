"""The user's own images: an image folder or a CSV, behind :class:`~discl.data.base.ImageDataset`.

Layouts
- folder: ``root/<class>/*.{jpg,jpeg,png,webp,bmp}``, or ``root/<split>/<class>/...`` when ``root``
  holds only split folders (``train``, ``val``, ``test``, ``test_ood``; ``train`` required), named in
  any case or by the names other tools use (:data:`SPLIT_ALIASES`: ``Training``, ``validation``,
  ``valid``, ``dev``, ``testing`` ...); a split folder holds class folders, not images, so a class
  that happens to be called ``train`` (CIFAR-100) stays a class;
- CSV: columns ``path,label[,split]``, paths relative to the CSV's folder (the dataset root).

Classes are the sorted class names (numeric names sort as numbers), or ``data.class_names`` in the
order given. Without split information (no split folders / no split column), a seeded stratified
share ``data.val_fraction`` of each class becomes ``val`` and the rest ``train``; when there is no
``val`` split, it is carved from ``train`` the same way. A missing ``test`` split is allowed: the
stages that need one say so.

Every problem is found when the dataset is loaded, not in the middle of training: missing columns,
rows pointing to missing files, unknown labels, empty class folders, duplicate rows, paths escaping
the root, class names with a control character (a newline or tab in a folder name or label:
:func:`~discl.data.config.class_name_problem`) and (``data.verify_images``) unreadable images. With
``data.on_bad_image: error`` (the default) the first one raises :class:`BadInputError` naming the file
or CSV row; with ``skip`` all of them are dropped, logged with a count, and listed in
``dataset.skipped`` (columns ``path``, ``reason``), which :func:`write_skip_report` saves in the run
folder. Nothing is dropped silently. Paths and names print escaped and quoted in messages when they
hold a character that is not printable (:func:`discl.errors.shown`).

Sample ids are the POSIX paths relative to the root (stable across machines and reruns).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from discl.artifacts import normalise_relative
from discl.data.base import ImageDataset
from discl.data.config import DataConfig, class_name_problem
from discl.data.images import IMAGE_EXTENSIONS, load_image
from discl.errors import BadInputError, shown
from discl.seeding import numpy_rng

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "test_ood")

# the names other tools give the splits (Hugging Face datasets' split keywords: train/training,
# validation/valid/dev/val, test/testing), matched in any case. Not "eval": tools use it for the
# validation split as often as for the test split, so it stays an unknown name the user must map.
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test",
                 "test_ood": "test_ood", "test-ood": "test_ood", "ood": "test_ood"}


def canonical_split(name: str) -> str | None:
    """The split a folder name or CSV value means (``"Validation"`` -> ``val``); None for another name."""
    return SPLIT_ALIASES.get(str(name).strip().lower())


SKIP_COLUMNS = ["path", "reason"]


class FileImageDataset(ImageDataset):
    """Images read lazily from files under ``root`` (column ``path``, relative to ``root``)."""

    def __init__(self, name: str, classes: Sequence[str], frame: pd.DataFrame, root: Path, cfg: DataConfig,
                 skipped: pd.DataFrame | None = None):
        super().__init__(name, classes, frame)
        self.root = Path(root)
        self.max_pixels = cfg.max_image_pixels
        self.background = cfg.alpha_background
        self.skipped = skipped if skipped is not None else pd.DataFrame(columns=SKIP_COLUMNS)
        self.decode_workers = cfg.decode_workers

    def image(self, sample_id: str) -> Image.Image:
        return load_image(self.root / self.frame.at[sample_id, "path"], self.max_pixels, self.background)

    def tensors(self, sample_ids: Sequence[str], size: int, channels: int):
        """As :meth:`ImageDataset.tensors`, decoded in ``data.decode_workers`` processes for large sets."""
        from discl.data.streaming import StreamedImages, decode_letterboxed, default_workers

        paths = [str(self.root / p) for p in self.frame.loc[list(sample_ids), "path"]]
        images = StreamedImages(paths, np.zeros(len(paths), dtype=np.int64), size=size, channels=channels,
                                mode="letterbox", seed=0, max_pixels=self.max_pixels, background=self.background)
        return decode_letterboxed(images, range(len(paths)), default_workers(self.decode_workers))


class _Problems:
    """Collects bad inputs: raises at once (``error``) or records them (``skip``)."""

    def __init__(self, mode: str):
        self.mode = mode
        self.rows: list[dict[str, str]] = []

    def report(self, path: str, reason: str, where: str) -> None:
        if self.mode == "error":
            raise BadInputError(f"{where}: {reason}" if where else reason)
        self.rows.append({"path": path, "reason": reason})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=SKIP_COLUMNS)


def _sorted_classes(names: Sequence[str]) -> list[str]:
    names = sorted(set(names))
    if names and all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return names


def _is_image(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


def _split_val(frame: pd.DataFrame, fraction: float, seed: int, source: str) -> pd.DataFrame:
    """Seeded stratified split of ``train`` rows into train/val (at least one train image per class).

    Drawn from the seed and the class over the class's sorted sample ids only (not the data's path or
    name): the same data copied, renamed or reached through a link gets the same split. ``source``
    names the data in the log."""
    frame = frame.copy()
    train = frame[frame["split"] == "train"]
    none = []
    for cname, group in train.groupby("class_name", sort=True):
        ids = np.sort(group["sample_id"].to_numpy())
        n_val = min(int(round(len(ids) * fraction)), len(ids) - 1)
        if n_val <= 0:
            none.append(f"{cname!r} ({len(ids)} images)")
            continue
        chosen = numpy_rng("user-val-split", seed, str(cname)).permutation(ids)[:n_val]
        frame.loc[frame["sample_id"].isin(chosen), "split"] = "val"
    if none and fraction > 0:  # checkpoint selection and the adaptive curriculum never see these classes
        log.warning(
            "%s: data.val_fraction %g leaves %d class(es) without a validation image: %s%s; checkpoint selection "
            "does not see them (raise data.val_fraction or add a val split)", shown(source), fraction, len(none),
            ", ".join(none[:5]), " ..." if len(none) > 5 else "")
    return frame


def _finish(name: str, root: Path, rows: list[dict], classes: list[str], cfg: DataConfig, problems: _Problems,
            source: str, has_split: bool) -> FileImageDataset:
    frame = pd.DataFrame(rows, columns=["sample_id", "path", "class_name", "split", "source"])
    if cfg.verify_images:
        from discl.data.streaming import check_files, default_workers

        errors = check_files([str(root / p) for p in frame["path"]], cfg.max_image_pixels, cfg.alpha_background,
                             default_workers(cfg.decode_workers))
        keep = []
        for i, (row, err) in enumerate(zip(frame.itertuples(index=False), errors)):
            if err is None:
                keep.append(i)
            else:
                problems.report(row.path, err.removeprefix(f"{shown(root / row.path)}: "), row.source)
        frame = frame.iloc[keep]
    if frame.empty:
        raise BadInputError(f"{shown(source)}: no usable images (skipped {len(problems.rows)})")
    index = {c: i for i, c in enumerate(classes)}
    frame = frame.assign(label=frame["class_name"].map(index).astype(np.int64)).drop(columns="source")
    if not has_split or "val" not in set(frame["split"]):
        frame = _split_val(frame, cfg.val_fraction, cfg.seed, source)
    frame = frame.sort_values("sample_id", kind="stable").reset_index(drop=True)
    skipped = problems.frame()
    if len(skipped):
        log.warning("%s: skipped %d bad input(s) (data.on_bad_image=skip), e.g. %s (%s); a run's stages list "
                    "every one in RUN/skipped_inputs.csv", shown(source), len(skipped), shown(skipped.iloc[0]["path"]),
                    skipped.iloc[0]["reason"])
    counts = frame.groupby("split").size().to_dict()
    log.info("%s: %d images, %d classes, splits %s", shown(source), len(frame), len(classes), counts)
    return FileImageDataset(name, classes, frame, root, cfg, skipped)


def load_folder_dataset(cfg: DataConfig) -> FileImageDataset:
    """``root/<class>/*`` or ``root/<split>/<class>/*`` (see the module docstring)."""
    root = Path(cfg.root or "")
    if not root.is_dir():
        raise BadInputError(f"data.root {shown(root)} is not a folder (task 'folder' needs root/<class>/*.jpg)")
    problems = _Problems(cfg.on_bad_image)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_dirs = _split_folders(root, subdirs, cfg.class_names)
    split_layout = split_dirs[0][1] != root
    known = list(cfg.class_names)
    rows, found, ignored = [], set(), 0
    for split, sdir in split_dirs:
        for cdir in sorted(p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            rel_dir = cdir.relative_to(root).as_posix()
            if (why := class_name_problem(cdir.name)) is not None:
                problems.report(rel_dir + "/", f"class folder name {why}: rename the folder", shown(cdir))
                continue
            if known and cdir.name not in known:
                problems.report(rel_dir + "/", f"class folder {cdir.name!r} is not in data.class_names {known}", shown(cdir))
                continue
            files = sorted(f for f in cdir.iterdir() if _is_image(f))
            ignored += sum(1 for f in cdir.iterdir() if f.is_file() and not f.name.startswith(".") and not _is_image(f))
            if not files:
                problems.report(rel_dir + "/", f"empty class folder (no {'/'.join(IMAGE_EXTENSIONS)} files)", shown(cdir))
                continue
            found.add(cdir.name)
            for f in files:
                rel = f.relative_to(root).as_posix()
                rows.append({"sample_id": rel, "path": rel, "class_name": cdir.name, "split": split, "source": shown(f)})
        loose = [f for f in sdir.iterdir() if _is_image(f)]
        # other files beside the class folders (a README.txt in root/ or root/train/) are not used either
        ignored += sum(1 for f in sdir.iterdir() if f.is_file() and not f.name.startswith(".") and not _is_image(f))
        if loose:
            log.warning("%s: %d image(s) directly in the folder, not in a class folder, are not used", shown(sdir),
                        len(loose))
    if split_layout:  # the files directly in root, beside the split folders
        ignored += sum(1 for f in root.iterdir() if f.is_file() and not f.name.startswith(".") and not _is_image(f))
    if ignored:
        log.warning("%s: ignored %d file(s) without an image extension (%s)", shown(root), ignored,
                    ", ".join(IMAGE_EXTENSIONS))
    if not rows and not problems.rows:
        raise BadInputError(f"{shown(root)}: no class folders with images (expected root/<class>/*.jpg)")
    classes = known or _sorted_classes(found)
    return _finish(root.name or str(root), root, rows, classes, cfg, problems, str(root), split_layout)


def load_csv_dataset(cfg: DataConfig) -> FileImageDataset:
    """A CSV with ``path,label[,split]``; paths relative to the CSV's folder (see the module docstring)."""
    csv = Path(cfg.root or "")
    if not csv.is_file():
        raise BadInputError(f"data.root {shown(csv)} is not a file (task 'csv' needs a CSV with columns path,label[,split])")
    try:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BadInputError(f"{csv}: not a readable CSV ({str(e).splitlines()[0]})") from None
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise BadInputError(f"{csv}: missing column(s) {', '.join(missing)} (has: {', '.join(table.columns)}; "
                            "needs path,label[,split])")
    has_split = "split" in table.columns
    if has_split:
        _check_split_column(table["split"].str.strip(), csv, cfg.on_bad_image)
        # "Train" is train, "validation" is val (SPLIT_ALIASES); _check_split_column rejected the rest
        _check_one_name_per_split(table["split"], csv)
        table["split"] = [canonical_split(v) or str(v).strip().lower() for v in table["split"]]
    root = csv.parent.resolve()
    known = list(cfg.class_names)
    problems = _Problems(cfg.on_bad_image)
    rows, seen, seen_files = [], {}, {}
    for i, rec in enumerate(table.to_dict("records")):
        line = i + 2  # 1-based, after the header
        where = f"{shown(csv)} row {line}"
        raw, label = rec["path"].strip(), rec["label"].strip()
        split = rec["split"] if has_split else "train"
        if not raw:
            problems.report(raw, "empty path", where)
            continue
        key = normalise_relative(raw)
        if key is None or key == ".":
            problems.report(raw, f"path {raw!r} escapes the dataset root {root}", where)
            continue
        full = root / key  # not resolved: a symlinked sub-folder stays inside the root (normalise_relative)
        if key in seen:
            problems.report(raw, f"duplicate row: {raw!r} is already listed in row {seen[key]}", where)
            continue
        seen[key] = line
        if not label:
            problems.report(raw, "empty label", where)
            continue
        if (why := class_name_problem(label)) is not None:
            problems.report(raw, f"label {why}: write the label without it", where)
            continue
        if known and label not in known:
            problems.report(raw, f"unknown label {label!r} (data.class_names: {', '.join(known)})", where)
            continue
        if split not in SPLITS:
            problems.report(raw, f"unknown split {split!r} (use {', '.join(SPLITS)})", where)
            continue
        if not full.is_file():
            problems.report(raw, f"file not found: {shown(full)}", where)
            continue
        target = full.resolve()  # two listed names of one file (a link and its target) are one image
        if target in seen_files:
            problems.report(raw, f"duplicate row: {raw!r} is the same file as row {seen_files[target]} "
                                 f"({target}, reached through a symlink)", where)
            continue
        seen_files[target] = line
        rows.append({"sample_id": key, "path": key, "class_name": label, "split": split, "source": where})
    if has_split and rows and "train" not in {r["split"] for r in rows}:
        raise BadInputError(f"{csv}: no row has split 'train'")
    classes = known or _sorted_classes(r["class_name"] for r in rows)
    return _finish(csv.stem, root, rows, classes, cfg, problems, str(csv), has_split)


def _split_folders(root: Path, subdirs: list[Path], class_names: Sequence[str] = ()) -> list[tuple[str, Path]]:
    """(split, folder) pairs: the split layout when a sub-folder is a train split folder (named ``train``
    in any case or by an alias, holding class folders and no images of its own) and all the others are
    split folders too; else the class layout, the root as ``train``. Folders named in
    ``data.class_names`` are classes whatever their name. A train split folder beside folders that
    are not splits, or two folders of one split, is an error: either reading would put images in the
    wrong split or a wrong class."""
    def split_of(p: Path) -> str | None:
        split = canonical_split(p.name)
        if split is None or p.name in class_names:
            return None
        entries = [q for q in p.iterdir() if not q.name.startswith(".")]
        holds_classes = any(q.is_dir() for q in entries) and not any(_is_image(q) for q in entries)
        return split if holds_classes else None

    named = {p: split_of(p) for p in subdirs}
    if "train" not in named.values():
        return [("train", root)]
    others = [shown(p.name) for p, split in named.items() if split is None]
    if others:
        splits = [shown(p.name) for p, split in named.items() if split is not None]
        raise BadInputError(f"{shown(root)}: split folders ({', '.join(splits)}) beside folders that are not splits "
                            f"({', '.join(others[:5])}{' ...' if len(others) > 5 else ''}); use root/<split>/<class>/ "
                            f"with split folders only ({', '.join(SPLITS)}) or root/<class>/ without them (a class "
                            "named like a split: list the classes in data.class_names)")
    by_split: dict[str, list[str]] = {}
    for p, split in named.items():
        by_split.setdefault(split, []).append(p.name)
    twice = {k: v for k, v in by_split.items() if len(v) > 1}
    if twice:
        k, v = next(iter(twice.items()))
        raise BadInputError(f"{shown(root)}: folders {', '.join(map(shown, v))} all name the {k!r} split; keep one")
    return [(named[p], p) for p in subdirs]


def _check_one_name_per_split(splits: pd.Series, csv: Path) -> None:
    """Two different names of one split in one CSV (``dev`` and ``val``) are an error, not a merge: the
    file may mean two splits, and merging them would move images between validation and training
    or test silently. Case alone (``Train``, ``train``) is one name."""
    names: dict[str, set[str]] = {}
    for v in splits.dropna().astype(str):
        split = canonical_split(v)
        if split is not None:
            names.setdefault(split, set()).add(v.strip().lower())
    for split, found in names.items():
        if len(found) > 1:
            raise BadInputError(f"{csv}: the split column names the {split!r} split in {len(found)} ways "
                                f"({', '.join(sorted(found))}); use one name per split")


def _check_split_column(splits: pd.Series, csv: Path, mode: str) -> None:
    """With ``on_bad_image: error``, one error naming every row with an unknown split value (the
    count, each bad value and the first rows), not only the first: a CSV written by another tool
    usually has the same mistake on many rows, and fixing them one run at a time wastes the user's
    time. In ``skip`` mode the rows are skipped and listed one by one like any other bad row."""
    bad = splits[[canonical_split(v) is None for v in splits]]  # named as the CSV spells them
    if mode != "error" or bad.empty:
        return
    rows = [int(i) + 2 for i in bad.index]  # 1-based, after the header
    shown = ", ".join(map(str, rows[:10])) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
    values = ", ".join(repr(v) for v in sorted(set(bad)))
    raise BadInputError(f"{csv}: {len(rows)} row(s) have an unknown split ({values}; use {', '.join(SPLITS)}, "
                        f"any case, or validation/valid/dev, training, testing): rows {shown}")


def read_class_map(path: Path) -> list[tuple[str, str]]:
    """(id, name) per line of a class mapping file, in label order: ``<id> <name>[, synonym, ...]``.

    ImageNet's ``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca``) gives ``("n01440764",
    "tench")``; a line with only an id names the class by its id. A name used twice (ImageNet has two
    "crane"s) gets its id appended, so every class name is unique.
    """
    try:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"data.class_map {path}: cannot read ({e})") from None
    pairs = []
    for ln in lines:
        if not ln:
            continue
        ident, _, rest = ln.partition(" ")
        name = rest.split(",")[0].strip() or ident
        pairs.append((ident, name))
    if not pairs:
        raise BadInputError(f"data.class_map {path}: no classes")
    for label, (ident, name) in enumerate(pairs):
        if (why := class_name_problem(name)) is not None:
            raise BadInputError(f"data.class_map {shown(path)}: the name of label {label} ({shown(ident)}) {why}; "
                                "write it without control characters")
    counts: dict[str, int] = {}
    for _, name in pairs:
        counts[name] = counts.get(name, 0) + 1
    return [(i, f"{n} ({i})" if counts[n] > 1 else n) for i, n in pairs]


def load_split_files(cfg: DataConfig) -> FileImageDataset:
    """ImageNet-LT / Places-LT / iNaturalist-style lists: one text file per split (``data.split_files``)
    of ``relative/path label`` lines, paths relative to ``data.root``, labels 0..K-1.

    Class names come from ``data.class_map`` (one line per label, see :func:`read_class_map`), else
    ``data.class_names``, else the label numbers. Without a ``val`` file, val is carved from train.
    """
    root = Path(cfg.root or "")
    if not root.is_dir():
        raise BadInputError(f"data.root {root} is not a folder (task 'split_files' needs the image root)")
    if cfg.class_map:
        names = [n for _, n in read_class_map(Path(cfg.class_map))]
    else:
        names = list(cfg.class_names)
    problems = _Problems(cfg.on_bad_image)
    rows, seen, max_label = [], {}, -1
    resolved = root.resolve()
    for split, list_file in cfg.split_files.items():
        list_path = Path(list_file)
        if not list_path.is_file():
            raise BadInputError(f"data.split_files.{split}: {list_path} is not a file")
        for line_no, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{shown(list_path)} line {line_no}"
            parts = line.strip().rsplit(None, 1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                problems.report(line.strip(), f"expected 'relative/path label', got {line.strip()!r}", where)
                continue
            raw, label = parts[0], int(parts[1])
            key = normalise_relative(raw)
            if key is None or key == ".":
                problems.report(raw, f"path {raw!r} escapes the image root {resolved}", where)
                continue
            full = resolved / key  # not resolved: symlinked sub-folders are accepted (normalise_relative)
            if label < 0 or (names and label >= len(names)):
                problems.report(raw, f"label {label} is outside 0..{len(names) - 1 if names else 'K-1'}", where)
                continue
            if key in seen:
                problems.report(raw, f"duplicate: {raw!r} is already listed at {seen[key]}", where)
                continue
            seen[key] = where
            if not full.is_file():
                problems.report(raw, f"file not found: {full}", where)
                continue
            max_label = max(max_label, label)
            rows.append({"sample_id": key, "path": key, "label_id": label, "split": split, "source": where})
    if not names:
        names = [str(i) for i in range(max_label + 1)]
    for r in rows:
        r["class_name"] = names[r.pop("label_id")]
    name = Path(cfg.split_files["train"]).stem.removesuffix("_train") or root.name
    return _finish(name, root, rows, names, cfg, problems, str(cfg.split_files["train"]), has_split=True)


def write_skip_report(dataset: ImageDataset, folder: Path) -> Path | None:
    """Save ``dataset.skipped`` as ``folder/skipped_inputs.csv`` (None when nothing was skipped)."""
    from discl.artifacts import write_table

    skipped = getattr(dataset, "skipped", None)
    if skipped is None or len(skipped) == 0:
        return None
    path = Path(folder) / "skipped_inputs.csv"
    write_table(path, skipped)
    log.warning("%d input(s) were skipped; the list is in %s", len(skipped), path)
    return path


SKIP_REPORT = "skipped_inputs.csv"


def record_skipped(dataset: ImageDataset, run_dir: Path, stage: str) -> Path | None:
    """Add ``dataset.skipped`` to the run's ``RUN/skipped_inputs.csv`` (``path, reason``; rows already
    there are kept, none is listed twice) and warn with the count and the file; None when nothing
    was skipped.

    Every stage that builds the dataset calls it, not only mining: a baseline or a curriculum run
    started on its own (or after an image went bad) skips inputs too, and a log line naming one file
    of many is easy to miss, while the list in the run folder stays with the results it affects.
    """
    from discl.artifacts import write_table

    skipped = getattr(dataset, "skipped", None)
    if skipped is None or len(skipped) == 0:
        return None
    path = Path(run_dir) / SKIP_REPORT
    new = skipped[SKIP_COLUMNS].astype(str)
    old = new.iloc[:0]
    if path.is_file():  # as text: an empty path stays "" and matches its row again
        try:
            old = pd.read_csv(path, dtype=str, keep_default_na=False)[SKIP_COLUMNS]
        except (KeyError, ValueError, pd.errors.ParserError) as e:
            log.warning("%s: unreadable (%s); writing it again", path, e)
    merged = pd.concat([old, new], ignore_index=True).drop_duplicates(keep="first", ignore_index=True)
    if len(merged) != len(old):
        write_table(path, merged)
    log.warning("%s: %d input(s) were skipped (data.on_bad_image: skip); every one is listed in %s", stage,
                len(skipped), path)
    return path
