"""``discl run``: every stage in order, in one run folder, skipping what is already done.

mine -> generate (prompts + spectrum) -> filter -> train (each method x seed) -> report

Each stage is recorded in ``RUN/.stages/<stage>.json`` with a digest of the config sections its
output depends on (upstream sections included) and of the weights of the models those sections
load (:mod:`discl.fingerprint`; recorded in the marker under ``models``). A rerun with the same
config and weights does no work; a changed setting or changed weights rerun the stages that depend
on them; an interrupted stage resumes from its own artifacts (finished images, training checkpoints).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from discl.artifacts import atomic_write_text, is_complete, mark_complete, write_table
from discl.config import RunConfig, save_config, section_digest
from discl.methods import BASELINES, parse_method

log = logging.getLogger(__name__)

MODEL_BASED_CRITERIA = {"misclassified", "low_confidence"}


def stage_sections(cfg: RunConfig) -> dict[str, tuple[str, ...]]:
    """The config sections each stage's output depends on, upstream ones included (pure)."""
    mine = ("data", "mining", "seed")  # the run seed draws the per-class cap and the adaptive held-out images
    if MODEL_BASED_CRITERIA & set(cfg.mining.criteria):  # the out-of-fold models depend on these too
        mine = (*mine, "training")
    gen = (*mine, "prompts", "generation")
    filt = (*gen, "filtering")
    return {"mine": mine, "generate": gen, "filter": filt, "train": (*filt, "training", "curriculum"),
            "train-real": ("data", "training")}


def stage_models(sections: tuple[str, ...], fingerprints: dict[str, Any] | None) -> dict[str, Any]:
    """The model fingerprints of a stage: those of the config sections it depends on (pure)."""
    return {s: fingerprints[s] for s in sections if fingerprints and s in fingerprints}


def stage_digest(cfg: RunConfig, stage: str, fingerprints: dict[str, Any] | None = None) -> str:
    """The digest a stage's marker records: its config sections, plus its models' fingerprints.

    ``fingerprints`` is :func:`discl.fingerprint.model_fingerprints` ``(cfg)``; a stage that loads
    no model (class-frequency mining) keeps the plain section digest. The marker of a training run
    ``RUN/.stages/train-<method>-s<seed>.json`` records the same over :func:`method_view` ``(cfg,
    method)`` (``"train"`` for methods that use synthetic data, else ``"train-real"``) + f":{seed}".
    """
    sections = stage_sections(cfg)[stage]
    return _digest(cfg, sections, stage_models(sections, fingerprints))


def _digest(cfg: RunConfig, sections: tuple[str, ...], models: dict[str, Any]) -> str:
    from discl.fingerprint import fingerprints_digest

    digest = section_digest(cfg, *sections)
    return f"{digest}-{fingerprints_digest(models)}" if models else digest


@dataclass
class Stage:
    name: str
    sections: tuple[str, ...]
    fn: Callable[[RunConfig, Path], Any]
    needs_synthetic: bool = False


def _mine(cfg: RunConfig, run_dir: Path) -> Any:
    from discl.mining.runner import mine

    return mine(cfg, run_dir)


def _generate(cfg: RunConfig, run_dir: Path) -> Any:
    from discl.generation.runner import generate_spectrum

    return generate_spectrum(cfg, run_dir)


def _filter(cfg: RunConfig, run_dir: Path) -> Any:
    from discl.filtering.runner import filter_run

    return filter_run(cfg, run_dir)


def train_method(cfg: RunConfig, run_dir: Path, method: str, seed: int) -> dict[str, Any]:
    """Train one (method, seed) of the comparison into ``RUN/train/<method>-s<seed>/``."""
    import dataclasses

    from discl.training.recipe import train_baseline, train_curriculum

    m = parse_method(method)
    if m.base is not None:  # la / crt / ce_long: built from the same seed's CE run
        from discl.training.posthoc import train_derived

        return train_derived(cfg, run_dir, m.name, seed)
    if m.strategy is None:
        variant = "cb" if m.sampler == "class_balanced" else ("bs" if m.loss == "balanced_softmax" else "ce")
        assert f"{variant}-s{seed}" == f"{m.name}-s{seed}"
        return train_baseline(cfg, run_dir, variant=variant, seed=seed)
    strategy = cfg.curriculum.strategy if m.strategy == "discl" else m.strategy
    if m.level is not None:
        cfg = dataclasses.replace(cfg, curriculum=dataclasses.replace(cfg.curriculum, fixed_level=m.level))
    return train_curriculum(cfg, run_dir, strategy, seed=seed, loss=m.loss, name=f"{m.name}-s{seed}")


def stages(cfg: RunConfig) -> list[Stage]:
    synthetic = any(parse_method(m).uses_synthetic for m in cfg.methods)
    sec = stage_sections(cfg)
    out = [Stage("mine", sec["mine"], _mine)]
    if synthetic:
        out += [
            Stage("generate", sec["generate"], _generate, needs_synthetic=True),
            Stage("filter", sec["filter"], _filter, needs_synthetic=True),
        ]
    return out


