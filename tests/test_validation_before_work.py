"""What a single-stage command checks before work, and in which order a broken config is reported.

A new user runs ``discl mine`` / ``prompts`` / ``generate`` by hand on their own folder. The
curriculum against ``generation.levels`` is decided before generation, so those commands check it (a
mistake found at ``discl train`` would cost the generation); and a config warning (a curriculum stage
that gets no epoch) comes after the errors that stop the run, not before them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from discl.cli import main
from discl.configtools import ConfigError

STAGE_WARNING = "curriculum.stages: fixed over training.epochs = 3 gives stage(s) 3 of 4 no epoch"


@pytest.fixture(autouse=True)
def _stage_warning_not_yet_given():
    """The stage warning is logged once per process (``_warn_once``): each test starts without it."""
    from discl.curriculum import base

    base._WARNED.clear()
    yield
    base._WARNED.clear()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, Path]:
    """Fashion-MNIST's first three classes as the user's folders (the embedded backends can draw
    them), a config with the embedded backends and a fixed curriculum over the generated levels."""
    base = tmp_path_factory.mktemp("stages")
    for split in ("train", "test"):
        for i, name in enumerate(["T-shirt_top", "Trouser", "Pullover"]):
            d = base / "data" / split / name
            d.mkdir(parents=True)
            for j in range(3):
                Image.fromarray(np.full((8, 8), 40 * i + j, np.uint8)).save(d / f"{j}.png")
    cfg = base / "my.yaml"
    cfg.write_text(f"""name: stages
run_dir: {base / "run"}
methods: [ce, discl]
data: {{task: folder, root: data, channels: 1, image_size: 28, decode_workers: 1,
        class_names: [T-shirt_top, Trouser, Pullover], many_threshold: 3, few_threshold: 2}}
mining: {{criteria: [class_frequency], frequency_below: 10}}
generation: {{levels: [0.1, 0.3, 0.5], steps: 4}}
training: {{model: resnet8, epochs: 4}}
curriculum: {{strategy: fixed, levels: [0.1, 0.3, 0.5], stages: [0.25, 0.25, 0.25, 0.25]}}
""")
    return cfg, base / "run"


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", ["mine", "prompts", "generate"])
@pytest.mark.parametrize("override, parts", [
    ("curriculum.levels=[0.1,0.3,0.7]", ["curriculum.levels: method 'discl' trains on λ = 0.7",
                                         "generation.levels (0.1, 0.3, 0.5) does not generate"]),
    ("curriculum.stages=[0.5,0.5]", ["curriculum.stages: fixed has 3 stages here but stages lists 2 lengths"]),
])
def test_a_stage_before_training_checks_the_curriculum_before_work(project, capsys, command, override, parts):
    """``discl mine`` and ``discl generate`` skipped this check: a curriculum that trains on a λ nobody
    generates was found only by ``discl train``, after mining and generation."""
    cfg, run = project
    code, err = _run(capsys, command, str(cfg), override, f"run_dir={run}-{command}")
    assert code == 2, err
    for part in parts:
        assert part in err, err
    assert not Path(f"{run}-{command}").exists()


def test_generate_checks_the_filters_config_but_not_its_weights(project, monkeypatch):
    """A filter threshold for a λ that is not generated is a pure config mistake: found before
    generation. The filter's weights may be cached only where the filter runs: left to it (and to
    ``discl mine`` / ``discl run``, which check the whole run's weights)."""
    from discl import hub
    from discl.config import load_config
    from discl.validation import SKIP_BY_COMMAND, validate_run_config

    cfg_path, _ = project
    monkeypatch.setattr(hub, "unreachable_reason", lambda *a, **k: "offline (test)")
    per_level = load_config(cfg_path, ["filtering.per_level={0.7: 0.3}"])
    with pytest.raises(ConfigError, match=r"filtering\.per_level\.0\.7: λ = 0\.7 is not generated"):
        validate_run_config(per_level, skip=SKIP_BY_COMMAND["generate"])
    clip = load_config(cfg_path, ["filtering.backend=open_clip", "filtering.model=ViT-B-32/openai"])
    validate_run_config(clip, skip=SKIP_BY_COMMAND["generate"])  # no error: generate does not load the CLIP
    with pytest.raises(ConfigError, match=r"filtering\.model: .*not reachable: offline \(test\)"):
        validate_run_config(clip, skip=SKIP_BY_COMMAND["mine"])


