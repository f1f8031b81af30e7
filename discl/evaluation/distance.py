"""How far is each guidance level from the real data? (a check the method's critics ask for)

Distances between sets of CLIP image embeddings: the squared MMD with an RBF kernel (unbiased
estimate) and the Fréchet distance (the FID formula on CLIP features), both *class-conditional*:
each λ's synthetic images *that the filter kept* of class c are compared with real *test* images of
class c (held out: neither the sources nor anything the classifier trained on), and the row reports
the unweighted mean over classes (as intra-FID does); the real hard sources themselves give the
λ = 1 reference row. A pooled distance would measure the class mix as much as realism: the filter
leaves each level its own mix (a level may keep few images of one class), and two mixtures of the
very same class distributions in other proportions are far apart (80/10/10 against a balanced
reference: pooled MMD² ~0.13, class-conditional ~0, ``tests/test_distance.py``). The embeddings
are the filter's cached ones of the scorer in use (``filter/scores.parquet``,
``filter/real_embeddings.safetensors``).

Rows are on equal footing: the Fréchet distance is biased by the sample size (two samples of one
64-d Gaussian: ~53 at n = 27, ~12 at n = 108), so every row measures each class at one size (the
smallest count of that class among the rows that have it), on ``SUBSAMPLES`` seeded subsamples
(without replacement), with one kernel bandwidth for all rows (the median heuristic on the
reference set). Each row reports the mean over the subsamples and, for MMD², the 5th-95th
percentile interval (``mmd2_lo``, ``mmd2_hi``); ``n_total`` is the row's full count. A level holds
several variants of each source (seeds) and the real row one image per source, so MMD² leaves out
pairs of variants of one source: with them in, near-copies at high λ inflate it (four copies of the
27 fmnist-lt sources have about twice their MMD²). A class a row cannot be measured on (under two
images, or images of one source only) is not dropped silently: ``classes_missing`` counts it and
``missing`` names it, and the row's mean is over its other classes. The reference is up to
``MAX_REFERENCE / classes`` (at least ``MIN_REFERENCE_PER_CLASS``) test images of each hard class
(the classes of the hard sources), whatever the filter kept, so it does not move with the threshold.

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

from discl.evaluation.fidelity import mmd2_rbf  # noqa: F401  (the pooled estimator; each within-class term of level_distances equals it, tested)

log = logging.getLogger(__name__)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def _gaussian_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
    """What the Fréchet distance needs of one sample: its mean, the R of its centred thin QR, the
    trace of its covariance and its size (a reference set is fitted once for every row)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        raise ValueError("the Fréchet distance needs at least two samples on each side")
    mu = x.mean(0)
    xc = x - mu
    return mu, np.linalg.qr(xc, mode="r"), float((xc * xc).sum()) / (len(x) - 1), len(x)


