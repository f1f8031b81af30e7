"""The embedded diffusion prior: training, save/load, SDEdit timesteps, the shipped weights."""

import dataclasses

import numpy as np
import pytest
import torch
from generation_fixtures import ForwardCounter, gray_image, train_tiny_prior

from discl.errors import ModelNotFoundError
from discl.generation.base import GenerationBatch, create_generator
from discl.generation.config import GenerationConfig
from discl.generation.prior import (
    ASSET_DIR,
    img2img_timesteps,
    load_prior,
    load_recipe,
    sdedit,
    unet_config,
)


def test_shipped_recipe_loads_and_keeps_a_null_class():
    from discl.generation.prior import class_embedding_rows

    recipe = load_recipe()
    rows = unet_config(recipe)["num_class_embeds"]
    assert rows == class_embedding_rows(recipe.num_classes, recipe.styles) == recipe.num_classes * 4 + 1
    shipped = load_prior()
    assert shipped.null_class == rows - 1 and shipped.condition_style == recipe.condition_style == "clean"
    assert 0 < recipe.p_uncond < 1


def test_recipe_errors_name_the_key(tmp_path):
    from discl.configtools import ConfigError

    with pytest.raises(ConfigError, match="p_uncond"):
        load_recipe(overrides={"p_uncond": 0.0})
    with pytest.raises(ConfigError, match="prior.nope"):
        load_recipe(overrides={"nope": 1})


def test_training_steps_save_and_reload_identically(tmp_path):
    folder = train_tiny_prior(tmp_path / "p")
    weights = next(folder.glob("*.safetensors"))
    assert weights.stat().st_mode & 0o044, "the weights are readable by others, as any artifact (not mkstemp's 0600)"
    a, b = load_prior(folder), load_prior(folder)
    for (ka, va), (kb, vb) in zip(a.unet.state_dict().items(), b.unet.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    # training is deterministic for a recipe
    again = load_prior(train_tiny_prior(tmp_path / "q"))
    assert all(torch.equal(x, y) for x, y in zip(a.unet.state_dict().values(), again.unet.state_dict().values()))


def test_missing_prior_says_how_to_get_it(tmp_path):
    with pytest.raises(ModelNotFoundError, match="discl prior train"):
        load_prior(tmp_path)


@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("strength", [1.0, 0.9, 0.7, 0.5, 0.3, 0.1, 1 - 0.9, 0.0])
def test_img2img_timesteps_match_diffusers(steps, strength):
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    sched = DDIMScheduler()
    ts, n = img2img_timesteps(sched, steps, strength)
    assert len(ts) == n == int(round(steps * strength, 6))
    # the stock pipeline's get_timesteps on the same (rounded) strength
    pipe = StableDiffusionImg2ImgPipeline.__new__(StableDiffusionImg2ImgPipeline)
    pipe.scheduler = DDIMScheduler()
    pipe.scheduler.set_timesteps(steps)
    ref, _ = StableDiffusionImg2ImgPipeline.get_timesteps(pipe, steps, round(strength, 6), "cpu")
    assert torch.equal(ts, ref)


def test_sdedit_denoiser_calls_and_cfg_batch(tmp_path):
    prior = load_prior(train_tiny_prior(tmp_path / "p"))
    r = prior.resolution
    src = torch.zeros(3, 1, r, r)
    noise = torch.randn(3, 1, r, r, generator=torch.Generator().manual_seed(0))
    counter = ForwardCounter(prior.unet)
    sdedit(prior, src, torch.tensor([0, 1, 2]), noise, steps=20, strength=0.3, guidance_scale=3.0)
    assert (counter.calls, counter.rows) == (6, 6 * 6)  # int(20 * 0.3) steps, 2x3 rows under CFG
    counter.calls = counter.rows = 0
    out = sdedit(prior, src, torch.tensor([0, 1, 2]), noise, steps=20, strength=0.0, guidance_scale=3.0)
    assert counter.calls == 0 and torch.equal(out, src)  # lambda = 1 - strength = 1: the source itself
    counter.calls = counter.rows = 0
    sdedit(prior, src, torch.tensor([0, 1, 2]), noise, steps=20, strength=0.5, guidance_scale=1.0)
    assert (counter.calls, counter.rows) == (10, 30)  # no CFG at scale 1: one branch


@pytest.fixture(scope="module")
def shipped():
    assert (ASSET_DIR / "prior.safetensors").is_file(), "the package must ship the prior's weights"
    return create_generator(GenerationConfig(backend="embedded", steps=50, guidance_scale=2.0))


def test_shipped_prior_spectrum_moves_from_prototype_to_source(shipped):
    """Mean distance to the source shrinks as lambda grows; lambda near 1 is close to the source."""
    from discl.data.tasks import build_task

    ds = build_task("fmnist-lt", seed=0, test_limit=10)
    ids = list(ds.split("train").groupby("label").head(1)["sample_id"])[:6]
    labels = [int(ds.frame.at[s, "label"]) for s in ids]
    src = np.stack([np.asarray(ds.image(s), dtype=np.float32) for s in ids])
    dists = []
    for lam in (0.0, 0.5, 0.9):
        imgs = shipped.generate(GenerationBatch(
            sources=[ds.image(s) for s in ids], source_keys=ids, labels=labels, prompts=["p"] * len(ids),
            seeds=list(range(len(ids))), strength=round(1 - lam, 6), steps=50, guidance_scale=2.0))
        assert all(im.size == (28, 28) for im in imgs)
        out = np.stack([np.asarray(im, dtype=np.float32) for im in imgs])
        dists.append(float(np.abs(out - src).mean()))
    assert dists[0] > dists[1] > dists[2]
    assert dists[2] < 20  # lambda 0.9: a few gray levels from the source on average


def test_shipped_prior_prototypes_have_clean_background(shipped):
    """lambda = 0 looks like the clean prior pool (black background), not the textured task image."""
    imgs = shipped.generate(GenerationBatch(
        sources=[gray_image(28, i) for i in range(4)], source_keys=[f"g{i}" for i in range(4)], labels=[0, 1, 7, 9],
        prompts=["p"] * 4, seeds=[1, 2, 3, 4], strength=1.0, steps=50, guidance_scale=2.0, text_to_image=True))
    corners = np.stack([np.asarray(im)[:3, :3] for im in imgs])
    assert corners.mean() < 30


@pytest.mark.slow
def test_shipped_prior_quality_bar():
    """The documented bar: samples at the demo's guidance are classified at >= 90% of real accuracy,
    and guidance does not hurt (minutes on a CPU)."""
    from discl.generation.prior_eval import evaluate_prior

    res = evaluate_prior(None, [1.0, 3.0], per_class=20, steps=50, classifier_epochs=2)
    assert res["samples"]["3.0"]["ratio_to_real"] >= 0.9
    assert res["samples"]["3.0"]["accuracy"] >= res["samples"]["1.0"]["accuracy"] - 0.02


def _tiny_recipe(**kw):
    base = {"resolution": 8, "block_out_channels": [8, 16], "attention_at_lowest": False, "steps": 2, "batch_size": 8,
            "warmup_steps": 1, "threads": 1, "low_res_steps": 0, "checkpoint_every": 0, "init_from": "",
            "styles": ["clean"], "p_any_style": 0.0, "condition_style": "clean", "class_embedding_lr_scale": 1.0}
    return load_recipe(overrides={**base, **kw})


def _tiny_data():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (32, 1, 28, 28), generator=g, dtype=torch.uint8), torch.arange(32) % 10


