from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from discl.configtools import check

_CONTROL_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}


def class_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a class (pure), or None.

    A class name is written into the text prompts, the CLIP captions, every CSV manifest, the report
    and the log lines: a control character (a newline or a tab, usually pasted with the name or made
    by a script) splits a prompt and a log line and makes the name print unlike the folder or label
    it came from. No dataset needs one, so it is an error before any work, never a silent edit. Braces
    are fine: a template's ``{name}`` is filled with the name as written (``str.format`` does not read
    braces inside the value).
    """
    bad = [c for c in str(name) if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
    if not bad:
        return None
    what = _CONTROL_NAMES.get(bad[0], f"the control character U+{ord(bad[0]):04X}")
    return f"contains {what} ({str(name)!r}); a class name goes into prompts, CSV files and log lines"


@dataclass
class DataConfig:
    """Where the task's images come from.

    ``task`` picks the dataset: the embedded Fashion-MNIST tasks (``fmnist-lt``, ``fmnist-lq``) or
    the user's own data (``folder``: root/<class>/*.jpg; ``csv``: path,label[,split]; ``iwildcam``:
    WILDS, when installed and downloaded; ``split_files``: ImageNet-LT/Places-LT-style ``path label``
    text files over an image root).
    """

    task: Literal["fmnist-lt", "fmnist-lq", "folder", "csv", "iwildcam", "split_files"] = "fmnist-lt"
    root: str | None = None  # folder / csv path / wilds root / split_files image root; fmnist: folder with the idx files; relative in a config file: to that file's folder (stored resolved)
    seed: int = 0  # fixes the embedded tasks' splits, class order and per-image style
    image_size: int = 28  # side the classifier sees; user images are resized (aspect kept, padded)
    channels: Literal[1, 3] = 1
    val_per_class: int = 20  # embedded tasks: balanced validation split for model selection
    val_fraction: float = 0.1  # folder/csv without a split column: share held out for validation
    many_threshold: int = 100  # class frequency bins (ImageNet-LT: many >= 100, few < 20)
    few_threshold: int = 20
    on_bad_image: Literal["error", "skip"] = "error"  # skip = drop, log a count, list them in ds.skipped
    class_names: list[str] = field(default_factory=list)  # folder/csv: the class list in label order (default: sorted names); other labels are errors
    verify_images: bool = True  # folder/csv: decode every image once when loading, so bad files surface before training
    max_image_pixels: int = 89_478_485  # decompression-bomb guard per image (Pillow's default)
    alpha_background: Literal["black", "white"] = "black"  # what transparent pixels become
    split_files: dict[str, str] = field(default_factory=dict)  # split_files: split -> "relative/path label" list file (train required)
    class_map: str | None = None  # split_files: class names, one "<id> <name>[, synonyms]" line per label (LOC_synset_mapping.txt)
    in_memory: Literal["auto"] | bool = "auto"  # training images held as tensors (true) or decoded from disk by loader workers (false); auto: by size
    in_memory_limit_mb: int = 2048  # auto: hold in memory when the dataset's images (all splits) at image_size fit in this many MB
    decode_workers: int | None = None  # processes verifying/decoding images when loading (None: all CPU cores)
    test_limit: int | None = None  # embedded tasks: class-stratified test subset (quick runs, tests); None = all 10k

    def __post_init__(self):
        check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        check(self.image_size >= 8, "image_size", f"must be >= 8, got {self.image_size}")
        check(self.val_per_class >= 1, "val_per_class", f"must be >= 1, got {self.val_per_class}")
        check(0.0 < self.val_fraction < 1.0, "val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        check(
            0 < self.few_threshold <= self.many_threshold,
            "few_threshold",
            f"needs 0 < few_threshold ({self.few_threshold}) <= many_threshold ({self.many_threshold})",
        )
        check(self.max_image_pixels >= 1, "max_image_pixels", f"must be >= 1, got {self.max_image_pixels}")
        check(len(set(self.class_names)) == len(self.class_names), "class_names", "lists a class twice")
        for i, name in enumerate(self.class_names):
            why = class_name_problem(name)
            check(why is None, f"class_names[{i}]", f"{why}; write it without control characters (and rename "
                                                   f"its folder or label to match)")
        check(self.test_limit is None or self.test_limit >= 10, "test_limit", "must be >= 10 (one per class)")
        check(self.in_memory_limit_mb >= 0, "in_memory_limit_mb", "must be >= 0")
        check(self.decode_workers is None or self.decode_workers >= 1, "decode_workers", "must be >= 1 or null")
        if self.task == "split_files":
            check(bool(self.root), "root", "task 'split_files' needs data.root (the image root the split files' paths are relative to)")
            check("train" in self.split_files, "split_files", "task 'split_files' needs split_files.train (and usually val, test)")
            bad = sorted(set(self.split_files) - {"train", "val", "test", "test_ood"})
            check(not bad, "split_files", f"unknown split(s) {bad} (use train, val, test, test_ood)")
        if self.task in ("folder", "csv"):
            check(bool(self.root), "root", f"task {self.task!r} needs data.root (the image folder or CSV file)")
