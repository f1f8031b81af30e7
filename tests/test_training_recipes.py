"""The training CLI end to end on the embedded long-tail task: baseline, curriculum, evaluate."""

import json

import pandas as pd
import pytest
import torch
from conftest import TINY

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
    args = ["--config", "configs/fmnist-lt.yaml", *SMALL, "training.init_from=null"]  # seed 1 has no CE run to start from
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
    cur = run / "train" / "discl-s1"  # fixed is the configured strategy: method discl
    log = pd.read_csv(cur / "log.csv")
    assert log["stage"].tolist() == ["0.3", "real"]  # 2 epochs over stages [1, 1]
    assert log["n_synthetic"].iloc[0] > 0 and log["n_synthetic"].iloc[1] == 0
    # the synthetic share of the tail slots, per epoch, in both logs (issue 22)
    slots = log["n_tail_real"] + log["n_tail_synthetic"] + log["n_tail_oversampled"]
    assert log["tail_synthetic_share"].tolist() == (log["n_tail_synthetic"] / slots).round(4).tolist()
    assert log["tail_synthetic_share"].iloc[0] > 0 and log["tail_synthetic_share"].iloc[1] == 0
    rows = [json.loads(line) for line in (cur / "log.jsonl").read_text().splitlines()]
    assert [r["tail_synthetic_share"] for r in rows] == log["tail_synthetic_share"].tolist()
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
    before = sorted((run / "train").iterdir()) if (run / "train").is_dir() else []
    assert main(["train", "--curriculum", "single", "--run-dir", str(run), *args, "curriculum.fixed_level=0.7",
                 "training.init_from=null"]) == 1  # (with init_from: ce the missing CE run is named first)
    err = capsys.readouterr().err
    assert "needs λ = 0.7" in err and "generation.levels" in err and "curriculum.levels" not in err, err
    assert (sorted((run / "train").iterdir()) if (run / "train").is_dir() else []) == before  # no half-made run folder
    assert main(["train", "--curriculum", "nope", "--run-dir", str(run), *args]) == 2


