"""Bad config values are ConfigErrors that name the key; the CLI shows them in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from discl.config import ConfigError, RunConfig, load_config, save_config

ROOT = Path(__file__).resolve().parent.parent

BAD = [
    # override, the key the message must start with, a phrase it must contain
    ("generation.levels=[0.5, 1.0]", "generation.levels[1]", "[0, 1)"),
    ("generation.levels=[-0.1]", "generation.levels[0]", "[0, 1)"),
    ("generation.levels=[]", "generation.levels", "at least one"),
    ("generation.levels=[.nan]", "generation.levels[0]", "not a finite number"),
    ("generation.levels=[0.5, 0.5]", "generation.levels", "duplicates"),
    ("generation.base_seed=-1", "generation.base_seed", ">= 0"),
    ("seed=-3", "seed", ">= 0"),
    ("seeds=[]", "seeds", "one or more"),
    ("training.epochs=abc", "training.epochs", "expected an integer"),
    ("training.lr=-1", "training.lr", "> 0"),
    ("training.lr=.inf", "training.lr", "not a finite number"),
    ("mining.confidence_below=1.5", "mining.confidence_below", "(0, 1]"),
    ("mining.folds=1", "mining.folds", ">= 2"),
    ("mining.criteria=[]", "mining.criteria", "at least one"),
    ("mining.criteria=[bogus]", "mining.criteria[0]", "not one of"),
    ("mining.max_per_class=0", "mining.max_per_class", ">= 1"),
    ("data.val_fraction=1.0", "data.val_fraction", "(0, 1)"),
    ("data.on_bad_image=maybe", "data.on_bad_image", "not one of"),
    ("data.max_image_pixels=0", "data.max_image_pixels", ">= 1"),
    ("data.class_names=[a, a]", "data.class_names", "twice"),
    ("data.task=csv", "data.root", "needs data.root"),
    ("filtering.threshold=2", "filtering.threshold", "[-1, 1]"),
    ("generation=3", "generation", "expected a mapping"),
]


@pytest.mark.parametrize("override, key, phrase", BAD, ids=[b[0] for b in BAD])
def test_bad_values_name_the_key(override, key, phrase):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    msg = str(info.value)
    assert msg.startswith(f"override {override!r}: {key}:") and phrase in msg and "\n" not in msg, msg


def test_unknown_keys_name_the_key_and_list_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown config key generation\.levelz \(known keys in generation: .*levels"):
        load_config(overrides=["generation.levelz=1"])
    with pytest.raises(ConfigError, match="unknown config key trainig"):
        load_config(overrides=["trainig.epochs=1"])


def test_every_unknown_key_is_named_in_one_error(tmp_path):
    cfg = tmp_path / "typos.yaml"
    cfg.write_text("generation:\n  seed_per_level: 2\nfiltering:\n  treshold: 0.3\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg, overrides=["traning.epochs=3"])
    msg = str(info.value)
    for key in ("generation.seed_per_level", "filtering.treshold", "traning"):
        assert key in msg, msg
    assert f"{cfg}: generation.seed_per_level (known keys in generation: " in msg
    assert "override 'traning.epochs=3': traning (known keys: " in msg
    # inside a list of sections (LoRA adapters) too
    cfg.write_text("generation:\n  seed_per_level: 2\n  lora:\n    - {pth: a.safetensors}\n")
    with pytest.raises(ConfigError, match=r"generation\.lora\[0\]\.pth") as info:
        load_config(cfg)
    assert "generation.seed_per_level" in str(info.value)


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("generation:\n  levels: [0.1, 1.5]\n")
    with pytest.raises(ConfigError, match=rf"{bad.name}: generation\.levels\[1\]"):
        load_config(bad)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_yaml_is_data_not_code(tmp_path):
    """A YAML tag that would construct a Python object is refused, not executed."""
    evil = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    evil.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError):
        load_config(evil)
    assert not marker.exists()


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(overrides=["generation.levels=[0.1, 0.9]", "data.on_bad_image=skip", "mining.max_per_class=3"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg and isinstance(again, RunConfig)


def test_cli_prints_one_line_and_exit_code_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "discl", "mine", "configs/fmnist-lt.yaml", "generation.levels=[0.3, 1.5]",
         f"run_dir={tmp_path}/run"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["discl mine: config error: override 'generation.levels=[0.3, 1.5]': generation.levels[1]: "
                     "lambda must be in [0, 1) (1 is the real image), got 1.5"]
    assert not (tmp_path / "run").exists()  # nothing was written


def test_a_float_key_takes_exponent_notation_that_yaml_1_1_reads_as_a_string(tmp_path):
    """PyYAML (YAML 1.1) reads ``lr: 1e-4`` as the string '1e-4'; a float key takes it as the number."""
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 1e-4\n  weight_decay: 5E-2\n")
    cfg = load_config(path, ["filtering.threshold=2.5e-1"])
    assert (cfg.training.lr, cfg.training.weight_decay, cfg.filtering.threshold) == (1e-4, 0.05, 0.25)
    with pytest.raises(ConfigError, match=r"training\.lr: expected a number, got '1e-4x'"):
        load_config(path, ["training.lr=1e-4x"])
    with pytest.raises(ConfigError, match=r"training\.epochs: expected an integer"):
        load_config(path, ["training.epochs=1e2"])  # an integer key still takes integers only


@pytest.mark.parametrize("method, key, hint", [
    ("text_only", "generation.levels", False),      # λ = 0 is the strategy's own: only generation.levels helps
    ("single@0.7", "generation.levels", False),
    ("discl", "curriculum.levels", True),           # the curriculum's levels: either key helps
])
def test_a_level_nobody_generates_names_the_key_that_fixes_it(method, key, hint):
    from discl.validation import validate_run_config

    overrides = [f"methods=[{method}]"] + (["curriculum.levels=[0.1, 0.3, 0.7]"] if method == "discl" else [])
    with pytest.raises(ConfigError) as e:
        validate_run_config(load_config(ROOT / "configs" / "fmnist-lt.yaml", overrides))
    assert f"{key}: method '{method}'" in str(e.value) and ("change curriculum.levels" in str(e.value)) == hint


@pytest.mark.parametrize("override, message", [
    ("filtering.per_level={0.2: 0.3, 0.5: 0.2}",
     r"filtering\.per_level\.0\.2: λ = 0\.2 is not generated \(generation\.levels: 0\.1, 0\.3, 0\.5\)"),
    ("filtering.per_class={sneaker: 0.3, Bag: 0.2}",
     r"filtering\.per_class\.sneaker: no class 'sneaker' .*did you mean 'Sneaker'.*classes: T-shirt/top, Trouser"),
])
def test_a_filter_threshold_that_would_never_apply_is_an_error(override, message):
    """A per-λ threshold for a level nobody generates, or a per-class one for a misspelled class,
    would be saved and silently have no effect: refused before any work, naming the valid values."""
    from discl.validation import validate_run_config

    with pytest.raises(ConfigError, match=message):
        validate_run_config(load_config(ROOT / "configs" / "fmnist-lt.yaml", [override]), weights=False)
    validate_run_config(load_config(ROOT / "configs" / "fmnist-lt.yaml", ["filtering.per_level={0.3: 0.3}",
                                                                           "filtering.per_class={Bag: 0.2}"]),
                        weights=False)


def test_baseline_with_a_bad_weights_file_fails_before_making_its_run_folder(tmp_path):
    """A weights file that is not safetensors (a truncated download, another format) and pretrained
    weights for a from-scratch model are config errors: `discl baseline` makes no run folder."""
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"not a safetensors file")
    for override, message in ((f"training.init_from={bad}", f"training.init_from: {bad} is not a readable safetensors"),
                              (f"training.pretrained_path={bad}", "training.pretrained_path: model 'resnet8' is "
                                                                 "trained from scratch and has no pretrained weights")):
        proc = subprocess.run([sys.executable, "-m", "discl", "baseline", "configs/fmnist-lt.yaml", override,
                               "--run-dir", str(tmp_path / "run"), "--seeds", "0", "--loss", "ce"],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
        assert not (tmp_path / "run").exists()


def test_weights_paths_resolve_against_the_config_file_and_expand_home(tmp_path, monkeypatch):
    """``training.clip_pretrained: weights/own.safetensors`` next to the config reads that file from any
    working directory, like data.root; ``~`` is expanded; an open_clip tag or a baseline name stays."""
    home, work = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    folder = tmp_path / "project"
    folder.mkdir()
    cfg_file = folder / "my.yaml"
    cfg_file.write_text("training:\n  model: clip\n  clip_model: embedded\n  clip_pretrained: weights/own.safetensors\n"
                        "  init_from: ../ckpt/best.safetensors\n  pretrained_path: w.pt\n")
    t = load_config(cfg_file).training
    assert t.clip_pretrained == str(folder / "weights" / "own.safetensors")
    assert t.init_from == str(tmp_path / "ckpt" / "best.safetensors") and t.pretrained_path == str(folder / "w.pt")
    t = load_config(cfg_file, ["training.clip_pretrained=~/clip/own.safetensors", "training.init_from=ce"]).training
    assert t.clip_pretrained == str(home / "clip" / "own.safetensors") and t.init_from == "ce"
    t = load_config(cfg_file, ["training.clip_model=ViT-B-16", "training.clip_pretrained=openai",
                               "training.init_from=run/best.safetensors"]).training
    assert t.clip_pretrained == "openai" and t.init_from == str(work / "run" / "best.safetensors")  # override: the cwd


def test_a_local_model_folder_resolves_against_the_config_file_and_a_hub_id_stays(tmp_path, monkeypatch):
    """``generation.model: models/sd`` next to the config is that folder from any working directory
    (as data.root); a hub id (it has a "/" too) or an open_clip name is left for the hub."""
    folder = tmp_path / "project"
    (folder / "models" / "sd").mkdir(parents=True)
    (folder / "models" / "clip").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg_file = folder / "my.yaml"
    cfg_file.write_text("generation:\n  backend: diffusers\n  model: models/sd\n"
                        "filtering:\n  backend: transformers\n  model: models/clip\n")
    cfg = load_config(cfg_file)
    assert cfg.generation.model == str(folder / "models" / "sd")
    assert cfg.filtering.model == str(folder / "models" / "clip")
    cfg = load_config(cfg_file, ["generation.model=stabilityai/stable-diffusion-xl-refiner-1.0",
                                 "filtering.backend=open_clip", "filtering.model=ViT-B-32/openai"])
    assert cfg.generation.model == "stabilityai/stable-diffusion-xl-refiner-1.0"
    assert cfg.filtering.model == "ViT-B-32/openai"


def test_a_junk_pth_for_pretrained_path_is_a_config_error_before_training(tmp_path):
    """Not only .safetensors: a .pth that is no torch.save file fails up front, naming the key (it used
    to fail after training started, telling the user to pass the local file they had passed)."""
    import torch

    from discl.validation import validate_run_config

    junk, good = tmp_path / "junk.pth", tmp_path / "good.pth"
    junk.write_bytes(b"<html>404</html>")
    torch.save({"w": torch.zeros(1)}, good)
    cfg = load_config(Path(ROOT / "configs/fmnist-lt.yaml"),
                      ["training.model=timm:resnet18", f"training.pretrained_path={junk}", "methods=[ce]"])
    with pytest.raises(ConfigError, match=r"training.pretrained_path: .*junk.pth is neither a safetensors file nor "
                                          r"a PyTorch checkpoint"):
        validate_run_config(cfg)
    from discl.validation import _weights_file_problem

    assert _weights_file_problem("training.pretrained_path", good) is None


def _lt(*overrides: str):
    """configs/fmnist-lt.yaml with ``overrides``."""
    return load_config(ROOT / "configs" / "fmnist-lt.yaml", list(overrides))


def test_steps_per_level_reads_yaml_floats_and_checks_its_levels():
    from discl.configtools import ConfigError

    cfg = _lt("generation.steps_per_level={0.5: 100}")
    g = cfg.generation
    assert (g.steps_at(0.1), g.steps_at(0.5), g.steps_at(0.50000001)) == (25, 100, 100)
    assert g.steps_text() == "25 steps (λ 0.5: 100)"
    # a level that is not generated is ignored, with a warning (the shipped configs keep working when levels change)
    other = _lt("generation.steps_per_level={0.5: 100, 0.7: 60}")
    assert other.generation.unused_steps_levels() == [0.7] and other.generation.steps_text() == "25 steps (λ 0.5: 100)"
    with pytest.raises(ConfigError, match=r"generation\.steps_per_level\.1\.5.*\[0, 1\)"):
        _lt("generation.steps_per_level={1.5: 100}")
    with pytest.raises(ConfigError, match=r"generation\.steps_per_level\.0\.5.*>= 1"):
        _lt("generation.steps_per_level={0.5: 0}")
    with pytest.raises(ConfigError, match=r"generation\.steps_per_level"):
        _lt("generation.steps_per_level={high: 100}")


def test_condition_style_is_the_embedded_priors_and_checked_against_its_styles(caplog):
    from discl.configtools import ConfigError
    from discl.validation import validate_run_config

    diffusers = _lt("generation.backend=diffusers", "generation.model=x/y", "generation.condition_style=any")
    with pytest.raises(ConfigError, match=r"generation\.condition_style: only the embedded prior .* remove it"):
        validate_run_config(diffusers, data=False, weights=False)
    bad = _lt("generation.condition_style=photo")
    with pytest.raises(ConfigError, match=r"generation\.condition_style: 'photo' is not a style .*clean, acquisition, low_quality, any"):
        validate_run_config(bad, data=False, weights=False)
    unused = _lt("generation.steps_per_level={0.7: 60}")
    with caplog.at_level("WARNING"):
        validate_run_config(unused, data=False, weights=False)
    assert "generation.steps_per_level: λ 0.7 not generated" in caplog.text


def test_steps_per_level_keys_that_round_to_one_level_are_refused():
    from discl.configtools import ConfigError

    with pytest.raises(ConfigError, match=r"generation\.steps_per_level\.0\.5000001: names λ 0\.5 twice"):
        _lt("generation.steps_per_level={0.5: 100, 0.5000001: 40}")
    cfg = _lt("generation.steps_per_level={0.50000001: 40}")
    assert cfg.generation.steps_per_level == {0.5: 40} and cfg.generation.steps_at(0.5) == 40


def test_a_mapping_key_given_twice_in_two_spellings_is_refused():
    """0.3 and "0.3" are one λ once read: the later must not silently win (filtering.per_level refuses it too)."""
    from discl.configtools import ConfigError

    with pytest.raises(ConfigError, match=r"generation\.steps_per_level: '0\.3' names the key 0\.3 a second time"):
        _lt('generation.steps_per_level={0.3: 20, "0.3": 30}')
    with pytest.raises(ConfigError, match=r"a numeric key cannot be written with dots.*generation\.steps_per_level=\{0\.3: \.\.\.\}"):
        _lt("generation.steps_per_level.0.3=20")
    # YAML reads {0.5:50} (no space after the colon) as the one key "0.5:50": the error shows the fix
    with pytest.raises(ConfigError, match=r"put a space after the colon, \{0\.5: 50\}"):
        _lt("generation.steps_per_level={0.5:50}")


def test_a_level_that_runs_no_denoising_step_is_warned_about(caplog):
    from discl.validation import validate_run_config

    cfg = _lt("generation.levels=[0.1, 0.95]", "generation.steps=10",
              "curriculum.levels=[0.1, 0.95]", "curriculum.stages=[0.5, 0.5]")
    with caplog.at_level("WARNING"):
        validate_run_config(cfg, data=False, weights=False)
    assert "λ 0.95 runs no denoising step at 10 steps" in caplog.text and "steps_per_level={0.95: 20}" in caplog.text


def test_every_sections_problem_is_reported_at_once():
    """Two bad overrides in two sections, and a wrong type in a third: one error names all three, each
    with the override it comes from (it stopped at the first)."""
    from discl.config import load_config
    from discl.configtools import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config("configs/fmnist-lt.yaml", ['prompts.templates=["a photo of a {}"]', "filtering.text_template=a {}",
                                               "training.epochs=abc"])
    msg = str(e.value)
    assert msg.startswith("3 problems:") and len(e.value.problems) == 3, msg
    for override in ("prompts.templates=", "filtering.text_template=", "training.epochs="):
        assert f"override '{override}" in msg, msg
    with pytest.raises(ConfigError) as one:
        load_config("configs/fmnist-lt.yaml", ["training.epochs=abc"])
    assert not str(one.value).startswith("1 problem") and one.value.problems == [str(one.value)]
