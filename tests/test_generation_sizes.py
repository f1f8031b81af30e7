"""Mixed aspect ratios, global batch planning across shards, and step counts that match diffusers'."""

import json
import logging
import math
import uuid
from collections import Counter
from functools import partial

import numpy as np
import pandas as pd
import pytest
from generation_fixtures import (
    ForwardCounter,
    build_tiny_sd,
    build_tiny_sdxl_refiner,
    tiny_dataset,
    train_tiny_prior,
    write_hard_csv,
    write_mixed_size_folder,
)
from PIL import Image

from discl.config import RunConfig
from discl.data.config import DataConfig
from discl.generation import runner
from discl.generation.base import GenerationBatch, create_generator, planning_size
from discl.generation.config import GenerationConfig
from discl.generation.planning import (
    batches,
    denoise_steps,
    generation_size,
    plan_jobs,
    shard_batches,
    strength_for,
)
from discl.generation.runner import (
    batch_key,
    finish_spectrum,
    generate_spectrum,
    plan_batches,
    plan_spectrum,
    read_hard,
    source_sizes,
)

DEFAULT_LEVELS = GenerationConfig().levels


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipes")
    return {"sd": build_tiny_sd(root / "sd"), "sdxl-refiner": build_tiny_sdxl_refiner(root / "xl"),
            "embedded": train_tiny_prior(root / "prior")}


def _mixed_dataset(tmp_path):
    from discl.data import build_dataset

    root = write_mixed_size_folder(tmp_path / "data")
    return build_dataset(DataConfig(task="folder", root=str(root), val_fraction=0.25)), root


def _gen_cfg(kind, model, **kw):
    g = dict(backend="embedded" if kind == "embedded" else "diffusers", model=str(model), levels=[0.0, 0.5],
             seeds_per_level=2, steps=4, guidance_scale=3.0, batch_size=4)
    if kind != "embedded":
        g["resolution"] = 32
    g.update(kw)
    return GenerationConfig(**g)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted((folder / "images").rglob("*.png"))}


# -- issue 14 item 1: mixed aspect ratios at batch size > 1 ------------------------------------


@pytest.mark.parametrize("kind", ["sd", "sdxl-refiner", "embedded"])
def test_mixed_aspect_ratios_generate_at_batch_size_above_one(tmp_path, tiny_pipelines, kind):
    ds, _ = _mixed_dataset(tmp_path)
    assert {ds.image(s).size for s in ds.frame["sample_id"]} == {(40, 30), (30, 40)}
    gen = create_generator(_gen_cfg(kind, tiny_pipelines[kind]))
    # the backend itself: one batch mixing both sizes, images back in the batch's order
    ids = list(ds.frame["sample_id"][:4])
    srcs = [ds.image(s) for s in ids]
    batch = GenerationBatch(sources=srcs, source_keys=ids, labels=[0] * 4, prompts=["a coat"] * 4, seeds=[1, 2, 3, 4],
                            strength=0.5, steps=4, guidance_scale=3.0)
    mixed = gen.generate(batch)

    def expected(size):  # the embedded prior returns the source's size, diffusers its generation size
        return size if kind == "embedded" else gen.generation_size(*size)

    assert [im.size for im in mixed] == [expected(im.size) for im in srcs]
    assert {im.size for im in mixed} == {expected((40, 30)), expected((30, 40))} and len({im.size for im in mixed}) == 2
    # each size's images are exactly those of a batch of that size alone, in the batch's order
    assert [s.size for s in srcs] == [(40, 30), (40, 30), (30, 40), (30, 40)]
    alone = gen.generate(batch.subset([0, 1])) + gen.generate(batch.subset([2, 3]))
    assert [np.asarray(a).tolist() for a in alone] == [np.asarray(m).tolist() for m in mixed]

    # the runner: a folder of mixed sizes at batch size 4; every image keeps its source's size and
    # the batches are bucketed by aspect ratio (two sizes x two levels -> 4 batches of 4 images)
    run = tmp_path / "run"
    write_hard_csv(run, ds)
    cfg = RunConfig(name="t", run_dir=str(run), generation=_gen_cfg(kind, tiny_pipelines[kind]))
    counter = ForwardCounter(gen.denoiser)
    generate_spectrum(cfg, run, dataset=ds, generator=gen, progress=False)
    meta = pd.read_csv(run / "spectrum/metadata.csv")
    assert len(meta) == 8 * 2 * 2
    for rec in meta.itertuples():
        with Image.open(run / "spectrum" / rec.file_name) as im:
            assert im.size == expected(ds.image(rec.sample_id).size)
    cfg_rows = 2  # both CFG branches
    assert counter.rows == cfg_rows * 16 * (4 + 2)
    assert counter.calls == 2 * (4 + 2) * 2  # 2 aspect buckets per level, full batches of 4


def test_batches_bucket_by_aspect_ratio_and_source_sizes_read_headers(tmp_path):
    ds, _ = _mixed_dataset(tmp_path)
    sizes = source_sizes(ds, ds.frame["sample_id"])
    assert sizes == {s: ds.image(s).size for s in ds.frame["sample_id"]}
    jobs = plan_jobs(ds.frame[["sample_id", "label", "class_name"]], [0.0, 0.3], 3, base_seed=0, steps=10)
    planned = batches(jobs, 5, sizes)
    for b in planned:
        assert len({(sizes[s][0] / sizes[s][1]) for s in b["sample_id"]}) == 1 and len(b) <= 5
        assert b["denoise_steps"].nunique() == 1
    assert sorted(pd.concat(planned)["job"]) == list(jobs["job"])
    # 40x30 and 400x300 share a bucket (same generation size)
    big = {s: (10 * w, 10 * h) if i % 2 else (w, h) for i, (s, (w, h)) in enumerate(sizes.items())}
    assert [list(b["job"]) for b in batches(jobs, 5, big)] == [list(b["job"]) for b in planned]