def _frechet(fx: tuple, fy: tuple) -> float:
    (mx, rx, tx, n), (my, ry, ty, m) = fx, fy
    cross = float(np.linalg.svd(rx @ ry.T, compute_uv=False).sum()) / np.sqrt((n - 1) * (m - 1))
    return float(((mx - my) ** 2).sum() + tx + ty - 2 * cross)


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2)) of Gaussians fitted to the samples.

    The cross term without a d×d matrix square root: with ``Xc``, ``Yc`` the centred samples, the
    nonzero eigenvalues of ``S_x S_y`` are the squared singular values of ``Xc Yc^T / sqrt((n-1)(m-1))``,
    so ``Tr (S_x S_y)^(1/2)`` is that matrix's nuclear norm, taken on the samples' thin-QR factors
    (``Xc = Q_x R_x``: ``Xc Yc^T`` has the singular values of ``R_x R_y^T``, at most min(n, d) square).
    Exact for the rank-deficient covariances of few samples in CLIP's 512 dimensions, where
    ``scipy.linalg.sqrtm`` is inexact and took ~3 s a call (27 vs 300 samples; this: ~0.05 s)."""
    return _frechet(_gaussian_fit(x), _gaussian_fit(y))


SUBSAMPLES = 50


BANDWIDTH_SAMPLE = 2000  # reference rows the median heuristic looks at: 2 M pairs, memory flat in the reference's size


def median_bandwidth(reference: np.ndarray, max_rows: int = BANDWIDTH_SAMPLE) -> float:
    """The median heuristic on one set: one kernel for every row of a table. Over more than
    ``max_rows`` rows, on ``max_rows`` evenly spaced ones (the reference is drawn per class, so
    every class is in them): all pairs of 20,000 rows would take 6 GB for a median that 2,000 fix."""
    ref = np.asarray(reference, dtype=np.float64)
    if len(ref) > max_rows:
        ref = ref[np.linspace(0, len(ref) - 1, max_rows).round().astype(int)]
    d = _sq_dists(ref, ref)
    return float(np.sqrt(0.5 * np.median(d[np.triu_indices(len(ref), 1)]))) or 1.0


def _kernel_row_means(x: np.ndarray, y: np.ndarray, gamma: float, chunk: int = 1024) -> np.ndarray:
    """Mean RBF kernel of each row of ``x`` to all of ``y``, ``chunk`` rows at a time (memory flat in len(x))."""
    return np.concatenate([np.exp(-gamma * _sq_dists(x[i:i + chunk], y)).mean(1) for i in range(0, len(x), chunk)])


DISTANCE_COLUMNS = ["lam", "n", "n_total", "classes", "classes_missing", "missing", "mmd2", "mmd2_lo", "mmd2_hi",
                    "frechet"]


def level_distances(synthetic: dict[float, np.ndarray], real_sources: np.ndarray, reference: np.ndarray,
                    subsamples: int = SUBSAMPLES, seed: int = 0,
                    sources: dict[float, np.ndarray] | None = None,
                    labels: dict[float, np.ndarray] | None = None,
                    reference_labels: np.ndarray | None = None) -> pd.DataFrame:
    """One row per λ (and λ = 1 for the real sources): the class-conditional MMD² (with its 5-95 %
    interval over subsamples) and Fréchet distance to ``reference``, each the unweighted mean over
    classes of the distance between the row's images of a class and the reference's images of that
    class.

    ``labels`` (per λ, and 1.0 for the real sources: each image's class) and ``reference_labels``
    come together; without them every image is of one class and this is the pooled estimator.

    Why the mean of within-class distances (intra-FID, Miyato & Koyama 2018, for MMD² as well): a
    pooled distance between two class mixtures grows with the difference of the mixing proportions
    even when each class's images are exactly real, and the filter leaves each level its own mix.
    A reference reweighted to a level's proportions would remove the mismatch but still score a
    level mainly on the classes it kept most of; the unweighted mean over classes scores every
    level on the same classes with equal weight, and it stays unbiased (each within-class MMD² is
    the unbiased estimate, and so is their mean) with no per-level weights to estimate.

    A row *lacks* a class it cannot be measured on: fewer than 2 images of it, images of it from
    fewer than 2 sources (``sources`` given: MMD² pairs only variants of different sources), or a
    class with fewer than 2 reference images. Its mean is then over fewer classes: ``classes`` and
    ``classes_missing`` count them, ``missing`` lists the lacking ones (space-separated), and a row
    that lacks every class has no distance (NaN). Every level of ``synthetic`` gets a row, even
    an empty one.

    Equal footing: the Fréchet distance is biased by the sample size, so each class is measured at
    one size in every row, ``n_c`` = the smallest count of that class among the rows that have it;
    a row larger than that is measured on ``subsamples`` seeded subsamples (without replacement,
    seeded by (seed, λ, class, draw)) and reports their mean. ``n`` is the sum of the row's ``n_c``,
    ``n_total`` its full count; one kernel bandwidth for all rows (the median heuristic on the
    whole reference). A draw whose images of a class all come from one source has no MMD² for that
    class; its interval uses that class's mean over the other draws (NaN if none had two sources).
    Memory: the kernel blocks are per class and per draw (``n_c`` square, and the row's images to
    the class's reference in chunks), so they do not grow with the level's size."""
    from discl.seeding import numpy_rng

    if (labels is None) != (reference_labels is None):
        raise ValueError("level_distances: labels and reference_labels come together (one class per image "
                         "of every row and of the reference)")
    reference = np.asarray(reference, dtype=np.float64)
    dim = reference.shape[1]

    def as_set(e) -> np.ndarray:
        e = np.asarray(e, dtype=np.float64)
        return e.reshape(0, dim) if e.size == 0 else e

    sets = {float(lam): as_set(e) for lam, e in sorted(synthetic.items())}
    if len(real_sources):
        sets[1.0] = as_set(real_sources)
    if not sets:
        return pd.DataFrame(columns=DISTANCE_COLUMNS)
    if labels is None:
        row_labels = {lam: np.zeros(len(e), dtype=int) for lam, e in sets.items()}
        ref_labels = np.zeros(len(reference), dtype=int)
    else:
        given = {float(lam): np.asarray(v) for lam, v in labels.items()}
        for lam, emb in sets.items():
            if lam not in given or len(given[lam]) != len(emb):
                raise ValueError(f"level_distances: labels must give one class per image of every row (λ = 1: the "
                                 f"real sources); λ = {lam}: {len(emb)} images, {len(given.get(lam, []))} labels")
        row_labels = {lam: given[lam] for lam in sets}
        ref_labels = np.asarray(reference_labels)
        if len(ref_labels) != len(reference):
            raise ValueError(f"level_distances: reference_labels: {len(ref_labels)} labels for {len(reference)} images")
    source_ids: dict[float, np.ndarray | None] = dict.fromkeys(sets)
    if sources is not None:
        given = {float(lam): np.asarray(ids) for lam, ids in sources.items()}
        for lam, emb in sets.items():
            if lam == 1.0 and lam not in given:
                continue  # the real row: one image per source
            if lam not in given or len(given[lam]) != len(emb):
                raise ValueError(f"level_distances: sources must give one id per image of every level; "
                                 f"λ = {lam}: {len(emb)} images, {len(given.get(lam, []))} ids")
            source_ids[lam] = given[lam]
    classes = sorted(set(ref_labels.tolist()).union(*(v.tolist() for v in row_labels.values())))
    ref_of = {c: reference[ref_labels == c] for c in classes}

    def members(lam: float, c) -> np.ndarray | None:
        idx = np.flatnonzero(row_labels[lam] == c)
        group = source_ids[lam]
        if len(idx) < 2 or len(ref_of[c]) < 2 or (group is not None and len(set(group[idx].tolist())) < 2):
            return None
        return idx

    index = {lam: {c: members(lam, c) for c in classes} for lam in sets}

    def units(lam: float, c) -> int:
        """What a row can draw of class ``c`` without repeating a source: its distinct sources (one
        variant each), or its images when it has no source ids (the real row: one image per source)."""
        idx, group = index[lam][c], source_ids[lam]
        return len(idx) if group is None else len(set(group[idx].tolist()))

    # every row measured at the same per-class size, drawn from distinct sources: a level's seed variants
    # of one source are near-copies, which would shrink its spread (Fréchet) against the real row's
    size = {c: min((units(lam, c) for lam in sets if index[lam][c] is not None), default=0) for c in classes}
    bandwidth = median_bandwidth(reference)
    gamma = 1.0 / (2 * bandwidth * bandwidth)
    ref_stats = {}
    for c in classes:
        if size[c]:  # measured in some row: the reference's within-class kernel mean and Gaussian fit, once
            kyy = np.exp(-gamma * _sq_dists(ref_of[c], ref_of[c]))
            ref_stats[c] = (float(kyy[~np.eye(len(kyy), dtype=bool)].mean()), _gaussian_fit(ref_of[c]))
    rows = []
    for lam, emb in sets.items():
        measured = [c for c in classes if index[lam][c] is not None]
        missing = [c for c in classes if index[lam][c] is None]
        draws = 1 if all(len(index[lam][c]) == size[c] for c in measured) else subsamples
        mmd, fre = np.full((draws, len(measured)), np.nan), np.full((draws, len(measured)), np.nan)
        for j, c in enumerate(measured):
            idx, group = index[lam][c], source_ids[lam]
            x, g = emb[idx], None if group is None else group[idx]
            kxy = _kernel_row_means(x, ref_of[c], gamma)
            kyy, fit_y = ref_stats[c]
            whole = len(idx) == size[c]  # every image, of distinct sources (size <= distinct sources <= images)
            for r in range(1 if whole else draws):
                rng = None if whole else numpy_rng("distance-subsample", seed, lam, str(c), r)
                pick = np.arange(len(idx)) if whole else _pick_distinct_sources(len(idx), g, size[c], rng)
                xs = x[pick]
                fre[r, j] = _frechet(_gaussian_fit(xs), fit_y)
                pair = ~np.eye(len(pick), dtype=bool) if g is None else g[pick][:, None] != g[pick][None, :]
                if pair.any():  # unbiased: within-set pairs of distinct images (of distinct sources)
                    mmd[r, j] = np.exp(-gamma * _sq_dists(xs, xs))[pair].mean() + kyy - 2 * kxy[pick].mean()
            if whole:
                mmd[:, j], fre[:, j] = mmd[0, j], fre[0, j]
        counts = (~np.isnan(mmd)).sum(0)
        per_class = np.where(counts > 0, np.nansum(mmd, 0) / np.maximum(counts, 1), np.nan)
        per_draw = np.where(np.isnan(mmd), per_class, mmd).mean(1) if measured else np.full(draws, np.nan)
        ok = draws > 1 and np.isfinite(per_draw).all()
        lo, hi = np.percentile(per_draw, [5, 95]) if ok else (np.nan, np.nan)
        rows.append({"lam": lam, "n": sum(size[c] for c in measured), "n_total": len(emb),
                     "classes": len(measured), "classes_missing": len(missing),
                     "missing": " ".join(str(c) for c in missing),
                     "mmd2": float(per_draw.mean()) if measured else np.nan, "mmd2_lo": float(lo),
                     "mmd2_hi": float(hi), "frechet": float(fre.mean()) if measured else np.nan})
    return pd.DataFrame(rows, columns=DISTANCE_COLUMNS)


def _pick_distinct_sources(n: int, groups: np.ndarray | None, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` sorted positions among ``n`` images: of distinct sources, one variant each (source and
    variant both chosen by ``rng``), or, without source ids (``groups`` None), any ``size`` images."""
    if groups is None:
        return np.sort(rng.choice(n, size, replace=False))
    order = rng.permutation(n)  # a random variant of each source: its first in a random order
    _, first = np.unique(groups[order], return_index=True)
    return np.sort(rng.choice(order[first], size, replace=False))


MAX_REFERENCE = 1000
MIN_REFERENCE_PER_CLASS = 20


def distance_settings(cfg, max_reference: int = MAX_REFERENCE) -> dict:
    """What the distances depend on besides the filter's output and the CLIP weights (pure)."""
    return {"max_reference": max_reference, "min_reference_per_class": MIN_REFERENCE_PER_CLASS,
            "reference_seed": cfg.seed, "kernel": "rbf-median-of-reference", "subsamples": SUBSAMPLES,
            "kept_only": True, "mmd2_pairs": "across sources", "reference_classes": "all hard, sampled per class",
            "estimator": "mean over classes of within-class distances", "draws": "distinct sources", "bandwidth_rows": BANDWIDTH_SAMPLE, "version": 6}


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
                out = pd.read_csv(csv, dtype={"missing": str})  # "3 7", and "5" not as the number 5
                return out.assign(missing=out["missing"].fillna(""))
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
    label_of = dict(zip(man["sample_id"].astype(str), man["label"].astype(int), strict=True))
    classes = sorted(set(man["label"].astype(int)))  # theirs: the reference does not move with the filter
    man = man.merge(cache[["file_name", "embedding"]], on="file_name", how="inner")
    if not len(man):
        return None
    levels = sorted(set(man["lam"].astype(float)))  # every level gets a row, even one the filter emptied
    if "keep" in man.columns:  # the images the curriculum can draw from
        man = man[man["keep"].astype(str).str.lower().isin(["true", "1"])]
    ds = build_dataset(cfg.data)
    test_split = "test" if "test" in ds.splits else "val"
    pool = ds.split(test_split)
    per_class = max(max_reference // max(len(classes), 1), MIN_REFERENCE_PER_CLASS)
    picked = []
    for c in classes:  # each class's own sample: the distance is within classes
        ids_c = pool.loc[pool["label"] == c, "sample_id"].to_numpy()
        if len(ids_c) > per_class:
            ids_c = np.sort(numpy_rng("distance-reference", cfg.seed, int(c)).choice(ids_c, per_class, replace=False))
        picked += [(sid, c) for sid in ids_c]
    ids = np.array([sid for sid, _ in picked], dtype=object)
    reference_labels = np.array([c for _, c in picked], dtype=int)
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
    by_level = {float(lam): g for lam, g in man.groupby("lam")}
    dim = reference.shape[1]
    empty = man.iloc[:0]
    synthetic = {lam: (np.stack(by_level[lam]["embedding"].to_numpy()) if lam in by_level else np.zeros((0, dim)))
                 for lam in levels}
    of_source = {lam: by_level.get(lam, empty)["sample_id"].astype(str).to_numpy() for lam in levels}
    of_class = {lam: by_level.get(lam, empty)["label"].astype(int).to_numpy() for lam in levels}
    of_class[1.0] = np.array([label_of[s] for s in sources], dtype=int)
    out = level_distances(synthetic, real, reference, seed=cfg.seed, sources=of_source, labels=of_class,
                          reference_labels=reference_labels)
    log.info("class-conditional distance to real %s images of the hard classes (%d, up to %d per class): %s",
             test_split, len(ids), per_class, out[["lam", "mmd2"]].round(4).to_dict("records"))
    lacking = out[out["classes_missing"] > 0]
    if len(lacking):
        def named(missing: str) -> str:
            return ", ".join(str(ds.classes[int(c)]) if 0 <= int(c) < len(ds.classes) else c for c in missing.split())

        log.warning("distances: levels lacking classes (kept variants of fewer than two sources; such a level's mean is over "
                    "its other classes, so compare it with care): %s",
                    "; ".join(f"λ {r.lam:g}: {named(r.missing)}" for r in lacking.itertuples()))
    return out
