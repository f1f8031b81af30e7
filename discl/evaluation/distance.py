"""How far is each guidance level from the real data? (a check the method's critics ask for)

Distances between sets of CLIP image embeddings: the squared MMD with an RBF kernel (unbiased
estimate) and the Fréchet distance (the FID formula on CLIP features). Each λ's synthetic images
*that the filter kept* are compared with real *test* images of the same classes (held out: neither
the sources nor anything the classifier trained on); the real hard sources themselves give the
λ = 1 reference row. The embeddings are the filter's cached ones of the scorer in use
(``filter/scores.parquet``, ``filter/real_embeddings.safetensors``).

Rows are on equal footing: the Fréchet distance is biased by the sample size (two samples of one
64-d Gaussian: ~53 at n = 27, ~12 at n = 108), so every row is computed on ``SUBSAMPLES`` seeded
subsamples (without replacement) of the same size ``n`` (the smallest row's), with one kernel
bandwidth for all rows (the median heuristic on the reference set). Each row reports the mean over
the subsamples and, for MMD², the 5th-95th percentile interval (``mmd2_lo``, ``mmd2_hi``);
``n_total`` is the row's full count. A level holds several variants of each source (seeds) and the
real row one image per source, so MMD² leaves out pairs of variants of one source: with them in,
near-copies at high λ inflate it (four copies of the 27 fmnist-lt sources have about twice their MMD²).
The reference is the test images of every hard class (the classes of the hard sources), whatever
the filter kept, so the λ = 1 row does not move with the threshold; a level whose kept images lack
some classes, or hold them in other proportions, differs from the reference by its class mix too.

The report calls :func:`cached_spectrum_distances`: ``RUN/report/distances.csv`` is reused while
its key (``distances.key.json``: the filter stage's digest, the CLIP fingerprint, a digest of the
filter manifest and the distance settings) is unchanged, so rewriting a report loads no CLIP.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from discl.evaluation.fidelity import mmd2_rbf  # noqa: F401  (the one estimator; re-exported)

log = logging.getLogger(__name__)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2)) of Gaussians fitted to the samples.

    The cross term without a d×d matrix square root: with ``Xc``, ``Yc`` the centred samples, the
    nonzero eigenvalues of ``S_x S_y`` are the squared singular values of ``Xc Yc^T / sqrt((n-1)(m-1))``,
    so ``Tr (S_x S_y)^(1/2)`` is that matrix's nuclear norm, taken on the samples' thin-QR factors
    (``Xc = Q_x R_x``: ``Xc Yc^T`` has the singular values of ``R_x R_y^T``, at most min(n, d) square).
    Exact for the rank-deficient covariances of few samples in CLIP's 512 dimensions, where
    ``scipy.linalg.sqrtm`` is inexact and took ~3 s a call (27 vs 300 samples; this: ~0.05 s)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("the Fréchet distance needs at least two samples on each side")
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    rx, ry = np.linalg.qr(xc, mode="r"), np.linalg.qr(yc, mode="r")
    cross = float(np.linalg.svd(rx @ ry.T, compute_uv=False).sum()) / np.sqrt((n - 1) * (m - 1))
    return float(((mx - my) ** 2).sum() + (xc * xc).sum() / (n - 1) + (yc * yc).sum() / (m - 1) - 2 * cross)


SUBSAMPLES = 50


def median_bandwidth(reference: np.ndarray) -> float:
    """The median heuristic on one set: one kernel for every row of a table."""
    ref = np.asarray(reference, dtype=np.float64)
    d = _sq_dists(ref, ref)
    return float(np.sqrt(0.5 * np.median(d[np.triu_indices(len(ref), 1)]))) or 1.0


def level_distances(synthetic: dict[float, np.ndarray], real_sources: np.ndarray, reference: np.ndarray,
                    subsamples: int = SUBSAMPLES, seed: int = 0,
                    sources: dict[float, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per λ (and λ = 1 for the real sources), every row at the same sample size ``n``:
    mean MMD² (with its 5-95 % interval) and Fréchet distance to ``reference`` over ``subsamples``
    seeded subsamples of size ``n`` (the smallest row's count). Rows with fewer than 2 images are
    left out. ``sources`` (per λ, each image's source id): MMD² leaves out pairs of variants of one
    source (:func:`discl.evaluation.fidelity.mmd2_rbf`), as the real sources' row has none; a
    subsample whose images all come from one source has no MMD² (NaN)."""
    from discl.seeding import numpy_rng

    sets = {float(lam): np.asarray(e, dtype=np.float64) for lam, e in sorted(synthetic.items()) if len(e) >= 2}
    if len(real_sources) >= 2:
        sets[1.0] = np.asarray(real_sources, dtype=np.float64)
    cols = ["lam", "n", "n_total", "mmd2", "mmd2_lo", "mmd2_hi", "frechet"]
    if not sets:
        return pd.DataFrame(columns=cols)
    n = min(len(e) for e in sets.values())
    source_ids = {}
    if sources is not None:
        given = {float(lam): np.asarray(ids) for lam, ids in sources.items()}
        for lam, emb in sets.items():
            if lam == 1.0 and lam not in given:
                continue  # the real row: one image per source
            if lam not in given or len(given[lam]) != len(emb):
                raise ValueError(f"level_distances: sources must give one id per image of every level; "
                                 f"λ = {lam}: {len(emb)} images, {len(given.get(lam, []))} ids")
            source_ids[lam] = given[lam]
        source_ids.setdefault(1.0, None)
    bandwidth = median_bandwidth(reference)
    rows = []
    for lam, emb in sets.items():
        draws = 1 if len(emb) == n else subsamples
        mmd, fre = [], []
        group = None if sources is None else source_ids[lam]
        for r in range(draws):
            idx = np.arange(len(emb)) if draws == 1 else np.sort(numpy_rng("distance-subsample", seed, lam, r).choice(
                len(emb), n, replace=False))
            g = None if group is None else np.asarray(group)[idx]
            mmd.append(mmd2_rbf(emb[idx], reference, bandwidth, groups_x=g)
                       if g is None or len(set(g.tolist())) > 1 else np.nan)
            fre.append(frechet_distance(emb[idx], reference))
        lo, hi = (np.nanpercentile(mmd, [5, 95]) if draws > 1 and not np.isnan(mmd).all() else (np.nan, np.nan))
        rows.append({"lam": lam, "n": n, "n_total": len(emb), "mmd2": float(np.nanmean(mmd)) if not np.isnan(mmd).all() else np.nan, "mmd2_lo": float(lo),
                     "mmd2_hi": float(hi), "frechet": float(np.mean(fre))})
    return pd.DataFrame(rows, columns=cols)


