"""The training CLI end to end on the embedded long-tail task: baseline, curriculum, evaluate."""

import json

import pandas as pd
import pytest
import torch

from discl.cli import main
from discl.config import load_config
from discl.curriculum.testing import write_toy_spectrum
from discl.data import build_dataset

SMALL = ["data.test_limit=100", "data.val_per_class=5", "training.epochs=2", "training.batch_size=64",
         "curriculum.levels=[0.3]", "curriculum.stages=[1,1]"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("run")
    ds = build_dataset(load_config(None, SMALL).data)
    write_toy_spectrum(run_dir, ds, levels=(0.1, 0.3, 0.5))
    return run_dir


@pytest.mark.parametrize("path", ["configs/imagenet-lt.yaml", "configs/iwildcam.yaml"])
def test_shipped_recipes_load(path):
    cfg = load_config(path)
    assert cfg.training.epochs >= 20 and cfg.curriculum.strategy in ("fixed", "adaptive")


def test_baseline_train_evaluate_cli(run, capsys):
    args = ["--config", "configs/fmnist-lt.yaml", *SMALL]
    assert main(["baseline", "--loss", "bs", "--seeds", "0", "--run-dir", str(run), *args]) == 0
    out = run / "train" / "bs-s0"
    m = json.loads((out / "metrics.json").read_text())
    assert {"top1", "many", "medium", "few", "macro_f1", "confusion"} <= set(m["test"])
    assert m["test"]["n"] == 100 and m["synthetic_seen"] == 0 and m["best"]["select_on"] == "val_accuracy"
    assert len(pd.read_csv(out / "log.csv")) == 2 and (out / "config.yaml").is_file()
    before = (out / "metrics.json").stat().st_mtime_ns
    assert main(["baseline", "--loss", "bs", "--seeds", "0", "--run-dir", str(run), *args]) == 0
    assert (out / "metrics.json").stat().st_mtime_ns == before, "a finished run is not redone"

    assert main(["train", "--curriculum", "fixed", "--seeds", "1", "--run-dir", str(run), *args]) == 0
    cur = run / "train" / "fixed-ce-s1"
    log = pd.read_csv(cur / "log.csv")
    assert log["stage"].tolist() == ["0.3", "real"]  # 2 epochs over stages [1, 1]
    assert log["n_synthetic"].iloc[0] > 0 and log["n_synthetic"].iloc[1] == 0
    cm = json.loads((cur / "metrics.json").read_text())
    assert cm["synthetic_seen"] == log["n_synthetic"].sum() and cm["strategy"] == "fixed"

    assert main(["evaluate", "--checkpoint", str(cur / "best.safetensors"), *args]) == 0
    ev = json.loads((cur / "eval-test.json").read_text())
    assert ev["test"]["top1"] == pytest.approx(cm["test"]["top1"])
    assert "fixed" in capsys.readouterr().out


def test_curriculum_errors_are_clear(run, tmp_path, capsys):
    args = ["--config", "configs/fmnist-lt.yaml", *SMALL]
    assert main(["train", "--run-dir", str(tmp_path), *args]) == 1
    assert "run `discl mine` first" in capsys.readouterr().err
    assert main(["train", "--curriculum", "single", "--run-dir", str(run), *args, "curriculum.fixed_level=0.7"]) == 1
    assert "needs λ=[0.7]" in capsys.readouterr().err
    assert main(["train", "--curriculum", "nope", "--run-dir", str(run), *args]) == 2