# -- issue 11: sharded generation gives the same bytes whatever the number of processes ----------


def test_shards_take_whole_batches_of_the_global_plan(tmp_path):
    ds, _ = _mixed_dataset(tmp_path)
    jobs = plan_jobs(ds.frame[["sample_id", "label", "class_name"]], [0.0, 0.3, 0.9], 3, base_seed=0, steps=10)
    sizes = source_sizes(ds, ds.frame["sample_id"])
    planned = [tuple(b["job"]) for b in batches(jobs, 4, sizes)]
    for n in (1, 2, 3, 5):
        parts = [[tuple(b["job"]) for b in shard_batches(batches(jobs, 4, sizes), i, n)] for i in range(n)]
        assert sorted(sum(parts, [])) == sorted(planned)  # the same batches, whole, each in one shard


@pytest.mark.parametrize("kind", ["sdxl-refiner", "embedded"])
def test_two_shards_give_the_bytes_of_one_process(tmp_path, tiny_pipelines, kind):
    ds, _ = _mixed_dataset(tmp_path)
    out = {}
    for n in (1, 2):
        run = tmp_path / f"n{n}"
        write_hard_csv(run, ds)
        cfg = RunConfig(name="t", run_dir=str(run), generation=_gen_cfg(kind, tiny_pipelines[kind], batch_size=3))
        gen = create_generator(cfg.generation)
        seen = []
        for i in range(n):
            counter = ForwardCounter(gen.denoiser)
            rows = generate_spectrum(cfg, run, shard=(i, n), dataset=ds, generator=gen, progress=False)
            counter.close()
            seen.append(set(rows["job"]))
        assert set.union(*seen) == set(range(32)) and sum(map(len, seen)) == 32
        out[n] = _files(run / "spectrum")
        assert len(out[n]) == 32
    assert out[1] == out[2]


# -- issue 14 item 7: the manifest's step counts are what diffusers runs ---------------------------


@pytest.mark.parametrize("kind", ["sd", "sdxl-refiner"])
def test_denoise_steps_match_diffusers_get_timesteps(tiny_pipelines, kind):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(tiny_pipelines[kind]))
    for steps in range(1, 201):
        for lam in DEFAULT_LEVELS:
            pipe.scheduler.set_timesteps(steps)
            timesteps, n = pipe.get_timesteps(steps, strength_for(lam), "cpu")
            assert denoise_steps(steps, lam) == len(timesteps) == n, (steps, lam)
    assert denoise_steps(90, 0.3) == 62  # 90 * 0.7 = 62.99..., truncated as diffusers does


@pytest.mark.parametrize("kind", ["sd", "embedded"])
def test_unet_calls_equal_the_manifest_at_a_truncation_boundary(tmp_path, tiny_pipelines, kind):
    """T = 90, lambda = 0.3: the manifest said 63 steps while diffusers ran 62."""
    gen = create_generator(_gen_cfg(kind, tiny_pipelines[kind], steps=90, guidance_scale=1.0))
    counter = ForwardCounter(gen.denoiser)
    src = Image.fromarray(np.zeros((32, 32), dtype=np.uint8))
    gen.generate(GenerationBatch(sources=[src], source_keys=["a"], labels=[0], prompts=["a coat"], seeds=[0],
                                 strength=strength_for(0.3), steps=90, guidance_scale=1.0))
    assert counter.calls == denoise_steps(90, 0.3) == 62


# -- issue 14 item 6: the embedded prior keeps a non-square source's aspect ratio ----------------


def test_embedded_keeps_the_aspect_ratio_of_non_square_sources(tiny_pipelines):
    gen = create_generator(_gen_cfg("embedded", tiny_pipelines["embedded"], steps=8, guidance_scale=1.0))
    r = gen.prior.resolution
    assert gen.generation_size(28, 28) == (r, r)
    w, h = gen.generation_size(40, 20)
    assert w == r and abs(h / w - 0.5) <= gen.multiple / r and h % gen.multiple == 0
    # a flat grey 40x20 source through zero denoising steps (T = 8, lambda = 0.9) is only resized
    # down and back: no letterbox bands, no stretch (the old path returned black top and bottom rows)
    src = Image.fromarray(np.full((20, 40), 200, dtype=np.uint8), mode="L")
    (out,) = gen.generate(GenerationBatch(sources=[src], source_keys=["a"], labels=[0], prompts=["a coat"], seeds=[0],
                                          strength=strength_for(0.9), steps=8, guidance_scale=1.0))
    assert out.size == (40, 20)
    assert np.abs(np.asarray(out, dtype=int) - 200).max() <= 1
    # with denoising: content fills the whole frame at the source's aspect ratio
    (out,) = gen.generate(GenerationBatch(sources=[src], source_keys=["a"], labels=[0], prompts=["a coat"], seeds=[0],
                                          strength=strength_for(0.5), steps=8, guidance_scale=1.0))
    assert out.size == (40, 20)


# -- issue 14 item 9: pipelines other than SD/SDXL use their own prompt encoding ------------------


