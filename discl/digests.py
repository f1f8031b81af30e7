"""What decides whether a stage reruns: one digest function per stage.

A stage's digest covers exactly what its output depends on:

- the config keys it reads (and only those: batch sizes, devices, worker counts, progress and
  logging settings are not inputs; a key read only under another backend/criterion/strategy is
  left out);
- the content digests of the upstream artifacts it reads (``mining/hard.csv``, the spectrum's
  ``metadata.csv``, the filter's ``manifest.csv``, a descriptions file, a baseline checkpoint it
  fine-tunes from) -- never their paths or the config that made them, so a hand edit is noticed
  and a config change that leaves an artifact byte-identical reruns nothing downstream;
- the fingerprints of the weights it loads (:mod:`discl.fingerprint`);
- the content of the data it reads (:mod:`discl.data.identity`): ``content``, the dataset's listing
  (the CSV / split files / class map bytes, and each image's path, size and mtime), for the stages
  that read the whole dataset (mining, its fold models, generation, the filter, every training run),
  and for each spectrum image the content digest of its source image (:func:`image_key`), so an
  image replaced in place gets new variants, and the filter new embeddings of its source.

The stage runners (``discl mine/generate/filter/train``) record these digests in their own
``_done.json`` / ``metrics.json``, and ``discl run`` and ``discl sweep`` compute them with the same
functions, so the pipeline's marker and the stage's own check agree by construction. The table of
docs/reliability.md lists what each stage depends on; ``tests/test_stage_digests.py`` walks every
documented key and checks that changing it changes exactly the digests of the stages listed there.

The functions named ``*_digest`` are pure (config, artifact digests, fingerprints, data content ->
str); :func:`artifact_digests`, :func:`data_content` and :func:`current` do the IO.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from discl.configtools import to_dict

# keys that never change a stage's output (how fast or where it runs, how it logs)
NOT_INPUTS = {
    "generation": frozenset({"batch_size", "device"}),
    "filtering": frozenset({"batch_size", "device"}),
    "training": frozenset({"num_workers", "log_with", "checkpoint_every"}),
    "data": frozenset({"decode_workers"}),  # how many processes check and decode; the verdicts are the same
}
DATA_EVAL_ONLY = frozenset({"many_threshold", "few_threshold", "test_limit"})  # only the test metrics read them
# only models that see tensors read them (in memory or streamed decides the augmentation under `auto`)
DATA_CLASSIFIER_ONLY = frozenset({"image_size", "channels", "in_memory", "in_memory_limit_mb"})
DATA_SPLIT_FILES_ONLY = frozenset({"split_files", "class_map"})  # read by data.task: split_files only
# which images are in which split (and their labels), not the pixels of an image: mining and training read them,
# the spectrum and the filter see only the images hard.csv names, by sample id
DATA_SPLIT_ONLY = frozenset({"val_per_class", "val_fraction", "on_bad_image", "class_names", "verify_images"})
DIFFUSERS_ONLY = frozenset({"pipeline_class", "resolution"})
MODEL_BASED = frozenset({"misclassified", "low_confidence"})
# every manifest column but the job index and condition_style (the prior's style is in the settings,
# :func:`image_settings_digest`, when it changes the images: a column added later must not change a key)
MANIFEST_KEY_COLUMNS = ("file_name", "sample_id", "source_sample_id", "source_path", "label", "class_name", "lam",
                        "strength", "seed", "k", "prompt", "model", "backend", "mode", "steps", "denoise_steps",
                        "guidance_scale", "negative_prompt")


def digest_of(payload: Any) -> str:
    """16 hex digits of blake2b over the canonical JSON of ``payload``."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _section(section: Any, drop: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    d = to_dict(section)
    return {k: v for k, v in d.items() if k not in drop}


def _weights(fingerprints: dict[str, Any] | None, *sections: str) -> dict[str, Any]:
    from discl.fingerprint import INFO_ONLY_KEYS

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in INFO_ONLY_KEYS}
        return x

    return {s: strip(fingerprints[s]) for s in sections if fingerprints and s in fingerprints}