MAX_REFERENCE = 1000


def distance_settings(cfg, max_reference: int = MAX_REFERENCE) -> dict:
    """What the distances depend on besides the filter's output and the CLIP weights (pure)."""
    return {"max_reference": max_reference, "reference_seed": cfg.seed, "kernel": "rbf-median-of-reference",
            "subsamples": SUBSAMPLES, "kept_only": True, "mmd2_pairs": "across sources", "reference_classes": "all hard", "version": 4}


def cached_spectrum_distances(cfg, run_dir: Path, filter_digest: str, clip_fingerprint: dict | None,
                              max_reference: int = MAX_REFERENCE) -> pd.DataFrame | None:
    """:func:`spectrum_distances`, reusing ``RUN/report/distances.csv`` while its key is unchanged."""
    from discl.artifacts import atomic_write_json, read_json, write_table

    run_dir = Path(run_dir)
    manifest = run_dir / "filter" / "manifest.csv"
    if not manifest.is_file():
        return None
    from discl.digests import data_content, data_view

    # the reference is the test split's images (data.test_limit, the data's content), which the
    # filter's digest does not cover: the filter never reads the test split
    key = {"filter_stage": filter_digest, "clip": clip_fingerprint,
           "manifest": hashlib.blake2b(manifest.read_bytes(), digest_size=8).hexdigest(),
           "settings": distance_settings(cfg, max_reference),
           "reference": {"data": data_view(cfg, evaluation=True), "content": data_content(cfg)}}
    key = json.loads(json.dumps(key, sort_keys=True))  # as it reads back from disk
    csv, key_path = run_dir / "report" / "distances.csv", run_dir / "report" / "distances.key.json"
    if csv.is_file() and key_path.is_file():
        try:
            if read_json(key_path) == key:
                log.info("distances: reused %s (filter output, CLIP weights and settings unchanged)", csv)
                return pd.read_csv(csv)
        except (OSError, ValueError, pd.errors.ParserError) as e:
            log.warning("distances: cached %s unreadable (%s); recomputing", csv, e)
    out = spectrum_distances(cfg, run_dir, max_reference)
    if out is not None:
        key_path.unlink(missing_ok=True)  # never a key beside a table it does not describe
        write_table(csv, out)
        atomic_write_json(key_path, key)
    return out