def test_progressive_resolution_and_checkpoints(tmp_path):
    import json

    from discl.generation.prior import train_prior

    x, y = _tiny_data()
    a = train_prior(_tiny_recipe(resolution=16, low_res_steps=2, low_resolution=8, steps=3, checkpoint_every=1), x, y,
                    out_dir=tmp_path / "a", progress=False)
    b = train_prior(_tiny_recipe(resolution=16, steps=3), x, y, progress=False)
    # the low-resolution phase changes the weights, and the model still samples at 16 px
    assert any(not torch.equal(p, q) for p, q in zip(a.unet.state_dict().values(), b.unet.state_dict().values()))
    assert load_prior(tmp_path / "a").resolution == 16
    meta = json.loads((tmp_path / "a" / "checkpoint" / "prior_config.json").read_text())
    assert meta["steps_done"] == 2  # the last checkpoint before the final save
    from discl.configtools import ConfigError

    with pytest.raises(ConfigError, match="low_res_steps"):
        _tiny_recipe(low_res_steps=2)
    with pytest.raises(ConfigError, match="low_resolution"):
        _tiny_recipe(low_res_steps=1, low_resolution=12)


def test_init_from_warm_starts_the_unet(tmp_path):
    import json

    from discl.generation.prior import train_prior

    x, y = _tiny_data()
    a = train_prior(_tiny_recipe(), x, y, out_dir=tmp_path / "a", progress=False)
    # lr 0: the fine-tune keeps the initial weights, which must be a's, also at another resolution
    b = train_prior(_tiny_recipe(resolution=12, lr=0.0, init_from=str(tmp_path / "a")), x, y, out_dir=tmp_path / "b",
                    progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.unet.state_dict().values(), b.unet.state_dict().values()))
    meta = json.loads((tmp_path / "b" / "prior_config.json").read_text())
    assert meta["init_from"] == str(tmp_path / "a") and len(meta["init_sha256"]) == 64
    with pytest.raises(RuntimeError):  # another architecture does not load
        train_prior(_tiny_recipe(block_out_channels=[8, 8], init_from=str(tmp_path / "a")), x, y, progress=False)


