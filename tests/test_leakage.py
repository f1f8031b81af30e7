"""The leakage check: a test image planted among the kept synthetic images is found; nothing else is."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import discl
from PIL import Image

from discl.artifacts import write_table
from discl.config import load_config, save_config
from discl.curriculum.testing import write_toy_spectrum
from discl.data import build_dataset
from discl.evaluation.leakage import THRESHOLDS, merge_topk, nearest, pixel_vectors

SMALL = ["data.test_limit=60", "data.val_per_class=3"]


def test_pixel_vectors_are_centred_unit_vectors():
    rng = np.random.default_rng(0)
    a = Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8))
    brighter = Image.fromarray(np.clip(np.asarray(a, dtype=np.int16) // 2 + 60, 0, 255).astype(np.uint8))
    v = pixel_vectors([a, brighter, Image.new("L", (28, 28), 128)])
    assert v.shape == (3, 256) and np.linalg.norm(v[0]) == pytest.approx(1.0, abs=1e-5)
    assert float(v[0] @ v[1]) > 0.99  # a contrast/brightness change of the same image stays a copy
    assert not v[2].any()  # a flat image has no direction


def test_running_topk_equals_the_full_sort():
    rng = np.random.default_rng(1)
    q, r = rng.normal(size=(7, 5)), rng.normal(size=(50, 5))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    sim, idx = nearest(q.astype(np.float32), r.astype(np.float32), k=3, block=8)
    full = q @ r.T
    assert (idx == np.argsort(-full, axis=1)[:, :3]).all()
    assert sim == pytest.approx(np.sort(full, axis=1)[:, ::-1][:, :3], abs=1e-5)
    s, i = merge_topk(np.full((1, 2), -np.inf), np.full((1, 2), -1), np.array([[0.1, 0.9, 0.5]]), 10, 2)
    assert i.tolist() == [[11, 12]] and s[0].tolist() == pytest.approx([0.9, 0.5])


def test_a_planted_test_image_is_found(tmp_path):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    cfg = load_config("configs/fmnist-lt.yaml", SMALL)
    save_config(cfg, run / "config.yaml")
    ds = build_dataset(cfg.data)
    manifest = write_toy_spectrum(run, ds, levels=(0.5,), k=1)
    planted = str(ds.split("test")["sample_id"].iloc[7])
    ds.image(planted).save(run / "spectrum" / "planted.png")
    row = {**manifest.iloc[0].to_dict(), "file_name": "planted.png", "keep": True}
    dropped = {**row, "file_name": "dropped.png", "keep": False}  # not kept: not checked
    ds.image(planted).save(run / "spectrum" / "dropped.png")
    write_table(run / "filter" / "manifest.csv", pd.concat([manifest, pd.DataFrame([row, dropped])], ignore_index=True))

    p = discl("leakage", str(run), "--k", "2")
    table = pd.read_csv(run / "leakage" / "leakage.csv")
    summary = pd.read_csv(run / "leakage" / "summary.csv")
    kept = int(manifest["keep"].sum()) + 1
    assert set(summary["synthetic_checked"]) == {kept} and "dropped.png" not in set(table["file_name"])
    dup = table[table["duplicate"]]
    assert set(dup["file_name"]) == {"planted.png"}  # the toy spectrum (train-image blends) has none
    assert set(zip(dup["space"], dup["split"], dup["real_sample_id"], dup["rank"])) == {
        ("clip", "test", planted, 1), ("pixel", "test", planted, 1)}
    assert dup["similarity"].min() > 0.999
    test = summary.set_index(["space", "split"])
    assert test.loc[("clip", "test"), "images_with_duplicate"] == 1 and test.loc[("pixel", "val"), "duplicate_pairs"] == 0
    assert test.loc[("clip", "test"), "threshold"] == THRESHOLDS["clip"]
    assert len(table) == kept * 2 * 2 * 2  # images x spaces x splits (val, test) x k
    with Image.open(run / "leakage" / "closest.png") as im:
        assert im.width > 0 and im.height > 0
    assert "2 (synthetic image, space, split) cases" in p.stdout
    from discl.evaluation.leakage import leakage_section

    assert f"| clip | test | {THRESHOLDS['clip']:g} | 1 |" in "\n".join(leakage_section(run))  # the report's section


def test_leakage_needs_a_filtered_run(tmp_path):
    p = discl("leakage", str(tmp_path), check=False)
    assert p.returncode == 1 and "config.yaml" in p.stderr