def test_init_from_a_baseline_fine_tunes_from_that_seeds_checkpoint(tmp_path):
    """`training.init_from: ce`: the pipeline trains ce first and the curriculum starts from its weights."""
    from discl.artifacts import ArtifactError, read_json
    from discl.evaluation.results import training_order
    from discl.pipeline import run
    from discl.training.recipe import baseline_checkpoint

    cfg = load_config("configs/fmnist-lt.yaml", [*TINY, "methods=[discl]", "seeds=[0]", "training.init_from=ce",
                                                 f"run_dir={tmp_path / 'run'}"])
    assert training_order(cfg) == ["ce", "discl"]
    with pytest.raises(ArtifactError, match=r"init_from='ce'.*ce-s0"):
        baseline_checkpoint("ce", tmp_path / "run", 0)
    status = run(cfg)
    assert status["train-ce-s0"] == "ran" and status["train-discl-s0"] == "ran"
    ce_digest = read_json(tmp_path / "run" / "train" / "ce-s0" / "metrics.json")["digest"]
    assert "-init-" not in ce_digest
    # the curriculum digest holds the checkpoint's content digest
    from discl.evaluation.results import train_run_digest

    assert read_json(tmp_path / "run" / "train" / "discl-s0" / "metrics.json")["digest"] == train_run_digest(
        cfg, tmp_path / "run", "discl", 0)
    # the baseline itself trains from scratch: same digest as without init_from
    plain = load_config("configs/fmnist-lt.yaml", [*TINY, "methods=[ce]", "seeds=[0]", f"run_dir={tmp_path / 'run'}"])
    assert run(plain)["train-ce-s0"] == "skipped"
    # other baseline weights: the fine-tuned run is not reused (its digest holds the checkpoint's content)
    from safetensors import safe_open
    from safetensors.torch import save_file

    from discl.pipeline import train_method

    ckpt = tmp_path / "run" / "train" / "ce-s0" / "best.safetensors"
    with safe_open(str(ckpt), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    first = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[first] = tensors[first] + 0.01
    save_file(tensors, str(ckpt), metadata=meta)
    before = read_json(tmp_path / "run" / "train" / "discl-s0" / "metrics.json")["digest"]
    assert train_method(cfg, tmp_path / "run", "discl", 0)["digest"] != before


def test_init_from_refuses_an_unfinished_or_other_config_baseline(tmp_path):
    """best.safetensors exists from the first validation improvement on: fine-tuning must start only
    from a CE run that finished with the config at hand."""
    from discl.artifacts import ArtifactError
    from discl.training.recipe import baseline_checkpoint, train_baseline

    cfg = load_config("configs/fmnist-lt.yaml", [*SMALL, "training.epochs=1", "training.init_from=ce"])
    train_baseline(cfg, tmp_path, "ce", 0)
    assert baseline_checkpoint("ce", tmp_path, 0, cfg) == tmp_path / "train" / "ce-s0" / "best.safetensors"
    other = load_config("configs/fmnist-lt.yaml", [*SMALL, "training.epochs=1", "training.init_from=ce", "training.lr=0.01"])
    with pytest.raises(ArtifactError, match="trained with other settings"):
        baseline_checkpoint("ce", tmp_path, 0, other)
    # a curriculum-only key does not concern the CE run
    same = load_config("configs/fmnist-lt.yaml", [*SMALL, "training.epochs=1", "training.init_from=ce", "curriculum.tail_quota=false"])
    assert baseline_checkpoint("ce", tmp_path, 0, same).is_file()
    (tmp_path / "train" / "ce-s0" / "metrics.json").unlink()  # as an interrupted run leaves it
    with pytest.raises(ArtifactError, match="unfinished"):
        baseline_checkpoint("ce", tmp_path, 0, cfg)


def test_init_from_baseline_starts_each_curriculum_run_from_the_baseline_of_its_loss(tmp_path):
    """`training.init_from: baseline` (the shipped fmnist-lt and imagenet-lt default): DisCL fine-tunes
    the CE model (the authors' recipe), BS + DisCL the BS model (issue 12's reading)."""
    from discl.artifacts import read_json
    from discl.evaluation.results import training_order
    from discl.methods import init_baseline
    from discl.pipeline import run
    from discl.training.recipe import _curriculum_config

    assert init_baseline("baseline", "ce") == "ce" and init_baseline("baseline", "balanced_softmax") == "bs"
    assert init_baseline("baseline", "flyp") == "flyp" and init_baseline("cb", "balanced_softmax") == "cb"
    assert init_baseline("/ckpt.safetensors", "ce") is None and init_baseline(None, "ce") is None
    cfg = load_config("configs/fmnist-lt.yaml", [*TINY, "methods=[bs+discl, real_only]", "seeds=[0]",
                                                 f"run_dir={tmp_path / 'run'}"])
    assert cfg.training.init_from == "baseline"
    assert training_order(cfg) == ["bs", "ce", "bs+discl", "real_only"]
    from discl.pipeline import stages  # baselines alone need no hard set: no mining stage

    assert [st.name for st in stages(load_config(None, ["methods=[ce, cb, la]"]))] == []
    assert [st.name for st in stages(load_config(None, ["methods=[ce, real_only]"]))] == ["mine"]
    assert [st.name for st in stages(cfg)] == ["mine", "generate", "filter"]
    assert _curriculum_config(cfg, None, 0, "bs").training.init_from == "bs"
    assert _curriculum_config(cfg, "real_only", 0, None).training.init_from == "ce"
    status = run(cfg)
    assert status["train-bs-s0"] == "ran" and status["train-bs+discl-s0"] == "ran"
    bs = read_json(tmp_path / "run" / "train" / "bs-s0" / "metrics.json")
    explicit = load_config("configs/fmnist-lt.yaml", [*TINY, "methods=[bs]", "seeds=[0]", "training.init_from=null",
                                                      f"run_dir={tmp_path / 'run'}"])
    assert run(explicit)["train-bs-s0"] == "skipped", "the baseline trains from scratch, as without init_from"
    # the same run as init_from: bs names explicitly: same digest, so it is not retrained
    same = load_config("configs/fmnist-lt.yaml", [*TINY, "methods=[bs+discl]", "seeds=[0]", "training.init_from=bs",
                                                  f"run_dir={tmp_path / 'run'}"])
    assert run(same)["train-bs+discl-s0"] == "skipped"
    assert bs["digest"] == read_json(tmp_path / "run" / "train" / "bs-s0" / "metrics.json")["digest"]


def test_a_level_the_filter_left_empty_is_named_in_a_warning(run, tmp_path, caplog):
    """Every λ = 0.3 variant dropped by the filter: the curriculum's λ = 0.3 stage would train on real
    images only; the run says so instead of training silently without synthetic images."""
    import shutil

    work = tmp_path / "run"
    shutil.copytree(run, work, ignore=shutil.ignore_patterns("train"))
    man = pd.read_csv(work / "filter" / "manifest.csv")
    man.loc[man["lam"].round(6) == 0.3, "keep"] = False
    man.to_csv(work / "filter" / "manifest.csv", index=False)
    args = ["--config", "configs/fmnist-lt.yaml", *SMALL, "training.init_from=null"]
    with caplog.at_level("WARNING", logger="discl.training.recipe"):
        assert main(["train", "--curriculum", "fixed", "--run-dir", str(work), *args]) == 0
    assert "no synthetic image of λ = 0.3 is in the pool" in caplog.text, caplog.text