def test_sd3_uses_its_own_prompt_encoding(tmp_path):
    from generation_fixtures import build_tiny_sd3

    from discl.generation.diffusers_backend import DiffusersGenerator

    def make(**kw):
        pipe = build_tiny_sd3(tmp_path / "sd3")
        pipe.set_progress_bar_config(disable=True)
        return DiffusersGenerator(GenerationConfig(backend="diffusers", model="tiny-sd3", resolution=32, steps=6,
                                                   guidance_scale=3.0, negative_prompt="blurry", **kw), pipe=pipe)

    gen = make()
    assert gen.family == "other"
    src = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    counter = ForwardCounter(gen.denoiser)
    outs = {}
    for lam in (0.0, 0.5):
        counter.calls = 0
        batch = GenerationBatch(sources=[src, src], source_keys=["a", "a"], labels=[0, 0], prompts=["a coat", "a shirt"],
                                seeds=[1, 2], strength=strength_for(lam), steps=6, guidance_scale=3.0,
                                negative_prompt="blurry")
        images = gen.generate(batch)
        # at the planned size, not the pipeline's default square (sample_size x VAE scale: 16 x 16 here)
        assert [im.size for im in images] == [gen.generation_size(40, 30)] * 2 == [(32, 24)] * 2
        outs[lam] = [im.tobytes() for im in images]
        assert counter.calls == denoise_steps(6, lam) == gen.evaluations_per_image(6, strength_for(lam))
        assert outs[lam][0] != outs[lam][1]
    assert [im.tobytes() for im in make().generate(batch)] == outs[0.5]  # deterministic
    # scheduler_kwargs without a name apply to the pipeline's own scheduler class
    other = make(scheduler_kwargs={"shift": 3.0})
    assert type(other.pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert other.pipe.scheduler.config.shift == 3.0
    assert [im.tobytes() for im in other.generate(batch)] != outs[0.5]


# -- batches grouped by the generation size the backend uses (photo folders: many sizes, few ratios) --

SIZE_64_8 = partial(generation_size, longest=64, multiple=8)
PHOTO_SIZES = [(500, 375), (500, 374), (500, 333), (500, 334), (375, 500), (333, 500), (640, 480), (500, 500),
               (1024, 768), (1920, 1080), (2048, 1536), (1, 1), (1, 999), (999, 1), (7, 3), (3, 7)]


def _hard_for(ids):
    return pd.DataFrame({"sample_id": list(ids), "label": 0, "class_name": "a"})


def test_batches_group_by_generation_size_not_exact_ratio():
    sizes = {"a": (500, 375), "b": (500, 374), "c": (640, 480), "d": (375, 500)}
    assert {s: SIZE_64_8(*wh) for s, wh in sizes.items()} == {"a": (64, 48), "b": (64, 48), "c": (64, 48),
                                                              "d": (48, 64)}
    jobs = plan_jobs(_hard_for(sizes), [0.0, 0.5], 2, base_seed=0, steps=10)
    by_size = batches(jobs, 8, sizes, SIZE_64_8)
    assert sorted(pd.concat(by_size)["job"]) == list(jobs["job"])
    # per (lambda, k): the three 4:3-ish sources in one batch, the portrait one in its own
    assert sorted(tuple(sorted(b["sample_id"])) for b in by_size) == [("a", "b", "c")] * 4 + [("d",)] * 4
    # exact ratios kept 500x374 (250:187) apart from 4:3: 3 batches per (lambda, k) instead of 2
    assert len(by_size) == 8 < len(batches(jobs, 8, sizes)) == 12


def test_every_batch_holds_one_generation_size_and_is_as_full_as_its_group_allows():
    rng = np.random.default_rng(0)
    ids = [f"s{i:03d}" for i in range(300)]
    sizes = {s: PHOTO_SIZES[rng.integers(8)] if rng.random() < 0.7 else tuple(int(v) for v in rng.integers(60, 900, 2))
             for s in ids}
    jobs = plan_jobs(_hard_for(ids), [0.0, 0.5], 2, base_seed=0, steps=10)
    planned = batches(jobs, 16, sizes, SIZE_64_8)
    assert sorted(pd.concat(planned)["job"]) == list(jobs["job"])
    per_group = Counter()
    for b in planned:
        (size,) = {SIZE_64_8(*sizes[s]) for s in b["sample_id"]}  # one generation size per batch
        assert b["denoise_steps"].nunique() == b["lam"].nunique() == b["k"].nunique() == 1 and 1 <= len(b) <= 16
        assert list(b["job"]) == sorted(b["job"])  # plan order within a group
        per_group[(b["lam"].iloc[0], b["k"].iloc[0], size)] += len(b)
    # at most one partial batch per (lambda, k, generation size): as few batches as the sizes allow
    assert len(planned) == sum(math.ceil(n / 16) for n in per_group.values())
    assert len(planned) < len(batches(jobs, 16, sizes))


@pytest.mark.parametrize("kind", ["embedded", "shipped-prior", "sd"])
def test_square_sources_keep_their_batches_and_batch_keys(tmp_path, tiny_pipelines, kind):
    """The embedded demo (all sources 28x28) plans the batches, and so the batch keys, that exact-ratio
    grouping planned: a run made before generation-size grouping is reused, not regenerated."""
    ds = tiny_dataset(10)
    run = tmp_path / "run"
    write_hard_csv(run, ds)
    model = {"shipped-prior": "embedded"}.get(kind) or str(tiny_pipelines[kind])
    g = _gen_cfg("embedded" if kind == "shipped-prior" else kind, model, levels=[0.0, 0.5, 0.9], seeds_per_level=3,
                 batch_size=4)
    cfg = RunConfig(name="t", run_dir=str(run), generation=g)
    assert planning_size(g) is not None  # grouped by generation size
    plan = plan_spectrum(cfg, read_hard(run), ds)
    new = plan_batches(plan, ds, g)
    ratio = batches(plan, g.batch_size, source_sizes(ds, plan["sample_id"].unique()))  # the plan before
    assert [(list(b["job"]), b["batch_key"].iloc[0]) for b in new] == [(list(b["job"]), batch_key(b)) for b in ratio]
    assert len(new) == 3 * 3 * 3  # 10 sources per (lambda, k): batches of 4, 4, 2


def _mixed_size_run(tmp_path, tiny_pipelines):
    """A folder of 40x30, 40x29 and 30x40 sources (two generation sizes at the tiny SD's scale), its
    hard set written, and a config on the tiny SD pipeline at batch size 8."""
    from discl.data import build_dataset

    root = write_mixed_size_folder(tmp_path / "data", sizes=((40, 30), (40, 29), (30, 40)))
    data = DataConfig(task="folder", root=str(root), val_fraction=0.25)
    ds = build_dataset(data)
    run = tmp_path / "run"
    write_hard_csv(run, ds)
    return ds, run, RunConfig(name="t", run_dir=str(run), data=data,
                              generation=_gen_cfg("sd", tiny_pipelines["sd"], batch_size=8))


def test_planning_loads_no_model_and_finish_agrees_with_generate(tmp_path, tiny_pipelines, monkeypatch, caplog):
    from diffusers import DiffusionPipeline, ModelMixin

    from discl.generation import diffusers_backend

    ds, run, cfg = _mixed_size_run(tmp_path, tiny_pipelines)
    gen = create_generator(cfg.generation)
    sizes = source_sizes(ds, ds.frame["sample_id"])
    assert {gen.generation_size(*wh) for wh in sizes.values()} == {(32, 24), (24, 32)}  # 40x30 and 40x29 alike
    plan = plan_spectrum(cfg, read_hard(run), ds)
    planned = plan_batches(plan, ds, cfg.generation)
    assert all(len({gen.generation_size(*sizes[s]) for s in b["sample_id"]}) == 1 for b in planned)
    # per (lambda, k): 8 landscape sources in one batch and 4 portrait ones, not 4 + 4 + 4 by exact ratio
    assert len(planned) == 2 * 2 * 2 < len(batches(plan, 8, sizes)) == 2 * 2 * 3
    with caplog.at_level(logging.WARNING):
        generate_spectrum(cfg, run, dataset=ds, generator=gen, progress=False)
    assert "planned generation size" not in caplog.text
    (run / "spectrum" / "metadata.csv").unlink()
    (run / "spectrum" / "_done.json").unlink()

    def load(*args, **kwargs):
        raise AssertionError("planning loaded a model")

    monkeypatch.setattr(runner, "create_generator", load)
    monkeypatch.setattr(diffusers_backend, "load_pipeline", load)
    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", load)
    monkeypatch.setattr(ModelMixin, "from_pretrained", load)
    # the plan made without a generator has the batch keys the images were made with: complete
    assert finish_spectrum(cfg, run)
    assert len(pd.read_csv(run / "spectrum" / "metadata.csv")) == 12 * 2 * 2
    generate_spectrum(cfg, run, dataset=ds, progress=False)  # a rerun reuses every image, builds nothing


SIZE_PAIRS = sorted(set(PHOTO_SIZES) | {tuple(int(v) for v in p)
                                        for p in np.random.default_rng(1).integers(1, 3000, (300, 2))})


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory):
    from generation_fixtures import build_tiny_flux

    return build_tiny_flux(tmp_path_factory.mktemp("flux") / "flux")