def spectrum_distances(cfg, run_dir: Path, max_reference: int = MAX_REFERENCE) -> pd.DataFrame | None:
    """Distances per λ for a run, from the filter's cached embeddings; None when there are none."""
    from discl.data import build_dataset
    from discl.filtering.scorer import create_scorer
    from discl.seeding import numpy_rng

    run_dir = Path(run_dir)
    scores, manifest = run_dir / "filter" / "scores.parquet", run_dir / "filter" / "manifest.csv"
    if not scores.is_file() or not manifest.is_file():
        return None
    from discl.config import section_digest
    from discl.filtering.runner import load_real_embeddings, scorer_id_for

    scorer_id = scorer_id_for(cfg.filtering.backend, cfg.filtering.model)
    cache = pd.read_parquet(scores, columns=["file_name", "scorer", "embedding"])
    cache = cache[cache["scorer"] == scorer_id].drop_duplicates("file_name", keep="last")  # the scorer in use
    man = pd.read_csv(manifest)
    sources = sorted(set(man["sample_id"].astype(str)))  # λ = 1: every real hard source
    classes = sorted(set(man["label"].astype(int)))  # theirs: the reference does not move with the filter
    if "keep" in man.columns:  # the images the curriculum can draw from
        man = man[man["keep"].astype(str).str.lower().isin(["true", "1"])]
    man = man.merge(cache[["file_name", "embedding"]], on="file_name", how="inner")
    if not len(man):
        return None
    ds = build_dataset(cfg.data)
    test_split = "test" if "test" in ds.splits else "val"
    pool = ds.split(test_split)
    pool = pool[pool["label"].isin(classes)]
    ids = pool["sample_id"].to_numpy()
    if len(ids) > max_reference:
        ids = np.sort(numpy_rng("distance-reference", cfg.seed).choice(ids, max_reference, replace=False))
    scorer = None

    def encode(sids: list[str]) -> np.ndarray:
        nonlocal scorer
        if scorer is None:
            scorer = create_scorer(cfg.filtering.backend, cfg.filtering.model, cfg.filtering.device,
                                   cfg.filtering.batch_size)
        return scorer.encode_images([ds.image(s) for s in sids]).numpy()

    reference = encode(list(ids))
    from discl.data.identity import source_keys

    cached = load_real_embeddings(run_dir / "filter" / "real_embeddings.safetensors", scorer_id,
                                  section_digest(cfg, "data"), source_keys(ds, sources))
    real = (np.stack([cached[s].numpy() for s in sources]) if sources and all(s in cached for s in sources)
            else encode(sources))
    by_level = dict(list(man.groupby("lam")))
    synthetic = {float(lam): np.stack(g["embedding"].to_numpy()) for lam, g in by_level.items()}
    of_source = {float(lam): g["sample_id"].astype(str).to_numpy() for lam, g in by_level.items()}
    out = level_distances(synthetic, real, reference, seed=cfg.seed, sources=of_source)
    log.info("distance to real %s images of the hard classes (%d): %s", test_split, len(ids),
             out[["lam", "mmd2"]].round(4).to_dict("records"))
    return out
