"""The committed bad-input corpus (tests/fixtures/bad_inputs, made by scripts/make_bad_inputs.py).

Each bad input gives a one-line BadInputError naming the file or CSV row, or, with
``data.on_bad_image: skip``, is dropped and listed in ``dataset.skipped`` with a reason; the good
inputs next to it still load unchanged.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from discl.data.base import to_model_tensor
from discl.data.config import DataConfig
from discl.data.folder import load_csv_dataset, load_folder_dataset, write_skip_report
from discl.data.images import load_image
from discl.errors import BadInputError

CORPUS = Path(__file__).parent / "fixtures" / "bad_inputs"
IMAGES = CORPUS / "images"
ROOT = Path(__file__).resolve().parent.parent


def _one_line_error(fn, *must_contain: str) -> str:
    with pytest.raises(BadInputError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for part in must_contain:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


def test_committed_corpus_matches_the_script(tmp_path):
    """The script makes exactly the committed files (bytes may differ with the codec versions)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_bad_inputs", ROOT / "scripts" / "make_bad_inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path / "corpus")
    listing = lambda d: sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert listing(tmp_path / "corpus") == listing(CORPUS)
    assert (tmp_path / "corpus" / "README.md").read_text() == (CORPUS / "README.md").read_text()
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    assert total < 64_000, f"the corpus should stay tiny, it is {total} bytes"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("zero_byte.jpg", "empty file"),
        ("truncated.jpg", "truncated or corrupt"),
        ("text_named.jpg", "not an image file"),
        ("bomb.png", "decompression bomb"),
    ],
)
def test_unreadable_images_name_the_file(name, reason):
    _one_line_error(lambda: load_image(IMAGES / name), name, reason)


def test_missing_file_and_folder():
    _one_line_error(lambda: load_image(IMAGES / "absent.png"), "absent.png", "not found")
    _one_line_error(lambda: load_image(IMAGES), "is a folder")


def test_pixel_cap_is_enforced_before_decoding():
    img = load_image(IMAGES / "alpha.png")
    assert img.size == (8, 8)
    _one_line_error(lambda: load_image(IMAGES / "alpha.png", max_pixels=63), "alpha.png", "64 pixels exceeds the limit of 63")


def test_alpha_composited_on_the_chosen_background():
    black = np.asarray(load_image(IMAGES / "alpha.png"))
    white = np.asarray(load_image(IMAGES / "alpha.png", background="white"))
    assert black.shape == (8, 8, 3)
    assert (black[:, :4] == 0).all() and (white[:, :4] == 255).all()  # transparent half
    assert (black[:, 4:] == 200).all() and (white[:, 4:] == 200).all()  # opaque half unchanged


def test_sixteen_bit_is_scaled_to_eight_bit():
    img = load_image(IMAGES / "gray16.png")
    arr = np.asarray(img)
    assert img.mode == "L"
    assert arr.min() == 0 and arr.max() == 255
    assert (np.diff(arr.reshape(-1).astype(int)) >= 0).all()  # the ramp stays monotone


def test_cmyk_palette_and_one_pixel():
    cmyk = np.asarray(load_image(IMAGES / "cmyk.jpg"))
    assert cmyk.shape == (8, 8, 3)
    assert cmyk[..., 0].min() > 230 and cmyk[..., 1:].max() < 25  # red
    pal = load_image(IMAGES / "palette.png")
    assert pal.mode == "RGB" and len(np.unique(np.asarray(pal).reshape(-1, 3), axis=0)) <= 4
    from PIL import Image

    with Image.open(IMAGES / "palette_alpha.png") as raw:
        transparent = np.asarray(raw) == 0
    out = np.asarray(load_image(IMAGES / "palette_alpha.png"))
    assert transparent.any() and (out[transparent] == 0).all()
    one = load_image(IMAGES / "one_pixel.png")
    assert one.size == (1, 1)
    t = to_model_tensor(one, 28, 1)
    assert t.shape == (1, 28, 28) and int(t.max()) == 128


def test_exif_orientation_is_applied():
    img = load_image(IMAGES / "exif_rotated.jpg")
    arr = np.asarray(img).astype(int)
    assert img.size == (8, 16)  # stored 16x8, orientation 6 -> upright 8 wide, 16 high
    assert arr[:8].mean() > 200 and arr[8:].mean() < 50  # the stored left half is now on top


def test_unicode_and_spaces_in_paths():
    ds = load_folder_dataset(DataConfig(task="folder", root=str(CORPUS / "folder")))
    assert ds.classes == ["plain", "ünïcode class"]
    sid = "ünïcode class/ä photo 1.png"
    assert sid in ds.frame.index and ds.frame.at[sid, "label"] == 1
    assert ds.image(sid).size == (8, 8)
    assert len(ds.frame) == 6  # README.txt is not an image and is not counted


CSV_CASES = [
    # csv, class_names, message parts, rows kept with skip
    ("missing_file.csv", [], ["missing_file.csv row 3", "file not found", "nope.png"], 2),
    ("unknown_label.csv", ["cat", "dog"], ["unknown_label.csv row 2", "unknown label 'zebra'"], 2),
    ("duplicate_rows.csv", [], ["duplicate_rows.csv row 4", "already listed in row 2"], 4),
    ("escaping_root.csv", [], ["escaping_root.csv row 3", "escapes the dataset root"], 2),
    ("bad_image.csv", [], ["bad_image.csv row 3", "truncated"], 4),
]


