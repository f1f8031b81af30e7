"""A newcomer's first hour, scripted: their own small CSV dataset, the mistakes they make, the run.

Every mistake is a clear error naming the key *before* any stage folder exists (validated up front,
not after mining, generation and filtering); the finished run reads back with the same numbers
through ``discl evaluate`` and ``discl report``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from discl.cli import main

CLASSES = ["ankle_boot", "bag", "heron", "kettle"]  # the user's own names, not Fashion-MNIST's order
TRAIN = {"ankle_boot": 16, "bag": 10, "heron": 4, "kettle": 3}  # long-tailed


def _write_dataset(root: Path) -> Path:
    """RGB PNGs (each class its own colour + noise) and a CSV with path,label,split."""
    rng = np.random.default_rng(0)
    colours = {"ankle_boot": (200, 40, 40), "bag": (40, 200, 40), "heron": (40, 40, 200), "kettle": (200, 200, 40)}
    rows = ["path,label,split"]
    (root / "img").mkdir(parents=True)
    for c in CLASSES:
        for split, n in (("train", TRAIN[c]), ("val", 3), ("test", 4)):
            for i in range(n):
                px = np.clip(np.array(colours[c]) + rng.normal(0, 30, (10, 10, 3)), 0, 255).astype(np.uint8)
                name = f"img/{c}-{split}-{i}.png"
                Image.fromarray(px, "RGB").save(root / name)
                rows.append(f"{name},{c},{split}")
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root / "data.csv"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The user's folder: data/ with the CSV, my.yaml next to it naming the data relative to itself."""
    base = tmp_path_factory.mktemp("newcomer")
    _write_dataset(base / "data")
    run = base / "runs" / "mine"
    cfg = base / "my.yaml"
    cfg.write_text(f"""name: mine
run_dir: {run}
methods: [ce, real_only]
seeds: [0]
data:
  task: csv
  root: data/data.csv        # relative to this file
  image_size: 8
  channels: 3
  many_threshold: 10
  few_threshold: 5
mining:
  criteria: [class_frequency]
  frequency_below: 5
training:
  model: resnet8
  loss: ce
  epochs: 2
  batch_size: 16
  augment: false
""")
    return base, cfg, run