@pytest.mark.parametrize("kind,resolution", [("sd", None), ("sd", 48), ("sdxl-refiner", None), ("sdxl-refiner", 40),
                                             ("sd3", None), ("sd3", 48), ("flux", None), ("flux", 32),
                                             ("embedded", None), ("shipped-prior", None)])
def test_planning_size_is_the_loaded_generators_size(tmp_path, tiny_pipelines, request, kind, resolution):
    """The size function planning reads from config files equals the loaded generator's
    ``generation_size`` (SD3: a transformer with patch size 2, so the multiple is VAE scale x 2;
    Flux: a transformer with patch size 1 on a latent the pipeline packs 2x2, so VAE scale x 2 too,
    and a native size from the pipeline's ``default_sample_size``, not the transformer's config)."""
    from discl.generation.diffusers_backend import DiffusersGenerator, size_policy

    if kind == "flux":
        g = GenerationConfig(backend="diffusers", model=str(request.getfixturevalue("tiny_flux")),
                             resolution=resolution, steps=3, guidance_scale=1.0)
        gen = create_generator(g)
        assert type(gen.pipe).__name__ == "FluxImg2ImgPipeline" and gen.denoiser.config.patch_size == 1
        assert gen.multiple == 2 * gen.vae_scale == 4
        assert size_policy(g) == (gen.longest, gen.multiple)
        if resolution is None:  # 128 latent px x VAE scale 2 (1024 px at Flux's VAE scale 8), not 512
            assert gen.longest == gen.pipe.default_sample_size * gen.vae_scale == 256
        # a source that rounds to a multiple of the VAE scale alone is planned at a multiple of twice it
        w, h = gen.longest, gen.longest - gen.vae_scale
        assert generation_size(w, h, gen.longest, gen.vae_scale)[1] % gen.multiple != 0
        assert all(side % gen.multiple == 0 for side in planning_size(g)(w, h))
    elif kind == "sd3":
        from generation_fixtures import build_tiny_sd3

        pipe = build_tiny_sd3(tmp_path / "sd3", patch_size=2)
        pipe.save_pretrained(tmp_path / "sd3-saved")  # the configs planning reads (loading it needs T5 named)
        g = GenerationConfig(backend="diffusers", model=str(tmp_path / "sd3-saved"), resolution=resolution)
        gen = DiffusersGenerator(g, pipe=pipe)
        assert gen.multiple == 2 * gen.vae_scale
    elif kind == "shipped-prior":
        g = GenerationConfig(backend="embedded", model="embedded")
        gen = create_generator(g)
    else:
        g = _gen_cfg(kind, tiny_pipelines[kind], resolution=resolution) if kind != "embedded" else _gen_cfg(
            kind, tiny_pipelines[kind])
        gen = create_generator(g)
    size_of = planning_size(g)
    assert size_of is not None
    assert [size_of(w, h) for w, h in SIZE_PAIRS] == [gen.generation_size(w, h) for w, h in SIZE_PAIRS]
    if kind == "flux" and resolution is not None:
        _flux_generates_at_the_planned_sizes(gen, size_of)


