"""Spectrum generation: planning, the diffusers adapter on tiny real pipelines, the runner."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from generation_fixtures import (
    ForwardCounter,
    build_tiny_sd,
    build_tiny_sdxl_refiner,
    tiny_dataset,
    train_tiny_prior,
    write_folder_dataset,
    write_hard_csv,
)

from discl.config import RunConfig
from discl.errors import ModelNotFoundError
from discl.generation.base import create_generator, list_generators
from discl.generation.config import GenerationConfig
from discl.generation.planning import (
    batches,
    cost_summary,
    denoise_steps,
    plan_jobs,
    safe_stem,
    shard_jobs,
    strength_for,
)
from discl.generation.runner import MANIFEST_COLUMNS, generate_spectrum

# -- planning (pure) -------------------------------------------------------------------------------


@pytest.mark.parametrize("lam,steps,expected", [(0.0, 50, 50), (0.1, 50, 45), (0.3, 50, 35), (0.5, 50, 25),
                                                (0.7, 50, 15), (0.9, 50, 5), (0.9, 10, 1), (0.95, 10, 0)])
def test_denoise_steps_is_int_of_t_times_strength(lam, steps, expected):
    assert denoise_steps(steps, lam) == expected
    assert strength_for(lam) == round(1 - lam, 6)


def _hard(n=3):
    return pd.DataFrame({"sample_id": [f"id/{i}" for i in range(n)], "label": [i % 2 for i in range(n)],
                         "class_name": ["a" if i % 2 == 0 else "b" for i in range(n)]})


def test_plan_seeds_are_stable_and_distinct():
    a = plan_jobs(_hard(), [0.0, 0.5], 3, base_seed=7, steps=10)
    b = plan_jobs(_hard().iloc[::-1], [0.0, 0.5], 3, base_seed=7, steps=10)  # row order does not matter
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 3 * 2 * 3 and a["seed"].is_unique and a["file_name"].is_unique
    assert plan_jobs(_hard(), [0.0, 0.5], 3, base_seed=8, steps=10)["seed"].tolist() != a["seed"].tolist()
    assert all(f.isascii() and "/" not in Path(f).name for f in a["file_name"])


def test_shards_are_disjoint_and_complete():
    jobs = plan_jobs(_hard(5), [0.0, 0.3, 0.9], 4, base_seed=0, steps=10)
    parts = [shard_jobs(jobs, i, 3) for i in range(3)]
    ids = [set(p["job"]) for p in parts]
    assert set.union(*ids) == set(jobs["job"]) and sum(map(len, ids)) == len(jobs)


def test_batches_share_a_step_count_and_cost_counts_cfg():
    jobs = plan_jobs(_hard(5), [0.0, 0.3, 0.9], 4, base_seed=0, steps=10)
    for b in batches(jobs, 6):
        assert b["denoise_steps"].nunique() == 1 and len(b) <= 6
    c = cost_summary(jobs, guidance_scale=3.0)
    assert c["images"] == 60 and c["denoiser_evaluations"] == 2 * 20 * (10 + 7 + 1)


def test_safe_stem_keeps_ids_apart():
    assert safe_stem("a/b.png") != safe_stem("a_b.png")
    assert safe_stem("fmnist-train-00001") == "fmnist-train-00001"


def test_registry_lists_both_backends():
    assert {"embedded", "diffusers"} <= set(list_generators())
    with pytest.raises(ValueError, match="registered"):
        create_generator(_bad_backend())


def _bad_backend():
    cfg = GenerationConfig()
    object.__setattr__(cfg, "backend", "nope")
    return cfg


# -- the runner with the embedded backend (tiny real prior) ----------------------------------------


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    return train_tiny_prior(tmp_path_factory.mktemp("prior"))


def _cfg(run_dir, **gen):
    g = dict(backend="embedded", levels=[0.0, 0.5, 0.9], seeds_per_level=2, steps=10, guidance_scale=2.0,
             batch_size=4)
    g.update(gen)
    return RunConfig(name="t", run_dir=str(run_dir), generation=GenerationConfig(**g))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted((folder / "images").rglob("*.png"))}


def test_embedded_spectrum_end_to_end(tmp_path, tiny_prior):
    ds = tiny_dataset(3)
    run = tmp_path / "run"
    write_hard_csv(run, ds)
    cfg = _cfg(run, model=str(tiny_prior))
    gen = create_generator(cfg.generation)
    counter = ForwardCounter(gen.denoiser)
    rows = generate_spectrum(cfg, run, dataset=ds, generator=gen, progress=False)
    assert len(rows) == 18
    # denoiser work: per image and seed int(T * (1 - lambda)) evaluations of both CFG branches
    assert counter.rows == 2 * 6 * (10 + 5 + 1)
    assert counter.calls == 2 * (10 + 5 + 1)  # 6 images per lambda in batches of 4 -> 2 calls per step

    out = run / "spectrum"
    meta = pd.read_csv(out / "metadata.csv")
    assert list(meta.columns) == MANIFEST_COLUMNS and len(meta) == 18
    assert (meta["condition_style"] == "clean").all()  # unset: the style the prior's prior_config.json stores
    assert meta["seed"].is_unique and set(meta["lam"]) == {0.0, 0.5, 0.9}
    assert (meta["strength"] == (1 - meta["lam"]).round(6)).all()
    assert all((out / f).is_file() for f in meta["file_name"])

    import datasets

    hf = datasets.load_dataset(str(out), split="train")  # the folder's dataset card names the files
    assert len(hf) == 18 and {"lam", "seed", "k", "prompt", "sample_id", "strength"} <= set(hf.column_names)
    assert hf[0]["image"].size == (28, 28)

    # rerun: nothing to do, nothing loaded
    counter.calls = 0
    generate_spectrum(cfg, run, dataset=ds, generator=gen, progress=False)
    assert counter.calls == 0

    # an interrupted run: one image missing, one torn -> the batches holding them are redone (whole
    # batches, so every image is computed in the same batch as before), same bytes, the rest untouched
    before = _files(out)
    names = sorted(before)
    (out / names[0]).unlink()
    (out / names[5]).write_bytes(before[names[5]][:40])
    (out / "_done.json").unlink()
    mtimes = {n: (out / n).stat().st_mtime_ns for n in names if n not in (names[0], names[5])}
    counter.calls = counter.rows = 0
    generate_spectrum(cfg, run, dataset=ds, generator=gen, progress=False)
    assert _files(out) == before
    untouched = [n for n, t in mtimes.items() if (out / n).stat().st_mtime_ns == t]
    assert untouched, "a resume must not redo every batch"
    assert 0 < counter.rows < 2 * 6 * (10 + 5 + 1)  # less than the whole spectrum
    counter.close()


def test_a_seeds_per_level_change_keeps_the_batches_before_it(tmp_path, tiny_prior):
    """More or fewer seeds per level add or drop whole batches (batches are per seed index), so the
    images of the other seeds are reused byte for byte, not regenerated, whatever the batch size."""
    ds = tiny_dataset(3)
    run = tmp_path / "run"
    write_hard_csv(run, ds)
    generate_spectrum(_cfg(run, model=str(tiny_prior), seeds_per_level=2, batch_size=16), run, dataset=ds, progress=False)
    out = run / "spectrum"
    before = _files(out)
    mtimes = {n: (out / n).stat().st_mtime_ns for n in before}
    generate_spectrum(_cfg(run, model=str(tiny_prior), seeds_per_level=3, batch_size=16), run, dataset=ds, progress=False)
    after = _files(out)
    assert set(before) < set(after) and all(after[n] == b for n, b in before.items())
    assert all((out / n).stat().st_mtime_ns == t for n, t in mtimes.items()), "the k = 0, 1 images were regenerated"
    ref = tmp_path / "ref"  # and the result is what a fresh run with 3 seeds writes
    write_hard_csv(ref, ds)
    generate_spectrum(_cfg(ref, model=str(tiny_prior), seeds_per_level=3, batch_size=16), ref, dataset=ds, progress=False)
    assert _files(ref / "spectrum") == after
    generate_spectrum(_cfg(run, model=str(tiny_prior), seeds_per_level=1, batch_size=16), run, dataset=ds, progress=False)
    assert set(_files(out)) == {n for n in before if "_k0." in n}
    assert all((out / n).stat().st_mtime_ns == mtimes[n] for n in _files(out))


def test_batch_size_and_sharding_do_not_change_the_images(tmp_path, tiny_prior):
    ds = tiny_dataset(3)
    ref = tmp_path / "ref"
    write_hard_csv(ref, ds)
    generate_spectrum(_cfg(ref, model=str(tiny_prior), batch_size=16), ref, dataset=ds, progress=False)
    sharded = tmp_path / "sharded"
    write_hard_csv(sharded, ds)
    cfg = _cfg(sharded, model=str(tiny_prior), batch_size=3)
    a = generate_spectrum(cfg, sharded, shard=(0, 2), dataset=ds, progress=False)
    assert not (sharded / "spectrum" / "metadata.csv").exists()  # shard 1 still missing
    b = generate_spectrum(cfg, sharded, shard=(1, 2), dataset=ds, progress=False)
    assert set(a["job"]).isdisjoint(b["job"]) and len(a) + len(b) == 18
    assert _files(sharded / "spectrum") == _files(ref / "spectrum")
    pd.testing.assert_frame_equal(pd.read_csv(sharded / "spectrum/metadata.csv"), pd.read_csv(ref / "spectrum/metadata.csv"))


def test_shards_run_under_different_batch_sizes_are_not_a_finished_spectrum(tmp_path, tiny_prior):
    """Issue 23: the completion check compares batch keys, not only image keys. A spectrum interrupted before
    its manifest and resumed per shard under another ``generation.batch_size`` holds images made in batches
    of another make-up; it is finished only once every image is that of the current batch plan."""
    ds = tiny_dataset(3)
    ref = tmp_path / "ref"
    write_hard_csv(ref, ds)
    generate_spectrum(_cfg(ref, model=str(tiny_prior), batch_size=16), ref, dataset=ds, progress=False)
    run = tmp_path / "run"
    write_hard_csv(run, ds)
    generate_spectrum(_cfg(run, model=str(tiny_prior), batch_size=2), run, dataset=ds, progress=False)
    (run / "spectrum" / "metadata.csv").unlink()  # as if interrupted before the manifest
    (run / "spectrum" / "_done.json").unlink()
    generate_spectrum(_cfg(run, model=str(tiny_prior), batch_size=16), run, shard=(1, 2), dataset=ds, progress=False)
    assert not (run / "spectrum" / "metadata.csv").exists(), "a mix of two batch plans is not a finished spectrum"
    generate_spectrum(_cfg(run, model=str(tiny_prior), batch_size=16), run, shard=(0, 2), dataset=ds, progress=False)
    assert (run / "spectrum" / "metadata.csv").exists()
    assert _files(run / "spectrum") == _files(ref / "spectrum")


# -- the diffusers adapter on tiny real SD / SDXL-refiner pipelines -------------------------------


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipes")
    return {"sd": build_tiny_sd(root / "sd"), "sdxl-refiner": build_tiny_sdxl_refiner(root / "xl")}


@pytest.mark.parametrize("kind", ["sd", "sdxl-refiner"])
def test_diffusers_spectrum_counts_and_is_batch_invariant(tmp_path, tiny_pipelines, kind):
    ds = tiny_dataset(2)
    gen_kw = dict(backend="diffusers", model=str(tiny_pipelines[kind]), levels=[0.0, 0.3, 0.9], seeds_per_level=2,
                  steps=10, guidance_scale=5.0, resolution=32, negative_prompt="blurry")
    runs = {}
    for bs in (12, 5):
        run = tmp_path / f"bs{bs}"
        write_hard_csv(run, ds)
        cfg = _cfg(run, batch_size=bs, **gen_kw)
        gen = create_generator(cfg.generation)
        counter = ForwardCounter(gen.denoiser)
        generate_spectrum(cfg, run, dataset=ds, generator=gen, progress=False)
        # 4 images per lambda; int(10 * (1 - lambda)) steps each, both CFG branches
        assert counter.rows == 2 * 4 * (10 + 7 + 1)
        counter.close()
        runs[bs] = _files(run / "spectrum")
        meta = pd.read_csv(run / "spectrum/metadata.csv")
        assert len(meta) == 12 and (meta["model"] == str(tiny_pipelines[kind])).all()
        assert meta["condition_style"].isna().all()  # empty: a diffusers pipeline reads the prompt
    assert runs[12] == runs[5] and len(runs[5]) == 12


def test_diffusers_seeds_reproducible_and_distinct(tiny_pipelines):
    from generation_fixtures import gray_image

    from discl.generation.base import GenerationBatch

    gen = create_generator(GenerationConfig(backend="diffusers", model=str(tiny_pipelines["sd"]), resolution=32,
                                            steps=4, guidance_scale=3.0))

    def run(seeds):
        return [im.tobytes() for im in gen.generate(GenerationBatch(
            sources=[gray_image(28, 0)] * len(seeds), source_keys=["x"] * len(seeds), labels=[0] * len(seeds),
            prompts=["a photo of a coat"] * len(seeds), seeds=seeds, strength=0.75, steps=4, guidance_scale=3.0))]

    a, b = run([1, 2]), run([1, 2])
    assert a == b and a[0] != a[1]


def test_missing_model_error_says_how_to_provide_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model, how in (("no-such-org/no-such-model", "huggingface-cli download"), (str(tmp_path / "missing"), "save_pretrained")):
        with pytest.raises(ModelNotFoundError, match=how) as e:
            create_generator(GenerationConfig(backend="diffusers", model=model))
        assert model in str(e.value)
        assert (f"download {model}" in str(e.value)) == (how != "save_pretrained")  # no download hint for a folder


# -- the CLI: dry run and two processes under torchrun -------------------------------------------


def _write_cli_config(tmp_path, prior) -> tuple[Path, Path]:
    root = write_folder_dataset(tmp_path / "data", classes=("T-shirt_top", "Trouser"))  # the prior's classes 0, 1
    run = tmp_path / "run"
    from discl.data import build_dataset
    from discl.data.config import DataConfig

    ds = build_dataset(DataConfig(task="folder", root=str(root), val_fraction=0.25))
    write_hard_csv(run, ds, ids=list(ds.split("train")["sample_id"]))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""name: t
run_dir: {run}
data: {{task: folder, root: {root}, val_fraction: 0.25}}
generation: {{backend: embedded, model: {prior}, levels: [0.0, 0.5], seeds_per_level: 2, steps: 6,
              guidance_scale: 2.0, batch_size: 3}}
curriculum: {{levels: [0.5], stages: [0.5, 0.5]}}  # a level generated: discl generate checks the curriculum
""")
    return cfg, run


