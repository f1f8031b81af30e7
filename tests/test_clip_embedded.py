"""The shipped embedded CLIP: loads, scores sensibly, trains, and drives ``discl filter`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import discl
from PIL import Image

from discl.artifacts import read_table
from discl.data import fashion_mnist as fm
from discl.filtering.clip_train import ClipTrainRecipe, augment, multi_positive_clip_loss, train_embedded_clip
from discl.filtering.embedded_clip import (
    CONFIG_PATH,
    WEIGHTS_PATH,
    create_embedded_clip,
    load_weights,
    save_weights,
)
from discl.filtering.scorer import create_scorer
from discl.filtering.zeroshot import zero_shot_head
from discl.seeding import numpy_rng, torch_generator


@pytest.fixture(scope="module")
def embedded():
    return create_scorer("embedded", "embedded", device="cpu", batch_size=64)


@pytest.fixture(scope="module")
def clean_test():
    """3 clean official test images per class."""
    images, labels = fm.load_split("test")
    idx = np.concatenate([numpy_rng("clip-test", c).permutation(np.flatnonzero(labels == c))[:3] for c in range(10)])
    return [Image.fromarray(images[i]) for i in idx], labels[idx]


def test_shipped_files_exist_with_the_recipe():
    assert WEIGHTS_PATH.is_file() and CONFIG_PATH.is_file()
    assert WEIGHTS_PATH.stat().st_size < 12 * 2**20
    recipe = json.loads(WEIGHTS_PATH.with_suffix(".recipe.json").read_text())
    assert recipe["train_data"].startswith("fmnist prior pool")
    assert recipe["recipe"]["templates"] and recipe["steps_done"] > 0


def test_clean_images_are_closest_to_their_class_text(embedded, clean_test):
    images, labels = clean_test
    emb = embedded.encode_images(images)
    texts = embedded.encode_texts([f"a photo of a {c}" for c in fm.CLASSES])
    pred = (emb @ texts.t()).argmax(1).numpy()
    assert (pred == labels).mean() > 0.7, f"zero-shot on 30 clean images: {(pred == labels).mean():.2f}"
    head = zero_shot_head(embedded, fm.CLASSES)
    assert ((emb @ head.t()).argmax(1).numpy() == labels).mean() > 0.7
    sims = (emb @ texts.t()).numpy()
    own = sims[np.arange(len(labels)), labels]
    other = (sims.sum(1) - own) / 9
    assert (own > other).mean() > 0.9


def test_image_image_similarity_is_higher_for_the_same_class(embedded, clean_test):
    images, labels = clean_test
    emb = embedded.encode_images(images)
    sim = (emb @ emb.t()).numpy()
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    diff = labels[:, None] != labels[None, :]
    assert sim[same].mean() > sim[diff].mean() + 0.1


def test_uint8_path_equals_pil_path(embedded, clean_test):
    images, _ = clean_test
    x = torch.stack([torch.from_numpy(np.array(im)).unsqueeze(0) for im in images[:8]])
    torch.testing.assert_close(embedded.encode_uint8(x), embedded.encode_images(images[:8]), atol=1e-5, rtol=1e-4)


def test_augment_is_seeded_and_stays_in_range():
    x = torch.rand(8, 1, 28, 28)
    a = augment(x, torch_generator("t", 0))
    b = augment(x, torch_generator("t", 0))
    c = augment(x, torch_generator("t", 1))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1


def test_multi_positive_loss_prefers_matching_classes():
    g = torch.Generator().manual_seed(0)
    txt = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=-1)
    labels = torch.tensor([0, 1, 2, 0])
    good = txt[labels]
    bad = txt[(labels + 1) % 3]
    scale = torch.tensor(10.0)
    assert multi_positive_clip_loss(good, txt, labels, torch.arange(3), scale) < \
        multi_positive_clip_loss(bad, txt, labels, torch.arange(3), scale)


def test_training_steps_run_and_weights_round_trip(tmp_path):
    images, labels = fm.load_split("test")
    x = torch.from_numpy(images[:32].copy()).unsqueeze(1)
    model, rows = train_embedded_clip(ClipTrainRecipe(steps=2, batch_size=16, warmup=1), x, labels[:32], fm.CLASSES)
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
    path = tmp_path / "w.safetensors"
    save_weights(model, path)
    loaded, tok, cfg = create_embedded_clip(path)
    again = load_weights(create_embedded_clip(path)[0], path)
    with torch.no_grad():
        t = tok(["a photo of a Bag"])
        torch.testing.assert_close(loaded.encode_text(t), again.encode_text(t))


def test_discl_filter_cli_with_the_default_embedded_backend(tmp_path):
    from discl.data.tasks import build_task

    task = build_task("fmnist-lt", seed=0, test_limit=10)
    train = task.split("train")
    run = tmp_path / "run"
    spectrum = run / "spectrum"
    rows = []
    for sid in train.groupby("label").head(1)["sample_id"][:3]:
        real = np.asarray(task.image(sid))
        label = int(task.frame.at[sid, "label"])
        for lam in (0.0, 0.9):
            rng = numpy_rng("cli-spectrum", sid, lam)
            img = np.clip(real + rng.normal(0, 60 * (1 - lam), real.shape), 0, 255).astype(np.uint8)
            (spectrum / sid).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(spectrum / sid / f"{lam}.png")
            rows.append({"file_name": f"{sid}/{lam}.png", "sample_id": sid, "label": label,
                         "class_name": fm.CLASSES[label], "lam": lam, "strength": 1 - lam, "seed": 1, "k": 0,
                         "prompt": f"a 8k real photo: a {fm.CLASSES[label]}", "model": "test", "steps": 10,
                         "denoise_steps": 5, "guidance_scale": 10.0})
    pd.DataFrame(rows).to_csv(spectrum / "metadata.csv", index=False)
    p = discl("filter", "configs/fmnist-lt.yaml", f"run_dir={run}", "data.test_limit=10")
    assert "kept" in p.stdout and "encoded 6 new images" in p.stdout
    manifest = read_table(run / "filter" / "manifest.csv")
    assert len(manifest) == 6 and manifest["sim_image"].between(-1, 1).all()
    # the λ=0.9 variant is closer to its real source than the noisier λ=0 one
    by = manifest.pivot(index="sample_id", columns="lam", values="sim_image")
    assert (by[0.9] > by[0.0]).all()
    p2 = discl("filter", "configs/fmnist-lt.yaml", f"run_dir={run}", "data.test_limit=10", "filtering.threshold=0.5")
    assert "encoded 0 new images" in p2.stdout


def test_zero_shot_evaluation_command_path():
    from discl.filtering.zeroshot import evaluate_embedded

    res = evaluate_embedded(limit=100, batch_size=50)
    clean, styled = res["sets"]["fmnist_test_clean"], res["sets"]["fmnist_lt_test_styled"]
    assert clean["n"] == styled["n"] == 100
    assert clean["accuracy"] > 0.7 and styled["accuracy"] > 0.5
    assert clean["sim_own_class_quantiles"]["0.5"] > clean["sim_other_class_mean"]
