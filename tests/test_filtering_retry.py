"""Regeneration of dropped cells: best candidate kept, stop once passing, log reused on rerun."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from discl.artifacts import read_table
from discl.config import load_config
from discl.data.base import ArrayImageDataset
from discl.filtering import testing
from discl.filtering.runner import filter_spectrum
from discl.filtering.scorer import create_scorer
from discl.seeding import derive_seed, numpy_rng

CLASSES = ["Shirt", "Bag"]


@pytest.fixture(scope="module")
def tiny_scorer(tmp_path_factory):
    name = testing.register_tiny_open_clip(tmp_path_factory.mktemp("clipcfg"))
    torch.manual_seed(0)  # open_clip initialises from the global RNG
    return create_scorer("open_clip", f"{name}/none", device="cpu", batch_size=8)


def test_retries_replace_failing_cells_with_the_best_candidate(tmp_path, tiny_scorer):
    rng = numpy_rng("test-retry", 0)
    images = {f"s{i}": rng.integers(0, 256, (28, 28)).astype(np.uint8) for i in range(2)}
    labels = {"s0": 0, "s1": 1}
    frame = pd.DataFrame({"sample_id": list(images), "label": [0, 1], "class_name": CLASSES, "split": "train"})
    dataset = ArrayImageDataset("tiny", CLASSES, frame, np.stack(list(images.values())))
    run = tmp_path / "run"
    testing.make_tiny_spectrum(run, images, CLASSES, labels, levels=(0.0, 0.5), seeds=1)
    calls = []

    def regenerate(row, attempt):
        """attempt 1: unrelated noise; attempt 2+: the real source itself (sim_image = 1)."""
        calls.append((row["file_name"], attempt))
        seed = derive_seed("retry", row["sample_id"], float(row["lam"]), int(row["k"]), attempt)
        img = images[row["sample_id"]] if attempt >= 2 else numpy_rng(seed).integers(0, 256, (28, 28)).astype(np.uint8)
        name = f"{row['sample_id']}/retry_{row['lam']:.2f}_k{row['k']}_a{attempt}.png"
        Image.fromarray(img).save(run / "spectrum" / name)
        return {"file_name": name, "seed": seed, "prompt": f"a photo of a {row['class_name']}, retry {attempt}"}

    cfg = load_config(None, ["filtering.score=image", "filtering.threshold=0.999999", "filtering.retries=5"])
    first = filter_spectrum(load_config(None, ["filtering.score=image", "filtering.threshold=0.999999"]), run,
                            scorer=tiny_scorer, dataset=dataset)
    assert not first["keep"].any()  # noisy variants are all below 0.999999
    out = filter_spectrum(cfg, run, scorer=tiny_scorer, dataset=dataset, regenerate=regenerate)
    assert out["keep"].all()
    assert out["attempts"].tolist() == [2, 2, 2, 2]  # stopped once a candidate passed
    assert (out["sim_image"] > 0.999999).all()
    assert out["original_file"].tolist() == first["file_name"].tolist()
    assert all("retry_" in f and f.endswith("_a2.png") for f in out["file_name"])
    assert out["prompt"].str.endswith("retry 2").all()
    assert len(calls) == 8
    log = read_table(run / "filter" / "retries.csv")
    assert len(log) == 8 and sorted(log["attempt"].unique()) == [1, 2]
    manifest = read_table(run / "filter" / "manifest.csv")
    assert manifest["keep"].all() and manifest["attempts"].tolist() == [2, 2, 2, 2]
    # a rerun reuses the logged candidates: no generation, no encoding
    encoded = tiny_scorer.images_encoded
    again = filter_spectrum(cfg, run, scorer=tiny_scorer, dataset=dataset, regenerate=regenerate)
    assert len(calls) == 8 and tiny_scorer.images_encoded == encoded
    pd.testing.assert_frame_equal(again[out.columns], out, check_dtype=False)


def test_one_retry_keeps_the_better_of_original_and_candidate(tmp_path, tiny_scorer):
    rng = numpy_rng("test-retry-1", 0)
    images = {"s0": rng.integers(0, 256, (28, 28)).astype(np.uint8)}
    frame = pd.DataFrame({"sample_id": ["s0"], "label": [0], "class_name": ["Shirt"], "split": "train"})
    dataset = ArrayImageDataset("tiny", CLASSES, frame, np.stack(list(images.values())))
    run = tmp_path / "run"
    testing.make_tiny_spectrum(run, images, CLASSES, {"s0": 0}, levels=(0.9,), seeds=1)

    def worse(row, attempt):
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(run / "spectrum" / "black.png")
        return {"file_name": "black.png"}

    cfg = load_config(None, ["filtering.score=image", "filtering.threshold=0.999999", "filtering.retries=1"])
    out = filter_spectrum(cfg, run, scorer=tiny_scorer, dataset=dataset, regenerate=worse)
    black_sim = read_table(run / "filter" / "retries.csv")["sim_image"].iloc[0]
    kept_original = out["sim_image"].iloc[0] >= black_sim
    assert out["file_name"].iloc[0] == ("s0/lam0.90_k0.png" if kept_original else "black.png")
    assert out["attempts"].iloc[0] == 1 and not out["keep"].iloc[0]
    assert "< 1.000" in out["drop_reason"].iloc[0]


def test_retry_candidates_are_reused_only_under_the_same_key(tmp_path, tiny_scorer):
    """A changed scorer/generator/prompt context (or a deleted candidate file) is never answered
    from the old retries.csv: the candidates are made and scored again (issue 14.5)."""
    rng = numpy_rng("test-retry-key", 0)
    images = {"s0": rng.integers(0, 256, (28, 28)).astype(np.uint8)}
    frame = pd.DataFrame({"sample_id": ["s0"], "label": [0], "class_name": ["Shirt"], "split": "train"})
    dataset = ArrayImageDataset("tiny", CLASSES, frame, np.stack(list(images.values())))
    run = tmp_path / "run"
    testing.make_tiny_spectrum(run, images, CLASSES, {"s0": 0}, levels=(0.5,), seeds=1)
    calls = []

    def regenerate(row, attempt):
        calls.append(attempt)
        name = f"s0/retry_a{attempt}.png"
        Image.fromarray(numpy_rng("r", len(calls)).integers(0, 256, (28, 28)).astype(np.uint8)).save(
            run / "spectrum" / name)
        return {"file_name": name, "seed": len(calls), "prompt": f"retry {attempt}"}

    cfg = load_config(None, ["filtering.score=image", "filtering.threshold=0.999999", "filtering.retries=2"])
    filter_spectrum(cfg, run, scorer=tiny_scorer, dataset=dataset, regenerate=regenerate, retry_context="a")
    assert calls == [1, 2]
    assert read_table(run / "filter" / "retries.csv")["key"].nunique() == 2
    filter_spectrum(cfg, run, scorer=tiny_scorer, dataset=dataset, regenerate=regenerate, retry_context="a")
    assert calls == [1, 2]  # same key: reused
    filter_spectrum(cfg, run, scorer=tiny_scorer, dataset=dataset, regenerate=regenerate, retry_context="b")
    assert calls == [1, 2, 1, 2]  # another scorer / generator / prompts: made again
    (run / "spectrum" / "s0" / "retry_a2.png").unlink()
    filter_spectrum(cfg, run, scorer=tiny_scorer, dataset=dataset, regenerate=regenerate, retry_context="b")
    assert calls == [1, 2, 1, 2, 2]  # the missing candidate only


def test_a_retry_uses_another_prompt_when_there_is_one():
    from discl.prompts.builder import build_prompt, retry_prompt

    cfg = load_config(None, ["prompts.templates=['a photo of a {name}', 'a drawing of a {name}', 'a {name}']"]).prompts
    for sid in ("s0", "s1", "s2", "s3"):
        original = build_prompt(cfg, "Shirt", sid, 0)
        tries = [retry_prompt(cfg, "Shirt", sid, 0, a, original) for a in (1, 2)]
        assert original not in tries and len(set(tries)) == 2  # two attempts, the two other prompts
    one = load_config(None, []).prompts
    assert retry_prompt(one, "Shirt", "s0", 0, 1, "a photo of a Shirt") == "a photo of a Shirt"  # nothing else
    descs = {"Shirt": ["on a chair", "folded"]}
    original = build_prompt(one, "Shirt", "s0", 0, descs)
    assert retry_prompt(one, "Shirt", "s0", 0, 1, original, descs) != original