def test_dry_run_prints_cost(tmp_path, tiny_prior, capsys):
    from discl.cli import generate as runner

    cfg, run = _write_cli_config(tmp_path, tiny_prior)
    import argparse

    p = argparse.ArgumentParser()
    runner.add_arguments(p)
    assert runner.main(p.parse_args(["--config", str(cfg), "--dry-run"])) == 0
    out = capsys.readouterr().out
    n = len(pd.read_csv(run / "mining/hard.csv"))
    # n hard x 2 levels x 2 seeds images; per image int(6 * (1 - lambda)) steps x 2 CFG branches
    assert f'"images": {n * 4}' in out and f'"denoiser_evaluations": {n * 2 * (6 + 3) * 2}' in out
    assert not (run / "spectrum").exists()
    import json

    summary = json.loads(out)
    cal = summary["calibration"]
    assert cal["images"] >= 1 and cal["seconds"] > 0 and cal["denoiser_evaluations"] > 0
    assert summary["all"]["estimated_seconds"] == pytest.approx(
        summary["all"]["denoiser_evaluations"] * cal["seconds_per_evaluation"], abs=0.06)
    # another scheduler, its own count; --no-calibrate times nothing
    args = p.parse_args(["--config", str(cfg), "--dry-run", "--no-calibrate",
                         "generation.scheduler=EulerDiscreteScheduler"])
    assert runner.main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scheduler"] == "EulerDiscreteScheduler" and "calibration" not in summary
    assert summary["all"]["denoiser_evaluations"] == n * 2 * (6 + 3) * 2
    assert summary["all"]["batches"] == summary["shard 0/1"]["batches"] >= 2 * 2  # per (λ, k) at least one
    # λ 0.9 at 6 steps runs no step (int(6 * 0.1) = 0): the calibration times a batch that does work
    assert runner.main(p.parse_args(["--config", str(cfg), "--dry-run", "generation.levels=[0.9,0.5]"])) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["calibration"]["denoiser_evaluations"] > 0 and summary["all"]["estimated_seconds"] > 0