def _flux_generates_at_the_planned_sizes(gen, size_of):
    """One real call through the tiny Flux img2img pipeline: each image comes back at its planned
    size (the pipeline is told it; its default is a native square) without diffusers' resize warning."""
    sources = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8))
               for i, (w, h) in enumerate([(40, 30), (30, 40), (32, 30)])]
    planned = [size_of(*im.size) for im in sources]
    assert planned == [(32, 24), (24, 32), (32, 32)]
    batch = GenerationBatch(sources=sources, source_keys=["a", "b", "c"], labels=[0] * 3, prompts=["a coat"] * 3,
                            seeds=[1, 2, 3], strength=strength_for(0.3), steps=3, guidance_scale=1.0)
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    diffusers_logger = logging.getLogger("diffusers")  # it does not propagate to the root logger (caplog)
    diffusers_logger.addHandler(handler)
    try:
        out = gen.generate(batch)
    finally:
        diffusers_logger.removeHandler(handler)
    assert [im.size for im in out] == planned
    assert not [r for r in records if "divisible by" in r.getMessage()]


def test_planning_size_falls_back_to_exact_ratios_with_one_log_line(tiny_pipelines, caplog):
    """Configs that need a download (offline, uncached id) or a pipeline whose VAE scale is not known
    from its configs: no size function, batches by exact aspect ratio, one log line, no error."""
    cases = [GenerationConfig(backend="diffusers", model=f"nobody/uncached-{uuid.uuid4().hex[:8]}"),
             GenerationConfig(backend="diffusers", model=str(tiny_pipelines["sd"]),
                              pipeline_class=f"KandinskyImg2ImgPipeline{uuid.uuid4().hex[:4]}")]
    sizes = {"a": (500, 375), "b": (500, 374)}
    jobs = plan_jobs(_hard_for(sizes), [0.5], 1, base_seed=0, steps=10)
    for g in cases:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="discl.generation.base"):
            assert planning_size(g) is None and planning_size(g) is None
        assert len([r for r in caplog.records if "exact aspect ratio" in r.getMessage()]) == 1
        assert len(batches(jobs, 4, sizes, planning_size(g))) == 2  # today's grouping: one batch per ratio


def test_the_size_decision_is_kept_per_spectrum(tmp_path, tiny_pipelines, monkeypatch):
    """The first plan publishes its generation-size rule in spectrum/_size_policy-<digest>.json; a
    later plan (another process, after the model reached the cache or left it) cuts the same batches
    from it; a process that loses the race to publish plans with the winner's rule; other settings
    or other weights decide again."""
    ds, run, cfg = _mixed_size_run(tmp_path, tiny_pipelines)
    plan = plan_spectrum(cfg, read_hard(run), ds)
    out = run / "spectrum"
    first = plan_batches(plan, ds, cfg.generation, out, fingerprint="w1")
    (policy,) = out.glob("_size_policy-*.json")
    rule = planning_size(cfg.generation).keywords
    assert json.loads(policy.read_text())["size_policy"] == [rule["longest"], rule["multiple"]]
    monkeypatch.setattr(runner, "planning_size", lambda g: None)  # as if the configs could not be read now
    again = plan_batches(plan, ds, cfg.generation, out, fingerprint="w1")
    assert [list(b["batch_key"]) for b in again] == [list(b["batch_key"]) for b in first]
    assert len(plan_batches(plan, ds, cfg.generation)) > len(first)  # no folder, no decision: exact ratios
    # other weights (a re-saved folder, a retrained prior): decided again, here exact ratios
    assert len(plan_batches(plan, ds, cfg.generation, out, fingerprint="w2")) > len(first)
    assert len(list(out.glob("_size_policy-*.json"))) == 2

    # a race: another process publishes (exact ratios) between this one's check and its publish
    real_planning_size = planning_size

    def rival_publishes_first(g):
        with monkeypatch.context() as m:  # the rival could not read the configs: exact ratios
            m.setattr(runner, "planning_size", lambda g: None)
            runner.spectrum_size_function(g, out, fingerprint="w3")
        return real_planning_size(g)

    monkeypatch.setattr(runner, "planning_size", rival_publishes_first)
    lost = runner.spectrum_size_function(cfg.generation, out, fingerprint="w3")
    assert lost is None  # the winner's rule, not its own


