"""Every input reruns exactly the stages that depend on it: no fewer, no more (issue 15).

The fast part walks every key documented in docs/configuration.md and every upstream artifact and
checks, at the level of the digests (:mod:`discl.digests`, the functions the stage runners, ``discl
run`` and ``discl sweep`` all use), that changing it changes exactly the digests of the stages
listed in ``EXPECTED`` (the table of docs/reliability.md). Downstream stages follow a change through
the content of the artifacts they read, which the end-to-end part checks on real tiny runs: each
reproduction of the issue gives what a fresh run of the changed config gives.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, TINY

from discl.config import load_config
from discl.digests import current, fold_models_digest, retry_context
from discl.evaluation.results import run_spec, train_run_digest, training_order
from discl.fingerprint import model_fingerprints

BASE = [*TINY, "methods=[ce, discl, adaptive]"]
STAGES = ("mine", "generate", "filter", "train-ce-s0", "train-discl-s0", "train-adaptive-s0")
ALL = set(STAGES)
TRAIN = {"train-ce-s0", "train-discl-s0", "train-adaptive-s0"}
CUR = {"train-discl-s0", "train-adaptive-s0"}
MINE_TRAIN = {"mine"} | TRAIN

# key -> (another valid value, the stages whose digest must change) under BASE (class-frequency
# mining, `discl` = the fixed curriculum, the embedded generator and CLIP, no retries). "{tmp}" is a
# folder with a copy of the shipped prior, a weights file and a descriptions file.
EXPECTED: dict[str, tuple[str, set[str]]] = {
    "name": ("other", set()),
    "run_dir": ("{tmp}/elsewhere", set()),
    "seed": ("7", {"train-adaptive-s0"}),  # adaptive holds images out by the run seed; nothing else draws from it here
    "data.task": ("fmnist-lq", ALL),
    "data.root": ("/usr/share/datasets/fashion-mnist", ALL),
    "data.seed": ("3", ALL),
    "data.image_size": ("12", TRAIN),
    "data.channels": ("3", TRAIN),
    "data.val_per_class": ("10", MINE_TRAIN),
    "data.val_fraction": ("0.2", MINE_TRAIN),
    "data.many_threshold": ("90", TRAIN),
    "data.few_threshold": ("10", TRAIN),
    "data.on_bad_image": ("skip", MINE_TRAIN),
    "data.class_names": ("[a, b]", MINE_TRAIN),
    "data.verify_images": ("false", MINE_TRAIN),
    "data.max_image_pixels": ("1000000", ALL),
    "data.alpha_background": ("white", ALL),
    "data.test_limit": ("100", TRAIN),
    "data.in_memory": ("false", TRAIN),
    "data.in_memory_limit_mb": ("10", TRAIN),
    "data.decode_workers": ("1", set()),
    "data.split_files": ("{train: '{tmp}/train.txt'}", set()),  # read by data.task: split_files only
    "data.class_map": ("'{tmp}/map.txt'", set()),
    "training.augmentation": ("random_resized_crop", TRAIN),
    "mining.criteria": ("[class_frequency, low_confidence]", {"mine"}),
    "mining.combine": ("all", set()),  # one criterion: nothing to combine
    "mining.frequency_below": ("40", {"mine"}),
    "mining.confidence_below": ("0.3", set()),  # not a configured criterion
    "mining.folds": ("5", set()),  # no fold models without a model-based criterion
    "mining.epochs": ("3", set()),
    "mining.max_per_class": ("3", {"mine"}),
    "prompts.templates": ("['a photo of a {name}', 'a picture of a {name}']", {"generate"}),
    "prompts.descriptions_file": ("{tmp}/descriptions.json", {"generate"}),
    "prompts.description_prefix": ("'real: '", set()),  # no descriptions: no prefix
    "prompts.text_model": ("some-org/some-text-model", {"generate"}),
    "prompts.descriptions_per_class": ("3", set()),  # no text model
    "generation.backend": ("diffusers", {"generate"}),
    "generation.model": ("{tmp}/prior", {"generate"}),
    "generation.pipeline_class": ("StableDiffusionImg2ImgPipeline", set()),  # diffusers only
    "generation.levels": ("[0.0, 0.3]", {"generate"}),
    "generation.seeds_per_level": ("3", {"generate"}),
    "generation.steps": ("12", {"generate"}),
    "generation.steps_per_level": ("{0.5: 12}", {"generate"}),
    "generation.condition_style": ("clean", {"generate"}),
    "generation.guidance_scale": ("3.0", {"generate"}),
    "generation.negative_prompt": ("blurry", {"generate"}),
    "generation.text_to_image_at_zero": ("true", {"generate"}),
    "generation.base_seed": ("5", {"generate"}),
    "generation.batch_size": ("3", set()),
    "generation.dtype": ("float32", {"generate"}),
    "generation.device": ("cpu", set()),
    "generation.resolution": ("64", set()),  # diffusers only
    "generation.image_format": ("jpg", {"generate"}),
    "generation.scheduler": ("EulerDiscreteScheduler", {"generate"}),
    "generation.scheduler_kwargs": ("{timestep_spacing: trailing}", {"generate"}),
    "filtering.backend": ("transformers", {"filter"}),
    "filtering.model": ("{tmp}/clip.safetensors", {"filter"}),
    "filtering.text_template": ("'a picture of a {name}'", {"filter"}),
    "filtering.score": ("image", {"filter"}),
    "filtering.threshold": ("0.4", {"filter"}),
    "filtering.per_level": ("{0.5: 0.2}", {"filter"}),
    "filtering.per_class": ("{Sandal: 0.2}", {"filter"}),
    "filtering.top_q": ("0.5", {"filter"}),
    "filtering.retries": ("2", {"filter"}),
    "filtering.batch_size": ("7", set()),
    "filtering.device": ("cpu", set()),
    "training.model": ("resnet10", TRAIN),
    "training.pretrained": ("true", TRAIN),
    "training.pretrained_path": ("{tmp}/weights.safetensors", TRAIN),
    "training.clip_model": ("ViT-B-32", TRAIN),
    "training.clip_pretrained": ("openai", TRAIN),
    "training.loss": ("balanced_softmax", None),  # decided below: the runs that take training.loss
    "training.sampler": ("class_balanced", CUR),  # a baseline's variant sets its own sampler
    "training.epochs": ("4", TRAIN),
    "training.batch_size": ("64", TRAIN),  # SGD with another batch size is another optimisation
    "training.optimizer": ("sgd", TRAIN),
    "training.lr": ("0.01", TRAIN),
    "training.weight_decay": ("0.001", TRAIN),
    "training.momentum": ("0.8", TRAIN),
    "training.grad_clip": ("1.0", TRAIN),
    "training.warmup_steps": ("5", TRAIN),
    "training.schedule": ("constant", TRAIN),
    "training.augment": ("false", TRAIN),
    "training.init_from": ("{tmp}/weights.safetensors", TRAIN),
    "training.seed": ("9", set()),  # every run takes its seed from `seeds`
    "training.mixed_precision": ("bf16", TRAIN),
    "training.num_workers": ("2", set()),
    "training.select_on": ("val_macro_f1", TRAIN),
    "training.eval_every": ("2", TRAIN),
    "training.log_with": ("[tensorboard]", set()),
    "training.checkpoint_every": ("2", set()),
    "curriculum.strategy": ("mixed", {"train-discl-s0"}),  # `adaptive` names its own strategy
    "curriculum.levels": ("[0.0, 0.5, 1.0]", CUR),
    "curriculum.stages": ("[0.5, 0.5]", CUR),
    "curriculum.fixed_level": ("0.5", CUR),
    "curriculum.curriculum_fraction": ("0.5", CUR),
    "curriculum.real_fraction": ("0.5", CUR),
    "curriculum.tail_quota": ("false", CUR),
    "curriculum.synthetic_cap_per_class": ("5", CUR),
    "curriculum.tail_min_hard_share": ("0.4", CUR),
    "curriculum.min_tail_synthetic_share": ("0.9", set()),  # a check that warns, not a setting: nothing reruns
    "curriculum.holdout_per_class": ("2", CUR),
    "curriculum.min_stage_epochs": ("2", CUR),
    "curriculum.epsilon": ("0.1", CUR),
    "curriculum.ucb": ("0.5", CUR),
    "curriculum.smoothing": ("0.5", CUR),
    "curriculum.class_min_holdout": ("2", set()),  # adaptive_class only
}
# set by the comparison itself: checked by their own tests below
STRUCTURAL = {"methods", "seeds"}
ONLY_CONDITIONAL = {"generation.lora"}  # invalid under BASE (embedded backend): checked in CONDITIONAL


def documented_keys() -> list[str]:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    return re.findall(r"^\| `([a-z_.]+)` \|", text, flags=re.M)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    """A run folder with tiny upstream artifacts, a prior copy, a weights file and a descriptions file."""
    from discl.generation.prior import ASSET_DIR

    d = tmp_path_factory.mktemp("digests")
    shutil.copytree(ASSET_DIR, d / "prior")
    (d / "weights.safetensors").write_bytes(b"not really weights")
    (d / "clip.safetensors").write_bytes(b"another scorer")
    (d / "descriptions.json").write_text(json.dumps({"Sandal": ["a sandal on a beach", "a sandal in a shop"]}))
    run = d / "run"
    (run / "mining").mkdir(parents=True)
    (run / "mining" / "hard.csv").write_text("sample_id,label,class_name\ntrain-1,5,Sandal\n")
    (run / "spectrum").mkdir()
    (run / "spectrum" / "metadata.csv").write_text("file_name,sample_id,lam\nimages/5/a.png,train-1,0.5\n")
    (run / "filter").mkdir()
    (run / "filter" / "manifest.csv").write_text("file_name,sample_id,lam,keep\nimages/5/a.png,train-1,0.5,True\n")
    return d


def digests(cfg, run: Path) -> dict[str, str]:
    """Every stage's digest under ``cfg`` with the artifacts of ``run`` (what ``discl run`` records)."""
    fps = model_fingerprints(cfg)
    out = {stage: current(cfg, run, stage, fps) for stage in ("mine", "generate", "filter")}
    for method in training_order(cfg):
        for seed in cfg.seeds:
            out[f"train-{method}-s{seed}"] = train_run_digest(cfg, run, method, seed, fps)
    return out


def changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {k for k in a if a[k] != b.get(k)}


def config(tmp: Path, *overrides: str, base=BASE):
    return load_config(ROOT / "configs" / "fmnist-lt.yaml", [*base, *(o.replace("{tmp}", str(tmp)) for o in overrides)])


def test_every_documented_key_has_an_expectation():
    keys = set(documented_keys())
    assert len(keys) > 90
    assert keys - STRUCTURAL - ONLY_CONDITIONAL == set(EXPECTED), "a key without an expected set of stages (add it to EXPECTED)"


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_a_key_reruns_exactly_what_depends_on_it(key: str, tmp: Path):
    value, expected = EXPECTED[key]
    base = config(tmp)
    cfg = config(tmp, f"{key}={value}")
    assert cfg.to_dict() != base.to_dict(), f"{key}={value} is the base value: pick another"
    if expected is None:  # training.loss: the curriculum runs whose method does not name a loss take it
        expected = {f"train-{m}-s0" for m in ("discl", "adaptive")
                    if run_spec(cfg, m).loss != run_spec(base, m).loss
                    or (run_spec(cfg, m).loss is None and cfg.training.loss != base.training.loss)}
    assert changed(digests(base, tmp / "run"), digests(cfg, tmp / "run")) == expected


# the keys whose effect depends on another key: checked under that other setting
CONDITIONAL = [
    # model-based mining: the fold models read the training setup, the folds and the run seed
    (["mining.criteria=[class_frequency, low_confidence]"], "mining.confidence_below=0.3", {"mine"}),
    (["mining.criteria=[class_frequency, low_confidence]"], "mining.combine=all", {"mine"}),
    (["mining.criteria=[class_frequency, low_confidence]"], "mining.folds=5", {"mine"}),
    (["mining.criteria=[class_frequency, low_confidence]"], "mining.epochs=3", {"mine"}),
    (["mining.criteria=[class_frequency, low_confidence]"], "training.lr=0.01", MINE_TRAIN),
    (["mining.criteria=[class_frequency, low_confidence]"], "training.epochs=4", TRAIN),  # folds use mining.epochs
    (["mining.criteria=[class_frequency, low_confidence]"], "data.image_size=12", MINE_TRAIN),
    (["mining.criteria=[class_frequency, low_confidence]"], "seed=7", {"mine", "train-adaptive-s0"}),
    (["mining.max_per_class=3"], "seed=7", {"mine", "train-adaptive-s0"}),  # the cap draws a seeded subset
    # descriptions: the prefix counts, the file's path does not (its content does, below)
    (["prompts.descriptions_file={tmp}/descriptions.json"], "prompts.description_prefix='real: '", {"generate"}),
    (["prompts.text_model=some-org/some-text-model"], "prompts.descriptions_per_class=3", {"generate"}),
    # diffusers keys count under the diffusers backend
    (["generation.backend=diffusers"], "generation.resolution=64", {"generate"}),
    (["generation.backend=diffusers"], "generation.condition_style=clean", set()),  # the embedded prior's only
    (["generation.backend=diffusers"], "generation.pipeline_class=StableDiffusionImg2ImgPipeline", {"generate"}),
    (["generation.backend=diffusers"], "generation.lora=[{path: '{tmp}/weights.safetensors', scale: 0.5}]", {"generate"}),
    (["generation.backend=diffusers", "generation.lora=[{path: '{tmp}/weights.safetensors', scale: 0.5}]"],
     "generation.lora=[{path: '{tmp}/weights.safetensors', scale: 0.8}]", {"generate"}),
    (["generation.backend=diffusers", "generation.lora=[{path: '{tmp}/weights.safetensors'}]"],
     "generation.lora=[{path: '{tmp}/clip.safetensors'}]", {"generate"}),
    (["generation.levels=[0.3, 0.5]"], "generation.text_to_image_at_zero=true", set()),  # no λ = 0
    # retries generate images: the filter then depends on what the images and their prompts depend on
    (["filtering.retries=2"], "generation.steps=12", {"generate", "filter"}),
    (["filtering.retries=2"], "prompts.templates=['a picture of a {name}']", {"generate", "filter"}),
    (["filtering.retries=2"], "generation.batch_size=3", set()),
    # a baseline the curriculum fine-tunes from
    (["training.init_from=ce"], "training.lr=0.01", TRAIN),
]


