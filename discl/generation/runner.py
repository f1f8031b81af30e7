"""``discl generate``: the spectrum stage (phase 1c).

Input: ``RUN/mining/hard.csv`` (sample_id, label, class_name) and the task's dataset.
Output: ``RUN/spectrum/`` -- ``images/<label>/<sample>_l<lambda>_k<k>.png`` plus ``metadata.csv``
(one row per image, Hugging Face imagefolder convention: ``file_name`` relative to the folder).

Each image is written atomically; a rerun skips images whose file exists and decodes. Shards
(``--shard i/n`` or one per process under ``torchrun``) take the jobs with ``job % n == i`` and log
progress to their own ``_progress/shard-i-of-n.jsonl``; ``metadata.csv`` is written from the plan
once every image exists, so shards never write the same file with different content.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import time
from pathlib import Path

import pandas as pd
from PIL import Image

from discl.artifacts import (
    append_jsonl,
    clean_stale_temp,
    confine,
    is_complete,
    mark_complete,
    read_table,
    write_table,
)
from discl.config import RunConfig, section_digest
from discl.generation.base import GenerationBatch, Generator, create_generator
from discl.generation.planning import batches, cost_summary, parse_shard, plan_jobs, shard_jobs
from discl.prompts.builder import build_prompt, resolve_descriptions

logger = logging.getLogger(__name__)

HARD_CSV = "mining/hard.csv"
SPECTRUM_DIR = "spectrum"
METADATA = "metadata.csv"
MANIFEST_COLUMNS = ["file_name", "sample_id", "source_sample_id", "source_path", "label", "class_name", "lam",
                    "strength", "seed", "k", "prompt", "model", "backend", "mode", "steps", "denoise_steps",
                    "guidance_scale", "negative_prompt", "job"]


def spectrum_digest(cfg: RunConfig) -> str:
    """Digest of what decides the images: the config (batch size, which never changes an image, left
    out) and the generator's weights (:mod:`discl.fingerprint`), so new weights behind the same
    ``generation.model`` regenerate instead of reusing images of the old ones."""
    import dataclasses

    from discl.fingerprint import fingerprint, fingerprints_digest, model_references

    neutral = dataclasses.replace(cfg, generation=dataclasses.replace(cfg.generation, batch_size=1))
    refs = model_references(cfg)
    weights = fingerprint(refs["generation"]["model"])
    text_model = refs.get("prompts", {}).get("text_model")
    if text_model:  # it writes the prompts the images are generated from
        weights = {"generation": weights, "prompts": fingerprint(text_model)}
    return f"{section_digest(neutral, 'data', 'prompts', 'generation')}-{fingerprints_digest(weights)}"


def _check_or_claim(out: Path, digest: str, shard: tuple[int, int]) -> None:
    """Images on disk from another config must not be mistaken for finished work.

    The first run records the digest in ``_spec.json``. A later run with another digest clears the
    old spectrum when it runs unsharded; sharded runs refuse (another shard may be writing).
    """
    import shutil

    from discl.artifacts import atomic_write_json, read_json
    from discl.errors import DisclError

    spec = out / "_spec.json"
    if spec.is_file():
        old = read_json(spec).get("digest")
        if old == digest:
            return
        if shard[1] > 1:
            raise DisclError(f"{out} holds a spectrum generated with another config (digest {old} != {digest}); "
                             "delete it or run unsharded once to regenerate it")
        logger.warning("config changed since %s was generated: clearing the old spectrum", out)
        for name in ("images", "_progress"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (METADATA, "_done.json"):
            (out / name).unlink(missing_ok=True)
    atomic_write_json(spec, {"digest": digest})


def plan_spectrum(cfg: RunConfig, hard: pd.DataFrame, dataset) -> pd.DataFrame:
    """Every image of the spectrum with all its manifest columns (pure given the inputs)."""
    g = cfg.generation
    descriptions = resolve_descriptions(cfg.prompts, dataset.classes)
    jobs = plan_jobs(hard, g.levels, g.seeds_per_level, g.base_seed, g.steps, ext=g.image_format,
                     prompt_fn=lambda sid, k, name: build_prompt(cfg.prompts, name, sid, k, descriptions))
    paths = dataset.frame["path"] if "path" in dataset.frame.columns else None
    jobs["source_sample_id"] = jobs["sample_id"]
    jobs["source_path"] = [str(paths.get(s, "")) if paths is not None else "" for s in jobs["sample_id"]]
    jobs["model"] = g.model
    jobs["backend"] = g.backend
    t2i = g.text_to_image_at_zero
    jobs["mode"] = ["text2img" if (t2i and lam == 0.0) else "img2img" for lam in jobs["lam"]]
    jobs["guidance_scale"] = g.guidance_scale
    jobs["negative_prompt"] = g.negative_prompt or ""
    return jobs[MANIFEST_COLUMNS]


def _decodes(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except (OSError, ValueError, SyntaxError):
        return False


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        img.convert("RGB").save(buf, format="JPEG", quality=95)
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()


def generate_spectrum(cfg: RunConfig, run_dir: Path, shard: tuple[int, int] = (0, 1), dataset=None,
                      generator: Generator | None = None, progress: bool = True) -> pd.DataFrame:
    """Generate this shard's missing images; returns the manifest rows of this shard's images.

    ``metadata.csv`` (the whole spectrum) is written when every image of every shard exists.
    ``dataset`` and ``generator`` may be passed to reuse loaded ones (tests, the pipeline).
    """
    run_dir = Path(run_dir)
    out = confine(run_dir, SPECTRUM_DIR)
    clean_stale_temp(out)
    digest = spectrum_digest(cfg)
    if is_complete(out / "_done.json", digest) and (out / METADATA).is_file():
        logger.info("spectrum already complete in %s", out)
        manifest = read_table(out / METADATA)
        return shard_jobs(manifest, *shard)
    _check_or_claim(out, digest, shard)
    hard = read_table(confine(run_dir, HARD_CSV))
    if dataset is None:
        from discl.data import build_dataset

        dataset = build_dataset(cfg.data)
    plan = plan_spectrum(cfg, hard, dataset)
    mine = shard_jobs(plan, *shard)
    done = {f for f in mine["file_name"] if (out / f).is_file() and _decodes(confine(out, f))}
    # Resume by whole batches of the shard's plan: an image is always computed in the same batch, so
    # float rounding that depends on the batch's make-up cannot change a resumed image's bytes.
    todo = [b for b in batches(mine, cfg.generation.batch_size) if not set(b["file_name"]) <= done]
    logger.info("shard %d/%d: %d images, %d already done, %d batches to generate", shard[0], shard[1],
                len(mine), len(done), len(todo))
    if todo:
        gen = generator or create_generator(cfg.generation)
        _run_jobs(cfg, gen, dataset, todo, out, shard, progress)
    write_manifest_if_complete(cfg, plan, out, digest)
    return mine.reset_index(drop=True)


def _run_jobs(cfg: RunConfig, gen: Generator, dataset, todo: list[pd.DataFrame], out: Path,
              shard: tuple[int, int], progress: bool) -> None:
    from tqdm.auto import tqdm

    g = cfg.generation
    log = out / "_progress" / f"shard-{shard[0]}-of-{shard[1]}.jsonl"
    sources: dict[str, Image.Image] = {}
    total = sum(len(b) for b in todo)
    bar = tqdm(total=total, unit="img", desc=f"generate {shard[0]}/{shard[1]}", disable=not progress)
    try:
        for chunk in todo:
            sids = list(chunk["sample_id"])
            for s in sids:
                if s not in sources:
                    sources[s] = dataset.image(s)
            lam = float(chunk["lam"].iloc[0])
            t0 = time.perf_counter()
            images = gen.generate(GenerationBatch(
                sources=[sources[s] for s in sids], source_keys=sids, labels=[int(v) for v in chunk["label"]],
                prompts=list(chunk["prompt"]), seeds=[int(v) for v in chunk["seed"]],
                strength=float(chunk["strength"].iloc[0]), steps=g.steps, guidance_scale=g.guidance_scale,
                negative_prompt=g.negative_prompt, text_to_image=bool(g.text_to_image_at_zero and lam == 0.0)))
            seconds = time.perf_counter() - t0
            from discl.artifacts import atomic_write_bytes

            for fname, img in zip(chunk["file_name"], images):
                atomic_write_bytes(confine(out, fname), _encode(img, g.image_format))
            append_jsonl(log, [{"job": int(j), "file_name": f, "seconds": round(seconds / len(chunk), 4),
                                "time": time.time()} for j, f in zip(chunk["job"], chunk["file_name"])])
            bar.update(len(chunk))
    finally:
        bar.close()


def write_manifest_if_complete(cfg: RunConfig, plan: pd.DataFrame, out: Path, digest: str) -> bool:
    """Write ``metadata.csv`` + ``_done.json`` once every planned image exists (idempotent)."""
    missing = [f for f in plan["file_name"] if not (out / f).is_file()]
    if missing:
        logger.info("spectrum not complete yet: %d of %d images missing (other shards?)", len(missing), len(plan))
        return False
    write_table(out / METADATA, plan)
    mark_complete(out / "_done.json", digest, images=len(plan))
    return True


# -- CLI -------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    from discl.cli import add_config_arguments

    add_config_arguments(p)
    p.add_argument("--shard", default=None, help="i/n: generate only the jobs with job %% n == i")
    p.add_argument("--dry-run", action="store_true", help="print the job count and denoiser cost, generate nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _distributed_shard():
    """(state, (i, n)) under torchrun / accelerate launch with several processes, else (None, None)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None, None
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return state, (state.process_index, state.num_processes)