def test_dry_run_counts_what_remains(tmp_path, tiny_prior, capsys):
    """A resumed or reconfigured spectrum costs only what a run would still make: the dry run says so."""
    import argparse
    import json

    from discl.cli import generate as runner

    cfg, run = _write_cli_config(tmp_path, tiny_prior)
    p = argparse.ArgumentParser()
    runner.add_arguments(p)

    def dry(*extra):
        assert runner.main(p.parse_args(["--config", str(cfg), "--dry-run", "--no-calibrate", *extra])) == 0
        return json.loads(capsys.readouterr().out)

    fresh = dry()
    assert fresh["remaining"] == fresh["all"] and fresh["remaining, shard 0/1"] == fresh["shard 0/1"]
    assert runner.main(p.parse_args(["--config", str(cfg), "--shard", "0/2", "--no-progress"])) == 0
    capsys.readouterr()
    half = dry()
    made = sum(1 for f in (run / "spectrum/images").rglob("*") if f.is_file())
    assert half["all"] == fresh["all"] and 0 < made < fresh["all"]["images"]
    assert half["remaining"]["images"] == fresh["all"]["images"] - made
    assert half["remaining"]["batches"] == dry("--shard", "1/2")["shard 1/2"]["batches"]
    assert dry("--shard", "0/2")["remaining, shard 0/2"]["images"] == 0
    assert runner.main(p.parse_args(["--config", str(cfg), "--shard", "1/2", "--no-progress"])) == 0
    capsys.readouterr()
    assert dry()["remaining"]["images"] == 0
    # one level's schedule changed: only that level's images are to make again
    changed = dry("generation.steps_per_level={0.5: 8}")
    assert changed["remaining"]["images"] == changed["all"]["per_level"]["0.5"]["images"] < changed["all"]["images"]
    assert list(changed["remaining"]["per_level"]) == ["0.5"]