# -- SD3 / Flux img2img: their own step rule, a cost estimate for Flux, new image keys once ---------


@pytest.fixture(scope="module")
def tiny_sd3(tmp_path_factory):
    """The tiny SD3 img2img pipeline (built in code: loading it needs T5 named) and a folder with its
    saved configs, which planning reads."""
    from generation_fixtures import build_tiny_sd3

    root = tmp_path_factory.mktemp("sd3")
    pipe = build_tiny_sd3(root / "build")
    pipe.save_pretrained(root / "sd3")
    pipe.set_progress_bar_config(disable=True)
    return pipe, root / "sd3"


def _flow_generator(kind, tiny_sd3, tiny_flux, **kw):
    from discl.generation.diffusers_backend import DiffusersGenerator

    g = dict(backend="diffusers", resolution=16, steps=3, guidance_scale=1.0, levels=[0.3, 0.7], seeds_per_level=1,
             batch_size=4) | kw
    if kind == "flux":
        cfg = GenerationConfig(model=str(tiny_flux), **g)
        return cfg, create_generator(cfg)
    pipe, folder = tiny_sd3
    cfg = GenerationConfig(model=str(folder), **g)
    return cfg, DiffusersGenerator(cfg, pipe=pipe)


def test_the_step_rule_is_measured_on_the_classes_own_get_timesteps():
    """Not a list of known classes: every class diffusers exports is measured (a text-to-image class through
    the image-to-image class AutoPipelineForImage2Image loads for it), so e.g. Qwen-Image, Flux Control and
    SD3-PAG img2img get the start-truncating rule; a class diffusers does not know falls back to SD's."""
    from discl.generation.diffusers_backend import measured_step_rule, step_rule

    start = ["StableDiffusion3Pipeline", "FluxPipeline", "QwenImagePipeline", "FluxControlImg2ImgPipeline",
             "StableDiffusion3PAGImg2ImgPipeline", "ZImageImg2ImgPipeline"]
    steps = ["StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline",
             "StableDiffusionImg2ImgPipeline"]
    assert [step_rule(n) for n in start] == ["truncate_start"] * len(start)
    assert [step_rule(n) for n in steps] == ["truncate_steps"] * len(steps)
    assert measured_step_rule("NoSuchPipeline") is None and step_rule("NoSuchPipeline") == "truncate_steps"


def test_a_class_missing_its_optional_package_falls_back_to_the_table():
    """diffusers exports a placeholder for a class whose package is not installed (Kolors without
    sentencepiece): any attribute raises ImportError. Planning takes the table's rule; loading names the package."""
    from discl.generation.diffusers_backend import measured_step_rule, step_rule

    class _Placeholder(type):
        def __getattr__(cls, key):
            raise ImportError(f"{cls.__name__} requires the sentencepiece library")

    class StableDiffusionXLImg2ImgPipeline(metaclass=_Placeholder):  # named as a listed class: the table decides
        pass

    assert measured_step_rule(StableDiffusionXLImg2ImgPipeline) is None
    assert step_rule(StableDiffusionXLImg2ImgPipeline) == "truncate_steps"


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_flow_step_rule_is_the_pipelines_own_get_timesteps(tiny_sd3, tiny_flux, kind):
    """SD3 and Flux img2img truncate the start index, not the step count: T - int(T - T x strength)
    steps, one more than SD's int(T x strength) at a fractional product; planning and the cost
    estimate read the rule from config files, and Flux's count needs the mu of its dynamic shift."""
    from discl.generation.base import planning_step_rule
    from discl.generation.schedulers import set_timesteps

    g, gen = _flow_generator(kind, tiny_sd3, tiny_flux)
    assert gen.step_rule == planning_step_rule(g) == "truncate_start"
    pipe, differ = gen.pipe, 0
    for steps in range(1, 61):
        for lam in [*DEFAULT_LEVELS, 0.25, 0.45, 0.65, 0.85]:
            set_timesteps(pipe.scheduler, steps)
            timesteps, n = pipe.get_timesteps(steps, strength_for(lam), "cpu")
            assert denoise_steps(steps, lam, "truncate_start") == len(timesteps) == n, (steps, lam)
            differ += denoise_steps(steps, lam) != n
    assert differ > 100
    for steps, lam in ((3, 0.3), (3, 0.7), (10, 0.7), (50, 0.9)):
        assert gen.evaluations_per_image(steps, strength_for(lam)) == denoise_steps(steps, lam, "truncate_start")
    assert [denoise_steps(3, lam, rule) for rule in ("truncate_steps", "truncate_start") for lam in (0.3, 0.7)] == [
        2, 0, 3, 1]


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_flow_pipelines_record_the_steps_their_transformer_runs(tmp_path, tiny_sd3, tiny_flux, kind):
    """3 steps: at λ 0.3 (strength 0.7) SD3/Flux run 3 steps (SD's rule said 2), at λ 0.7 one (SD's
    rule said 0, and the backend returned the source instead of calling the pipeline). The manifest,
    the dry run's estimate (Flux: it crashed asking for mu) and the transformer's calls agree."""
    g, gen = _flow_generator(kind, tiny_sd3, tiny_flux)
    ds = tiny_dataset(2)
    run = tmp_path / "run"
    write_hard_csv(run, ds)
    cfg = RunConfig(name="t", run_dir=str(run), generation=g)
    cost = runner.dry_run(cfg, calibrate=False, dataset=ds, generator=gen)
    counter = ForwardCounter(gen.denoiser)
    generate_spectrum(cfg, run, dataset=ds, generator=gen, progress=False)
    counter.close()
    meta = pd.read_csv(run / "spectrum" / "metadata.csv")
    assert meta.groupby("lam")["denoise_steps"].agg(set).to_dict() == {0.3: {3}, 0.7: {1}}
    assert counter.calls == 3 + 1  # one batch per level: both sources, k = 0
    assert counter.rows == int(meta["denoise_steps"].sum()) == cost["all"]["denoiser_evaluations"] == 2 * (3 + 1)