def main(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from discl.cli import config_from_args

    cfg = config_from_args(args, command="generate")
    run_dir = cfg.run_path
    state, shard = _distributed_shard()
    if args.shard:
        shard = parse_shard(args.shard)
    shard = shard or (0, 1)
    if state is not None and cfg.generation.device == "auto":
        cfg = dataclasses.replace(cfg, generation=dataclasses.replace(cfg.generation, device=str(state.device)))
    if args.dry_run:
        from discl.data import build_dataset

        hard = read_table(confine(run_dir, HARD_CSV))
        plan = plan_spectrum(cfg, hard, build_dataset(cfg.data))
        summary = {"all": cost_summary(plan, cfg.generation.guidance_scale),
                   f"shard {shard[0]}/{shard[1]}": cost_summary(shard_jobs(plan, *shard), cfg.generation.guidance_scale)}
        print(json.dumps(summary, indent=2))
        return 0
    rows = generate_spectrum(cfg, run_dir, shard=shard, progress=not args.no_progress)
    if state is not None:
        state.wait_for_everyone()
        if state.is_main_process:
            from discl.data import build_dataset

            plan = plan_spectrum(cfg, read_table(confine(run_dir, HARD_CSV)), build_dataset(cfg.data))
            write_manifest_if_complete(cfg, plan, confine(run_dir, SPECTRUM_DIR), spectrum_digest(cfg))
    print(f"shard {shard[0]}/{shard[1]}: {len(rows)} images in {confine(run_dir, SPECTRUM_DIR)}")
    return 0