def test_torchrun_two_processes_match_one(tmp_path, tiny_prior):
    cfg, run = _write_cli_config(tmp_path, tiny_prior)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "discl", "-q", "generate", "--config",
                          str(cfg), "--no-progress"], capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "shard 0/2" in res.stdout and "shard 1/2" in res.stdout
    logs = sorted(p.name for p in (run / "spectrum/_progress").iterdir())
    assert logs == ["shard-0-of-2.jsonl", "shard-1-of-2.jsonl"]
    two = _files(run / "spectrum")
    meta = pd.read_csv(run / "spectrum/metadata.csv")
    # the same config in one process
    import shutil

    shutil.rmtree(run / "spectrum")
    from discl.cli import main

    assert main(["-q", "generate", "--config", str(cfg), "--no-progress"]) == 0
    assert _files(run / "spectrum") == two and len(two) == len(meta)


def test_changed_config_regenerates_instead_of_reusing_stale_images(tmp_path, tiny_prior):
    ds = tiny_dataset(2)
    run = tmp_path / "run"
    write_hard_csv(run, ds)
    generate_spectrum(_cfg(run, model=str(tiny_prior), levels=[0.5], steps=4), run, dataset=ds, progress=False)
    old = _files(run / "spectrum")
    # batch size never changes an image: no new work
    generate_spectrum(_cfg(run, model=str(tiny_prior), levels=[0.5], steps=4, batch_size=1), run, dataset=ds,
                      progress=False)
    assert _files(run / "spectrum") == old
    # a shard with another config regenerates its own images only (each image carries its key)
    half = generate_spectrum(_cfg(run, model=str(tiny_prior), levels=[0.5], steps=8), run, shard=(0, 2), dataset=ds,
                             progress=False)
    mid = _files(run / "spectrum")
    assert {k for k in old if mid.get(k) != old[k]} == set(half["file_name"])
    generate_spectrum(_cfg(run, model=str(tiny_prior), levels=[0.5], steps=8), run, dataset=ds, progress=False)
    new = _files(run / "spectrum")
    assert new.keys() == old.keys() and all(new[k] != old[k] for k in new)
    assert (pd.read_csv(run / "spectrum/metadata.csv")["steps"] == 8).all()