@pytest.mark.parametrize("extra,override,expected", CONDITIONAL, ids=[c[1] + " | " + ",".join(c[0]) for c in CONDITIONAL])
def test_a_key_that_depends_on_another(extra, override, expected, tmp: Path):
    base = config(tmp, *extra)
    cfg = config(tmp, *extra, override)
    assert changed(digests(base, tmp / "run"), digests(cfg, tmp / "run")) == expected


def _edited(tmp: Path, rel: str, text: str) -> Path:
    """A copy of the artifact run folder with ``rel`` rewritten."""
    run = tmp / f"edit-{rel.replace('/', '-')}"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(tmp / "run", run)
    (run / rel).parent.mkdir(parents=True, exist_ok=True)
    (run / rel).write_text(text)
    return run


@pytest.mark.parametrize("rel,expected", [
    ("mining/hard.csv", {"generate"} | CUR),
    ("spectrum/metadata.csv", {"filter"}),
    ("filter/manifest.csv", CUR),
])
def test_an_upstream_artifact_reruns_exactly_its_readers(rel: str, expected: set[str], tmp: Path):
    cfg = config(tmp)
    before = digests(cfg, tmp / "run")
    after = digests(cfg, _edited(tmp, rel, (tmp / "run" / rel).read_text() + "x\n"))
    assert changed(before, after) == expected
    # the same bytes under a new mtime change nothing
    same = _edited(tmp, rel, (tmp / "run" / rel).read_text())
    assert digests(cfg, same) == before


