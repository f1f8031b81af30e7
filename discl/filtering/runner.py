"""``discl filter``: score the spectrum with CLIP and apply the keep rules.

Input: ``RUN/spectrum/metadata.csv`` (imagefolder convention, ``file_name`` relative to
``RUN/spectrum``) and the real source images of the run's dataset.
Output, under ``RUN/filter/``:
- ``manifest.csv``: the spectrum rows + sim_text, sim_prompt, sim_image, clipscore, keep, drop_reason;
- ``summary.csv`` / ``summary.png``: per λ counts, keep rates and similarity quantiles;
- ``scores.parquet``: the score cache, one row per (file_name, scorer) with the image's content
  digest and embedding, so a rerun encodes nothing, a changed prompt/template re-encodes texts only,
  and changed thresholds only re-apply the rules;
- ``real_embeddings.safetensors``: real-source embeddings keyed by sample_id (computed once).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from discl.artifacts import atomic_write_bytes, clean_stale_temp, confine, read_table, write_table
from discl.data.spectrum import open_spectrum_image
from discl.errors import BadInputError
from discl.filtering.rules import apply_rules, rules_from_config
from discl.filtering.scores import clipscore, rowwise_cosine

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("file_name", "sample_id", "label", "class_name", "lam", "prompt")
CACHE_COLUMNS = ("file_name", "scorer", "stat", "digest", "sample_id", "prompt", "text", "real_digest",
                 "sim_text", "sim_prompt", "sim_image", "embedding")
FLUSH_EVERY = 2048  # images between cache writes, so an interrupted run keeps its work


# -- inputs ------------------------------------------------------------------------------------


def load_spectrum(run_dir: Path) -> pd.DataFrame:
    path = Path(run_dir) / "spectrum" / "metadata.csv"
    frame = read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BadInputError(f"{path} lacks columns {missing} (needs {', '.join(REQUIRED_COLUMNS)})")
    if frame["file_name"].duplicated().any():
        raise BadInputError(f"{path}: file_name {frame.loc[frame['file_name'].duplicated(), 'file_name'].iloc[0]!r} twice")
    frame["sample_id"] = frame["sample_id"].astype(str)
    return frame


def _digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest()


def _stat(path: Path) -> str:
    """size:mtime of a file ("" when missing): a cheap check before hashing the content."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


# -- caches ------------------------------------------------------------------------------------


def read_score_cache(path: Path, scorer_id: str) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=list(CACHE_COLUMNS))
    cache = read_table(path)
    return cache[cache["scorer"] == scorer_id]


def write_score_cache(path: Path, scorer_id: str, rows: pd.DataFrame) -> None:
    """Replace this scorer's rows in the cache (other scorers' rows are kept)."""
    if path.is_file():
        other = read_table(path)
        other = other[other["scorer"] != scorer_id]
        rows = pd.concat([other, rows], ignore_index=True) if len(other) else rows
    rows = rows.copy()
    rows["embedding"] = [np.asarray(e, dtype=np.float32) for e in rows["embedding"]]
    write_table(path, rows[list(CACHE_COLUMNS)])