def test_text_to_image_at_zero(tmp_path, tiny_pipelines):
    from discl.errors import DisclError

    ds = tiny_dataset(2)
    run = tmp_path / "run"
    write_hard_csv(run, ds)
    cfg = _cfg(run, backend="diffusers", model=str(tiny_pipelines["sd"]), levels=[0.0], seeds_per_level=1,
               steps=6, guidance_scale=3.0, resolution=32, text_to_image_at_zero=True)
    gen = create_generator(cfg.generation)
    counter = ForwardCounter(gen.denoiser)
    generate_spectrum(cfg, run, dataset=ds, generator=gen, progress=False)
    assert counter.rows == 2 * 2 * 6  # all T steps from pure noise, both CFG branches
    assert (pd.read_csv(run / "spectrum/metadata.csv")["mode"] == "text2img").all()
    # the SDXL refiner cannot generate from text alone, and says so
    run2 = tmp_path / "run2"
    write_hard_csv(run2, ds)
    cfg2 = _cfg(run2, backend="diffusers", model=str(tiny_pipelines["sdxl-refiner"]), levels=[0.0],
                seeds_per_level=1, steps=4, guidance_scale=3.0, resolution=32, text_to_image_at_zero=True)
    with pytest.raises(DisclError, match="text_to_image_at_zero"):
        generate_spectrum(cfg2, run2, dataset=ds, progress=False)