def test_the_descriptions_file_counts_by_content_not_path(tmp: Path):
    d1, d2 = tmp / "d1.json", tmp / "d2.json"
    d1.write_text(json.dumps({"Sandal": ["a sandal on a beach"]}))
    shutil.copy(d1, d2)
    a = digests(config(tmp, f"prompts.descriptions_file={d1}"), tmp / "run")
    assert digests(config(tmp, f"prompts.descriptions_file={d2}"), tmp / "run") == a  # same content elsewhere
    d1.write_text(json.dumps({"Sandal": ["a sandal in the snow"]}))
    assert changed(a, digests(config(tmp, f"prompts.descriptions_file={d1}"), tmp / "run")) == {"generate"}


def test_the_baseline_checkpoint_a_curriculum_starts_from(tmp: Path):
    cfg = config(tmp, "training.init_from=ce")
    run = _edited(tmp, "train/ce-s0/best.safetensors", "weights v1")
    a = digests(cfg, run)
    (run / "train" / "ce-s0" / "best.safetensors").write_text("weights v2")
    assert changed(a, digests(cfg, run)) == CUR


def test_weights_behind_the_same_reference(tmp: Path, monkeypatch):
    monkeypatch.setenv("DISCL_CACHE_DIR", str(tmp / "cache"))
    prior = tmp / "prior2"
    shutil.copytree(tmp / "prior", prior)
    weights = tmp / "w2.safetensors"
    weights.write_bytes(b"v1")
    clip = tmp / "c2.safetensors"
    clip.write_bytes(b"v1")
    cfg = config(tmp, f"generation.model={prior}", f"training.pretrained_path={weights}", f"filtering.model={clip}")
    a = digests(cfg, tmp / "run")
    data = bytearray((prior / "prior.safetensors").read_bytes())
    data[-1] ^= 1
    (prior / "prior.safetensors").write_bytes(bytes(data))
    b = digests(cfg, tmp / "run")
    assert changed(a, b) == {"generate"}
    clip.write_bytes(b"v2")
    c = digests(cfg, tmp / "run")
    assert changed(b, c) == {"filter"}
    weights.write_bytes(b"v2")
    assert changed(c, digests(cfg, tmp / "run")) == TRAIN


def test_methods_and_seeds_add_runs_without_touching_the_others(tmp: Path):
    a = digests(config(tmp), tmp / "run")
    b = digests(config(tmp, "methods=[ce, discl, adaptive, mixed]", "seeds=[0, 1]"), tmp / "run")
    assert {k: b[k] for k in a} == a
    assert set(b) - set(a) == {"train-mixed-s0", "train-ce-s1", "train-discl-s1", "train-adaptive-s1",
                               "train-mixed-s1"}
    assert b["train-discl-s1"] != b["train-discl-s0"]


def test_fold_models_are_reused_when_only_the_selection_changes(tmp: Path):
    extra = ["mining.criteria=[class_frequency, low_confidence]"]
    a = fold_models_digest(config(tmp, *extra), {}, content="")
    for same in ("mining.confidence_below=0.2", "mining.combine=all", "mining.frequency_below=40",
                 "training.epochs=4", "training.num_workers=2", "mining.max_per_class=3"):
        assert fold_models_digest(config(tmp, *extra, same), {}, content="") == a, same
    for other in ("mining.folds=4", "mining.epochs=3", "training.lr=0.01", "seed=2", "data.val_per_class=10"):
        assert fold_models_digest(config(tmp, *extra, other), {}, content="") != a, other


def test_retry_candidates_are_keyed_by_what_they_depend_on(tmp: Path):
    base = config(tmp, "filtering.retries=2")
    a = retry_context(base, "", {}, content="")
    for same in ("filtering.threshold=0.2", "filtering.batch_size=3", "generation.batch_size=2", "training.lr=0.1"):
        assert retry_context(config(tmp, "filtering.retries=2", same), "", {}, content="") == a, same
    for other in ("filtering.model={tmp}/clip.safetensors", "filtering.text_template='a {name}'",
                  "generation.steps=3", "prompts.templates=['a {name}', 'the {name}']"):
        assert retry_context(config(tmp, "filtering.retries=2", other), "", {}, content="") != a, other
    assert retry_context(base, "d2", {}, content="") == a  # no descriptions file configured: its digest is not read
    with_desc = config(tmp, "filtering.retries=2", "prompts.descriptions_file={tmp}/descriptions.json")
    assert retry_context(with_desc, "d1", {}, content="") != retry_context(with_desc, "d2", {}, content="")