@pytest.mark.parametrize("csv, classes, parts, kept", CSV_CASES)
def test_csv_bad_rows_error_or_skip(csv, classes, parts, kept):
    cfg = dict(task="csv", root=str(CORPUS / "csv" / csv), class_names=classes)
    _one_line_error(lambda: load_csv_dataset(DataConfig(**cfg)), *parts)
    ds = load_csv_dataset(DataConfig(**cfg, on_bad_image="skip"))
    assert len(ds.frame) == kept
    n_bad = 2 if csv == "escaping_root.csv" else 1  # ../ and an absolute path
    assert len(ds.skipped) == n_bad and list(ds.skipped.columns) == ["path", "reason"]
    assert not set(ds.skipped["path"]) & set(ds.frame["path"]) or csv == "duplicate_rows.csv"
    for sid in ds.frame.index:  # every kept row really loads
        assert ds.image(sid).size == (8, 8)


def test_csv_missing_columns_is_an_error_even_with_skip():
    for mode in ("error", "skip"):
        cfg = DataConfig(task="csv", root=str(CORPUS / "csv" / "missing_columns.csv"), on_bad_image=mode)
        _one_line_error(lambda cfg=cfg: load_csv_dataset(cfg), "missing_columns.csv", "missing column(s) label")


@pytest.mark.parametrize("folder, parts, kept, classes", [
    ("empty_class", ["empty", "empty class folder"], 2, ["full"]),
    ("corrupt_folder", ["truncated.jpg", "truncated or corrupt"], 6, ["a", "b"]),
])
def test_folder_bad_inputs_error_or_skip(folder, parts, kept, classes, tmp_path):
    cfg = dict(task="folder", root=str(CORPUS / folder))
    _one_line_error(lambda: load_folder_dataset(DataConfig(**cfg)), *parts)
    ds = load_folder_dataset(DataConfig(**cfg, on_bad_image="skip"))
    assert len(ds.frame) == kept and ds.classes == classes and len(ds.skipped) >= 1
    report = write_skip_report(ds, tmp_path)
    assert report is not None and len(report.read_text().splitlines()) == len(ds.skipped) + 1


def test_skip_report_not_written_when_nothing_skipped(tmp_path):
    ds = load_csv_dataset(DataConfig(task="csv", root=str(CORPUS / "csv" / "good.csv")))
    assert write_skip_report(ds, tmp_path) is None and not any(tmp_path.iterdir())


def test_cli_shows_one_line_not_a_traceback(tmp_path):
    """A user pointing `discl data info` at a broken CSV sees one line naming the row."""
    csv = tmp_path / "data.csv"
    shutil.copytree(CORPUS / "csv" / "img", tmp_path / "img")
    csv.write_text("path,label\nimg/cat0.png,cat\nimg/gone.png,dog\n")
    proc = subprocess.run(
        [sys.executable, "-m", "discl", "data", "info", "data.task=csv", f"data.root={csv}"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("discl data: error:") and "row 3" in lines[-1] and "gone.png" in lines[-1]


def test_a_baseline_lists_every_skipped_input_in_the_run_folder(tmp_path, caplog):
    """Not only mining: a baseline started on its own writes RUN/skipped_inputs.csv, and its warning
    gives the count and that file; another stage's skips extend the list, none is listed twice."""
    from PIL import Image

    from discl.config import load_config
    from discl.data import build_dataset
    from discl.data.folder import record_skipped
    from discl.training.recipe import train_baseline

    root = tmp_path / "images"
    for c in ("a", "b"):
        for i in range(6):
            (root / c).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (10, 10), (40 * i, 200 if c == "a" else 0, 0)).save(root / c / f"{i}.png")
    (root / "a" / "bad.png").write_bytes(b"\x89PNG truncated")
    (root / "b" / "worse.jpg").write_bytes(b"not a jpeg")
    run = tmp_path / "run"
    cfg = load_config(ROOT / "configs" / "fmnist-lt.yaml", [
        "data.task=folder", f"data.root={root}", "data.on_bad_image=skip", "data.image_size=8", "data.channels=3",
        "data.val_fraction=0.34", "training.model=resnet8", "training.epochs=1", "training.batch_size=8",
        f"run_dir={run}"])
    with caplog.at_level("WARNING"):
        train_baseline(cfg, run, "ce", 0)
    listed = (run / "skipped_inputs.csv").read_text().splitlines()
    assert listed[0] == "path,reason" and len(listed) == 3
    assert any(ln.startswith("a/bad.png,") for ln in listed) and any(ln.startswith("b/worse.jpg,") for ln in listed)
    assert f"2 input(s) were skipped (data.on_bad_image: skip); every one is listed in {run / 'skipped_inputs.csv'}" \
        in caplog.text
    record_skipped(build_dataset(cfg.data), run, "mine")  # the same inputs again: nothing added
    assert (run / "skipped_inputs.csv").read_text().splitlines() == listed
    (root / "b" / "0.png").write_bytes(b"gone bad since")
    record_skipped(load_folder_dataset(cfg.data), run, "filter")  # read again (build_dataset would reuse its cache)
    assert len((run / "skipped_inputs.csv").read_text().splitlines()) == 4  # extended by the new one