def test_generate_before_mining_says_which_command_makes_hard_csv(tmp_path, capsys):
    """`discl generate --dry-run` on a fresh run folder names the missing file and the command that makes it."""
    from discl.cli import main

    assert main(["generate", "configs/fmnist-lt.yaml", "--run-dir", str(tmp_path / "fresh"), "--dry-run"]) != 0
    err = capsys.readouterr().err
    assert "mining/hard.csv" in err and "discl mine CONFIG" in err, err


def test_diffusers_pipeline_has_the_configured_dtype_whichever_keyword_its_loader_honours(tiny_pipelines, monkeypatch):
    """``generation.dtype`` reaches the denoiser even with a diffusers whose ``from_pretrained`` ignores the
    keyword the adapter chose (``dtype`` vs ``torch_dtype`` moved between versions): the loaded pipeline is cast."""
    import diffusers
    import torch

    from discl.generation.diffusers_backend import load_pipeline

    original = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained.__func__

    def deaf(cls, *args, **kwargs):  # a loader that knows neither keyword: loads in the saved fp32
        kwargs.pop("dtype", None)
        kwargs.pop("torch_dtype", None)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(diffusers.StableDiffusionImg2ImgPipeline, "from_pretrained", classmethod(deaf))
    cfg = GenerationConfig(backend="diffusers", model=str(tiny_pipelines["sd"]),
                           pipeline_class="StableDiffusionImg2ImgPipeline", dtype="bfloat16")
    pipe = load_pipeline(cfg, torch.device("cpu"), torch.bfloat16)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16


def test_the_report_header_names_the_steps_the_spectrum_was_made_with():
    """A spectrum made under an override that the run's config.yaml does not hold: the header says what the
    images were made with, and that the config differs; the embedded conditioning style is named."""
    import pandas as pd

    from discl.config import load_config
    from discl.evaluation.report import _steps_text

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "fmnist-lt.yaml", [])
    same = pd.DataFrame({"lam": [0.1, 0.3, 0.5], "steps": [25, 25, 100]})
    assert _steps_text(cfg, same) == "25 steps (λ 0.5: 100), conditioned on any"
    other = pd.DataFrame({"lam": [0.1, 0.3, 0.5], "steps": [25, 25, 16]})
    assert _steps_text(cfg, other) == ("steps as made λ 0.1: 25, λ 0.3: 25, λ 0.5: 16 (the config says 25 steps "
                                       "(λ 0.5: 100)), conditioned on any")
    assert _steps_text(cfg, None) == "25 steps (λ 0.5: 100), conditioned on any"
    # the style the images were made with (the manifest's column), else the one the shipped prior stores
    made = same.assign(condition_style="clean")
    assert _steps_text(cfg, made) == "25 steps (λ 0.5: 100), conditioned on clean"
    unset = load_config(Path(__file__).resolve().parents[1] / "configs" / "fmnist-lq.yaml", [])
    assert unset.generation.condition_style is None and _steps_text(unset, None).endswith("conditioned on clean")


def test_the_report_header_states_the_filter_rule():
    from discl.config import load_config
    from discl.evaluation.report import _filter_text

    lt = Path(__file__).resolve().parents[1] / "configs" / "fmnist-lt.yaml"
    assert _filter_text(load_config(lt, []).filtering) == "keeps sim_text ≥ 0.5"
    cfg = load_config(lt, ["filtering.threshold=null", "filtering.per_level={0.5: 0.6, 0.1: 0.4}", "filtering.top_q=0.5"])
    assert _filter_text(cfg.filtering) == "no global threshold on sim_text; per λ 0.1: 0.4, 0.5: 0.6; best 0.5 of each source and λ"


def test_the_report_says_which_classes_checkpoint_selection_cannot_see():
    import pandas as pd

    from discl.evaluation.report import _selection_text

    full = pd.DataFrame({"class": ["a", "b"], "val images": [3, 2]})
    assert _selection_text(full) == "Checkpoints are selected on the validation split"
    assert _selection_text(full.assign(**{"val images": [3, 0]})) == (
        "Checkpoints are selected on the validation split, which has no image of 1 class (b): the selection does not see it")
    assert _selection_text(pd.DataFrame({"class": ["a"]})) == "Checkpoints are selected on the validation split"