def test_run_spec_is_what_train_method_trains():
    cfg = load_config(ROOT / "configs" / "fmnist-lt.yaml", TINY)
    assert run_spec(cfg, "ce").variant == "ce" and run_spec(cfg, "cb").variant == "cb"
    s = run_spec(cfg, "single@0.5")
    assert s.strategy == "single" and s.cfg.curriculum.fixed_level == 0.5
    assert run_spec(cfg, "discl").strategy == cfg.curriculum.strategy


# -- end to end: the reproductions on tiny real runs ----------------------------------------

SPECTRUM_ONLY = [*TINY, "generation.levels=[0.5]", "generation.seeds_per_level=1", "generation.steps=4"]
ONE_BY_ONE = [*SPECTRUM_ONLY, "generation.batch_size=1"]  # every image its own batch: reused whenever its inputs are


def _spectrum(run: Path) -> dict[str, bytes]:
    files = {p.relative_to(run / "spectrum").as_posix(): p.read_bytes() for p in (run / "spectrum" / "images").rglob("*")
             if p.is_file()}
    return {**files, "metadata.csv": (run / "spectrum" / "metadata.csv").read_bytes()}


def _image_mtimes(run: Path) -> dict[Path, int]:
    """Each spectrum image's mtime: which images a rerun wrote again."""
    return {p: p.stat().st_mtime_ns for p in (run / "spectrum" / "images").rglob("*.png")}


def _mine_and_generate(cfg, run: Path, dataset) -> None:
    from discl.generation.runner import generate_spectrum
    from discl.mining.runner import mine

    mine(cfg, run)
    generate_spectrum(cfg, run, dataset=dataset, progress=False)


def test_the_spectrum_follows_hard_csv(tmp_path: Path):
    """mining.frequency_below 20 -> 40 -> 20: the spectrum always matches hard.csv; images of unchanged
    hard images are reused (batches of one image here: a batch is reused when its make-up is
    unchanged), new ones generated, dropped ones removed; the result is byte-identical to a fresh run
    of each config (issue 14.2 / 15)."""
    from discl.artifacts import read_table
    from discl.data import build_dataset

    low, high = (load_config(ROOT / "configs" / "fmnist-lt.yaml", [*ONE_BY_ONE, f"mining.frequency_below={v}"])
                 for v in (20, 40))
    ds = build_dataset(low.data)
    run = tmp_path / "run"
    _mine_and_generate(low, run, ds)
    first = _spectrum(run)
    mtimes = _image_mtimes(run)

    _mine_and_generate(high, run, ds)
    hard, meta = read_table(run / "mining" / "hard.csv"), read_table(run / "spectrum" / "metadata.csv")
    assert len(hard) > 27 and set(meta["sample_id"]) == set(hard["sample_id"].astype(str))
    reused = [p for p, t in mtimes.items() if p.stat().st_mtime_ns == t]
    assert len(reused) == len(mtimes), "the unchanged hard images' variants were generated again"
    _mine_and_generate(high, tmp_path / "fresh-high", ds)
    assert _spectrum(run) == _spectrum(tmp_path / "fresh-high")

    _mine_and_generate(low, run, ds)  # back: the classes that are no longer hard leave the spectrum
    assert _spectrum(run) == first


def test_editing_the_descriptions_file_regenerates(tmp_path: Path):
    from discl.artifacts import read_table
    from discl.data import build_dataset

    desc = tmp_path / "descriptions.json"
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    desc.write_text(json.dumps({n: [f"{n} on a table"] for n in names}))
    cfg = load_config(ROOT / "configs" / "fmnist-lt.yaml", [*SPECTRUM_ONLY, f"prompts.descriptions_file={desc}"])
    ds = build_dataset(cfg.data)
    run = tmp_path / "run"
    _mine_and_generate(cfg, run, ds)
    mtimes = _image_mtimes(run)
    desc.write_text(json.dumps({n: [f"{n} in the snow"] for n in names}))
    _mine_and_generate(cfg, run, ds)
    meta = read_table(run / "spectrum" / "metadata.csv")
    assert meta["prompt"].str.endswith("in the snow").all()
    assert all(p.stat().st_mtime_ns != t for p, t in mtimes.items())


def test_batch_sizes_devices_and_workers_rerun_nothing(tiny_run: Path, tmp_path: Path):
    from discl.pipeline import run

    copy = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    cfg = load_config(ROOT / "configs" / "fmnist-lt.yaml",
                      [*TINY, "filtering.batch_size=7", "filtering.device=cpu", "generation.batch_size=3",
                       "generation.device=cpu", "training.num_workers=0", "training.checkpoint_every=2"])
    status = run(cfg, copy)
    assert {k for k, v in status.items() if v == "ran"} == {"report"}