def test_constant_lr_checkpoint_equals_a_shorter_recipe(tmp_path):
    """With lr_schedule constant the EMA weights after N steps do not depend on ``steps``."""
    from discl.generation.prior import train_prior

    x, y = _tiny_data()
    train_prior(_tiny_recipe(steps=4, checkpoint_every=3, lr_schedule="constant"), x, y, out_dir=tmp_path / "long",
                progress=False)
    short = train_prior(_tiny_recipe(steps=3, lr_schedule="constant"), x, y, progress=False)
    ckpt = load_prior(tmp_path / "long" / "checkpoint")
    assert all(torch.equal(p, q) for p, q in zip(ckpt.unet.state_dict().values(), short.unet.state_dict().values()))
    cosine = train_prior(_tiny_recipe(steps=3, lr_schedule="cosine", warmup_steps=1), x, y, progress=False)
    assert any(not torch.equal(p, q) for p, q in zip(cosine.unet.state_dict().values(), short.unet.state_dict().values()))


def test_resumed_training_equals_one_uninterrupted_run(tmp_path):
    """A long run in pieces: stop after a checkpoint, resume, and get the bytes of one run."""
    from discl.generation.prior import TRAIN_STATE_NAME, train_prior

    x, y = _tiny_data()
    whole = train_prior(_tiny_recipe(steps=5, lr_schedule="constant"), x, y, progress=False)
    train_prior(_tiny_recipe(steps=3, checkpoint_every=2, lr_schedule="constant"), x, y, out_dir=tmp_path / "p",
                progress=False)
    assert (tmp_path / "p" / "checkpoint" / TRAIN_STATE_NAME).is_file()
    resumed = train_prior(_tiny_recipe(steps=5, checkpoint_every=2, lr_schedule="constant"), x, y,
                          out_dir=tmp_path / "p", progress=False, resume=True)
    assert all(torch.equal(p, q) for p, q in zip(whole.unet.state_dict().values(), resumed.unet.state_dict().values()))
    with pytest.raises(ValueError, match="another recipe"):
        train_prior(_tiny_recipe(steps=5, lr=1e-2, checkpoint_every=2, lr_schedule="constant"), x, y,
                    out_dir=tmp_path / "p", progress=False, resume=True)


def test_style_conditioned_prior_rows_warm_start_and_condition(tmp_path):
    """Three styles: a class embedding row per (style, class), an "any" row per class, one null row;
    a warm start from a one-style prior copies each class's row into every slot."""
    from discl.configtools import ConfigError
    from discl.generation.prior import class_embedding_rows, style_slots, train_prior

    x, y = _tiny_data()
    styles = ["clean", "acquisition", "low_quality"]
    one = train_prior(_tiny_recipe(), x, y, out_dir=tmp_path / "one", progress=False)
    assert class_embedding_rows(10, ["clean"]) == 11 and one.null_class == 10
    three = _tiny_recipe(styles=styles, p_any_style=0.3, condition_style="acquisition", lr=0.0,
                         init_from=str(tmp_path / "one"))
    assert style_slots(styles) == {"clean": 0, "acquisition": 1, "low_quality": 2, "any": 3}
    p = train_prior(three, x, y, out_dir=tmp_path / "three", progress=False,
                    style_index=torch.arange(len(y)) % 3)
    w_one, w = one.unet.class_embedding.weight, p.unet.class_embedding.weight
    assert w.shape[0] == 41 and p.null_class == 40
    for slot in range(4):
        assert torch.equal(w[slot * 10:(slot + 1) * 10], w_one[:10])
    assert torch.equal(w[40], w_one[10])
    loaded = load_prior(tmp_path / "three")
    assert loaded.styles == tuple(styles) and loaded.condition_style == "acquisition"
    assert loaded.condition(torch.tensor([0, 9])).tolist() == [10, 19]
    assert load_prior(tmp_path / "three", condition_style="any").condition(torch.tensor([2])).tolist() == [32]
    # guidance's other branch: the null row, or the class in a negative style (bench_analog --negative-style)
    assert loaded.negative(torch.tensor([0, 9])).tolist() == [40, 40]
    neg = dataclasses.replace(loaded, negative_style="low_quality")
    assert neg.negative(torch.tensor([0, 9])).tolist() == [20, 29]
    with pytest.raises(ValueError, match="negative_style"):
        dataclasses.replace(loaded, negative_style="sepia").negative(torch.tensor([0]))
    with pytest.raises(ValueError, match="condition_style"):
        load_prior(tmp_path / "three", condition_style="sepia")
    with pytest.raises(ConfigError, match="p_any_style"):
        _tiny_recipe(p_any_style=0.3)  # one style: no "any" slot to train
    with pytest.raises(ConfigError, match="styles"):
        _tiny_recipe(styles=["clean", "clean"])