def test_flow_levels_that_run_a_step_are_not_warned_about(tiny_sd3, tiny_flux, tiny_pipelines, caplog):
    """λ 0.7 at 3 steps runs no step on SD (warned) but one on SD3 and Flux (no warning)."""
    from discl.validation import _backend_problems

    for model, warned in ((tiny_pipelines["sd"], True), (tiny_sd3[1], False), (tiny_flux, False)):
        caplog.clear()
        cfg = RunConfig(name="t", generation=GenerationConfig(backend="diffusers", model=str(model), levels=[0.7],
                                                              steps=3))
        with caplog.at_level(logging.WARNING):
            _backend_problems(cfg, synthetic=False)
        assert ("λ 0.7 runs no denoising step at 3 steps" in caplog.text) == warned, model



# -- pipeline classes outside SIZE_RULES: their size rule measured on the class ------------------------


def _img2img_classes():
    """Every image-to-image pipeline class the installed diffusers exports: the classes named so and the
    ones AutoPipelineForImage2Image loads."""
    import diffusers
    from diffusers.pipelines.auto_pipeline import AUTO_IMAGE2IMAGE_PIPELINES_MAPPING

    names = {n for n in dir(diffusers) if n.endswith("Pipeline") and ("Img2Img" in n or "Image2Image" in n)}
    return sorted(names | {c.__name__ for c in AUTO_IMAGE2IMAGE_PIPELINES_MAPPING.values()})


def _default_config(model_class: str) -> dict:
    """A model class's default config (its ``__init__`` defaults), as a saved ``config.json`` has it,
    built without the model."""
    import inspect

    import diffusers

    params = inspect.signature(getattr(diffusers, model_class).__init__).parameters
    config = {k: list(p.default) if isinstance(p.default, tuple) else p.default for k, p in params.items()
              if k != "self" and p.default is not p.empty}
    return {"_class_name": model_class, **config}


# the unlisted classes' real transformers: (class, its transformer) -> (longest side, multiple) at VAE scale 8
MEASURED_SIZES = {
    ("QwenImageImg2ImgPipeline", "QwenImageTransformer2DModel"): (1024, 16),  # patch_size 2 is the pipeline's pack
    ("QwenImageEditPipeline", "QwenImageTransformer2DModel"): (1024, 16),
    ("ChromaImg2ImgPipeline", "ChromaTransformer2DModel"): (1024, 16),
    ("FluxControlImg2ImgPipeline", "FluxTransformer2DModel"): (1024, 16),
    ("FluxKontextPipeline", "FluxTransformer2DModel"): (1024, 16),
    ("ZImageImg2ImgPipeline", "ZImageTransformer2DModel"): (512, 16),  # rounds images to 16; no native size
    ("StableDiffusion3PAGImg2ImgPipeline", "SD3Transformer2DModel"): (1024, 16),  # patch size 2
    ("StableDiffusionXLControlNetImg2ImgPipeline", "UNet2DConditionModel"): (512, 8),
}


def test_unlisted_img2img_classes_get_their_size_rule_from_the_class():
    """Not only the listed SD/SDXL/SD3/Flux classes: every img2img class diffusers exports whose
    ``__call__`` takes height/width is passed them, at a multiple that includes the pipeline's own
    packing (Qwen-Image, Chroma, Flux variants: 2x2; Z-Image: images rounded to twice the VAE scale),
    measured on the class without weights; the listed classes keep their written rules, and a class that
    cannot be imported or built keeps the plain rule."""
    import inspect

    import diffusers

    from discl.generation.diffusers_backend import (
        FLUX_SIZE_RULE,
        SIZE_RULES,
        SizeRule,
        longest_and_multiple,
        measured_size_rule,
        size_rule,
    )

    passed = measured = 0
    for name in _img2img_classes():
        rule = size_rule(name)
        if name in SIZE_RULES:
            assert rule is SIZE_RULES[name]
            continue
        try:
            takes_size = {"height", "width"} <= set(inspect.signature(getattr(diffusers, name).__call__).parameters)
        except ImportError:  # diffusers' stand-in for a class whose optional package is missing here
            assert rule == SizeRule()
            continue
        measured += measured_size_rule(getattr(diffusers, name)) is not None
        assert rule.sized_by_call == takes_size, name
        passed += takes_size
    assert passed >= 15 and measured >= 25  # diffusers 0.42: 22 and 32
    for (name, transformer), expected in MEASURED_SIZES.items():
        denoiser = _default_config(transformer)
        assert longest_and_multiple(size_rule(name), 8, denoiser, None) == expected, name
        assert size_rule(name).sized_by_call, name
    # the measurement agrees with Flux's written rule; a text-to-image name gets the img2img class's rule
    assert measured_size_rule(diffusers.FluxImg2ImgPipeline) == FLUX_SIZE_RULE
    assert size_rule("QwenImagePipeline") == size_rule("QwenImageImg2ImgPipeline")

    class NeedsItsVae(diffusers.DiffusionPipeline):  # cannot be built without its components
        def __init__(self, vae):
            super().__init__()
            self.vae_scale_factor = 2 ** len(vae.config.block_out_channels)

        def __call__(self, image, strength, height=None, width=None): ...

    assert measured_size_rule(NeedsItsVae) is None and size_rule(NeedsItsVae) == SizeRule()
    assert size_rule("NoSuchPipeline") == SizeRule()


