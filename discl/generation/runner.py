"""``discl generate``: the spectrum stage (phase 1c).

Input: ``RUN/mining/hard.csv`` (sample_id, label, class_name) and the task's dataset.
Output: ``RUN/spectrum/`` -- ``images/<label>/<sample>_l<lambda>_k<k>.png`` plus ``metadata.csv``
(one row per image, Hugging Face imagefolder convention: ``file_name`` relative to the folder) and a
dataset card ``README.md`` naming them (:mod:`discl.data.spectrum`), so ``datasets.load_dataset`` keeps
the metadata whatever the sample ids say.

Each image is written atomically; a rerun skips images whose file exists and decodes. Batches are
planned over the whole spectrum; shards (``--shard i/n`` or one per process under ``torchrun``)
take every n-th whole batch, so an image's bytes never depend on the number of processes, and log
progress to their own ``_progress/shard-i-of-n.jsonl``; ``metadata.csv`` is written from the plan
once every image exists, so shards never write the same file with different content.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import pandas as pd
from PIL import Image

from discl.artifacts import (
    ArtifactError,
    append_jsonl,
    clean_stale_temp,
    confine,
    is_complete,
    mark_complete,
    read_table,
    write_table,
)
from discl.config import RunConfig
from discl.generation.base import (
    GenerationBatch,
    Generator,
    create_generator,
    planning_size,
    planning_step_rule,
)
from discl.generation.config import GenerationConfig
from discl.generation.planning import (
    DEFAULT_STEP_RULE,
    batches,
    cost_summary,
    plan_jobs,
    shard_batches,
    shard_jobs,
    strength_for,
)
from discl.prompts.builder import build_prompt, resolve_descriptions

logger = logging.getLogger(__name__)

HARD_CSV = "mining/hard.csv"
SPECTRUM_DIR = "spectrum"
METADATA = "metadata.csv"
MANIFEST_COLUMNS = ["file_name", "sample_id", "source_sample_id", "source_path", "label", "class_name", "lam",
                    "strength", "seed", "k", "prompt", "model", "backend", "mode", "steps", "denoise_steps",
                    "guidance_scale", "negative_prompt", "condition_style", "job", "image_key"]


def spectrum_digest(cfg: RunConfig, run_dir: Path | None = None, fingerprints: dict | None = None) -> str:
    """The spectrum stage's digest (:func:`discl.digests.generate_digest`, the one ``discl run`` records
    too): ``hard.csv``'s content, the source images, the prompt and generation keys (batch size and
    device left out), the generator's weights."""
    from discl.digests import current

    return current(cfg, cfg.run_path if run_dir is None else run_dir, "generate", fingerprints)


def image_keys_on_disk(out: Path) -> dict[str, tuple[str, str]]:
    """{file_name: (image key, batch key)} of the images the progress logs say were written, the
    latest entry winning (entries without keys, from older versions, count as unknown)."""
    from discl.artifacts import read_jsonl

    rows = []
    for log_path in sorted((out / "_progress").glob("*.jsonl")):
        rows += read_jsonl(log_path)
    rows.sort(key=lambda r: float(r.get("time", 0.0)))
    return {str(r["file_name"]): (str(r.get("key", "")), str(r.get("batch", ""))) for r in rows if "file_name" in r}


def batch_key(chunk: pd.DataFrame) -> str:
    """The digest of one generation batch: the keys of its images, in order. Float rounding can
    depend on a batch's make-up (measured: 2 of 108 embedded-prior images differ between batch sizes
    1 and 64), so an image is reused only when it was made in a batch of the same make-up: the bytes
    are then those a fresh run of the current config writes."""
    from discl.digests import digest_of

    return digest_of(list(chunk["image_key"]))


