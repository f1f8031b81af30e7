"""Spectrum planning: pure functions from (hard samples, config) to jobs, seeds and costs.

A *job* is one image to generate: (sample, lambda, k). Its seed is a stable digest of
``(base_seed, sample_id, lambda, k)`` so the same config gives the same image whatever shard, batch
or resume produced it. Nothing here touches disk or models.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable

import pandas as pd

from discl.seeding import derive_seed

JOB_COLUMNS = ["job", "sample_id", "label", "class_name", "lam", "strength", "k", "seed", "steps", "denoise_steps",
               "file_name"]


def strength_for(lam: float) -> float:
    """img2img ``strength`` of guidance level ``lam`` (rounded so 1 - 0.9 is 0.1, not 0.0999...)."""
    return round(1.0 - float(lam), 6)


# How an img2img pipeline turns (T inference steps, strength) into the steps it runs. The two rules
# of diffusers' ``get_timesteps`` differ at fractional ``T * strength`` (T = 3, strength 0.7: 2 or 3):
# ``truncate_steps``: ``min(int(T * strength), T)`` steps (SD, SDXL, and the embedded backend);
# ``truncate_start``: the start index ``int(T - min(T * strength, T))`` is truncated instead, so
# ``T - int(T - T * strength)`` steps run, one more at a fractional product (SD3, Flux).
STEP_RULES = ("truncate_steps", "truncate_start")
DEFAULT_STEP_RULE = "truncate_steps"


def img2img_steps(steps: int, strength: float, rule: str = DEFAULT_STEP_RULE) -> int:
    """Denoising steps an img2img pipeline of step rule ``rule`` (:data:`STEP_RULES`) runs: the float
    arithmetic of its ``get_timesteps``, so float noise rounds as it does there."""
    steps = int(steps)
    if rule == "truncate_steps":
        return min(int(steps * strength), steps)
    if rule == "truncate_start":
        return steps - int(max(steps - min(steps * strength, steps), 0))
    raise ValueError(f"unknown img2img step rule {rule!r} (known: {', '.join(STEP_RULES)})")


def denoise_steps(steps: int, lam: float, rule: str = DEFAULT_STEP_RULE) -> int:
    """Denoising steps img2img runs at ``lam`` with ``steps`` inference steps under step rule ``rule``.

    Exactly what diffusers' img2img ``get_timesteps`` computes from the strength it is given
    (:func:`img2img_steps`); under ``truncate_steps`` (SD, SDXL, embedded) ``int(T * strength_for(lam))``,
    truncated (T = 90, lambda = 0.3: 90 * 0.7 = 62.99... -> 62), so the manifest records the steps
    that actually run. For schedulers of order 1 (every one the contract test covers) this is also
    the number of denoiser evaluations per CFG branch.
    """
    return img2img_steps(steps, strength_for(lam), rule)


def job_seed(base_seed: int, sample_id: str, lam: float, k: int) -> int:
    return derive_seed(int(base_seed), str(sample_id), float(lam), int(k))


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(sample_id: str) -> str:
    """An ASCII file stem for a sample id; ids that had to change get a short digest to stay unique."""
    s = str(sample_id)
    clean = _SAFE.sub("_", s).strip("._") or "sample"
    if clean != s:
        clean = f"{clean[:80]}-{hashlib.blake2b(s.encode(), digest_size=4).hexdigest()}"
    return clean


def image_file_name(sample_id: str, label: int, lam: float, k: int, ext: str = "png") -> str:
    return f"images/{int(label)}/{safe_stem(sample_id)}_l{float(lam):.2f}_k{int(k)}.{ext}"


def plan_jobs(hard: pd.DataFrame, levels: list[float], seeds_per_level: int, base_seed: int, steps: int,
              ext: str = "png", prompt_fn: Callable[[str, int, str], str] | None = None,
              steps_per_level: dict[float, int] | None = None, step_rule: str = DEFAULT_STEP_RULE) -> pd.DataFrame:
    """One row per (hard sample, lambda, k), in a stable order; ``job`` is the row's stable index.
    ``steps_per_level`` overrides ``steps`` (the schedule length) at the levels it names;
    ``step_rule`` is the pipeline family's (:data:`STEP_RULES`), which ``denoise_steps`` follows.

    ``hard`` needs ``sample_id``, ``label``, ``class_name``; ``prompt_fn(sample_id, k, class_name)``
    adds a ``prompt`` column when given.
    """
    missing = [c for c in ("sample_id", "label", "class_name") if c not in hard.columns]
    if missing:
        raise ValueError(f"hard samples lack columns {missing}")
    if step_rule not in STEP_RULES:
        raise ValueError(f"unknown img2img step rule {step_rule!r} (known: {', '.join(STEP_RULES)})")
    if hard["sample_id"].duplicated().any():
        raise ValueError(f"duplicate sample id in hard samples: {hard['sample_id'][hard['sample_id'].duplicated()].iloc[0]!r}")
    per_level = {round(float(k), 6): int(v) for k, v in (steps_per_level or {}).items()}
    rows = []
    for rec in hard.reset_index(drop=True).sort_values("sample_id", kind="stable").itertuples(index=False):
        sid, label, name = str(rec.sample_id), int(rec.label), str(rec.class_name)
        for lam in levels:
            n_steps = per_level.get(round(float(lam), 6), int(steps))
            for k in range(seeds_per_level):
                row = {
                    "sample_id": sid, "label": label, "class_name": name, "lam": round(float(lam), 6),
                    "strength": strength_for(lam), "k": k, "seed": job_seed(base_seed, sid, lam, k),
                    "steps": n_steps, "denoise_steps": denoise_steps(n_steps, lam, step_rule),
                    "file_name": image_file_name(sid, label, lam, k, ext),
                }
                if prompt_fn is not None:
                    row["prompt"] = prompt_fn(sid, k, name)
                rows.append(row)
    frame = pd.DataFrame(rows, columns=JOB_COLUMNS[1:] + (["prompt"] if prompt_fn else []))
    frame.insert(0, "job", range(len(frame)))
    return frame


def shard_jobs(jobs: pd.DataFrame, index: int, count: int) -> pd.DataFrame:
    """The jobs of shard ``index`` of ``count``: ``job % count == index`` (disjoint, complete)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: need 0 <= i < n")
    return jobs[jobs["job"] % count == index]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n)."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/2), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


