"""Class names from the user's folders, CSV labels and config, as a new user writes them.

A class name goes into the text prompts, the CLIP captions, every CSV manifest, the report and the
log lines. Braces are fine (``{name}`` is filled with the name as written); a control character (a
newline or tab pasted with a name) is an error naming the folder, row or key before any work; a path
that holds one prints escaped; and an embedded backend that cannot draw the user's classes names the
class folder that differs from Fashion-MNIST's, not only the task.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from discl.cli import main
from discl.configtools import ConfigError
from discl.data.config import DataConfig
from discl.data.folder import load_csv_dataset, load_folder_dataset, load_split_files
from discl.errors import BadInputError

FM_FIRST = ["T-shirt_top", "Trouser", "Pullover"]  # Fashion-MNIST's first classes, as folder names


def _folder(root: Path, classes: list[str], n: int = 3, splits=("train", "test")) -> Path:
    for split in splits:
        for i, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True)
            for j in range(n):
                Image.fromarray(np.full((8, 8), 30 * i + j, np.uint8)).save(d / f"{j}.png")
    return root


def _cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(task="folder", root=str(root), decode_workers=1, **kw)


def _one_line(exc, fn) -> str:
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg and "\t" not in msg, repr(msg)
    return msg


def test_control_characters_are_named_and_braces_are_not_a_problem():
    from discl.data.config import class_name_problem
    from discl.errors import shown

    assert class_name_problem("Dress{}") is None and class_name_problem("Dress{name}") is None
    assert class_name_problem("ünïcode class") is None and class_name_problem("T-shirt_top") is None
    assert "a newline" in class_name_problem("Dress\n") and "'Dress\\n'" in class_name_problem("Dress\n")
    assert "a tab" in class_name_problem("Dr\tess")
    assert "U+0007" in class_name_problem("bell\a") and class_name_problem("line\u2028sep")
    assert shown("/data/a b/ü") == "/data/a b/ü" and shown("/data/Bag\n") == "'/data/Bag\\n'"


@pytest.mark.parametrize("bad", ["Bag\n", "Ba\tg"])
def test_a_class_folder_with_a_control_character_is_an_error_naming_it(tmp_path, bad):
    root = _folder(tmp_path / "d", ["T-shirt_top", bad])
    msg = _one_line(BadInputError, lambda: load_folder_dataset(_cfg(root)))
    assert repr(str(root / "test" / bad)) in msg and "rename the folder" in msg  # test/ is read first
    assert ("a newline" if "\n" in bad else "a tab") in msg
    ds = load_folder_dataset(_cfg(root, on_bad_image="skip"))  # skip: dropped and listed, like any bad input
    assert ds.classes == ["T-shirt_top"] and set(ds.skipped["path"]) == {f"train/{bad}/", f"test/{bad}/"}


def test_a_csv_label_with_a_newline_is_an_error_naming_the_row(tmp_path):
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    csv = tmp_path / "data.csv"
    pd.DataFrame({"path": ["a.png", "b.png"], "label": ["bag", "Pull\nover"]}).to_csv(csv, index=False)
    msg = _one_line(BadInputError, lambda: load_csv_dataset(DataConfig(task="csv", root=str(csv), decode_workers=1)))
    assert f"{csv} row 3" in msg and "label contains a newline ('Pull\\nover')" in msg


def test_class_names_and_class_map_with_a_control_character_are_errors(tmp_path):
    msg = _one_line(ConfigError, lambda: DataConfig(task="folder", root="x", class_names=["Trouser", "Dress\n"]))
    assert msg.startswith("class_names[1]: contains a newline ('Dress\\n')")
    (tmp_path / "img").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "img" / "a.png")
    (tmp_path / "train.txt").write_text("img/a.png 1\n")
    (tmp_path / "map.txt").write_text("n01 tench\nn02 gold\tfish\n")
    cfg = DataConfig(task="split_files", root=str(tmp_path), split_files={"train": str(tmp_path / "train.txt")},
                     class_map=str(tmp_path / "map.txt"), decode_workers=1)
    msg = _one_line(BadInputError, lambda: load_split_files(cfg))
    assert "map.txt" in msg and "label 1 (n02)" in msg and "a tab ('gold\\tfish')" in msg


def test_a_path_with_a_newline_prints_escaped(tmp_path):
    root = _folder(tmp_path / "my\ndata", ["a", "b"])
    (root / "train" / "c").mkdir()  # an empty class folder: the error names it
    msg = _one_line(BadInputError, lambda: load_folder_dataset(_cfg(root)))
    assert repr(str(root / "train" / "c")) in msg and "empty class folder" in msg
    (root / "train" / "c").rmdir()
    (root / "train" / "a" / "bad\nname.png").write_bytes(b"")  # an unreadable image, its name with a newline
    msg = _one_line(BadInputError, lambda: load_folder_dataset(_cfg(root)))
    assert msg == repr(str(root / "train" / "a" / "bad\nname.png")) + ": empty file (0 bytes)", msg
    ds = load_folder_dataset(_cfg(root, on_bad_image="skip"))
    assert ds.skipped.to_dict("records") == [{"path": "train/a/bad\nname.png", "reason": "empty file (0 bytes)"}]


def test_braces_in_a_class_name_are_filled_in_literally():
    """``str.format`` fills ``{name}`` with the value as written: braces inside a class name are text."""
    from discl.filtering.captions import captions_for
    from discl.prompts.builder import build_prompt, prompt_options
    from discl.prompts.config import PromptConfig

    cfg = PromptConfig(templates=["a photo of a {name}", "a {name}, {{cropped}}"])
    for name in ("Dress{}", "Dress{name}", "{0}", "{name!r}"):
        assert prompt_options(cfg, name) == [f"a photo of a {name}", f"a {name}, {{cropped}}"]
        assert build_prompt(cfg, name, "s", 0) in prompt_options(cfg, name)
        assert captions_for(["a photo of a {name}"], [name]) == [[f"a photo of a {name}"]]


def test_a_folder_named_dress_braces_name_is_named_in_the_embedded_backends_error(tmp_path):
    """``Dress{name}`` is not Fashion-MNIST's ``Dress`` (names are compared by letters and digits): the
    error names the folder and the comparison, not only "cannot draw the classes of data.task 'folder'"."""
    from discl.config import load_config
    from discl.validation import validate_run_config

    root = _folder(tmp_path / "d", [*FM_FIRST, "Dress{name}"])
    names = "[" + ", ".join([*FM_FIRST, "'Dress{name}'"]) + "]"
    cfg = load_config(None, ["data.task=folder", f"data.root={root}", "data.channels=1", "data.image_size=28",
                             f"data.class_names={names}", "data.decode_workers=1"])
    with pytest.raises(ConfigError) as info:
        validate_run_config(cfg, weights=False)
    msg = str(info.value)
    for backend in ("generation.backend", "filtering.backend"):
        line = next(ln for ln in msg.splitlines() if backend in ln)
        assert "label 3 is the class folder 'Dress{name}' (data.class_names[3]), not Fashion-MNIST's 'Dress'" in line
        assert "'dressname' is not 'dress'" in line
    # sorted folder names (no data.class_names) are not Fashion-MNIST's order: the first one that differs is named
    cfg = load_config(None, ["data.task=folder", f"data.root={root}", "data.channels=1", "data.image_size=28",
                             "data.decode_workers=1"])
    with pytest.raises(ConfigError, match=r"here label 0 is the class folder 'Dress\{name\}', not Fashion-MNIST's "
                                          r"'T-shirt/top'"):
        validate_run_config(cfg, weights=False)


def test_mine_and_prompts_write_a_braced_class_name_as_written(tmp_path, capsys):
    """A folder ``Dress{}`` is Fashion-MNIST's Dress by its letters (documented): mining and the prompt
    table carry the name exactly, braces included, and nothing is formatted twice."""
    root = _folder(tmp_path / "d", [*FM_FIRST, "Dress{}"])
    run = tmp_path / "run"
    cfg = tmp_path / "my.yaml"
    cfg.write_text(f"""name: braces
run_dir: {run}
methods: [ce, discl]
data: {{task: folder, root: {root}, channels: 1, image_size: 28, decode_workers: 1,
        class_names: [T-shirt_top, Trouser, Pullover, "Dress{{}}"], many_threshold: 3, few_threshold: 2}}
mining: {{criteria: [class_frequency], frequency_below: 10}}
prompts: {{templates: ["a photo of a {{name}}"]}}
generation: {{levels: [0.1, 0.3, 0.5], steps: 4}}
training: {{model: resnet8, epochs: 4}}
curriculum: {{strategy: fixed, levels: [0.1, 0.3, 0.5], stages: [0.25, 0.25, 0.25, 0.25]}}
""")
    assert main(["mine", str(cfg)]) == 0, capsys.readouterr().err
    assert main(["prompts", str(cfg)]) == 0, capsys.readouterr().err
    prompts = pd.read_csv(run / "prompts" / "prompts.csv", dtype=str, keep_default_na=False)
    dress = prompts[prompts["label"] == "3"]
    assert len(dress) and set(dress["class_name"]) == {"Dress{}"} and set(dress["prompt"]) == {"a photo of a Dress{}"}
