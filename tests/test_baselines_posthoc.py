"""The baselines derived from the CE run: la (logit adjustment), crt (classifier re-training), ce_long."""

import json

import numpy as np
import pytest
import torch

from discl.config import load_config
from discl.evaluation.results import training_order
from discl.methods import BASELINES, DERIVED, parse_method
from discl.pipeline import train_method
from discl.training.checkpoint import load_weights
from discl.training.posthoc import adjust_logits, choose_tau, log_prior, train_derived

SMALL = ["data.test_limit=100", "data.val_per_class=5", "training.epochs=2", "training.batch_size=64"]


@pytest.fixture(scope="module")
def ce_run(tmp_path_factory):
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("run")
    cfg = load_config("configs/fmnist-lt.yaml", [*SMALL, "methods=[ce, la, crt, ce_long]", "seeds=[0]"])
    train_method(cfg, run_dir, "ce", 0)
    return cfg, run_dir


def _metrics(run_dir, name):
    return json.loads((run_dir / "train" / name / "metrics.json").read_text())


def test_methods_parse_and_train_after_ce():
    assert set(DERIVED).isdisjoint(BASELINES)
    assert parse_method("crt").sampler == "class_balanced" and parse_method("la").base == "ce"
    assert not any(parse_method(m).uses_synthetic for m in DERIVED)
    cfg = load_config(None, ["methods=[la, discl, crt]"])
    assert training_order(cfg) == ["ce", "la", "discl", "crt"]
    cfg = load_config(None, ["methods=[crt, ce]"])
    assert training_order(cfg) == ["ce", "crt"]


def test_log_prior_and_adjustment_are_menon_et_al():
    lp = log_prior([300, 100, 0])
    assert lp[0] == pytest.approx(np.log(300 / 400.5)) and np.isfinite(lp[2]) and lp[2] < lp[1]
    logits = np.array([[2.0, 1.5, 0.0]])
    assert adjust_logits(logits, lp, 0.0).argmax() == 0
    assert adjust_logits(logits, lp, 1.0).argmax() == 2  # the rare class wins once its prior is removed


def test_choose_tau_reads_only_the_given_split_and_breaks_ties_low():
    lp = np.log(np.array([0.9, 0.1]))
    logits = np.array([[1.0, 0.0]] * 4)  # CE says class 0 everywhere
    labels = np.array([1, 1, 1, 0])  # ...but this split is mostly class 1

    def score(y, p):
        return {"top1": float((np.asarray(y) == np.asarray(p)).mean())}

    tau, scores = choose_tau(logits, labels, lp, [2.0, 0.0, 1.0], "top1", score)
    assert scores == {0.0: 0.25, 1.0: 0.75, 2.0: 0.75} and tau == 1.0
    tau, _ = choose_tau(logits, np.array([0, 0, 0, 0]), lp, [0.0, 1.0], "top1", score)
    assert tau == 0.0
    with pytest.raises(ValueError, match="empty"):
        choose_tau(logits, labels, lp, [], "top1", score)


def test_la_at_tau_zero_is_ce_and_tau_is_chosen_on_val(ce_run, monkeypatch):
    cfg, run_dir = ce_run
    ce = _metrics(run_dir, "ce-s0")
    # τ = 0 only: the same predictions as the CE model on every test image
    iso = run_dir / "iso"
    (iso / "train" / "ce-s0").mkdir(parents=True)
    for name in ("best.safetensors", "metrics.json"):  # a finished CE run (init_from checks its digest)
        (iso / "train" / "ce-s0" / name).write_bytes((run_dir / "train" / "ce-s0" / name).read_bytes())
    m0 = train_derived(cfg, iso, "la", 0, taus=[0.0])
    assert m0["tau"] == 0.0 and m0["test"]["confusion"] == ce["test"]["confusion"]
    assert m0["test"]["top1"] == ce["test"]["top1"]

    # the full grid: τ is the argmax of the recorded validation scores, and no test split is read
    import discl.training.recipe as recipe

    read = []
    real = recipe._tensors
    monkeypatch.setattr(recipe, "_tensors", lambda ds, split, c, *rest: (read.append(split), real(ds, split, c, *rest))[1])
    m = train_method(cfg, run_dir, "la", 0)
    assert read[0] == "val" and read.count("val") == 1  # τ was fixed before any test image was read
    scores = {float(t): s for t, s in m["tau_val_scores"].items()}
    assert m["tau"] == min(t for t, s in scores.items() if s == max(scores.values()))
    assert m["tau_select_on"] == "val.top1" and m["epochs"] == 0 and m["base"] == "ce-s0"
    assert {"top1", "many", "medium", "few"} <= set(m["test"])
    assert train_method(cfg, run_dir, "la", 0)["digest"] == m["digest"]  # done: not redone