# -- config views (pure) --------------------------------------------------------------------------


def data_view(cfg, *, splits: bool = True, classifier: bool = False, evaluation: bool = False) -> dict[str, Any]:
    """The data keys that decide the pixels of a sample; ``splits`` adds those that decide which
    samples are in which split, ``classifier`` the tensor size and channels, ``evaluation`` the test
    subset and the frequency bins of the metrics."""
    drop = set(NOT_INPUTS["data"])
    if cfg.data.task != "split_files":
        drop |= DATA_SPLIT_FILES_ONLY
    if not splits:
        drop |= DATA_SPLIT_ONLY
    if not classifier:
        drop |= DATA_CLASSIFIER_ONLY
    if not evaluation:
        drop |= DATA_EVAL_ONLY
    view = _section(cfg.data, drop)
    if splits and carves_val_split(cfg.data):
        # the carved validation split is drawn from the seed and class alone, no longer the data's path
        # (2026-12-07): runs made before trained on another split, so their digests differ and they are redone
        view["val_split_draw"] = "by-class"
    return view


def carves_val_split(data) -> bool:
    """Whether a user's data may have its validation split carved from train (folder / csv; split_files
    without a val list); a given val split, or an embedded task's, is not drawn."""
    if data.task == "split_files":
        return "val" not in (data.split_files or {})
    return data.task in ("folder", "csv")


def _data(view: dict[str, Any], content: str) -> dict[str, Any]:
    """A data view with the data's ``content`` (:func:`data_content`); an embedded task's empty content
    is left out, so its digests are those it had before the content was part of them (its run
    folders are not redone by the upgrade)."""
    return {**view, "content": content} if content else view


def uses_models(mining) -> bool:
    return bool(MODEL_BASED & set(mining.criteria))


def mining_view(cfg) -> dict[str, Any]:
    """The mining keys the hard set depends on: a criterion's own keys only when it is configured,
    ``combine`` only with several criteria, the run seed only where it draws (the per-class cap,
    the folds)."""
    m = cfg.mining
    view: dict[str, Any] = {"criteria": list(m.criteria), "max_per_class": m.max_per_class}
    if len(set(m.criteria)) > 1:
        view["combine"] = m.combine
    if "class_frequency" in m.criteria:
        view["frequency_below"] = m.frequency_below
    if "low_confidence" in m.criteria:
        view["confidence_below"] = m.confidence_below
    if m.max_per_class is not None:
        view["seed"] = cfg.seed
    return view