SMALL = [*TINY, "methods=[adaptive]", "generation.levels=[0.0, 0.5]", "generation.seeds_per_level=1",
         "generation.steps=4", "curriculum.levels=[0.0, 0.5]", "training.epochs=2", "data.image_size=12",
         "data.test_limit=100"]


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory) -> Path:
    from discl.pipeline import run

    out = tmp_path_factory.mktemp("adaptive") / "run"
    run(load_config(ROOT / "configs" / "fmnist-lt.yaml", SMALL), out)
    return out


def _rerun(base: Path, tmp_path: Path, *overrides: str) -> tuple[dict[str, str], Path]:
    from discl.pipeline import run

    copy = Path(shutil.copytree(base, tmp_path / "run"))
    return run(load_config(ROOT / "configs" / "fmnist-lt.yaml", [*SMALL, *overrides]), copy), copy


@pytest.mark.slow
def test_changed_templates_regenerate_refilter_and_retrain(adaptive_run: Path, tmp_path: Path):
    """~1 min on 2 loaded cores (a tiny run, then its rerun with one more template)."""
    before = json.loads((adaptive_run / "train" / "adaptive-s0" / "metrics.json").read_text())
    status, run = _rerun(adaptive_run, tmp_path, "prompts.templates=['a photo of a {name}', 'a drawing of a {name}']")
    assert status["mine"] == "skipped"
    assert status["generate"] == status["filter"] == status["train-adaptive-s0"] == "ran"
    after = json.loads((run / "train" / "adaptive-s0" / "metrics.json").read_text())
    assert after["digest"] != before["digest"]  # trained again, not "complete; not retraining"
    assert json.loads((run / ".stages" / "train-adaptive-s0.json").read_text())["digest"] == after["digest"]


@pytest.mark.slow
def test_a_new_run_seed_retrains_the_adaptive_runs_only(adaptive_run: Path, tmp_path: Path):
    """~30 s: seed 0 -> 7 under class-frequency mining changes only the held-out images of `adaptive`."""
    before = json.loads((adaptive_run / "train" / "adaptive-s0" / "metrics.json").read_text())
    status, run = _rerun(adaptive_run, tmp_path, "seed=7")
    assert {k: v for k, v in status.items() if k != "report"} == {
        "mine": "skipped", "generate": "skipped", "filter": "skipped", "train-adaptive-s0": "ran"}
    after = json.loads((run / "train" / "adaptive-s0" / "metrics.json").read_text())
    assert after["digest"] != before["digest"]
    results = pd.read_csv(run / "results.csv")
    assert results["status"].tolist() == ["ok"]


def test_the_report_shows_only_runs_of_the_current_config(tiny_run: Path, tmp_path: Path):
    """A run trained for another config is shown as stale with the reason, not averaged in; a seed
    never trained is shown as missing; `discl report` rewrites results.csv."""
    from discl.evaluation.report import write_report
    from discl.evaluation.results import collect_results

    copy = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    cfg = load_config(ROOT / "configs" / "fmnist-lt.yaml", [*TINY, "seeds=[0, 1]", "curriculum.real_fraction=0.5"])
    res = collect_results(cfg, copy).set_index(["method", "seed"])
    assert res.loc[("ce", 0), "status"] == "ok" and res.loc[("ce", 1), "status"] == "missing"
    assert res.loc[("discl", 0), "status"] == "stale" and "other inputs" in res.loc[("discl", 0), "reason"]
    assert pd.isna(res.loc[("discl", 0)].get("test.top1"))
    write_report(cfg, copy)
    written = pd.read_csv(copy / "results.csv")
    assert written[["method", "seed", "status"]].values.tolist() == [
        ["ce", 0, "ok"], ["ce", 1, "missing"], ["discl", 0, "stale"], ["discl", 1, "missing"]]
    md = (copy / "report.md").read_text()
    assert "sample std, ddof=1" in md and "seed 0: stale" in md and "seed 1: missing" in md


def test_the_mining_fold_models_do_not_depend_on_init_from(tmp_path: Path):
    """The out-of-fold models never start from a checkpoint of the run: switching training.init_from
    (null, ce, baseline, a file) must not retrain them."""
    from discl.digests import fold_models_digest

    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"v1")
    out = set()
    for init in ("null", "ce", "baseline", str(ckpt)):
        cfg = load_config(ROOT / "configs" / "fmnist-lq.yaml", [f"training.init_from={init}"])
        out.add(fold_models_digest(cfg, model_fingerprints(cfg), content=""))
    assert len(out) == 1
    other = load_config(ROOT / "configs" / "fmnist-lq.yaml", ["training.lr=0.5"])
    assert fold_models_digest(other, model_fingerprints(other), content="") not in out