def _train_sections(cfg: RunConfig, method: str) -> tuple[str, ...]:
    return stage_sections(cfg)["train" if parse_method(method).uses_synthetic else "train-real"]


def training_order(cfg: RunConfig) -> list[str]:
    """The methods in the order they train (pure): with ``training.init_from`` naming a baseline
    (``ce``), that baseline comes first, added when not listed, since the curriculum runs fine-tune
    from its checkpoint of the same seed; so does the base (``ce``) of a derived baseline (``la``,
    ``crt``, ``ce_long``)."""
    init = cfg.training.init_from
    methods = list(cfg.methods)
    parsed = [parse_method(m) for m in methods]
    first = [init] if init in BASELINES and any(m.uses_synthetic for m in parsed) else []
    first = list(dict.fromkeys(first + [m.base for m in parsed if m.base is not None]))
    return first + [m for m in methods if m not in first]


def _base_suffix(run_dir: Path, method: str, seed: int) -> str:
    """For a derived baseline (la / crt / ce_long): the content digest of the CE checkpoint it is
    built from (trained just before it), so a retrained CE model redoes it; "" otherwise."""
    base = parse_method(method).base
    ckpt = Path(run_dir) / "train" / f"{base}-s{seed}" / "best.safetensors"
    if base is None or not ckpt.is_file():
        return ""
    from discl.fingerprint import file_digests

    return f":{base}-{file_digests([ckpt])[0][:16]}"


