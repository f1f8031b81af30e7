"""``discl run``: every stage in order, in one run folder, skipping what is already done.

mine -> generate (prompts + spectrum) -> filter -> train (each method x seed) -> report

Each stage is recorded in ``RUN/.stages/<stage>.json`` with the digest of its inputs, computed by
the same function the stage's own command records in its ``_done.json`` / ``metrics.json``
(:mod:`discl.digests`: the config keys it reads, the content of the upstream artifacts it reads,
the fingerprints of the weights it loads; docs/reliability.md has the table). Digests are computed
just before a stage runs, from the upstream artifacts as they are then, so a stage reruns exactly
when one of its inputs changed; the marker also records the weights (``models``) of the stage and
its upstream stages. A stage is complete when its marker *and* the stage's own record
(:func:`stage_marker`) hold the current digest and its artifact (:func:`stage_artifact`) exists: a
deleted ``RUN/mining`` is mined again, not reported as done, and a stage that a single-stage command
(``discl filter CONFIG key=value``) remade for other settings is run again for this config. A rerun with the same inputs does no work; an interrupted stage resumes from its own artifacts
(finished images, training checkpoints). ``force`` deletes each stage's outputs in the run folder
(its folders, caches and checkpoints: :func:`stage_paths`) before redoing it, so every
stage really runs again, whatever its own runner would have reused.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discl.artifacts import atomic_write_text, is_complete, mark_complete
from discl.config import RunConfig, save_config
from discl.evaluation.results import (
    run_spec,
    stage_sections,
    train_run_digest,
    train_sections,
    training_order,
)
from discl.methods import parse_method

log = logging.getLogger(__name__)


def stage_models(sections: tuple[str, ...], fingerprints: dict[str, Any] | None) -> dict[str, Any]:
    """The model fingerprints of a stage: those of the config sections it depends on (pure)."""
    return {s: fingerprints[s] for s in sections if fingerprints and s in fingerprints}


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
    from discl.training.recipe import train_baseline, train_curriculum

    spec = run_spec(cfg, method)
    if spec.derived is not None:
        from discl.training.posthoc import train_derived

        return train_derived(spec.cfg, run_dir, spec.derived, seed)
    if spec.variant is not None:
        return train_baseline(spec.cfg, run_dir, variant=spec.variant, seed=seed)
    return train_curriculum(spec.cfg, run_dir, spec.strategy, seed=seed, loss=spec.loss, name=f"{method}-s{seed}")


def stages(cfg: RunConfig) -> list[Stage]:
    parsed = [parse_method(m) for m in cfg.methods]
    synthetic = any(m.uses_synthetic for m in parsed)
    sec = stage_sections(cfg)
    # the hard set feeds the curriculum methods (real_only too: its tail quota); baselines need none
    out = [Stage("mine", sec["mine"], _mine)] if any(m.strategy is not None for m in parsed) else []
    if synthetic:
        out += [
            Stage("generate", sec["generate"], _generate, needs_synthetic=True),
            Stage("filter", sec["filter"], _filter, needs_synthetic=True),
        ]
    return out


Reuse = Callable[[str, str], bool]

STAGE_ARTIFACTS = {"mine": "mining/hard.csv", "generate": "spectrum/metadata.csv", "filter": "filter/manifest.csv"}
STAGE_DIRS = {"mine": ("mining",), "generate": ("spectrum",), "filter": ("filter",)}


def stage_paths(name: str) -> tuple[str, ...]:
    """The run-folder paths holding a stage's artifacts (``train-<method>-s<seed>`` -> its train folder)."""
    if name in STAGE_DIRS:
        return STAGE_DIRS[name]
    if name.startswith("train-"):
        return (f"train/{name.removeprefix('train-')}",)
    raise ValueError(f"no artifact folders known for stage {name!r}")


STAGE_MARKERS = {"mine": "mining/_done.json", "generate": "spectrum/_done.json", "filter": "filter/_done.json"}


def stage_marker(name: str) -> str:
    """The stage's own record of the digest its artifacts were made for (``train-<method>-s<seed>``:
    its ``metrics.json``). A single-stage command (``discl filter ... key=value``) rewrites it, and
    the run's ``.stages`` marker alone would not see that."""
    if name in STAGE_MARKERS:
        return STAGE_MARKERS[name]
    if name.startswith("train-"):
        return f"train/{name.removeprefix('train-')}/metrics.json"
    raise ValueError(f"no marker known for stage {name!r}")


def stage_artifact(name: str) -> str:
    """The file (relative to the run folder) whose presence a finished stage guarantees: what the next
    stage reads (``train-<method>-s<seed>``: its ``metrics.json``)."""
    if name in STAGE_ARTIFACTS:
        return STAGE_ARTIFACTS[name]
    if name.startswith("train-"):
        return f"train/{name.removeprefix('train-')}/metrics.json"
    raise ValueError(f"no artifact known for stage {name!r}")


def clear_stage(run_dir: Path, name: str) -> None:
    """Delete stage ``name``'s outputs in ``run_dir`` (``--force``): a linked folder (``discl sweep``)
    is unlinked, never emptied, so the run it was linked from keeps its artifacts."""
    for rel in stage_paths(name):
        path = run_dir / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def run(cfg: RunConfig, run_dir: Path | None = None, force: bool = False, reuse: Reuse | None = None,
        *, validated: bool = False) -> dict[str, str]:
    """Run (or resume) every stage; returns {stage: 'ran' | 'skipped'}.

    ``validated``: the caller has already run the full :func:`discl.validation.validate_run_config` on
    ``cfg`` (``discl run``), so it is not run (and its warnings not printed) a second time.

    ``reuse(stage, digest)`` (``discl sweep``) is asked before a stage whose marker does not hold
    ``digest``; it may link finished artifacts with that digest from elsewhere into ``run_dir``.
    """
    from discl.data.identity import snapshot

    with snapshot():  # one listing of the data for every digest of this run
        return _run(cfg, run_dir, force, reuse, validated)


