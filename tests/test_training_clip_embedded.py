"""``training.model: clip`` on the embedded CLIP shipped with discl (``training.clip_model: embedded``):
the same model input and zero-shot head as ``discl clip evaluate``, FLYP fine-tuning through the
training CLI, the config checks and the weights fingerprint in the training digest."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from discl import assets
from discl.cli import main
from discl.config import load_config
from discl.configtools import ConfigError
from discl.data import build_dataset
from discl.filtering import embedded_clip
from discl.filtering.captions import ZERO_SHOT_TEMPLATES
from discl.filtering.scorer import create_scorer
from discl.filtering.zeroshot import zero_shot_head
from discl.training.clip import create_clip_classifier
from discl.training.loop import predict_logits
from discl.training.transforms import to_float
from discl.validation import validate_run_config

CONFIG = "configs/fmnist-lq-flyp.yaml"
SMALL = ["data.test_limit=70", "training.epochs=1", "training.warmup_steps=2", "seeds=[0]"]


@pytest.fixture(scope="module")
def lq():
    torch.set_num_threads(1)
    return build_dataset(load_config(CONFIG, SMALL).data)


def test_zero_shot_predictions_equal_discl_clip_evaluate(lq):
    """Before any training the classifier is the embedded CLIP's own zero-shot classifier
    (:mod:`discl.filtering.zeroshot`): same pixels in, same head, same predictions."""
    test = lq.split("test")
    assert len(test) == 70
    x = lq.tensors(list(test["sample_id"]), 28, 1)  # uint8 [70, 1, 28, 28], what training and evaluation feed
    scorer = create_scorer("embedded", "embedded", device="cpu", batch_size=64)
    ref_head = zero_shot_head(scorer, lq.classes)
    ref = (scorer.encode_uint8(x) @ ref_head.t()).argmax(1)

    model = create_clip_classifier("embedded", None, lq.classes).eval()
    assert model.n_templates == len(ZERO_SHOT_TEMPLATES) and model.image_size == 28
    assert torch.equal(model._pixels(to_float(x)), embedded_clip.normalize_batch(x))  # the same model input, bit for bit
    with torch.no_grad():
        assert torch.allclose(model.zero_shot_head(), ref_head, atol=1e-5)
    pred = predict_logits(model, x).argmax(1)
    assert torch.equal(pred, ref)
    labels = torch.as_tensor(test["label"].to_numpy().copy())
    assert (pred == labels).float().mean() > 0.3, "the shipped weights are loaded (10 classes: chance is 0.1)"


def test_flyp_fine_tune_through_the_cli_changes_the_weights_and_evaluates(tmp_path, lq):
    run = tmp_path / "run"
    args = ["--config", CONFIG, *SMALL]
    assert main(["baseline", "--loss", "flyp", "--seeds", "0", "--run-dir", str(run), *args]) == 0
    out = run / "train" / "flyp-s0"
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs"] == 1 and m["test"]["n"] == 70 and m["best"]["select_on"] == "val_macro_f1"
    assert np.isfinite(m["test"]["macro_f1"]) and np.isfinite(m["test_ood"]["macro_f1"])

    from discl.training.checkpoint import load_weights, read_header

    header = read_header(out / "best.safetensors")
    assert header["model"] == "clip" and header["clip_model"] == "embedded"
    tuned, _ = load_weights(out / "best.safetensors")
    shipped = {f"clip.{k}": v for k, v in embedded_clip.create_embedded_clip()[0].state_dict().items()}
    assert set(tuned) == set(shipped)
    assert any(not torch.equal(tuned[k].float(), shipped[k].float()) for k in shipped), "FLYP moved the weights"

    assert main(["evaluate", "--checkpoint", str(out / "best.safetensors"), *args]) == 0
    ev = json.loads((out / "eval-test-test_ood.json").read_text())
    assert ev["test"]["macro_f1"] == pytest.approx(m["test"]["macro_f1"])
    assert ev["test_ood"]["macro_f1"] == pytest.approx(m["test_ood"]["macro_f1"])


def test_mining_fold_models_fine_tune_the_embedded_clip(lq):
    """Model-based mining trains its fold models with ``training.*``: a CLIP needs the class names."""
    from discl.training.loop import fit_classifier, predict_proba

    cfg = load_config(CONFIG, SMALL).training
    ids = list(lq.split("train")["sample_id"])[:40]
    x, y = lq.tensors(ids, 28, 1), torch.as_tensor(lq.frame.loc[ids, "label"].to_numpy().copy())
    with pytest.raises(ValueError, match="class names"):
        fit_classifier(x, y, None, None, cfg, 10, seed=0)
    model = fit_classifier(x, y, None, None, cfg, 10, seed=0, class_names=list(lq.classes))
    p = predict_proba(model, x[:8])
    assert p.shape == (8, 10) and torch.allclose(p.sum(1), torch.ones(8), atol=1e-5)


@pytest.mark.parametrize("overrides, key", [
    (["training.clip_pretrained=openai"], "training.clip_pretrained"),  # an open_clip tag on the embedded model
    (["training.clip_model=ViT-B-16", "training.clip_pretrained=embedded"], "training.clip_pretrained"),
])
def test_contradictory_clip_model_and_weights_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=rf"{key}:"):
        load_config(CONFIG, overrides)


def test_validation_of_the_embedded_clip_classifier(tmp_path):
    validate_run_config(load_config(CONFIG), data=False)  # the shipped weights exist
    with pytest.raises(ConfigError, match=r"training\.clip_pretrained: the embedded CLIP weights .*gone\.safetensors"):
        validate_run_config(load_config(CONFIG, [f"training.clip_pretrained={tmp_path / 'gone.safetensors'}"]), data=False)
    with pytest.raises(ConfigError, match=r"data\.channels: the embedded CLIP"):
        validate_run_config(load_config(CONFIG, ["data.channels=3"]), data=False)


def test_training_digest_follows_the_embedded_weights_content(tmp_path, monkeypatch):
    from discl.fingerprint import model_references
    from discl.training.recipe import baseline_run_digest

    cfg = load_config(CONFIG)
    assert model_references(cfg)["training"] == {"clip_pretrained": "embedded-clip"}
    a = tmp_path / "a.safetensors"
    shutil.copyfile(embedded_clip.WEIGHTS_PATH, a)
    monkeypatch.setattr(assets, "CLIP_WEIGHTS_PATH", a)  # where the fingerprint finds the shipped weights
    before = baseline_run_digest(cfg, "flyp", 0)
    assert before == baseline_run_digest(load_config(CONFIG, ["training.clip_pretrained=embedded"]), "flyp", 0)
    a.write_bytes(a.read_bytes() + b" ")  # other weights under the same name
    assert baseline_run_digest(cfg, "flyp", 0) != before
    # a retrained file given as clip_pretrained is fingerprinted by its content too
    own = load_config(CONFIG, [f"training.clip_pretrained={a}"])
    assert model_references(own)["training"] == {"clip_pretrained": f"file:{a}"}
    d1 = baseline_run_digest(own, "flyp", 0)
    a.write_bytes(a.read_bytes() + b"  ")
    assert baseline_run_digest(own, "flyp", 0) != d1


def test_bench_results_knows_the_flyp_config():
    """``bench/results.py --task fmnist-lq-flyp`` runs configs/fmnist-lq-flyp.yaml's methods and
    renders fmnist-lq's columns with FLYP labels and its own reproduce command."""
    import argparse
    import importlib.util

    import pandas as pd
    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("bench_results", ROOT / "bench" / "results.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = load_config(ROOT / "configs" / "fmnist-lq-flyp.yaml")
    assert bench.METHODS["fmnist-lq-flyp"] == cfg.methods and cfg.data.task == "fmnist-lq"
    rows = [{"method": m, "seed": s, "data_seed": 0, "test.macro_f1": 0.5 + 0.01 * i + 0.003 * s,
             "test_ood.macro_f1": 0.4 + 0.01 * i, "test.top1": 0.5, "test_ood.top1": 0.4,
             "synthetic_seen": 0, "denoiser_steps": 0} for i, m in enumerate(cfg.methods) for s in (0, 1, 2)]
    args = argparse.Namespace(task="fmnist-lq-flyp", seeds=[0, 1, 2], data_seeds=[0], methods=None,
                              interval="t", overrides=[])
    text = bench.render(cfg, pd.DataFrame(rows), args, 60.0)
    assert "--task fmnist-lq-flyp --seeds 0 1 2" in text and "| ID macro-F1 | OOD macro-F1 |" in text
    assert "| FLYP (real only) |" in text and "| FLYP + DisCL (adaptive) |" in text and "| FLYP + DisCL non-adaptive |" in text


def test_bad_embedded_weights_files_and_input_size_name_the_key(tmp_path):
    """A text file or another model's tensors as clip_pretrained: one line naming the key and the file,
    not a safetensors traceback; a data.image_size the embedded CLIP would resize again is refused."""
    from safetensors.torch import save_file

    from discl.errors import BadInputError

    bad = tmp_path / "bad.safetensors"
    bad.write_text("not weights")
    with pytest.raises(BadInputError, match=r"training\.clip_pretrained: .*bad\.safetensors: not a readable safetensors"):
        create_clip_classifier("embedded", str(bad), ["a", "b"])
    other = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(2, 3)}, str(other))
    with pytest.raises(BadInputError, match=r"training\.clip_pretrained: .*other\.safetensors: not the embedded CLIP's tensors"):
        create_clip_classifier("embedded", str(other), ["a", "b"])
    with pytest.raises(ConfigError, match=r"data\.image_size: the embedded CLIP .* takes 28x28"):
        validate_run_config(load_config(CONFIG, ["data.image_size=32"]), data=False)