def test_unlisted_classes_are_planned_from_their_config_files(tmp_path):
    """Qwen-Image computes its VAE scale its own way (2 ** len(temperal_downsample)): planning measures it
    on the class from ``vae/config.json`` alone (no weights, no network), so its batches group by
    generation size (1024 px, multiple 16) instead of exact aspect ratio; a name diffusers does not know
    still falls back."""
    from discl.generation.diffusers_backend import size_policy

    folder = tmp_path / "qwen"
    for sub, cls in (("vae", "AutoencoderKLQwenImage"), ("transformer", "QwenImageTransformer2DModel")):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "config.json").write_text(json.dumps(_default_config(cls)))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "QwenImagePipeline", "vae": ["diffusers", "AutoencoderKLQwenImage"],
        "transformer": ["diffusers", "QwenImageTransformer2DModel"]}))
    g = GenerationConfig(backend="diffusers", model=str(folder))
    assert size_policy(g) == (1024, 16)
    assert planning_size(g)(500, 375) == (1024, 768)
    assert size_policy(GenerationConfig(backend="diffusers", model=str(folder), resolution=600)) == (600, 16)
    vae = json.loads((folder / "vae" / "config.json").read_text())
    (folder / "vae" / "config.json").write_text(json.dumps(vae | {"temperal_downsample": [False, True]}))
    assert size_policy(g) == (512, 8)  # its own formula: 2 ** 2 = 4, 128 latent px x 4, 4 x 2 (2x2 pack)


@pytest.fixture(scope="module")
def tiny_chroma(tmp_path_factory):
    """A tiny ``ChromaImg2ImgPipeline`` (a class not in SIZE_RULES) saved to a folder: the tiny Flux's
    parts (2-block VAE: scale 2; T5 with the tiny CLIP tokenizer) and a one-block Chroma transformer."""
    import torch
    from diffusers import ChromaImg2ImgPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from generation_fixtures import _flow_vae, write_tiny_clip_tokenizer
    from transformers import T5Config, T5EncoderModel

    folder = tmp_path_factory.mktemp("chroma") / "chroma"
    torch.manual_seed(0)
    transformer = ChromaTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                           attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                           axes_dims_rope=[4, 4, 8], approximator_num_channels=8,
                                           approximator_hidden_dim=16, approximator_layers=1)
    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=514, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=2,
                                 pad_token_id=513, eos_token_id=513))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    ChromaImg2ImgPipeline(scheduler=scheduler, vae=_flow_vae(), text_encoder=t5,
                          tokenizer=write_tiny_clip_tokenizer(folder / "_tok"),
                          transformer=transformer).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("resolution", [None, 32])
def test_an_unlisted_class_plans_and_generates_at_its_measured_size(tiny_chroma, monkeypatch, resolution):
    """Chroma img2img, not in SIZE_RULES: planned size = generator size (multiple 2 x VAE scale, native
    size its pipeline's default_sample_size), and a real generation of non-square sources is passed
    height/width and returns each image at its planned size, the source's aspect ratio (before: every
    image a square of the pipeline's native size, 256 x 256 here, whatever its source)."""
    from diffusers import ChromaImg2ImgPipeline

    from discl.generation.diffusers_backend import size_policy

    g = GenerationConfig(backend="diffusers", model=str(tiny_chroma), pipeline_class="ChromaImg2ImgPipeline",
                         resolution=resolution, steps=3, guidance_scale=1.0)
    gen = create_generator(g)
    assert type(gen.pipe) is ChromaImg2ImgPipeline and gen.size_rule.sized_by_call
    assert gen.multiple == 2 * gen.vae_scale == 4
    assert size_policy(g) == (gen.longest, gen.multiple) == (resolution or 128 * gen.vae_scale, 4)
    size_of = planning_size(g)
    assert [size_of(w, h) for w, h in SIZE_PAIRS] == [gen.generation_size(w, h) for w, h in SIZE_PAIRS]
    if resolution is None:
        return
    calls = []
    real_call = ChromaImg2ImgPipeline.__call__

    def recording_call(self, *args, **kwargs):
        calls.append((kwargs.get("width"), kwargs.get("height"), [im.size for im in kwargs["image"]]))
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(ChromaImg2ImgPipeline, "__call__", recording_call)
    _flux_generates_at_the_planned_sizes(gen, size_of)  # sizes (32, 24), (24, 32), (32, 32): kept ratios
    assert calls == [(32, 24, [(32, 24)]), (24, 32, [(24, 32)]), (32, 32, [(32, 32)])]