def test_warm_start_maps_style_rows_by_name_and_resume_refuses_a_later_checkpoint(tmp_path):
    from discl.configtools import ConfigError
    from discl.generation.prior import train_prior

    x, y = _tiny_data()
    three = ["clean", "acquisition", "low_quality"]
    a = train_prior(_tiny_recipe(styles=three, p_any_style=0.3, class_embedding_lr_scale=50.0, lr=1e-2, steps=3), x, y,
                    out_dir=tmp_path / "a", progress=False, style_index=torch.arange(len(y)) % 3)
    wa = a.unet.class_embedding.weight
    # reordered styles: each slot starts from the init's rows of the same name
    b = train_prior(_tiny_recipe(styles=["low_quality", "clean", "acquisition"], p_any_style=0.3, lr=0.0,
                                 init_from=str(tmp_path / "a")), x, y, progress=False)
    wb = b.unet.class_embedding.weight
    assert torch.equal(wb[0:10], wa[20:30]) and torch.equal(wb[10:20], wa[0:10]) and torch.equal(wb[30:40], wa[30:40])
    # a style the init does not know starts from its "any" rows; a one-style recipe of a known style from that style
    c = train_prior(_tiny_recipe(styles=["acquisition"], condition_style="acquisition", lr=0.0, init_from=str(tmp_path / "a")), x, y, progress=False)
    assert torch.equal(c.unet.class_embedding.weight[:10], wa[10:20]) and torch.equal(c.unet.class_embedding.weight[10], wa[40])
    with pytest.raises(ConfigError, match="data_seed"):
        _tiny_recipe(data_seed=1)
    train_prior(_tiny_recipe(steps=4, checkpoint_every=3, lr_schedule="constant"), x, y, out_dir=tmp_path / "r",
                progress=False)
    with pytest.raises(ValueError, match="past this recipe"):
        train_prior(_tiny_recipe(steps=2, checkpoint_every=3, lr_schedule="constant"), x, y, out_dir=tmp_path / "r",
                    progress=False, resume=True)


def test_a_finished_piece_extends_from_its_last_step(tmp_path):
    from discl.generation.prior import TRAIN_STATE_NAME, train_prior

    x, y = _tiny_data()
    train_prior(_tiny_recipe(steps=3, checkpoint_every=2, lr_schedule="constant"), x, y, out_dir=tmp_path / "p",
                progress=False)
    assert torch.load(tmp_path / "p" / "checkpoint" / TRAIN_STATE_NAME, weights_only=True)["step"] == 3
    longer = train_prior(_tiny_recipe(steps=5, checkpoint_every=2, lr_schedule="constant"), x, y,
                         out_dir=tmp_path / "p", progress=False, resume=True)
    whole = train_prior(_tiny_recipe(steps=5, lr_schedule="constant"), x, y, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(whole.unet.state_dict().values(), longer.unet.state_dict().values()))
    with pytest.raises(ValueError, match="lr: 0.0003 -> 0.01"):
        train_prior(_tiny_recipe(steps=6, lr=1e-2, checkpoint_every=2, lr_schedule="constant"), x, y,
                    out_dir=tmp_path / "p", progress=False, resume=True)


def test_prior_spectrum_checks_steps_per_level_as_the_config_does(tmp_path):
    """``discl prior spectrum --steps-per-level`` is read as ``generation.steps_per_level``: a level the
    sheet does not draw is refused before any sampling."""
    from discl.cli import main

    with pytest.raises(SystemExit, match=r"--steps-per-level: λ 0\.6 is not one of --levels"):
        main(["prior", "spectrum", "--steps-per-level", "{0.6: 100}", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match=r"--steps-per-level: .*expected an integer"):
        main(["prior", "spectrum", "--steps-per-level", "{0.5: many}", "--out", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()