def load_real_embeddings(path: Path, scorer_id: str, data_digest: str,
                         sources: dict[str, str]) -> dict[str, torch.Tensor]:
    """The cached embeddings of real sources, those whose image bytes are still ``sources[sid]``
    (:func:`discl.data.identity.source_keys`): an image replaced in place is encoded again."""
    import json

    from safetensors import safe_open

    if not path.is_file():
        return {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("scorer") != scorer_id or meta.get("data") != data_digest:
            log.info("real embeddings in %s are for another scorer or dataset; recomputing", path)
            return {}
        try:
            stored = json.loads(meta.get("sources", "{}"))
        except ValueError:
            stored = {}
        return {k: f.get_tensor(k) for k in f.keys() if k in sources and stored.get(k, "") == sources[k]}


def save_real_embeddings(path: Path, emb: dict[str, torch.Tensor], scorer_id: str, data_digest: str,
                         sources: dict[str, str]) -> None:
    """Save ``emb`` with the content key of each source image it was computed from."""
    import json

    from safetensors.torch import save

    keys = json.dumps({k: sources.get(k, "") for k in emb}, sort_keys=True)
    atomic_write_bytes(path, save({k: v.contiguous() for k, v in emb.items()},
                                  metadata={"scorer": scorer_id, "data": data_digest, "sources": keys}))


# -- scoring -----------------------------------------------------------------------------------


def score_spectrum(
    frame: pd.DataFrame,
    spectrum_dir: Path,
    filter_dir: Path,
    get_scorer: Callable[[], object],
    scorer_id: str,
    text_template: str,
    real_image: Callable[[str], object],
    data_digest: str,
    sources: dict[str, str] | None = None,
) -> pd.DataFrame:
    """``frame`` + sim_text, sim_prompt, sim_image, clipscore, reusing every cached score.

    ``get_scorer`` is called only when something has to be encoded (a fully cached rerun loads no model).
    ``sources`` {sample_id: content key of the real image} (:func:`discl.data.identity.source_keys`;
    "" or absent for an embedded task): a cached ``sim_image`` and real embedding are reused only for
    the same source bytes.
    """
    sources = {str(s): (sources or {}).get(str(s), "") for s in frame["sample_id"]}
    spectrum_dir, filter_dir = Path(spectrum_dir), Path(filter_dir)
    cache_path = filter_dir / "scores.parquet"
    real_path = filter_dir / "real_embeddings.safetensors"
    scorer = None

    def need_scorer():
        nonlocal scorer
        if scorer is None:
            scorer = get_scorer()
        return scorer

    files = [confine(spectrum_dir, f) for f in frame["file_name"]]
    stats = [_stat(p) for p in files]
    missing = [str(f) for f, st in zip(frame["file_name"], stats) if not st]
    if missing:
        raise BadInputError(f"{len(missing)} spectrum images listed in metadata.csv are missing under {spectrum_dir}, "
                            f"e.g. {missing[0]}")
    texts = [text_template.format(name=n) for n in frame["class_name"]]
    cache = read_score_cache(cache_path, scorer_id).set_index("file_name", drop=False)
    rows: dict[str, dict] = {fn: dict(r) for fn, r in cache.iterrows()}
    # content digests, read only for files whose size or mtime changed since they were cached
    digests = [rows[fn]["digest"] if fn in rows and rows[fn].get("stat") == st else _digest(p)
               for fn, st, p in zip(frame["file_name"], stats, files)]

    # 1. image embeddings of new or changed files, flushed to the cache as they come
    todo = [i for i, (fn, d) in enumerate(zip(frame["file_name"], digests)) if rows.get(fn, {}).get("digest") != d]
    if todo:
        log.info("encoding %d of %d spectrum images (%d cached)", len(todo), len(frame), len(frame) - len(todo))
    for start in range(0, len(todo), FLUSH_EVERY):
        chunk = todo[start : start + FLUSH_EVERY]
        emb = need_scorer().encode_images([open_spectrum_image(files[i]) for i in chunk]).numpy()
        for i, e in zip(chunk, emb):
            fn = frame["file_name"].iat[i]
            rows[fn] = {"file_name": fn, "scorer": scorer_id, "stat": stats[i], "digest": digests[i],
                        "sample_id": "", "prompt": None,
                        "text": None, "real_digest": "", "sim_text": np.nan, "sim_prompt": np.nan,
                        "sim_image": np.nan, "embedding": e}
        write_score_cache(cache_path, scorer_id, pd.DataFrame(list(rows.values())))

    emb = np.stack([np.asarray(rows[fn]["embedding"], dtype=np.float32) for fn in frame["file_name"]])
    cached = [rows[fn] for fn in frame["file_name"]]
    sids = frame["sample_id"].astype(str).tolist()
    prompts = frame["prompt"].astype(str).tolist()

    # 2. texts: only rows whose cached prompt/plain text differs
    def text_sims(column: str, wanted: list[str], key: str) -> np.ndarray:
        out = np.array([c[column] if c[key] == w else np.nan for c, w in zip(cached, wanted)], dtype=float)
        redo = [i for i, (c, w) in enumerate(zip(cached, wanted)) if c[key] != w or np.isnan(c[column])]
        if redo:
            unique = sorted({wanted[i] for i in redo})
            table = dict(zip(unique, need_scorer().encode_texts(unique).numpy()))
            out[redo] = rowwise_cosine(emb[redo], np.stack([table[wanted[i]] for i in redo]))
        return out

    sim_prompt = text_sims("sim_prompt", prompts, "prompt")
    sim_text = text_sims("sim_text", texts, "text")

    # 3. real sources: embeddings cached per sample_id for this scorer, dataset and source bytes
    real_digests = [data_digest + (f":{sources[s]}" if sources[s] else "") for s in sids]
    sim_image = np.array([c["sim_image"] if c["real_digest"] == rd and c["sample_id"] == s else np.nan
                          for c, s, rd in zip(cached, sids, real_digests)], dtype=float)
    redo = [i for i in range(len(frame)) if np.isnan(sim_image[i])]
    if redo:
        real = load_real_embeddings(real_path, scorer_id, data_digest, sources)
        new = sorted({sids[i] for i in redo} - set(real))
        if new:
            log.info("encoding %d real source images", len(new))
            for sid, e in zip(new, need_scorer().encode_images([real_image(s) for s in new])):
                real[sid] = e.clone()
            save_real_embeddings(real_path, real, scorer_id, data_digest, sources)
        sim_image[redo] = rowwise_cosine(emb[redo], np.stack([real[sids[i]].numpy() for i in redo]))

    restat = any(c.get("stat") != st for c, st in zip(cached, stats))
    for c, st, s, p, t, a, b, d, rd in zip(cached, stats, sids, prompts, texts, sim_text, sim_prompt, sim_image,
                                           real_digests):
        c.update(stat=st, sample_id=s, prompt=p, text=t, real_digest=rd, sim_text=a, sim_prompt=b, sim_image=d)
    if todo or restat or scorer is not None:
        write_score_cache(cache_path, scorer_id, pd.DataFrame(list(rows.values())))
    out = frame.copy()
    out["sim_text"], out["sim_prompt"], out["sim_image"] = sim_text, sim_prompt, sim_image
    out["clipscore"] = clipscore(sim_prompt)
    out.attrs["images_encoded"] = len(todo)
    return out


# -- reports ------------------------------------------------------------------------------------

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def summarize(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per λ: count, kept, dropped, keep_rate and quantiles (+ mean) of each similarity."""
    rows = []
    for lam, g in manifest.groupby(manifest["lam"].astype(float).round(6), sort=True):
        row = {"lam": lam, "count": len(g), "kept": int(g["keep"].sum()), "dropped": int((~g["keep"]).sum())}
        row["keep_rate"] = row["kept"] / row["count"]
        for col in ("sim_text", "sim_prompt", "sim_image"):
            v = g[col].astype(float)
            row[f"{col}_mean"] = v.mean()
            for q in QUANTILES:
                row[f"{col}_q{int(q * 100):02d}"] = v.quantile(q)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_summary(summary: pd.DataFrame, path: Path, title: str = "", threshold: float | None = None) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    lam = summary["lam"].to_numpy()
    for col, color in (("sim_text", "C0"), ("sim_prompt", "C1"), ("sim_image", "C2")):
        ax1.plot(lam, summary[f"{col}_q50"], "o-", color=color, label=col)
        ax1.fill_between(lam, summary[f"{col}_q25"], summary[f"{col}_q75"], color=color, alpha=0.2)
    if threshold is not None:
        ax1.axhline(threshold, color="k", ls="--", lw=1, label=f"global threshold {threshold:g}")
    ax1.set_xlabel("λ (image guidance)")
    ax1.set_ylabel("cosine (median, IQR)")
    ax1.legend(fontsize=8)
    ax2.bar([f"{v:g}" for v in lam], summary["keep_rate"], color="C0")
    for x, (k, n) in enumerate(zip(summary["kept"], summary["count"])):
        ax2.text(x, k / n + 0.02, f"{k}/{n}", ha="center", fontsize=8)
    ax2.set_ylim(0, 1.1)
    ax2.set_xlabel("λ")
    ax2.set_ylabel("keep rate")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


# -- stage -------------------------------------------------------------------------------------


def filter_spectrum(cfg, run_dir: Path | None = None, scorer=None, dataset=None, regenerate=None,
                    retry_context: str = "") -> pd.DataFrame:
    """Score ``RUN/spectrum``, apply ``cfg.filtering``'s rules, write ``RUN/filter/*``; returns the manifest.

    ``scorer`` (a :class:`ClipScorer`) and ``dataset`` (the real images) are built from the config
    when not given. With ``filtering.retries > 0``, ``regenerate(row, attempt) -> dict`` (see
    :mod:`discl.filtering.retry`) makes replacement images for cells below their threshold; a
    candidate in ``filter/retries.csv`` is reused only when its key (``retry_context``, the scorer,
    the original image's ``image_key`` and the attempt) is unchanged.
    """
    from discl.config import section_digest
    from discl.filtering.scorer import create_scorer

    fc = cfg.filtering
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_path
    spectrum_dir, filter_dir = run_dir / "spectrum", run_dir / "filter"
    clean_stale_temp(filter_dir)
    frame = load_spectrum(run_dir)
    rules = rules_from_config(fc)
    unknown = sorted(set(fc.per_class) - set(frame["class_name"].astype(str)))
    if unknown:
        log.warning("filtering.per_class names classes with no spectrum rows: %s", ", ".join(unknown))

    if scorer is None:
        scorer_id = scorer_id_for(fc.backend, fc.model)

        def get_scorer():
            return create_scorer(fc.backend, fc.model, device=fc.device, batch_size=fc.batch_size)
    else:
        scorer_id = scorer.id

        def get_scorer():
            return scorer

    if dataset is None:
        from discl.data import build_dataset

        dataset = build_dataset(cfg.data)
    from discl.data.folder import record_skipped

    record_skipped(dataset, run_dir, "filter")
    unknown_ids = sorted(set(frame["sample_id"].astype(str)) - set(dataset.frame.index.astype(str)))
    if unknown_ids:
        raise BadInputError(f"spectrum sample_id {unknown_ids[0]!r} ({len(unknown_ids)} in all) is not in the dataset "
                            f"{cfg.data.task!r}; was the spectrum generated from another data config?")
    from discl.data.identity import source_keys

    sources = source_keys(dataset, frame["sample_id"].astype(str).unique())

    def real_image(sid: str):
        return dataset.image(sid)

    scored = score_spectrum(frame, spectrum_dir, filter_dir, get_scorer, scorer_id, fc.text_template,
                            real_image, section_digest(cfg, "data"), sources)
    manifest = apply_rules(scored, rules)
    if fc.retries > 0 and regenerate is None:
        log.warning("filtering.retries=%d is ignored: no regenerate callable was given (the pipeline passes the "
                    "generator's)", fc.retries)
    elif fc.retries > 0:
        from discl.filtering.retry import retry_dropped

        log_path = filter_dir / "retries.csv"
        previous = read_table(log_path) if log_path.is_file() else None
        real_path = filter_dir / "real_embeddings.safetensors"

        def score_candidates(rows: list[dict]) -> list[dict]:
            sc = get_scorer()
            emb = sc.encode_images([open_spectrum_image(confine(spectrum_dir, r["file_name"])) for r in rows]).numpy()
            texts = sc.encode_texts([str(r["prompt"]) for r in rows] +
                                    [fc.text_template.format(name=r["class_name"]) for r in rows]).numpy()
            real = load_real_embeddings(real_path, scorer_id, section_digest(cfg, "data"), sources)
            ref = np.stack([real[str(r["sample_id"])].numpy() for r in rows])
            n = len(rows)
            return [{"sim_prompt": a, "sim_text": b, "sim_image": c} for a, b, c in zip(
                rowwise_cosine(emb, texts[:n]), rowwise_cosine(emb, texts[n:]), rowwise_cosine(emb, ref))]

        manifest, retry_log = retry_dropped(manifest, rules, fc.retries, regenerate, score_candidates, previous,
                                            context=f"{retry_context}|{scorer_id}", root=spectrum_dir)
        write_table(log_path, retry_log)
    manifest.attrs = scored.attrs
    write_table(filter_dir / "manifest.csv", manifest)
    from discl.data.spectrum import write_filtered_metadata

    write_filtered_metadata(spectrum_dir, manifest)  # scores + keep for datasets.load_dataset(RUN/spectrum)
    summary = summarize(manifest)
    write_table(filter_dir / "summary.csv", summary)
    plot_summary(summary, filter_dir / "summary.png",
                 title=f"{scorer_id} · rule on sim_{fc.score} · kept {int(manifest['keep'].sum())}/{len(manifest)}",
                 threshold=fc.threshold)
    log.info("filter: kept %d of %d images (%s)", int(manifest["keep"].sum()), len(manifest), filter_dir)
    return manifest


def filter_digest(cfg, run_dir: Path | None = None, fingerprints: dict | None = None) -> str:
    """The filter stage's digest (:func:`discl.digests.filter_digest`, the one ``discl run`` records
    too): the spectrum manifest's content, the filtering keys (batch size and device left out), the
    scorer's weights, and with retries what their images depend on."""
    from discl.digests import current

    return current(cfg, cfg.run_path if run_dir is None else run_dir, "filter", fingerprints)


def filter_run(cfg, run_dir: Path, fingerprints: dict | None = None) -> pd.DataFrame:
    """The filter stage of a run folder as the CLI and ``discl run`` do it: skipped when
    ``filter/_done.json`` holds the current digest; with ``filtering.retries``, the run's own
    generator is wired in to replace low-scoring images (:func:`filter_spectrum` itself stays
    independent of any generator), and retry candidates are keyed by :func:`discl.digests.retry_context`."""
    from discl.artifacts import is_complete, mark_complete
    from discl.digests import artifact_digests, data_content, retry_context, stage_fingerprints

    run_dir = Path(run_dir)
    fps = stage_fingerprints(cfg, "filter") if fingerprints is None else fingerprints
    digest = filter_digest(cfg, run_dir, fps)
    done, path = run_dir / "filter" / "_done.json", run_dir / "filter" / "manifest.csv"
    if is_complete(done, digest) and path.is_file():
        log.info("filter: already done (%s)", path.parent)
        return read_table(path)
    done.unlink(missing_ok=True)
    regenerate, context = None, ""
    if cfg.filtering.retries > 0:
        from discl.generation.regenerate import make_regenerator

        regenerate = make_regenerator(cfg, run_dir)
        context = retry_context(cfg, artifact_digests(cfg, run_dir)["descriptions"], fps, content=data_content(cfg))
    manifest = filter_spectrum(cfg, run_dir, regenerate=regenerate, retry_context=context)
    mark_complete(done, digest, kept=int(manifest["keep"].sum()), images=len(manifest))
    return manifest


def scorer_id_for(backend: str, model: str) -> str:
    """The cache key of a configured scorer without loading it: the loaded scorer's ``id``, plus for a
    local folder/file its content digest (:mod:`discl.fingerprint`), so scores of re-saved weights
    behind the same path are not reused (a hub id is keyed by its name, as in the stage digests)."""
    if backend == "embedded":
        from discl.filtering.backends.embedded import weights_digest

        return f"embedded:{weights_digest(None if model in ('', 'embedded') else model)}"
    from discl.fingerprint import fingerprint, scorer_reference

    fp = fingerprint(scorer_reference(backend, model))
    pinned = fp.get("digest")
    return f"{backend}:{model}" + (f"@{pinned}" if pinned else "")