def method_view(cfg: RunConfig, method: str) -> Any:
    """``cfg`` as a training run of ``method`` reads it, for its marker digest (pure).

    The ``curriculum`` section becomes the method's own strategy (``discl`` = the configured one,
    ``single@λ`` its fixed level) with the keys only other strategies read left out
    (:func:`discl.curriculum.config.digest_view`), so an option of one strategy, or the configured
    strategy itself, does not retrain the methods that ignore it. A baseline ignores
    ``training.init_from`` when that names a baseline (it is what the others start from).
    """
    import dataclasses
    from types import SimpleNamespace

    from discl.curriculum.config import digest_view

    m = parse_method(method)
    if m.strategy is None:  # a baseline trains from scratch even when the curriculum runs start from one
        if cfg.training.init_from in BASELINES:
            return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, init_from=None))
        return cfg
    cur = dataclasses.replace(cfg.curriculum, strategy=cfg.curriculum.strategy if m.strategy == "discl" else m.strategy)
    if m.level is not None:
        cur = dataclasses.replace(cur, fixed_level=m.level)
    view = SimpleNamespace(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
    view.curriculum = digest_view(cur)
    return view


def train_config_digest(cfg: RunConfig, method: str, seed: int) -> str:
    """The config part of a training run's marker digest (the pipeline adds the weights part)."""
    return section_digest(method_view(cfg, method), *_train_sections(cfg, method)) + f":{seed}"


def run(cfg: RunConfig, run_dir: Path | None = None, force: bool = False) -> dict[str, str]:
    """Run (or resume) every stage; returns {stage: 'ran' | 'skipped'}."""
    run_dir = Path(run_dir or cfg.run_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    done_dir = run_dir / ".stages"
    status: dict[str, str] = {}
    from discl.fingerprint import model_fingerprints

    used = {s for st in stages(cfg) for s in st.sections} | {s for m in training_order(cfg) for s in _train_sections(cfg, m)}
    fingerprints = model_fingerprints(cfg, used)
    models_json = json.dumps(fingerprints, indent=1, sort_keys=True) + "\n"
    if not (run_dir / "models.json").is_file() or (run_dir / "models.json").read_text() != models_json:
        atomic_write_text(run_dir / "models.json", models_json)  # which weights this config loads now

    def step(name: str, sections: tuple[str, ...], fn: Callable[[], Any], extra: str = "", view: Any = None) -> Any:
        models = stage_models(sections, fingerprints)
        digest = _digest(cfg if view is None else view, sections, models) + extra
        marker = done_dir / f"{name}.json"
        if not force and is_complete(marker, digest):
            log.info("stage %s: complete for this config, skipped", name)
            status[name] = "skipped"
            return None
        log.info("stage %s: running", name)
        t0 = time.perf_counter()
        result = fn()
        mark_complete(marker, digest, seconds=round(time.perf_counter() - t0, 2), models=models)
        status[name] = "ran"
        return result

    for st in stages(cfg):
        step(st.name, st.sections, lambda st=st: st.fn(cfg, run_dir))
    for method in training_order(cfg):
        for seed in cfg.seeds:
            name, sections = f"train-{method}-s{seed}", _train_sections(cfg, method)

            step(name, sections, lambda method=method, seed=seed: train_method(cfg, run_dir, method, seed),
                 extra=f":{seed}" + _base_suffix(run_dir, method, seed), view=method_view(cfg, method))
    results = collect_results(cfg, run_dir)
    write_table(run_dir / "results.csv", results)
    from discl.evaluation.report import write_report

    write_report(cfg, run_dir, fingerprints=fingerprints)
    status["report"] = "ran"
    return status


def collect_results(cfg: RunConfig, run_dir: Path) -> pd.DataFrame:
    """One row per (method, seed) from each training run's metrics.json."""
    from discl.artifacts import read_json

    rows = []
    spectrum = run_dir / "spectrum" / "metadata.csv"
    manifest = pd.read_csv(spectrum) if spectrum.is_file() else None
    for method in training_order(cfg):
        steps = denoiser_pool_steps(cfg, method, manifest)
        for seed in cfg.seeds:
            path = run_dir / "train" / f"{method}-s{seed}" / "metrics.json"
            if path.is_file():
                rows.append({"method": method, "seed": seed, **_flatten(read_json(path)), "denoiser_steps": steps})
    return pd.DataFrame(rows)


def method_levels(cfg: RunConfig, method: str) -> list[float]:
    """The synthetic levels a method can draw from (pure given the config)."""
    import dataclasses

    from discl.curriculum.base import create_strategy
    from discl.curriculum.stage_data import needed_levels

    m = parse_method(method)
    if not m.uses_synthetic:
        return []
    cur = cfg.curriculum
    if m.level is not None:
        cur = dataclasses.replace(cur, fixed_level=m.level)
    strategy = create_strategy(cur.strategy if m.strategy == "discl" else m.strategy, cur, cfg.training.epochs, 0)
    return needed_levels(strategy, cur, cfg.training.epochs)


def denoiser_pool_steps(cfg: RunConfig, method: str, manifest: pd.DataFrame | None) -> int:
    """Denoiser evaluations spent generating the images a method could draw from (x2 with CFG)."""
    levels = method_levels(cfg, method)
    if manifest is None or not levels or not len(manifest):
        return 0
    rows = manifest[manifest["lam"].round(6).isin([round(lv, 6) for lv in levels])]
    cfg_factor = (rows["guidance_scale"].astype(float) > 1.0).map({True: 2, False: 1})
    return int((rows["denoise_steps"].astype(int) * cfg_factor).sum())


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        elif not isinstance(v, list):
            out[key] = v
    return out


HEADLINE = {
    "fmnist-lt": [("test.top1", "overall"), ("test.many", "many"), ("test.medium", "medium"), ("test.few", "few")],
    "fmnist-lq": [("test.macro_f1", "ID macro-F1"), ("test_ood.macro_f1", "OOD macro-F1"), ("test.top1", "ID acc")],
}


def headline_table(cfg: RunConfig, results: pd.DataFrame) -> str:
    """Markdown table: mean +- std over seeds of the task's headline metrics, per method."""
    cols = HEADLINE.get(cfg.data.task, HEADLINE["fmnist-lt"])
    if cfg.data.task not in HEADLINE:
        cols = [("test.top1", "overall"), ("test.many", "many"), ("test.medium", "medium"), ("test.few", "few"),
                ("test.macro_f1", "macro-F1")]
    cols = [(k, label) for k, label in cols if k in results.columns]
    extra = [(k, label) for k, label in (("synthetic_seen", "synthetic images seen"), ("denoiser_steps", "denoiser steps"))
             if k in results.columns]
    lines = ["| method | seeds | " + " | ".join(label for _, label in cols + extra) + " |",
             "|---|---|" + "---|" * (len(cols) + len(extra))]
    for method in training_order(cfg):
        r = results[results["method"] == method] if len(results) else results
        if not len(r):
            continue
        cells = []
        for k, _ in cols:
            v = r[k].astype(float) * 100
            cells.append(f"{v.mean():.1f} ± {v.std(ddof=0):.1f}" if len(v) > 1 else f"{v.mean():.1f}")
        for k, _ in extra:
            cells.append(f"{int(r[k].astype(float).mean()):,}")
        lines.append(f"| {method} | {len(r)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- CLI ------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_file", nargs="?", help="YAML run config (configs/fmnist-lt.yaml)")
    p.add_argument("--config", "-c", dest="config", help="same as the positional CONFIG")
    p.add_argument("--run-dir", help="run folder (default: the config's run_dir)")
    p.add_argument("--force", action="store_true", help="rerun every stage even when complete")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. training.epochs=5")


def main(args: argparse.Namespace) -> int:
    from discl.config import load_config

    overrides = list(args.overrides or [])
    path = args.config or args.config_file
    if path and "=" in path and not Path(path).exists():  # `discl run key=value` without a config file
        overrides.insert(0, path)
        path = None
    cfg = load_config(path, overrides)
    run_dir = Path(args.run_dir) if args.run_dir else cfg.run_path
    t0 = time.perf_counter()
    status = run(cfg, run_dir, force=args.force)
    results = collect_results(cfg, run_dir)
    table = headline_table(cfg, results)
    ran = [k for k, v in status.items() if v == "ran" and k != "report"]
    print(f"\nDisCL run '{cfg.name}' finished in {time.perf_counter() - t0:.0f} s "
          f"({'stages run: ' + ', '.join(ran) if ran else 'nothing to redo: every stage was complete'})")
    print(f"Report: {run_dir / 'report.html'}  (summary: {run_dir / 'report.md'})\n")
    print(table)
    atomic_write_text(run_dir / "headline.md", table + "\n")
    return 0