def test_errors_come_before_the_stage_warning(project, capsys, caplog):
    """With 3 epochs a 4-stage schedule leaves a stage without an epoch (a warning). Before: the warning
    was logged while the config was checked, so a user whose config also had an error read the warning
    first and the error after it; now the error comes first and the warning after it, on the CLI and
    as a note of the library's ConfigError."""
    cfg, run = project
    caplog.set_level(logging.INFO)
    code, err = _run(capsys, "run", str(cfg), "training.epochs=3", "filtering.per_level={0.7: 0.3}",
                     f"run_dir={run}-order")
    assert code == 2, err
    assert STAGE_WARNING not in caplog.text  # not logged before the error ...
    lines = err.splitlines()
    assert lines[0].startswith("discl run: config error: override 'filtering.per_level={0.7: 0.3}': "
                               "filtering.per_level.0.7"), err
    assert lines[1].startswith(f"discl run: warning: {STAGE_WARNING}"), err  # ... but printed after it
    assert not Path(f"{run}-order").exists()


def test_validate_run_config_holds_the_warning_until_the_verdict(project, caplog):
    """The library call: a broken config's ConfigError carries the warning as a note (Python prints
    notes after the message); a valid config logs it, after the checks, as before."""
    from discl.config import load_config
    from discl.validation import validate_run_config

    cfg, _ = project
    caplog.set_level(logging.INFO)
    broken = load_config(cfg, ["training.epochs=3", "filtering.per_level={0.7: 0.3}"])
    with pytest.raises(ConfigError) as info:
        validate_run_config(broken, weights=False)
    assert any(n.startswith(f"warning: {STAGE_WARNING}") for n in info.value.__notes__)
    assert STAGE_WARNING not in caplog.text

    from discl.curriculum import base

    base._WARNED.clear()  # once per process: the note above was its once
    caplog.clear()  # a valid config: the warning is logged as before
    validate_run_config(load_config(cfg, ["training.epochs=3"]), weights=False)
    assert [r.levelname for r in caplog.records if STAGE_WARNING in r.getMessage()] == ["WARNING"]


def test_a_data_error_also_comes_before_the_stage_warning(project, capsys, caplog, tmp_path):
    """Not only config errors: a class folder the dataset refuses (found while the config is checked)
    is printed first, then the warning."""
    cfg, run = project
    data = Path(cfg).parent / "data"
    bad = tmp_path / "data"
    import shutil

    shutil.copytree(data, bad)
    (bad / "train" / "Bag\n").mkdir()
    caplog.set_level(logging.INFO)
    code, err = _run(capsys, "mine", str(cfg), "training.epochs=3", f"data.root={bad}", f"run_dir={run}-data")
    assert code == 1, err  # the data's own error only: no claim about the backends (the class names match)
    lines = err.splitlines()
    assert lines[0].startswith("discl mine: error: ") and "class folder name contains a newline" in lines[0], err
    assert lines[1].startswith(f"discl mine: warning: {STAGE_WARNING}"), err
    assert STAGE_WARNING not in caplog.text


def test_the_hold_keeps_info_lines_in_place_and_restores_the_loggers(caplog):
    """Progress lines pass at once, warnings wait for the end of the outermost hold, and the ``discl``
    logger is left as it was (a user who turned its propagation off gets nothing at the root)."""
    from discl.validation import _HeldWarnings

    log, top = logging.getLogger("discl.test_hold"), logging.getLogger("discl")
    caplog.set_level(logging.INFO)
    with _HeldWarnings():
        with _HeldWarnings():
            log.warning("w1")
            log.info("i1")
        assert [r.getMessage() for r in caplog.records] == ["i1"]
    assert [r.getMessage() for r in caplog.records] == ["i1", "w1"]
    assert top.propagate and not any(isinstance(h, _HeldWarnings) for h in top.handlers)
    top.propagate = False
    try:
        with _HeldWarnings():
            log.info("i2")
            log.warning("w2")
        assert [r.getMessage() for r in caplog.records] == ["i1", "w1"]
    finally:
        top.propagate = True


def test_a_data_error_does_not_hide_the_configs_own_problems(project, capsys, tmp_path):
    """A bad class folder and a curriculum level that is not generated: both are reported, in one error
    (the data error used to replace what the config check had found)."""
    import shutil

    cfg, run = project
    bad = tmp_path / "data"
    shutil.copytree(Path(cfg).parent / "data", bad)
    (bad / "train" / "Bag\n").mkdir()
    code, err = _run(capsys, "mine", str(cfg), "curriculum.levels=[0.1,0.3,0.7]", f"data.root={bad}",
                     f"run_dir={run}-both")
    assert code == 2 and "2 problems:" in err and "generation.backend" not in err, err
    assert "class folder name contains a newline" in err and "trains on λ = 0.7" in err, err
    assert not Path(f"{run}-both").exists()