def test_an_image_key_does_not_depend_on_the_other_levels():
    """The same (source, λ, seed) row keeps its key when levels are added or dropped, also when λ = 0
    leaves the list (``text_to_image_at_zero`` then leaves generation_view; the row's ``mode`` records it)."""
    from discl.digests import image_key, image_settings_digest

    full, part = (load_config(ROOT / "configs" / "fmnist-lt.yaml", [*TINY, f"generation.levels={lv}"])
                  for lv in ("[0.0, 0.1, 0.5]", "[0.1, 0.5]"))
    assert image_settings_digest(full) == image_settings_digest(part)
    t2i = load_config(ROOT / "configs" / "fmnist-lt.yaml", [*TINY, "generation.levels=[0.0, 0.1, 0.5]",
                                                              "generation.text_to_image_at_zero=true"])
    row = {"sample_id": "a", "lam": 0.0, "k": 0, "seed": 1, "mode": "img2img"}
    assert image_key(row, image_settings_digest(t2i)) == image_key(row, image_settings_digest(full))
    assert image_key({**row, "mode": "text2img"}, image_settings_digest(t2i)) != image_key(row, image_settings_digest(t2i))


# -- the data's content (issue 23) ------------------------------------------------------------------
# The config names the data; what is behind the name counts too. Mining and training read the whole
# dataset, generation and the filter its hard images: every stage's digest follows the dataset's
# listing (rows, labels, splits, each image's size and mtime, the list files' bytes), and a spectrum
# image's key follows the bytes of its own source only.


def _png(path: Path, value: int, size: int = 6) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, 255 - value, 40)).save(path)


def _user_data(root: Path) -> dict[str, Path]:
    """One tiny dataset in the three file-backed layouts: a CSV, a folder, split files + class map."""
    rows = ["path,label,split"]
    for c, n in (("cat", 3), ("dog", 2)):
        for split in ("train", "val", "test"):
            for i in range(n):
                rel = f"{split}/{c}/{i}.png"
                _png(root / "img" / rel, 20 * i + (0 if c == "cat" else 100))
                rows.append(f"{rel},{c},{split}")
    (root / "img" / "data.csv").write_text("\n".join(rows) + "\n")
    for split in ("train", "val", "test"):
        lines = [f"{r.split(',')[0]} {0 if ',cat,' in r else 1}" for r in rows[1:] if r.endswith("," + split)]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "map.txt").write_text("n001 cat\nn002 dog\n")
    return {"csv": root / "img" / "data.csv", "folder": root / "img", "split_files": root / "img"}


def _user_config(tmp: Path, task: str, root: Path, *extra: str):
    over = [f"data.task={task}", f"data.root={root}", "data.channels=3", "data.image_size=8"]
    if task == "split_files":
        over += [f"data.split_files={{train: '{root.parent}/train.txt', val: '{root.parent}/val.txt', "
                 f"test: '{root.parent}/test.txt'}}", f"data.class_map={root.parent}/map.txt"]
    return config(tmp, *over, *extra)


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


# change -> whether every stage's digest must change (True) or none (False)
DATA_CHANGES = {
    "csv": [
        ("append a training image to a class", lambda d: (_png(d / "img/train/dog/9.png", 9),
                                                           _append(d / "img/data.csv", "train/dog/9.png,dog,train")), True),
        ("relabel a row", lambda d: (d / "img/data.csv").write_text(
            (d / "img/data.csv").read_text().replace("train/cat/0.png,cat", "train/cat/0.png,dog")), True),
        ("move a row to another split", lambda d: (d / "img/data.csv").write_text(
            (d / "img/data.csv").read_text().replace("test/dog/1.png,dog,test", "test/dog/1.png,dog,train")), True),
        ("replace an image in place", lambda d: _png(d / "img/test/cat/2.png", 200, size=7), True),
        ("an image file the CSV does not list", lambda d: _png(d / "img/extra.png", 1), False),
    ],
    "folder": [
        ("add an image to a class folder", lambda d: _png(d / "img/train/dog/9.png", 9), True),
        ("move an image to another class", lambda d: (d / "img/train/cat/0.png").rename(d / "img/train/dog/7.png"), True),
        ("replace an image in place", lambda d: _png(d / "img/val/cat/1.png", 201, size=7), True),
        ("a hidden file and a non-image file", lambda d: ((d / "img/train/cat/.x.png").write_bytes(b"x"),
                                                          (d / "img/train/cat/notes.txt").write_text("x")), False),
    ],
    "split_files": [
        ("add a line to a split file", lambda d: (_png(d / "img/train/dog/9.png", 9), _append(d / "train.txt", "train/dog/9.png 1")), True),
        ("rename a class in the class map", lambda d: (d / "map.txt").write_text("n001 cat\nn002 wolf\n"), True),
        ("replace a listed image in place", lambda d: _png(d / "img/train/dog/1.png", 202, size=7), True),
        ("an image no split file lists", lambda d: _png(d / "img/train/dog/8.png", 8), False),
    ],
}


@pytest.mark.parametrize("task,change,everything", [(t, c, e) for t, cs in DATA_CHANGES.items() for c, _, e in cs],
                         ids=[f"{t}: {c}" for t, cs in DATA_CHANGES.items() for c, _, _ in cs])