def _log_config_changes(previous: Path, cfg: RunConfig, limit: int = 12) -> None:
    """Say which config keys differ from the folder's last run (its ``config.yaml``), before the stages
    say which of them that reruns: a user who changed one setting sees it named, not only "running"."""
    from discl.configtools import config_changes, load_yaml

    if not previous.is_file():
        return
    import reprlib

    short = reprlib.Repr()  # long values (a thousand class names) shortened
    short.maxstring, short.maxother, short.maxlist, short.maxdict = 60, 60, 8, 8
    try:
        changes = config_changes(load_yaml(previous), cfg.to_dict())
        shown_ = "; ".join(f"{k}: {short.repr(a)} -> {short.repr(b)}" for k, a, b in changes[:limit])
    except Exception:  # noqa: BLE001 - an unreadable old copy only loses this message; the digests decide reruns
        return
    if changes:
        log.info("config changed since this folder's last run: %s%s", shown_,
                 f"; and {len(changes) - limit} more" if len(changes) > limit else "")


def _run(cfg: RunConfig, run_dir: Path | None, force: bool, reuse: Reuse | None, validated: bool = False) -> dict[str, str]:
    from discl.validation import validate_run_config

    if not validated:
        validate_run_config(cfg)  # every mistake that can be found now, before the first stage folder
    run_dir = Path(run_dir or cfg.run_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    _log_config_changes(run_dir / "config.yaml", cfg)
    save_config(cfg, run_dir / "config.yaml")
    done_dir = run_dir / ".stages"
    status: dict[str, str] = {}
    from discl.digests import current
    from discl.fingerprint import model_fingerprints

    used = {s for st in stages(cfg) for s in st.sections} | {s for m in training_order(cfg) for s in train_sections(cfg, m)}
    fingerprints = model_fingerprints(cfg, used)
    models_json = json.dumps(fingerprints, indent=1, sort_keys=True) + "\n"
    if not (run_dir / "models.json").is_file() or (run_dir / "models.json").read_text() != models_json:
        atomic_write_text(run_dir / "models.json", models_json)  # which weights this config loads now

    def step(name: str, sections: tuple[str, ...], digest_fn: Callable[[], str], fn: Callable[[], Any]) -> Any:
        models = stage_models(sections, fingerprints)
        digest = digest_fn()  # now: the upstream stages have just run
        marker = done_dir / f"{name}.json"

        def complete() -> bool:
            # the run's marker, the stage's own (a single-stage command with other settings may have
            # rewritten the stage since) and the artifact the next stage reads
            return (is_complete(marker, digest) and is_complete(run_dir / stage_marker(name), digest)
                    and (run_dir / stage_artifact(name)).is_file())

        if not force and not complete() and reuse is not None and reuse(name, digest):
            log.info("stage %s: linked finished artifacts of the same digest", name)
        if not force and complete():
            log.info("stage %s: complete for this config, skipped", name)
            status[name] = "skipped"
            return None
        if (not force and is_complete(run_dir / stage_marker(name), digest)
                and (run_dir / stage_artifact(name)).is_file()):
            # made for this digest by the stage's own command (``discl mine``, ``discl generate``...): the
            # stage would only find it done, so it is recorded as this run's and counted as skipped, not run
            mark_complete(marker, digest, seconds=0.0, models=models)
            log.info("stage %s: complete for this config (made by its own command), skipped", name)
            status[name] = "skipped"
            return None
        if force:
            marker.unlink(missing_ok=True)
            clear_stage(run_dir, name)
            log.info("stage %s: --force, outputs deleted, running", name)
        elif is_complete(marker, digest) and not (run_dir / stage_artifact(name)).is_file():
            log.info("stage %s: %s is missing, running", name, stage_artifact(name))
        elif is_complete(marker, digest):
            log.info("stage %s: its outputs were remade for other settings since (%s), running", name,
                     stage_marker(name))
        elif marker.is_file():
            log.info("stage %s: its inputs changed since it last ran here (the config keys it reads, the data, "
                     "upstream artifacts or weights), running", name)
        else:
            log.info("stage %s: running", name)
        t0 = time.perf_counter()
        result = fn()
        mark_complete(marker, digest, seconds=round(time.perf_counter() - t0, 2), models=models)
        status[name] = "ran"
        return result

    for st in stages(cfg):
        step(st.name, st.sections, lambda st=st: current(cfg, run_dir, st.name, fingerprints),
             lambda st=st: st.fn(cfg, run_dir))
    for method in training_order(cfg):
        for seed in cfg.seeds:
            step(f"train-{method}-s{seed}", train_sections(cfg, method),
                 lambda method=method, seed=seed: train_run_digest(cfg, run_dir, method, seed, fingerprints),
                 lambda method=method, seed=seed: train_method(cfg, run_dir, method, seed))
    from discl.evaluation.report import write_report

    write_report(cfg, run_dir, fingerprints=fingerprints)  # writes results.csv too
    status["report"] = "ran"
    return status