def finished_images(plan: pd.DataFrame, out: Path, check_decode: bool = True,
                    batch_keys: dict[str, str] | None = None) -> set[str]:
    """The planned images that exist (and decode) with the key their row has now (and, given
    ``batch_keys`` {file_name: batch key}, made in the same batch): reused as they are."""
    keys = image_keys_on_disk(out)
    return {f for f, k in zip(plan["file_name"], plan["image_key"])
            if f in keys and keys[f][0] == k and (batch_keys is None or keys[f][1] == batch_keys.get(f))
            and (out / f).is_file() and (not check_decode or _decodes(confine(out, f)))}


def _drop_unplanned(out: Path, plan: pd.DataFrame) -> int:
    """Delete images the plan no longer has (a hard image that left ``hard.csv``, a dropped level)."""
    planned = {str(confine(out, f)) for f in plan["file_name"]}
    dropped = [p for p in (out / "images").rglob("*") if p.is_file() and str(p.resolve()) not in planned
               and not p.name.startswith(".")] if (out / "images").is_dir() else []
    for p in dropped:
        p.unlink(missing_ok=True)
    if dropped:
        logger.info("spectrum: removed %d images that are no longer planned", len(dropped))
    return len(dropped)


def plan_spectrum(cfg: RunConfig, hard: pd.DataFrame, dataset, fingerprints: dict | None = None) -> pd.DataFrame:
    """Every image of the spectrum with all its manifest columns (pure given the inputs).

    ``fingerprints``: the generator's (:func:`discl.digests.stage_fingerprints`, computed when None).
    ``image_key`` (:func:`discl.digests.image_key`) digests the row, the settings
    (:func:`discl.digests.image_settings_digest`) and the content key of the source image
    (:func:`discl.data.identity.source_keys`), so the variants of an image replaced in place are made
    again. ``condition_style`` records the style the embedded prior is conditioned on (the config's, else
    the one its config file stores; "" for diffusers, which reads the prompt); it is not in the key.
    ``denoise_steps`` follows the pipeline family's step rule, read from the model's config files
    (:func:`discl.generation.base.planning_step_rule`: SD3 and Flux run one step more than SD at some strengths).
    """
    from discl.data.identity import source_keys
    from discl.digests import effective_condition_style, image_key, image_settings_digest, stage_fingerprints

    if fingerprints is None:
        fingerprints = stage_fingerprints(cfg, "generate")
    settings = image_settings_digest(cfg, fingerprints)
    g = cfg.generation
    descriptions = resolve_descriptions(cfg.prompts, dataset.classes)
    jobs = plan_jobs(hard, g.levels, g.seeds_per_level, g.base_seed, g.steps, ext=g.image_format,
                     steps_per_level=g.steps_per_level, step_rule=planning_step_rule(g),
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
    jobs["condition_style"] = effective_condition_style(g, fingerprints)
    sources = source_keys(dataset, jobs["sample_id"].astype(str).unique())
    jobs["image_key"] = [image_key(r, settings, sources[str(r["sample_id"])]) for r in jobs.to_dict("records")]
    return jobs[MANIFEST_COLUMNS]


def source_sizes(dataset, sample_ids) -> dict[str, tuple[int, int]]:
    """Each source's (width, height) without decoding its pixels: the array's shape, or the file
    header (with the EXIF orientation the loader applies); other datasets decode the image."""
    images = getattr(dataset, "images", None)
    root = getattr(dataset, "root", None)
    frame = dataset.frame
    out = {}
    for sid in sample_ids:
        if images is not None and "row" in frame.columns and hasattr(images, "shape"):
            h, w = images.shape[1:3]
        elif root is not None and "path" in frame.columns:
            try:
                with Image.open(Path(root) / frame.at[sid, "path"]) as im:
                    w, h = im.size
                    if im.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by 90 degrees when loaded
                        w, h = h, w
            except (OSError, ValueError, SyntaxError):
                w, h = dataset.image(sid).size  # the loader's own clear error
        else:
            w, h = dataset.image(sid).size
        out[str(sid)] = (int(w), int(h))
    return out


SIZE_POLICY = "_size_policy"  # spectrum/_size_policy-<digest of the settings>.json


def spectrum_size_function(g: GenerationConfig, out: Path | None = None, record: bool = True,
                           fingerprint: str | None = None):
    """The generation-size function batches are planned with (:func:`discl.generation.base.planning_size`),
    decided once per spectrum folder ``out`` and settings: the first plan publishes its decision, the
    (longest side, multiple) pair or None for exact aspect ratios, as
    ``out/_size_policy-<digest>.json`` (the digest of backend, model, ``resolution``,
    ``pipeline_class`` and ``fingerprint``, the generation weights' fingerprint digest, so a re-saved
    folder or a retrained prior decides again); every later plan (a resume, another shard,
    :func:`finish_spectrum`, ``--dry-run``) reads it back. The file is published whole (a link of a
    finished temp file), the first publisher wins and every process, the first included, plans
    with what the file says: all of them cut the same batches even when the model reaches the
    local hub cache in between. A backend whose size function is not a (longest, multiple) rule is
    asked every time. ``record=False`` reads a decision but publishes none (a dry run).
    """
    import hashlib
    import json
    import os
    import tempfile
    from functools import partial

    from discl.generation.planning import generation_size

    key = {"backend": g.backend, "model": str(g.model), "resolution": g.resolution,
           "pipeline_class": g.pipeline_class, "weights": fingerprint}
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).hexdigest()
    path = None if out is None else Path(out) / f"{SIZE_POLICY}-{digest}.json"

    def as_function(policy):
        return None if policy is None else partial(generation_size, longest=int(policy[0]), multiple=int(policy[1]))

    def read():
        try:
            return as_function(json.loads(path.read_text())["size_policy"]), True
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None, False

    if path is not None and path.is_file():
        fn, ok = read()
        if ok:
            return fn
    fn = planning_size(g)
    kw = getattr(fn, "keywords", None) or {}
    if fn is not None and not {"longest", "multiple"} <= set(kw):
        return fn  # a backend's own rule: not recorded
    if path is None or not record:
        return fn
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {"key": key, "size_policy": None if fn is None else [int(kw["longest"]), int(kw["multiple"])]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(rec, f)
        try:
            os.link(tmp, path)  # atomic, and refuses when another process published first
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: exclusive create, then write
            try:
                with open(path, "x") as f:
                    json.dump(rec, f)
            except FileExistsError:
                pass
    finally:
        os.unlink(tmp)
    fn, ok = read()
    return fn if ok else as_function(rec["size_policy"])


def plan_batches(plan: pd.DataFrame, dataset, g: GenerationConfig, out: Path | None = None,
                 record: bool = True, fingerprint: str | None = None) -> list[pd.DataFrame]:
    """The spectrum's global batch plan (:func:`planning.batches`), each batch with its ``batch_key``.

    Batches group by the generation size the configured backend will use, known from the model's
    config files and decided once per spectrum folder ``out`` (:func:`spectrum_size_function`); no
    generator is built here, so :func:`finish_spectrum` and the reuse check stay cheap.
    """
    size_of = spectrum_size_function(g, out, record, fingerprint)
    planned = batches(plan, g.batch_size, source_sizes(dataset, plan["sample_id"].unique()), size_of)
    return [b.assign(batch_key=batch_key(b)) for b in planned]


def plan_shard_batches(plan: pd.DataFrame, dataset, g: GenerationConfig, shard: tuple[int, int],
                       out: Path | None = None, record: bool = True, fingerprint: str | None = None) -> list[pd.DataFrame]:
    """This shard's whole batches of the spectrum's global batch plan (:func:`plan_batches`)."""
    return shard_batches(plan_batches(plan, dataset, g, out, record, fingerprint), *shard)


def generation_fingerprint(fingerprints: dict) -> str | None:
    """The digest of the generation weights' fingerprints (:func:`discl.digests.stage_fingerprints`)."""
    from discl.fingerprint import fingerprints_digest

    return fingerprints_digest(fingerprints.get("generation")) if fingerprints.get("generation") else None


def _warn_if_sizes_differ(gen: Generator, size_of, sizes) -> None:
    """The planner's generation sizes should be the generator's: a difference costs batch fill (the
    backend splits a batch by size), never correctness, so it is a warning."""
    differ = [s for s in sizes if size_of is not None and size_of(*s) != gen.generation_size(*s)]
    if differ:
        w, h = differ[0]
        logger.warning("generation: the planned generation size of a %dx%d source is %s, the generator's %s: "
                       "batches may hold several sizes", w, h, size_of(w, h), gen.generation_size(w, h))


def _check_step_rule(gen: Generator, g: GenerationConfig) -> None:
    """The plan's step counts (the rule read from config files) must be what the loaded generator runs:
    a manifest that records other step counts than ran is an error, not a warning."""
    planned, loaded = planning_step_rule(g), getattr(gen, "step_rule", DEFAULT_STEP_RULE)
    if planned != loaded:
        from discl.errors import DisclError

        raise DisclError(f"generation: the plan counts img2img steps by the {planned} rule (from {g.model}'s config "
                         f"files), the loaded {type(getattr(gen, 'pipe', gen)).__name__} by {loaded}; set "
                         f"generation.pipeline_class to the class that loads")


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
    from discl.digests import stage_fingerprints

    run_dir = Path(run_dir)
    out = confine(run_dir, SPECTRUM_DIR)
    clean_stale_temp(out)
    fingerprints = stage_fingerprints(cfg, "generate")
    digest = spectrum_digest(cfg, run_dir, fingerprints)
    if is_complete(out / "_done.json", digest) and (out / METADATA).is_file():
        logger.info("spectrum already complete in %s", out)
        manifest = read_table(out / METADATA)
        return shard_jobs(manifest, *shard)
    hard = read_hard(run_dir)
    if dataset is None:
        from discl.data import build_dataset

        dataset = build_dataset(cfg.data)
    from discl.data.folder import record_skipped

    record_skipped(dataset, run_dir, "generate")
    plan = plan_spectrum(cfg, hard, dataset, fingerprints)
    if shard[1] == 1:
        _drop_unplanned(out, plan)
    (out / "_done.json").unlink(missing_ok=True)  # the manifest on disk no longer describes the plan
    # Batches are planned over the whole spectrum and whole batches go to shards; reuse and resume go
    # by whole batches too (:func:`batch_key`). An image is always computed in the same batch, whatever
    # the number of processes or interruptions, so float rounding that depends on a batch's make-up
    # cannot make a reused or resumed image differ from a fresh run's.
    gfp = generation_fingerprint(fingerprints)
    planned = plan_batches(plan, dataset, cfg.generation, out, fingerprint=gfp)
    batch_keys = batch_keys_of(planned)
    chunks = shard_batches(planned, *shard)
    mine = pd.concat(chunks).sort_values("job").drop(columns="batch_key") if chunks else plan.iloc[:0]
    done = finished_images(mine, out, batch_keys=batch_keys_of(chunks))
    todo = [b for b in chunks if not set(b["file_name"]) <= done]
    logger.info("shard %d/%d: %d images, %d already done, %d batches to generate", shard[0], shard[1],
                len(mine), len(done), len(todo))
    if todo:
        gen = generator or create_generator(cfg.generation)
        _check_step_rule(gen, cfg.generation)
        todo_ids = pd.concat(todo)["sample_id"].unique()
        _warn_if_sizes_differ(gen, spectrum_size_function(cfg.generation, out, fingerprint=gfp),
                              set(source_sizes(dataset, todo_ids).values()))
        _run_jobs(cfg, gen, dataset, todo, out, shard, progress)
    write_manifest_if_complete(cfg, plan, out, digest, batch_keys)
    return mine.reset_index(drop=True)


def _batch_of(cfg: RunConfig, chunk: pd.DataFrame, sources: dict[str, Image.Image]) -> GenerationBatch:
    """The generator's batch for planned jobs ``chunk`` (one lambda), with decoded ``sources``."""
    g = cfg.generation
    sids = list(chunk["sample_id"])
    lam = float(chunk["lam"].iloc[0])
    return GenerationBatch(
        sources=[sources[s] for s in sids], source_keys=sids, labels=[int(v) for v in chunk["label"]],
        prompts=list(chunk["prompt"]), seeds=[int(v) for v in chunk["seed"]],
        strength=float(chunk["strength"].iloc[0]), steps=int(chunk["steps"].iloc[0]), guidance_scale=g.guidance_scale,
        negative_prompt=g.negative_prompt, text_to_image=bool(g.text_to_image_at_zero and lam == 0.0))


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
            t0 = time.perf_counter()
            images = gen.generate(_batch_of(cfg, chunk, sources))
            seconds = time.perf_counter() - t0
            from discl.artifacts import atomic_write_bytes

            for fname, img in zip(chunk["file_name"], images):
                atomic_write_bytes(confine(out, fname), _encode(img, g.image_format))
            append_jsonl(log, [{"job": int(j), "file_name": f, "key": key, "batch": b,
                                "seconds": round(seconds / len(chunk), 4), "time": time.time()}
                               for j, f, key, b in zip(chunk["job"], chunk["file_name"], chunk["image_key"],
                                                       chunk["batch_key"])])
            bar.update(len(chunk))
    finally:
        bar.close()


def batch_keys_of(planned: list[pd.DataFrame]) -> dict[str, str]:
    """file_name -> the key of the batch it is planned in (:func:`plan_batches`)."""
    return {f: k for b in planned for f, k in zip(b["file_name"], b["batch_key"])}


def finish_spectrum(cfg: RunConfig, run_dir: Path) -> bool:
    """After every shard of a launcher-sharded run: write the manifest if the spectrum is complete
    (the main process calls this once all shards are done)."""
    from discl.data import build_dataset
    from discl.digests import stage_fingerprints

    dataset = build_dataset(cfg.data)
    fingerprints = stage_fingerprints(cfg, "generate")
    plan = plan_spectrum(cfg, read_hard(run_dir), dataset, fingerprints)
    out = confine(run_dir, SPECTRUM_DIR)
    gfp = generation_fingerprint(fingerprints)
    keys = batch_keys_of(plan_batches(plan, dataset, cfg.generation, out, fingerprint=gfp))
    return write_manifest_if_complete(cfg, plan, out, spectrum_digest(cfg, run_dir, fingerprints), keys)


def write_manifest_if_complete(cfg: RunConfig, plan: pd.DataFrame, out: Path, digest: str,
                               batch_keys: dict[str, str]) -> bool:
    """Write ``metadata.csv`` + ``_done.json`` once every planned image exists with its current key,
    made in the batch of the current batch plan (``batch_keys``, :func:`plan_batches`): images that
    shards run under different ``generation.batch_size`` values made are not a finished spectrum
    (idempotent)."""
    finished = finished_images(plan, out, check_decode=False, batch_keys=batch_keys)
    missing = [f for f in plan["file_name"] if f not in finished]
    if missing:
        logger.info("spectrum not complete yet: %d of %d images missing (other shards?)", len(missing), len(plan))
        return False
    write_table(out / METADATA, plan)
    from discl.data.spectrum import FILTERED_METADATA, write_dataset_card

    (out / FILTERED_METADATA).unlink(missing_ok=True)  # the filter's view of an older spectrum
    write_dataset_card(out)  # datasets.load_dataset(RUN/spectrum) reads the metadata, no split inference
    mark_complete(out / "_done.json", digest, images=len(plan))
    return True


# -- CLI -------------------------------------------------------------------------------------------


def read_hard(run_dir: Path):
    """``RUN/mining/hard.csv``; missing: say which command makes it."""
    path = confine(Path(run_dir), HARD_CSV)
    if not path.is_file():
        raise ArtifactError(f"missing {path}: run `discl mine CONFIG` first (or `discl run CONFIG`, every stage)")
    return read_table(path)


def dry_run(cfg: RunConfig, shard: tuple[int, int] = (0, 1), calibrate: bool = True, dataset=None,
            generator: Generator | None = None) -> dict:
    """The spectrum's cost for the configured scheduler and steps, generating nothing to disk: the
    whole spectrum's and this shard's (``all``, ``shard i/n``), and what a run would still make
    (``remaining``, ``remaining, shard i/n``: the batches with an image missing from the run folder or
    made under other keys: what :func:`generate_spectrum` would make, except images that exist under
    their key but no longer decode, which it remakes and the dry run, decoding nothing, counts as
    done; a resumed or reconfigured spectrum costs only these).

    Denoiser evaluations come from the scheduler's own img2img timesteps. With ``calibrate``, one
    batch of the plan (this shard's first whose level runs at least one step) is generated and timed; the time
    estimate is the evaluations to run times the measured seconds per evaluation (one image, one
    CFG branch, one step: VAE and prompt encoding are amortised into it).
    """
    from discl.data import build_dataset

    g = cfg.generation
    dataset = build_dataset(cfg.data) if dataset is None else dataset
    plan = plan_spectrum(cfg, read_hard(cfg.run_path), dataset)
    gen = generator or create_generator(g)
    _check_step_rule(gen, g)
    evaluations = {float(lam): gen.evaluations_per_image(g.steps_at(lam), strength_for(lam)) for lam in g.levels}
    from discl.digests import stage_fingerprints

    planned = plan_batches(plan, dataset, g, confine(cfg.run_path, SPECTRUM_DIR), record=False,
                           fingerprint=generation_fingerprint(stage_fingerprints(cfg, "generate")))
    mine_batches = shard_batches(planned, *shard)
    # what a run would still make: the batches with an image missing or made under other keys (the reuse
    # rule of generate_spectrum; existence and keys only: a dry run decodes no image)
    out = confine(cfg.run_path, SPECTRUM_DIR)
    if is_complete(out / "_done.json", spectrum_digest(cfg, cfg.run_path)) and (out / METADATA).is_file():
        done = set(plan["file_name"])  # generate_spectrum's own shortcut: nothing to make
    else:
        done = finished_images(plan, out, check_decode=False, batch_keys=batch_keys_of(planned)) if out.is_dir() else set()
    todo = [b for b in planned if not set(b["file_name"]) <= done]
    mine_todo = [b for b in mine_batches if not set(b["file_name"]) <= done]

    def cost(batches: list[pd.DataFrame]) -> dict:
        return {**cost_summary(pd.concat(batches) if batches else plan.iloc[:0], g.guidance_scale, evaluations),
                "batches": len(batches)}

    summary = {"scheduler": g.scheduler or "default", "steps": g.steps,
               **({"steps_per_level": {float(k): int(v) for k, v in g.steps_per_level.items()}} if g.steps_per_level else {}),
               "all": cost(planned), f"shard {shard[0]}/{shard[1]}": cost(mine_batches),
               "remaining": cost(todo), f"remaining, shard {shard[0]}/{shard[1]}": cost(mine_todo)}
    # λ close to 1 may run no step; time a batch still to make when there is one
    working = [b for b in (mine_todo or mine_batches) if evaluations[float(b["lam"].iloc[0])] > 0]
    if calibrate and working:
        chunk = working[0]
        rows_per_eval = 2 if g.guidance_scale > 1.0 else 1
        evals = int(sum(evaluations[float(lam)] for lam in chunk["lam"])) * rows_per_eval
        t0 = time.perf_counter()
        gen.generate(_batch_of(cfg, chunk, {s: dataset.image(s) for s in chunk["sample_id"]}))
        seconds = time.perf_counter() - t0
        per_eval = seconds / max(evals, 1)
        summary["calibration"] = {"images": len(chunk), "denoiser_evaluations": evals, "seconds": round(seconds, 3),
                                  "seconds_per_evaluation": per_eval}
        for key in ("all", f"shard {shard[0]}/{shard[1]}", "remaining", f"remaining, shard {shard[0]}/{shard[1]}"):
            summary[key]["estimated_seconds"] = round(summary[key]["denoiser_evaluations"] * per_eval, 1)
    return summary