def test_an_embedded_prior_given_as_a_folder_is_refused_for_other_classes(tmp_path):
    """The embedded prior draws Fashion-MNIST class i for label i, whichever folder it is loaded from:
    a user's task with other classes must not get its curriculum from it (it drew wrong classes silently
    when generation.model named the shipped prior's folder)."""
    from PIL import Image

    from discl.generation.prior import ASSET_DIR

    def folder(root, names):
        for split in ("train", "test"):
            for i, name in enumerate(names):
                d = root / split / name
                d.mkdir(parents=True)
                for j in range(3):
                    Image.fromarray(np.full((28, 28), 20 * i + j, np.uint8)).save(d / f"{j}.png")
        return root

    own = folder(tmp_path / "own", ["boot", "pants"])
    common = ["data.task=folder", "data.image_size=28", "data.channels=1", "filtering.backend=open_clip",
              "filtering.model=ViT-B-32/openai", f"generation.model={ASSET_DIR}"]
    with pytest.raises(ConfigError, match=r"generation\.backend: the embedded prior .* draws the ten Fashion-MNIST classes"):
        validate_run_config(load_config(CONFIG, [f"data.root={own}", *common]), weights=False)
    # the check is the prior's, not the folder's: the same task with a diffusers generator passes it,
    # and a folder of Fashion-MNIST's first classes in its order (T-shirt/top as a folder name) too
    from discl.validation import _backend_problems

    fm = folder(tmp_path / "fm", ["T-shirt_top", "Trouser", "Pullover"])
    ok = load_config(CONFIG, [f"data.root={fm}", *common, "data.class_names=[T-shirt_top, Trouser, Pullover]"])
    assert not [p for p in _backend_problems(ok, synthetic=True) if p.startswith("generation.backend")]
    unordered = load_config(CONFIG, [f"data.root={fm}", *common])  # sorted: Pullover, T-shirt_top, Trouser
    assert [p for p in _backend_problems(unordered, synthetic=True) if p.startswith("generation.backend")]
    swapped = load_config(CONFIG, [f"data.root={fm}", *common, "data.class_names=[Trouser, T-shirt_top, Pullover]"])
    assert [p for p in _backend_problems(swapped, synthetic=True) if p.startswith("generation.backend")]

    ok = load_config(CONFIG, [f"data.root={own}", *common, "generation.backend=diffusers", "generation.model=x/y"])
    assert not [p for p in _backend_problems(ok, synthetic=True) if p.startswith("generation.backend")]
    # Fashion-MNIST's classes in colour: the prior's variants would be the only grey images
    rgb = load_config(CONFIG, [f"data.root={fm}", *common, "data.class_names=[T-shirt_top, Trouser, Pullover]",
                               "data.channels=3"])
    assert [p for p in _backend_problems(rgb, synthetic=True) if p.startswith("data.channels: the embedded prior makes grey")]
    rgb_diffusers = load_config(CONFIG, [f"data.root={fm}", *common, "data.class_names=[T-shirt_top, Trouser, Pullover]",
                                         "data.channels=3", "generation.backend=diffusers", "generation.model=x/y"])
    assert not [p for p in _backend_problems(rgb_diffusers, synthetic=True) if p.startswith("data.channels")]


