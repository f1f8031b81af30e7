"""The folder / CSV / WILDS adapters on small real files made on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from discl.data import build_dataset
from discl.data.config import DataConfig
from discl.data.folder import load_csv_dataset, load_folder_dataset
from discl.errors import BadInputError, DisclError

CORPUS = Path(__file__).parent / "fixtures" / "bad_inputs"


def _img(path: Path, value: int, size=(6, 4), mode="L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 0)).save(path)


@pytest.fixture()
def class_folder(tmp_path):
    root = tmp_path / "pets"
    for c, v in (("dog", 10), ("cat", 20), ("emu", 30)):
        for i in range(8):
            _img(root / c / f"{c}_{i}.{'jpg' if i % 2 else 'png'}", v + i)
    return root


def test_class_folder_layout(class_folder):
    ds = load_folder_dataset(DataConfig(task="folder", root=str(class_folder), val_fraction=0.25))
    assert ds.classes == ["cat", "dog", "emu"]
    assert len(ds.frame) == 24 and set(ds.splits) == {"train", "val"}
    assert (ds.class_counts("val") == 2).all() and (ds.class_counts("train") == 6).all()  # stratified
    sid = "dog/dog_2.png"
    assert ds.frame.at[sid, "label"] == 1 and ds.frame.at[sid, "path"] == sid
    assert np.asarray(ds.image(sid)).max() == 12
    t = ds.tensors([sid, "cat/cat_1.jpg"], size=8, channels=3)
    assert t.shape == (2, 3, 8, 8) and t.dtype.is_floating_point is False
    assert len(ds.skipped) == 0


def test_a_class_left_without_validation_images_is_named(class_folder, caplog):
    """val_fraction 0.1 rounds 8 images to 1 but 4 to 0: that class is not in checkpoint selection."""
    for i in range(4, 8):
        (class_folder / "emu" / f"emu_{i}.{'jpg' if i % 2 else 'png'}").unlink()
    with caplog.at_level("WARNING", logger="discl.data.folder"):
        ds = load_folder_dataset(DataConfig(task="folder", root=str(class_folder), val_fraction=0.1))
    assert list(ds.class_counts("val")) == [1, 1, 0]
    assert "1 class(es) without a validation image: 'emu' (4 images)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="discl.data.folder"):
        load_folder_dataset(DataConfig(task="folder", root=str(class_folder), val_fraction=0.25))
    assert "without a validation image" not in caplog.text


def test_val_split_is_seeded(class_folder):
    val = lambda seed: set(load_folder_dataset(  # noqa: E731
        DataConfig(task="folder", root=str(class_folder), val_fraction=0.25, seed=seed)).split("val").index)
    assert val(0) == val(0)
    assert val(0) != val(1)


def test_split_folder_layout_and_class_names_order(tmp_path):
    root = tmp_path / "data"
    for split, n in (("train", 10), ("test", 3)):
        for c in ("b", "a"):
            for i in range(n):
                _img(root / split / c / f"{i}.png", 100)
    ds = load_folder_dataset(DataConfig(task="folder", root=str(root), class_names=["b", "a"], val_fraction=0.2))
    assert ds.classes == ["b", "a"] and ds.frame.at["train/b/0.png", "label"] == 0
    assert ds.class_counts("test").tolist() == [3, 3]
    assert ds.class_counts("val").tolist() == [2, 2] and ds.class_counts("train").tolist() == [8, 8]


def test_split_folders_named_as_other_tools_name_them(tmp_path, caplog):
    """``Train/``, ``Validation/``, ``Test/`` (Hugging Face datasets' split keywords, any case) are the
    splits, not three classes; a train folder beside a non-split folder, or two folders of one split,
    is an error naming them rather than a guess."""
    root = tmp_path / "data"
    for split, n in (("Train", 6), ("Validation", 2), ("testing", 3)):
        for c in ("cat", "dog"):
            for i in range(n):
                _img(root / split / c / f"{i}.png", 100)
    (root / "README.txt").write_text("about")  # beside the split folders and inside one: not images, counted
    (root / "Train" / "notes.md").write_text("notes")
    with caplog.at_level("WARNING", logger="discl.data.folder"):
        ds = load_folder_dataset(DataConfig(task="folder", root=str(root)))
    assert any("ignored 2 file(s) without an image extension" in r.getMessage() for r in caplog.records)
    assert ds.classes == ["cat", "dog"]
    assert {s: ds.class_counts(s).tolist() for s in ("train", "val", "test")} == {
        "train": [6, 6], "val": [2, 2], "test": [3, 3]}
    assert "Validation/cat/0.png" in ds.frame.index  # sample ids stay the files' own paths
    _img(root / "extra" / "cat" / "0.png", 100)
    with pytest.raises(BadInputError, match=r"split folders \(Train, Validation, testing\) beside folders that are not splits \(extra\)"):
        load_folder_dataset(DataConfig(task="folder", root=str(root)))
    (root / "extra" / "cat" / "0.png").unlink()
    (root / "extra" / "cat").rmdir()
    (root / "extra").rename(root / "dev")
    _img(root / "dev" / "cat" / "0.png", 100)
    with pytest.raises(BadInputError, match=r"folders Validation, dev all name the 'val' split"):
        load_folder_dataset(DataConfig(task="folder", root=str(root)))


def test_a_class_named_like_a_split_stays_a_class(tmp_path):
    """CIFAR-100 has a class ``train``: a folder of images (no class folders inside) is a class folder."""
    root = tmp_path / "data"
    for c in ("train", "bus", "bicycle"):
        for i in range(4):
            _img(root / c / f"{i}.png", 100)
    ds = load_folder_dataset(DataConfig(task="folder", root=str(root), val_fraction=0.25))
    assert ds.classes == ["bicycle", "bus", "train"] and ds.class_counts("train").tolist() == [3, 3, 3]


def test_csv_with_two_names_for_one_split_is_refused(tmp_path):
    rows = []
    for i, split in enumerate(["train", "train", "dev", "val", "test"]):
        _img(tmp_path / f"{i}.png", i)
        rows.append(f"{i}.png,{'ab'[i % 2]},{split}")
    (tmp_path / "d.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    with pytest.raises(BadInputError, match=r"d\.csv: the split column names the 'val' split in 2 ways \(dev, val\)"):
        load_csv_dataset(DataConfig(task="csv", root=str(tmp_path / "d.csv")))


def test_numeric_class_names_sort_as_numbers(tmp_path):
    for c in ("10", "2", "1"):
        for i in range(2):
            _img(tmp_path / "n" / c / f"{i}.png", 5)
    ds = load_folder_dataset(DataConfig(task="folder", root=str(tmp_path / "n")))
    assert ds.classes == ["1", "2", "10"]


def test_csv_with_splits_and_dispatch():
    cfg = DataConfig(task="csv", root=str(CORPUS / "csv" / "good.csv"))
    ds = build_dataset(cfg)
    assert ds.classes == ["cat", "dog"]
    assert ds.class_counts("train").tolist() == [2, 2] and ds.class_counts("test").tolist() == [1, 1]
    assert set(ds.splits) == {"train", "val", "test"}
    assert ds.frame.at["img/cat2.png", "split"] == "val"


def test_csv_paths_are_normalised_and_spaces_work(tmp_path):
    _img(tmp_path / "sub dir" / "x 1.png", 7)
    _img(tmp_path / "sub dir" / "y.png", 9)
    (tmp_path / "d.csv").write_text("path,label\n./sub dir/x 1.png, one\nsub dir/../sub dir/y.png,two\n")
    ds = load_csv_dataset(DataConfig(task="csv", root=str(tmp_path / "d.csv")))
    assert sorted(ds.frame.index) == ["sub dir/x 1.png", "sub dir/y.png"]
    assert ds.classes == ["one", "two"]


def test_symlinked_image_folder_is_inside_the_root(tmp_path):
    """``root/images -> /elsewhere/images`` (usual on clusters) is accepted by the csv and split_files
    tasks as by the folder task; ids keep the listed path; ``..`` and absolute paths are still refused."""
    elsewhere = tmp_path / "elsewhere" / "images"
    for i, v in enumerate((10, 20, 30, 40)):
        _img(elsewhere / f"{i}.png", v)
    root = tmp_path / "data"
    root.mkdir()
    (root / "images").symlink_to(elsewhere, target_is_directory=True)
    (root / "d.csv").write_text("path,label\nimages/0.png,a\nimages/1.png,b\nimages/2.png,a\nimages/3.png,b\n")
    ds = load_csv_dataset(DataConfig(task="csv", root=str(root / "d.csv"), val_fraction=0.5))
    assert sorted(ds.frame.index) == [f"images/{i}.png" for i in range(4)]
    assert np.asarray(ds.image("images/2.png")).max() == 30
    (root / "train.txt").write_text("images/0.png 0\nimages/1.png 1\nimages/2.png 0\nimages/3.png 1\n")
    ds = build_dataset(DataConfig(task="split_files", root=str(root), split_files={"train": str(root / "train.txt")},
                                  val_fraction=0.5))
    assert sorted(ds.frame.index) == [f"images/{i}.png" for i in range(4)]
    for bad in ("images/../../elsewhere/images/0.png", str(elsewhere / "0.png")):
        (root / "bad.csv").write_text(f"path,label\nimages/0.png,a\n{bad},b\n")
        with pytest.raises(BadInputError, match="bad.csv row 3: .*escapes the dataset root"):
            load_csv_dataset(DataConfig(task="csv", root=str(root / "bad.csv")))
    # a file link and its target listed as two rows are one image (it could land in two splits)
    (root / "alias.png").symlink_to(elsewhere / "1.png")
    (root / "dup.csv").write_text("path,label\nimages/0.png,a\nimages/1.png,b\nalias.png,b\n")
    with pytest.raises(BadInputError, match=r"dup.csv row 4: duplicate row: 'alias.png' is the same file as row 3"):
        load_csv_dataset(DataConfig(task="csv", root=str(root / "dup.csv")))


def test_csv_split_values_any_case_and_every_bad_row_named(tmp_path):
    rows = []
    for i, split in enumerate(["Train", "TRAIN", " Validation", "train", "Testing", "TESTING"]):
        _img(tmp_path / f"{i}.png", i)
        rows.append(f"{i}.png,{'ab'[i % 2]},{split}")
    (tmp_path / "d.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    ds = load_csv_dataset(DataConfig(task="csv", root=str(tmp_path / "d.csv")))
    assert ds.frame["split"].value_counts().to_dict() == {"train": 3, "val": 1, "test": 2}
    bad = rows + [f"{i}.png,a,{'trian' if i % 3 else 'tst'}" for i in range(6, 18)]
    for i in range(6, 18):
        _img(tmp_path / f"{i}.png", i)
    (tmp_path / "bad.csv").write_text("path,label,split\n" + "\n".join(bad) + "\n")
    with pytest.raises(BadInputError, match=r"bad\.csv: 12 row\(s\) have an unknown split \('trian', 'tst'; .*"
                                            r"rows 8, 9, 10, 11, 12, 13, 14, 15, 16, 17 and 2 more"):
        load_csv_dataset(DataConfig(task="csv", root=str(tmp_path / "bad.csv")))
    ds = load_csv_dataset(DataConfig(task="csv", root=str(tmp_path / "bad.csv"), on_bad_image="skip"))
    assert len(ds.frame) == 6 and len(ds.skipped) == 12


def test_unverified_bad_image_fails_on_use_with_the_file_name(tmp_path):
    _img(tmp_path / "f" / "a" / "ok.png", 1)
    (tmp_path / "f" / "a" / "bad.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(BadInputError, match="bad.png"):
        load_folder_dataset(DataConfig(task="folder", root=str(tmp_path / "f")))
    ds = load_folder_dataset(DataConfig(task="folder", root=str(tmp_path / "f"), verify_images=False))
    with pytest.raises(BadInputError, match=r"bad\.png: not an image file"):
        ds.image("a/bad.png")


def test_missing_root_and_empty_dataset(tmp_path):
    with pytest.raises(BadInputError, match="is not a folder"):
        load_folder_dataset(DataConfig(task="folder", root=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no class folders"):
        load_folder_dataset(DataConfig(task="folder", root=str(tmp_path / "empty")))
    with pytest.raises(BadInputError, match="is not a file"):
        load_csv_dataset(DataConfig(task="csv", root=str(tmp_path / "nope.csv")))


def test_iwildcam_without_wilds_or_data_says_how_to_get_it(tmp_path):
    with pytest.raises(DisclError, match=r"pip install .*discl\[wilds\]"):
        build_dataset(DataConfig(task="iwildcam", root=str(tmp_path)))


def test_a_runs_real_split_comes_in_the_runs_channels_whatever_the_files_mode(tmp_path):
    """discl.load_real_split on RGB + grayscale files of a 3-channel run: every image RGB, so one
    transform and default collate work (a new user's own loop crashed on [1, H, W] beside [3, H, W])."""
    from discl.config import load_config, save_config
    from discl.data.real import load_real_split

    rows = []
    for i in range(6):
        mode = "RGB" if i % 2 else "L"
        _img(tmp_path / "img" / f"{i}.png", 40 * i, size=(8 + i, 6), mode=mode)
        rows.append(f"img/{i}.png,{'ab'[i % 2]},train")
    (tmp_path / "d.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    run = tmp_path / "run"
    run.mkdir()
    save_config(load_config(None, ["data.task=csv", f"data.root={tmp_path / 'd.csv'}", "data.channels=3"]),
                run / "config.yaml")
    split = load_real_split(run, "train")
    assert {split[i][0].mode for i in range(len(split))} == {"RGB"}


def test_the_carved_validation_split_does_not_depend_on_where_the_data_is(tmp_path):
    """The same folder at two paths (another machine, a moved copy) or under another name gets the same
    validation split; another seed, another draw. The digests of the stages that read the split say so."""
    import shutil

    from discl.config import load_config
    from discl.digests import data_view

    root = tmp_path / "a" / "pets"
    for c, n in (("cat", 20), ("dog", 12)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((6, 9), 10 * i, np.uint8)).save(root / c / f"{i}.png")
    moved = tmp_path / "elsewhere" / "deeper" / "pets"
    shutil.copytree(root, moved)
    renamed = tmp_path / "b" / "pets2"
    shutil.copytree(root, renamed)

    def val(path, seed=0):
        ds = load_folder_dataset(DataConfig(task="folder", root=str(path), val_fraction=0.3, seed=seed))
        return sorted(ds.split("val")["sample_id"])

    assert val(root) == val(moved) == val(renamed) and len(val(root)) == 10
    assert val(root, seed=1) != val(root)
    cfg = load_config(None, ["data.task=folder", f"data.root={root}"])
    assert data_view(cfg)["val_split_draw"] == "by-class" and "val_split_draw" not in data_view(cfg, splits=False)
    given = load_config("configs/imagenet-lt.yaml")  # its own val list: nothing carved, digests unchanged
    assert "val_split_draw" not in data_view(given) and "val_split_draw" not in data_view(load_config("configs/fmnist-lt.yaml"))