def test_the_data_content_reruns_every_stage_that_reads_it(task: str, change: str, everything: bool,
                                                            tmp: Path, tmp_path: Path):
    roots = _user_data(tmp_path)
    cfg = _user_config(tmp, task, roots[task])
    before = digests(cfg, tmp / "run")
    assert digests(cfg, tmp / "run") == before  # listing twice: the same digest
    dict((c, f) for c, f, _ in DATA_CHANGES[task])[change](tmp_path)
    assert changed(before, digests(cfg, tmp / "run")) == (set(before) if everything else set())


def test_a_spectrum_image_key_follows_the_bytes_of_its_own_source(tmp: Path, tmp_path: Path):
    """An image replaced in place gets new keys for its variants (so they are made again, and the filter
    scores the new bytes); the other images keep theirs, and a touched image with the same bytes too."""
    import os

    from discl.data import build_dataset
    from discl.generation.runner import plan_spectrum

    roots = _user_data(tmp_path)
    cfg = _user_config(tmp, "csv", roots["csv"], "generation.levels=[0.5]", "generation.seeds_per_level=1")
    hard = pd.DataFrame({"sample_id": ["train/cat/0.png", "train/dog/1.png"], "label": [0, 1],
                         "class_name": ["cat", "dog"]})

    def keys() -> dict[str, str]:
        plan = plan_spectrum(cfg, hard, build_dataset(cfg.data))
        return dict(zip(plan["sample_id"], plan["image_key"]))

    a = keys()
    cat = tmp_path / "img/train/cat/0.png"
    st = cat.stat()
    os.utime(cat, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    assert keys() == a
    _png(cat, 123)  # replaced in place
    b = keys()
    assert b["train/cat/0.png"] != a["train/cat/0.png"] and b["train/dog/1.png"] == a["train/dog/1.png"]


def test_steps_per_level_remakes_only_the_levels_it_changes(tmp_path: Path):
    """``generation.steps_per_level`` sets one level's schedule length: the metadata records it per row,
    the other level's images are reused byte for byte, and removing it again gives the first spectrum."""
    from discl.artifacts import read_table
    from discl.data import build_dataset

    base = [*TINY, "generation.levels=[0.3, 0.5]", "generation.seeds_per_level=1", "generation.steps=4",
            "generation.batch_size=1"]
    plain = load_config(ROOT / "configs" / "fmnist-lt.yaml", base)
    longer = load_config(ROOT / "configs" / "fmnist-lt.yaml", [*base, "generation.steps_per_level={0.5: 8}"])
    ds = build_dataset(plain.data)
    run = tmp_path / "run"
    _mine_and_generate(plain, run, ds)
    first = _spectrum(run)
    mtimes = _image_mtimes(run)

    _mine_and_generate(longer, run, ds)
    meta = read_table(run / "spectrum" / "metadata.csv")
    assert dict(zip(meta["lam"], meta["steps"])) == {0.3: 4, 0.5: 8}
    assert dict(zip(meta["lam"], meta["denoise_steps"])) == {0.3: 2, 0.5: 4}  # int(steps x strength)
    changed = {p.name for p, t in mtimes.items() if p.stat().st_mtime_ns != t}
    assert changed and all("_l0.50_" in n for n in changed), changed
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items() if p.name not in changed)
    assert _spectrum(run) != first

    _mine_and_generate(plain, run, ds)
    assert _spectrum(run) == first


def test_naming_the_style_the_prior_stores_remakes_nothing(tmp: Path, tmp_path: Path):
    """``generation.condition_style`` set to the style the prior's ``prior_config.json`` stores is the
    spectrum of the key left unset: the same stage digests and image keys, so no image is remade and
    nothing downstream reruns; another style is another spectrum. The stored style is read from the
    config file of the prior the config names (a copy of the shipped prior storing ``acquisition``
    here), and ``metadata.csv`` records the style the rows were made with."""
    from discl.data import build_dataset
    from discl.generation.runner import plan_spectrum

    stored_acquisition = tmp_path / "prior"
    shutil.copytree(tmp / "prior", stored_acquisition)
    meta = json.loads((stored_acquisition / "prior_config.json").read_text())
    (stored_acquisition / "prior_config.json").write_text(json.dumps({**meta, "condition_style": "acquisition"}))
    run = tmp / "run"
    ds = build_dataset(config(tmp).data)
    hard = ds.frame.groupby("label").head(1).iloc[:2][["sample_id", "label"]]
    hard["class_name"] = [ds.classes[i] for i in hard["label"]]
    for model, stored, other in (("embedded", "clean", "any"), (str(stored_acquisition), "acquisition", "clean")):
        unset, same, different = (config(tmp, f"generation.model={model}", f"generation.condition_style={style}")
                                  for style in ("null", stored, other))
        assert unset.generation.condition_style is None
        assert digests(same, run) == digests(unset, run)
        assert changed(digests(unset, run), digests(different, run)) == {"generate"}

        plans = {style: plan_spectrum(c, hard, ds) for style, c in (("unset", unset), (stored, same), (other, different))}
        assert list(plans["unset"]["image_key"]) == list(plans[stored]["image_key"])
        assert set(plans["unset"]["image_key"]).isdisjoint(plans[other]["image_key"])
        assert {s: set(p["condition_style"]) for s, p in plans.items()} == {"unset": {stored}, stored: {stored}, other: {other}}