def batches(jobs: pd.DataFrame, batch_size: int, sizes: dict[str, tuple[int, int]] | None = None,
            size_of: Callable[[int, int], tuple[int, int]] | None = None) -> list[pd.DataFrame]:
    """Jobs grouped by step count and lambda (they share timesteps) and by generation size, cut into batches.

    ``sizes`` maps a sample id to its source's (width, height); ``size_of(width, height)`` is the
    size the backend generates such a source at (:func:`discl.generation.base.planning_size`), so
    a batch holds one generation size and is as full as the sources of that size allow: a folder of
    photos in hundreds of sizes (500x375, 500x333, 500x334, 640x480, ...) falls into the few sizes
    the backend actually uses, bucketed the way SDXL training buckets, never refused. Without
    ``size_of`` (a backend whose size policy is unknown before it is loaded) jobs are grouped by
    exact aspect ratio (:func:`aspect_key`), which also gives one generation size per batch but
    more, smaller batches. A spectrum of one source shape (the embedded demo's 28x28 images) gets
    the same batches either way.

    Jobs are also grouped by seed index ``k``, so a batch's make-up never depends on
    ``generation.seeds_per_level``: a change of it adds or removes whole batches and the other
    seeds' images are reused (:func:`discl.generation.runner.finished_images` reuses an image only
    when its batch is the same). The cost: a group smaller than ``batch_size`` gives a smaller batch
    (one image per batch for a source whose generation size no other source shares). Within a group
    jobs keep their plan order. Plan the whole spectrum's batches once and hand whole batches to
    shards (:func:`shard_batches`): a batch's make-up then never depends on the number of processes.
    """
    frame = jobs
    keys = ["denoise_steps", "lam", "k"]
    if sizes is not None:
        missing = sorted(set(frame["sample_id"]) - set(sizes))
        if missing:
            raise ValueError(f"batches: no source size for sample {missing[0]!r}")
        bucket = size_of or aspect_key
        size = {s: bucket(*sizes[s]) for s in set(frame["sample_id"])}
        frame = frame.assign(_w=[size[s][0] for s in frame["sample_id"]], _h=[size[s][1] for s in frame["sample_id"]])
        keys += ["_w", "_h"]
    out = []
    for _, group in frame.groupby(keys, sort=True):
        group = group[jobs.columns]
        for s in range(0, len(group), batch_size):
            out.append(group.iloc[s:s + batch_size])
    return out


def aspect_key(width: int, height: int) -> tuple[int, int]:
    """(width, height) reduced by their gcd: 40x30 and 400x300 share a key (and a generation size)."""
    g = math.gcd(int(width), int(height)) or 1
    return int(width) // g, int(height) // g


def generation_size(width: int, height: int, longest: int, multiple: int) -> tuple[int, int]:
    """(w, h) with the aspect ratio kept, longest side ``longest``, each side a multiple of ``multiple``.

    The size policy of both backends (the diffusers adapter: the model's native size and VAE/patch
    factor; the embedded prior: its resolution and UNet downsampling), here so that planning knows
    it without a loaded model. Many ratios share a size: 500x375, 500x374 and 640x480 all give
    1024x768 at longest side 1024, multiple 8.
    """
    scale = longest / max(width, height)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    return w, h


def shard_batches(planned: list[pd.DataFrame], index: int, count: int) -> list[pd.DataFrame]:
    """The whole batches of shard ``index`` of ``count``: batch ``b`` goes to shard ``b % count``."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: need 0 <= i < n")
    return planned[index::count]


def cost_summary(jobs: pd.DataFrame, guidance_scale: float, evaluations: dict[float, int] | None = None) -> dict:
    """Images and denoiser evaluations (per image; x2 under classifier-free guidance).

    ``evaluations`` maps lambda to one image's denoiser evaluations per CFG branch as the configured
    scheduler runs them (:func:`discl.generation.schedulers.evaluations_per_image`); without it the
    manifest's ``denoise_steps`` (the same for schedulers of order 1).
    """
    cfg_factor = 2 if guidance_scale > 1.0 else 1
    per_image = (jobs["lam"].map(lambda lam: int(evaluations[float(lam)])) if evaluations is not None
                 else jobs["denoise_steps"])
    per_level = jobs.assign(_evals=per_image).groupby("lam").agg(images=("job", "size"), steps=("_evals", "sum"))
    return {
        "images": int(len(jobs)),
        "samples": int(jobs["sample_id"].nunique()) if len(jobs) else 0,
        "denoise_steps": int(jobs["denoise_steps"].sum()),
        "denoiser_evaluations": int(per_image.sum()) * cfg_factor,
        "per_level": {float(lam): {"images": int(r.images), "denoiser_evaluations": int(r.steps) * cfg_factor}
                      for lam, r in per_level.iterrows()},
    }