def _err(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


MISTAKES = [
    # (overrides, parts the one error must name)
    (["methods=[ce,dicsl]"], ["methods[1]", "'dicsl'", "bs+discl", "single@", "mixed_equal", "flyp"]),
    (["training.model=resnet9"], ["training.model", "'resnet9'", "resnet8"]),
    (["training.model=timm:resnet_nope"], ["training.model", "timm has no model"]),
    (["curriculum.strategy=fixedd"], ["curriculum.strategy", "'fixedd'", "adaptive"]),
    (["methods=[ce,single@0.5]", "generation.backend=diffusers", "generation.model=/nonexistent/sd",
      "generation.levels=[0.5]", "curriculum.levels=[0.5]", "curriculum.stages=[1,1]", "filtering.backend=open_clip",
      "filtering.model=ViT-B-32/none"], ["generation.model", "/nonexistent/sd does not exist"]),
    (["methods=[ce,discl]", "curriculum.stages=[1,1,1,1,1,1]"], ["curriculum.stages"]),
    (["prompts.templates=[\"a photo of {nme}\"]"], ["prompts.templates[0]", "{nme}", "only {name}"]),
    (["prompts.templates=[\"a photo of {name\"]"], ["prompts.templates[0]", "unbalanced braces"]),
    (["data.class_names=[ankle_boot,bag,heron,kettle,zebra]"], ["data.class_names", "'zebra'", "no training images"]),
    (["methods=[ce,discl]"], ["generation.backend", "diffusers", "filtering.backend", "open_clip"]),
    (["generation.dtype=float16"], ["generation.dtype", "embedded"]),
    (["data.root=missing.csv"], [str(Path("missing.csv").resolve())]),
    (["training.loss=flyp"], ["training.loss", "clip"]),
]


@pytest.mark.parametrize("overrides, parts", MISTAKES, ids=[" ".join(m[0])[:40] for m in MISTAKES])
def test_each_mistake_is_a_clear_error_before_any_stage(project, capsys, overrides, parts):
    _, cfg, run = project
    code, err = _err(capsys, "run", str(cfg), *overrides, f"run_dir={run}-bad")
    assert code in (1, 2), err
    assert "Traceback" not in err
    for part in parts:
        assert part in err, (part, err)
    assert not Path(f"{run}-bad").exists(), "no stage folder may be created before the config is valid"


def test_descriptions_file_problems_name_the_class(project, capsys, tmp_path):
    _, cfg, run = project
    empty = tmp_path / "empty.yaml"
    empty.write_text("bag: []\nheron: [a grey wading bird]\n")
    dup = tmp_path / "dup.json"
    dup.write_text('{"bag": ["a leather bag"], "bag": ["a paper bag"]}')
    for path, part in ((empty, "class 'bag' has no descriptions"), (dup, "class 'bag' is listed twice")):
        code, err = _err(capsys, "mine", str(cfg), f"prompts.descriptions_file={path}", f"run_dir={run}-bad")
        assert code == 2 and "prompts.descriptions_file" in err and part in err, err
        assert not Path(f"{run}-bad").exists()


def test_no_config_is_an_error_that_shows_how_to_start(capsys, tmp_path):
    for cmd in (["run"], ["mine"], ["train"], ["evaluate", "--checkpoint", __file__]):
        code, err = _err(capsys, *cmd, f"run_dir={tmp_path}/r")
        assert code == 2 and "discl run configs/fmnist-lt.yaml" in err, (cmd, err)
    assert not (tmp_path / "r").exists()


def test_bad_shard_is_a_usage_error(project, capsys):
    _, cfg, _ = project
    with pytest.raises(SystemExit) as info:
        main(["generate", str(cfg), "--shard", "2/2"])
    assert info.value.code == 2 and "0 to n-1" in capsys.readouterr().err


def test_unreachable_hub_model_fails_at_once(project, capsys, monkeypatch):
    """An uncached hub id fails in seconds with the loader's message (not after ~30 s of retries)."""
    _, cfg, run = project
    from discl import hub

    hub.unreachable_reason.cache_clear()
    hub.cached_snapshot.cache_clear()
    for offline in ("1", ""):
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        hub.unreachable_reason.cache_clear()
        t0 = time.perf_counter()
        code, err = _err(capsys, "run", str(cfg), "methods=[ce,single@0.5]", "curriculum.levels=[0.5]", "curriculum.stages=[1,1]",
                         "generation.backend=diffusers", "generation.model=discl-tests/no-such-model-xyz",
                         "filtering.backend=open_clip", "filtering.model=ViT-B-32/none", f"run_dir={run}-bad")
        assert time.perf_counter() - t0 < 5.0
        assert code == 2 and "generation.model" in err and "huggingface-cli download" in err, err
        assert not Path(f"{run}-bad").exists()


def test_run_then_evaluate_and_report_agree(project, capsys):
    """`discl run my.yaml` end to end; evaluate (the run's own config) and report give its numbers."""
    base, cfg, run = project
    assert main(["run", str(cfg)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    # the run of a real_only-only curriculum needs no spectrum or filter manifest
    assert (run / "train" / "real_only-s0" / "metrics.json").is_file() and not (run / "filter").exists()
    m = json.loads((run / "train" / "ce-s0" / "metrics.json").read_text())
    top1 = 100 * m["test"]["top1"]
    assert f"| ce | 1 of 1 | {top1:.1f} |" in out
    # the run's config.yaml stores the data root resolved against my.yaml's folder
    assert f"root: {(base / 'data' / 'data.csv').resolve()}" in (run / "config.yaml").read_text()

    # evaluate with only --checkpoint: the checkpoint's own config (5 user classes, RGB, 8 px)
    ckpt = run / "train" / "ce-s0" / "best.safetensors"
    assert main(["evaluate", "--checkpoint", str(ckpt)]) == 0
    assert f"test: top1 {top1:.2f}" in capsys.readouterr().out
    ev = json.loads((run / "train" / "ce-s0" / "eval-test.json").read_text())
    assert ev["test"]["top1"] == pytest.approx(m["test"]["top1"]) and len(ev["test"]["confusion"]) == len(CLASSES)
    # an explicit config of another task is an error, not Fashion-MNIST numbers
    code, err = _err(capsys, "evaluate", "configs/fmnist-lt.yaml", "--checkpoint", str(ckpt))
    assert code == 2 and "does not match" in err and "classes" in err and "data.channels" in err, err

    # discl train on the same run: the same folder name as discl run's, so the finished run is reused
    stamp = (run / "train" / "real_only-s0" / "metrics.json").stat().st_mtime_ns
    assert main(["train", "--run-dir", str(run), "--curriculum", "real_only"]) == 0
    assert (run / "train" / "real_only-s0" / "metrics.json").stat().st_mtime_ns == stamp
    # the report reads the run's config and shows the same numbers; other finished runs are listed
    assert main(["train", "--run-dir", str(run), "--curriculum", "real_only", "--loss", "bs"]) == 0
    capsys.readouterr()
    (run / "headline.md").write_text("| ce | 1 of 1 | an older number |\n")
    assert main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert f"| ce | 1 of 1 | {top1:.1f} |" in md
    assert f"| ce | 1 of 1 | {top1:.1f} |" in (run / "headline.md").read_text()  # the report rewrites it too
    assert "| bs+real_only-s0 |" in md


def test_methods_take_training_loss_and_flyp_is_a_baseline():
    from discl.methods import BASELINES, method_for, parse_method

    assert "flyp" in BASELINES and parse_method("flyp").strategy is None
    assert parse_method("discl").loss is None  # = training.loss: FLYP + DisCL on iWildCam
    assert parse_method("bs+discl").loss == "balanced_softmax"
    assert method_for(None, None, "fixed", "ce") == "discl"
    assert method_for("mixed", "bs", "fixed", "ce") == "bs+mixed"
    assert method_for("fixed", "flyp", "fixed", "flyp") == "discl"
    from discl.config import load_config

    cfg = load_config("configs/iwildcam.yaml")
    assert cfg.methods == ["flyp", "discl"] and cfg.training.loss == "flyp"
    assert load_config(None, ["training.loss=bs"]).training.loss == "balanced_softmax"
    ilt = load_config("configs/imagenet-lt.yaml")
    assert {"real_only", "bs+real_only"} <= set(ilt.methods)


def test_hub_answers_without_retries(tmp_path, monkeypatch):
    from discl import hub

    hub.unreachable_reason.cache_clear()
    hub.cached_snapshot.cache_clear()
    assert hub.unreachable_reason(str(tmp_path)) is None and hub.load_kwargs(str(tmp_path)) == {"local_files_only": True}
    assert "does not exist" in hub.unreachable_reason(str(tmp_path / "nope"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    assert "HF_HUB_OFFLINE" in hub.unreachable_reason("discl-tests/never-cached-abc")
    assert time.perf_counter() - t0 < 2.0
    assert hub.load_kwargs("discl-tests/never-cached-abc") == {"local_files_only": True}
    hub.unreachable_reason.cache_clear()


def test_template_and_override_checks_are_pure():
    from discl.config import blame
    from discl.validation import template_problem

    assert template_problem("a photo of a {name}") is None
    assert template_problem("{{literal}} {name}") is None
    assert "only {name}" in template_problem("a {name} at {place}")
    assert "unbalanced" in template_problem("a {name} }")
    assert "must contain" in template_problem("a photo")
    assert blame("training.epochs: must be >= 1", "my.yaml", ["training.epochs=0"]) == "override 'training.epochs=0': "
    assert blame("training.epochs: must be >= 1", "my.yaml", ["training.lr=1"]) == "my.yaml: "


def test_real_only_depends_on_the_curriculum_rules(tmp_path):
    """real_only trains on no synthetic image but by the curriculum's epoch rules (real_fraction, tail
    quota from hard.csv): its marker digest must follow them, or a sweep over real_fraction shares one run."""
    from discl.config import load_config
    from discl.evaluation.results import train_run_digest

    def train_config_digest(cfg, method, seed):  # the digest a run records, here with no upstream artifacts
        return train_run_digest(cfg, tmp_path, method, seed)

    a = load_config("configs/fmnist-lt.yaml", ["curriculum.real_fraction=0.3"])
    b = load_config("configs/fmnist-lt.yaml", ["curriculum.real_fraction=1.0"])
    assert train_config_digest(a, "real_only", 0) != train_config_digest(b, "real_only", 0)
    assert train_config_digest(a, "ce", 0) == train_config_digest(b, "ce", 0)
    c = load_config("configs/fmnist-lt.yaml", ["curriculum.real_fraction=0.3", "generation.steps=7"])
    assert train_config_digest(a, "real_only", 0) == train_config_digest(c, "real_only", 0)
    # another filter manifest (a new threshold, more seeds per level) retrains DisCL, not real_only,
    # which trains on no synthetic image (found by a new user: a threshold sweep retrained it per value)
    manifest = tmp_path / "filter" / "manifest.csv"
    manifest.parent.mkdir()
    before = {m: train_config_digest(a, m, 0) for m in ("real_only", "discl", "mixed_equal", "text_only")}
    manifest.write_text("file_name,lam,keep\nx.png,0.5,true\n")
    after = {m: train_config_digest(a, m, 0) for m in before}
    assert after["real_only"] == before["real_only"]
    assert all(after[m] != before[m] for m in ("discl", "mixed_equal", "text_only"))


def test_a_dataset_without_test_split_is_an_error_before_any_stage(project, capsys, tmp_path):
    """Found by a new user: a folder without a test split ran to a report without a single accuracy."""
    import pandas as pd

    base, cfg, run = project
    frame = pd.read_csv(base / "data" / "data.csv")
    no_test = base / "data" / "no_test.csv"
    frame[frame["split"] != "test"].to_csv(no_test, index=False)
    code, err = _err(capsys, "run", str(cfg), f"data.root={no_test}", f"run_dir={run}-notest")
    assert code in (1, 2) and "has no test split" in err and "data.root" in err, err
    assert not Path(f"{run}-notest").exists()