def training_view(tcfg, drop: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The training keys a model depends on; ``training.seed`` is always replaced by the run's own seed."""
    return _section(tcfg, NOT_INPUTS["training"] | {"seed"} | set(drop))


def fold_models_digest(cfg, fingerprints: dict[str, Any] | None = None, *, content: str) -> str:
    """The out-of-fold models of model-based mining: the data they see, their training setup
    (``mining.epochs`` instead of ``training.epochs``), the folds, the run seed and the pretrained
    weights. Thresholds and ``combine`` are not in it: changing them re-selects, it does not retrain.
    Nor is ``training.init_from``: the fold models start from the model's own initialisation (its
    ``pretrained`` weights), never from a checkpoint of the run (the view holds it as unset)."""
    weights = _weights(fingerprints, "training")
    if isinstance(weights.get("training"), dict):
        weights["training"] = {k: v for k, v in weights["training"].items() if k != "init_from"}
        if not weights["training"]:
            del weights["training"]
    tcfg = dataclasses.replace(cfg.training, init_from=None)
    return digest_of({"data": _data(data_view(cfg, classifier=True), content),
                      "training": training_view(tcfg, {"epochs"}), "folds": cfg.mining.folds, "epochs": cfg.mining.epochs, "seed": cfg.seed,
                      "weights": weights})


def prompts_view(cfg, descriptions: str = "") -> dict[str, Any]:
    """The prompt keys and, for a descriptions file, its content digest (``descriptions``), not its path."""
    p = cfg.prompts
    view: dict[str, Any] = {"templates": list(p.templates)}
    if p.descriptions_file:
        view["descriptions"] = descriptions
    elif p.text_model:
        view["text_model"] = p.text_model
        view["descriptions_per_class"] = p.descriptions_per_class
    if p.descriptions_file or p.text_model:
        view["description_prefix"] = p.description_prefix
    return view


def _stored_condition_style(fingerprints: dict[str, Any] | None) -> str | None:
    """The style the embedded prior's config file stores, as its fingerprint records it."""
    fp = (fingerprints or {}).get("generation", {}).get("model")
    return fp.get("condition_style") if isinstance(fp, dict) else None


def effective_condition_style(g, fingerprints: dict[str, Any] | None = None) -> str:
    """The style the embedded prior is conditioned on: ``generation.condition_style``, else the one
    its config file stores (recorded in its fingerprint by :func:`discl.fingerprint.model_fingerprints`;
    "" when not known); "" for other backends, which read prompts."""
    if g.backend != "embedded":
        return ""
    return g.condition_style if g.condition_style is not None else (_stored_condition_style(fingerprints) or "")


def generation_view(cfg, fingerprints: dict[str, Any] | None = None) -> dict[str, Any]:
    """The generation keys the spectrum depends on. ``generation.condition_style`` is in it only when
    it changes the images: set, for the embedded backend, to another style than the one the prior's
    config file stores (known from ``fingerprints``; without them a set style always counts), so
    naming the stored style remakes nothing."""
    g = cfg.generation
    drop = set(NOT_INPUTS["generation"])
    if g.backend == "embedded":
        drop |= DIFFUSERS_ONLY
    if 0.0 not in [float(v) for v in g.levels]:
        drop.add("text_to_image_at_zero")
    unused = set(g.unused_steps_levels())
    per_level = {f"{round(float(k), 6):g}": int(v) for k, v in sorted(g.steps_per_level.items()) if float(k) not in unused}
    if not per_level:  # the spectra made before the key existed keep their digests; so does a key for no generated level
        drop.add("steps_per_level")
    if (g.condition_style is None or g.backend != "embedded"  # only the embedded prior reads it
            or g.condition_style == _stored_condition_style(fingerprints)):
        drop.add("condition_style")
    view = _section(g, drop)
    if per_level:  # canonical: λ as the rounded float, in order (0.5 and 0.50 from YAML are one key)
        view["steps_per_level"] = per_level
    return view


def filtering_view(cfg) -> dict[str, Any]:
    f = cfg.filtering
    return _section(f, NOT_INPUTS["filtering"])


# -- stage digests (pure) -------------------------------------------------------------------------


def mine_digest(cfg, fingerprints: dict[str, Any] | None = None, *, content: str) -> str:
    """``mining/hard.csv``: the training split (config and ``content``) and the mining keys; with a
    model-based criterion, also the fold models (:func:`fold_models_digest`)."""
    payload: dict[str, Any] = {"data": _data(data_view(cfg), content), "mining": mining_view(cfg)}
    if uses_models(cfg.mining):
        payload["folds"] = fold_models_digest(cfg, fingerprints, content=content)
    return "mine-" + digest_of(payload)


def image_settings_digest(cfg, fingerprints: dict[str, Any] | None = None) -> str:
    """What decides a spectrum image besides its manifest row and its source's bytes: the data keys
    that decide a source's pixels, the generation keys that are not in the row, and the generator's
    weights. Not the dataset's listing: a change to another image must not remake this one."""
    g = generation_view(cfg, fingerprints)
    # levels, seeds and base seed are in the row (lam, k, seed); so is text_to_image_at_zero (mode), which
    # generation_view drops when no level is 0: an image's key must not change with the rest of the level list;
    # the row's steps holds a level's own schedule length, so steps_per_level remakes only the levels it changes
    settings = {k: v for k, v in g.items()
                if k not in ("levels", "seeds_per_level", "base_seed", "text_to_image_at_zero", "steps_per_level")}
    return digest_of({"data": data_view(cfg, splits=False), "generation": settings,
                      "weights": _weights(fingerprints, "generation")})


def image_key(row: dict[str, Any], settings: str, source: str = "") -> str:
    """The digest of one spectrum image: its manifest row (source, prompt, seed, λ, steps, ...),
    :func:`image_settings_digest` and ``source``, the content digest of its source image
    (:func:`discl.data.identity.source_keys`; "" for an embedded task, whose pixels the config
    fixes, and then left out so those keys stay as they were). An image whose key is unchanged is
    reused; any other is generated."""
    payload: dict[str, Any] = {"row": {c: row.get(c) for c in MANIFEST_KEY_COLUMNS}, "settings": settings}
    if source:
        payload["source"] = source
    return digest_of(payload)


def generate_digest(cfg, hard: str, descriptions: str = "", fingerprints: dict[str, Any] | None = None, *,
                    content: str) -> str:
    """The spectrum: ``hard.csv``'s content, the source images (data keys and the dataset's
    ``content``: a rerun after a data change replans, and regenerates only the images whose source
    bytes changed, :func:`image_key`), the prompt and generation keys, the generator's (and a text
    model's) weights."""
    return "generate-" + digest_of({"hard": hard, "data": _data(data_view(cfg, splits=False), content),
                                    "prompts": prompts_view(cfg, descriptions),
                                    "generation": generation_view(cfg, fingerprints),
                                    "weights": _weights(fingerprints, "generation", "prompts")})


def retry_context(cfg, descriptions: str = "", fingerprints: dict[str, Any] | None = None, *, content: str) -> str:
    """What a retry candidate of ``filtering.retries`` depends on besides its original image: the
    scorer and its text (for the scores), the prompts (for the retry's prompt), the generation keys
    and weights (for the image), the sources (data keys and ``content``)."""
    f = cfg.filtering
    return digest_of({"scorer": [f.backend, f.model], "text_template": f.text_template,
                      "data": _data(data_view(cfg, splits=False), content),
                      "prompts": prompts_view(cfg, descriptions), "generation": generation_view(cfg, fingerprints),
                      "weights": _weights(fingerprints, "generation", "prompts", "filtering")})


def filter_digest(cfg, spectrum: str, descriptions: str = "", fingerprints: dict[str, Any] | None = None, *,
                  content: str) -> str:
    """The filter: the spectrum manifest's content, the real sources (data keys and ``content``;
    their embeddings are cached by their bytes), the filtering keys and the scorer's weights; with
    ``retries``, also what the retries' images depend on."""
    payload: dict[str, Any] = {"spectrum": spectrum, "data": _data(data_view(cfg, splits=False), content),
                               "filtering": filtering_view(cfg), "weights": _weights(fingerprints, "filtering")}
    if cfg.filtering.retries > 0:
        payload["retries"] = retry_context(cfg, descriptions, fingerprints, content=content)
    return "filter-" + digest_of(payload)


def baseline_digest(cfg, variant: str, seed: int, fingerprints: dict[str, Any] | None = None, *,
                    content: str) -> str:
    """A real-data-only run: the data (config and ``content``), the training keys as the run uses them (``cfg.training``
    with the variant's loss/sampler already set), the seed and the pretrained weights."""
    return f"baseline-{variant}-" + digest_of({"data": _data(data_view(cfg, classifier=True, evaluation=True), content),
                                               "training": training_view(cfg.training), "seed": int(seed),
                                               "weights": _weights(fingerprints, "training")})


def curriculum_run_digest(cfg, seed: int, hard: str, manifest: str, init: str = "",
                          fingerprints: dict[str, Any] | None = None, *, content: str) -> str:
    """A curriculum run (``cfg`` as the run uses it: its strategy, loss and level set): the data
    (config and ``content``), training and curriculum keys it reads (:func:`discl.curriculum.config.digest_view`), ``hard.csv``
    and the filter manifest by content (not for a strategy whose every epoch is real only, ``real_only``:
    its epochs are planned from the real images alone), the checkpoint it fine-tunes from, the run seed when the
    strategy holds images out, the training seed and the pretrained weights."""
    from discl.curriculum.base import create_strategy
    from discl.curriculum.config import digest_view

    tcfg = cfg.training
    if init:
        tcfg = dataclasses.replace(tcfg, init_from="<baseline checkpoint>")
    epochs = max(1, cfg.training.epochs)
    strategy = create_strategy(cfg.curriculum.strategy, cfg.curriculum, epochs, 0)
    if not strategy.needs_feedback and all(strategy.stage(e).real_only for e in range(epochs)):
        manifest = "no synthetic image"  # real_only: a new spectrum or filter leaves its epochs unchanged
    payload: dict[str, Any] = {"data": _data(data_view(cfg, classifier=True, evaluation=True), content),
                               "training": training_view(tcfg), "curriculum": digest_view(cfg.curriculum),
                               "seed": int(seed), "hard": hard, "manifest": manifest, "init": init,
                               "weights": _weights(fingerprints, "training")}
    if strategy.uses_holdout:
        payload["run_seed"] = cfg.seed
    return "curriculum-" + digest_of(payload)


# -- IO -------------------------------------------------------------------------------------------

HARD = "mining/hard.csv"
SPECTRUM = "spectrum/metadata.csv"
FILTER = "filter/manifest.csv"


def file_digest(path: str | Path | None) -> str:
    """Content digest of a file ("" when it does not exist): the upstream part of a stage digest."""
    if not path or not Path(path).is_file():
        return ""
    from discl.fingerprint import file_digests

    return file_digests([Path(path)])[0][:16]


def artifact_digests(cfg, run_dir: str | Path) -> dict[str, str]:
    """Content digests of the upstream artifacts the stages read ("" for a missing one)."""
    run_dir = Path(run_dir)
    return {"hard": file_digest(run_dir / HARD), "spectrum": file_digest(run_dir / SPECTRUM),
            "filter": file_digest(run_dir / FILTER), "descriptions": file_digest(cfg.prompts.descriptions_file)}


def data_content(cfg) -> str:
    """The ``content`` part of the stage digests: the dataset's listing
    (:func:`discl.data.identity.listing_digest`; "" for an embedded task of data.seed 0, the task
    definition's version for other seeds)."""
    from discl.data.identity import listing_digest

    return listing_digest(cfg.data)


def stage_fingerprints(cfg, stage: str) -> dict[str, Any]:
    """The fingerprints of the weights ``stage`` loads (reads the weight files or their cached digests)."""
    from discl.fingerprint import model_fingerprints

    sections = {"mine": ("training",) if uses_models(cfg.mining) else (),
                "generate": ("generation", "prompts"),
                "filter": ("filtering", "generation", "prompts") if cfg.filtering.retries > 0 else ("filtering",),
                "train": ("training",)}[stage]
    return model_fingerprints(cfg, sections) if sections else {}


def current(cfg, run_dir: str | Path, stage: str, fingerprints: dict[str, Any] | None = None) -> str:
    """The digest ``stage`` (mine, generate, filter) has now in ``run_dir``: its config keys, its
    upstream artifacts and the data as they are on disk, and its weights (``fingerprints`` as
    :func:`discl.fingerprint.model_fingerprints` returns them, computed when not given)."""
    fps = stage_fingerprints(cfg, stage) if fingerprints is None else fingerprints
    art = artifact_digests(cfg, run_dir)
    content = data_content(cfg)
    if stage == "mine":
        return mine_digest(cfg, fps, content=content)
    if stage == "generate":
        return generate_digest(cfg, art["hard"], art["descriptions"], fps, content=content)
    if stage == "filter":
        return filter_digest(cfg, art["spectrum"], art["descriptions"], fps, content=content)
    raise ValueError(f"unknown stage {stage!r} (mine, generate, filter; training runs: discl.training.recipe)")