def test_crt_retrains_only_the_head_with_class_balanced_draws(ce_run):
    cfg, run_dir = ce_run
    m = train_method(cfg, run_dir, "crt", 0)
    ce_sd, _ = load_weights(run_dir / "train" / "ce-s0" / "best.safetensors")
    crt_sd, _ = load_weights(run_dir / "train" / "crt-s0" / "best.safetensors")
    assert ce_sd.keys() == crt_sd.keys()
    changed = {k for k in ce_sd if not torch.equal(ce_sd[k], crt_sd[k])}
    assert changed == {"net.fc.weight", "net.fc.bias"}  # backbone weights and batch-norm statistics untouched
    assert m["trainable_params"] == ce_sd["net.fc.weight"].numel() + ce_sd["net.fc.bias"].numel()
    draws = np.array(m["epoch0_class_draws"])
    train_counts = np.asarray(_train_counts(cfg))
    assert train_counts.max() / train_counts.min() >= 50  # the task is long-tailed (500 vs 5)
    assert draws.sum() == train_counts.sum() and draws.max() / draws.min() < 1.5  # the draws are balanced
    assert m["epochs"] == cfg.training.epochs and m["synthetic_seen"] == 0


def test_ce_long_continues_ce_for_the_same_epochs(ce_run):
    cfg, run_dir = ce_run
    m = train_method(cfg, run_dir, "ce_long", 0)
    assert m["epochs"] == cfg.training.epochs and m["variant"] == "ce_long" and m["base"] == "ce-s0"
    ce_sd, _ = load_weights(run_dir / "train" / "ce-s0" / "best.safetensors")
    long_sd, _ = load_weights(run_dir / "train" / "ce_long-s0" / "best.safetensors")
    assert not torch.equal(ce_sd["net.stem.0.weight"], long_sd["net.stem.0.weight"])  # the whole model trains
    log = [json.loads(x) for x in (run_dir / "train" / "ce_long-s0" / "log.jsonl").read_text().splitlines()]
    assert log[0]["train_loss"] < 2.0  # starts from a trained model (a fresh one is at ~log 10 = 2.3)


def test_derived_needs_the_ce_checkpoint(tmp_path):
    cfg = load_config("configs/fmnist-lt.yaml", SMALL)
    with pytest.raises(Exception, match="ce-s3"):
        train_derived(cfg, tmp_path, "crt", 3)


def _train_counts(cfg):
    from discl.data import build_dataset

    return build_dataset(cfg.data).class_counts("train")


def test_discl_run_trains_ce_first_and_redoes_la_when_the_ce_weights_change(tmp_path):
    import pandas as pd

    from discl.pipeline import run
    from discl.training.checkpoint import read_header, save_weights
    from discl.training.recipe import load_classifier

    torch.set_num_threads(1)
    cfg = load_config("configs/fmnist-lt.yaml", [*SMALL, "training.epochs=1", "methods=[la]", "seeds=[0]"])
    status = run(cfg, tmp_path)
    assert status["train-ce-s0"] == "ran" and status["train-la-s0"] == "ran"
    assert pd.read_csv(tmp_path / "results.csv")["method"].tolist() == ["ce", "la"]
    assert "Paired difference" not in (tmp_path / "report.md").read_text()  # no DisCL run: no paired section
    assert run(cfg, tmp_path)["train-la-s0"] == "skipped"

    ckpt = tmp_path / "train" / "ce-s0" / "best.safetensors"
    before = _metrics(tmp_path, "la-s0")["digest"]
    model, _ = load_classifier(ckpt)
    with torch.no_grad():
        model.net.fc.bias.add_(1.0)
    save_weights(ckpt, model, read_header(ckpt))  # new CE weights behind the same config
    status = run(cfg, tmp_path)
    assert status["train-ce-s0"] == "skipped" and status["train-la-s0"] == "ran"
    assert _metrics(tmp_path, "la-s0")["digest"] != before


def test_crt_freezes_batch_norms_that_have_children():
    """timm's BatchNormAct2d is a batch norm with children (act, drop): cRT must keep it in eval mode
    under ``model.train()``, or its running statistics move (the fixed representation changes)."""
    import timm
    import torch

    from discl.training.posthoc import classifier_head, freeze_all_but_head

    net = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=3, drop_rate=0.5)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d) and next(m.children(), None) is not None]
    assert bns, "the test needs a batch norm with children"
    head = classifier_head(net)
    freeze_all_but_head(net, head)
    net.train()
    before = [m.running_mean.clone() for m in bns]
    net(torch.randn(4, 3, 32, 32))
    assert not any(m.training for m in net.modules() if not any(m is h for h in head.modules()))
    assert head.training
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