def test_an_embedded_clip_given_as_a_file_is_refused_for_other_classes(tmp_path):
    """Any embedded CLIP knows only Fashion-MNIST's ten names (``discl clip train`` trains on them): given
    as a weights file it was not checked and scored a user's other classes silently; a folder of
    Fashion-MNIST's classes in its order is accepted, as for the embedded prior."""
    from PIL import Image

    from discl.filtering.embedded_clip import WEIGHTS_PATH
    from discl.validation import _backend_problems

    def folder(root, names):
        for split in ("train", "test"):
            for i, name in enumerate(names):
                d = root / split / name
                d.mkdir(parents=True)
                Image.fromarray(np.full((28, 28), 20 * i, np.uint8)).save(d / "0.png")
        return root

    def clip_problems(root, *extra):
        cfg = load_config(CONFIG, ["data.task=folder", f"data.root={root}", "data.image_size=28", "data.channels=1",
                                   "generation.backend=diffusers", "generation.model=x/y", *extra])
        return [p for p in _backend_problems(cfg, synthetic=True) if p.startswith("filtering.backend")]

    own = folder(tmp_path / "own", ["boot", "pants"])
    for model in ("embedded", str(WEIGHTS_PATH)):
        assert any("knows only the Fashion-MNIST class names" in p for p in clip_problems(own, f"filtering.model={model}"))
    fm = folder(tmp_path / "fm", ["T-shirt_top", "Trouser"])
    assert not clip_problems(fm, f"filtering.model={WEIGHTS_PATH}", "data.class_names=[T-shirt_top, Trouser]")
    assert clip_problems(fm, "filtering.model=embedded", "data.class_names=[Trouser, T-shirt_top]")
