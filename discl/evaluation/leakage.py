"""``discl leakage RUN``: is any kept synthetic image a near copy of a validation or test image?

A generator that has seen the evaluation images (a prior trained on them, a diffusion model whose
training set holds them, an image-to-image source from the wrong split) can hand the classifier
the test set. For every kept synthetic image (``RUN/filter/manifest.csv``, ``keep`` true) this finds
its ``k`` nearest real images of every non-training split (``val``, ``test``, ``test_ood``) in two
spaces:

- **CLIP image space** — the run's filtering scorer (``filtering.backend`` / ``model``), cosine of
  the L2-normalised image embeddings;
- **pixel space** — each image converted to grayscale, resized to ``PIXEL_SIZE``² (bilinear),
  mean-centred and L2-normalised, cosine (= the normalised cross-correlation; 1 for a copy, robust
  to a brightness shift).

A pair is counted as a near duplicate when its similarity is at least the space's threshold
(:data:`THRESHOLDS`; see docs/results.md, *Leakage check*, for how they were set). Writes
``RUN/leakage/leakage.csv`` (one row per synthetic image × space × split × rank),
``RUN/leakage/summary.csv`` (counts per space and split) and ``RUN/leakage/closest.png`` (the
closest pairs side by side). Memory stays flat in the number of synthetic images: they are read,
encoded and compared one batch at a time against the real images' embeddings (one vector per real
image, encoded in batches), keeping a running top-k per synthetic image over blocks of real images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["PIXEL_SIZE", "THRESHOLDS", "pixel_vectors", "merge_topk", "nearest", "check_leakage", "closest_pairs_png"]

PIXEL_SIZE = 16
# near-duplicate thresholds (cosine), set above the largest similarity between distinct real images of
# the embedded fmnist-lt task (each train image's nearest test image: CLIP max 0.9965, pixel max 0.9561;
# `bench/leakage_thresholds.py configs/fmnist-lt.yaml`, docs/results.md "Leakage check"); an exact copy is 1.0
THRESHOLDS = {"clip": 0.998, "pixel": 0.98}


# -- pure -----------------------------------------------------------------------------------------


def pixel_vectors(images: Sequence[Image.Image], size: int = PIXEL_SIZE) -> np.ndarray:
    """[N, size²] float32: grayscale, bilinear ``size``×``size``, mean-centred, L2-normalised (a flat
    image becomes the zero vector: similarity 0 to everything)."""
    out = np.zeros((len(images), size * size), dtype=np.float32)
    for i, im in enumerate(images):
        v = np.asarray(im.convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32).ravel()
        v = v - v.mean()
        n = float(np.linalg.norm(v))
        out[i] = v / n if n > 1e-6 else 0.0
    return out


def merge_topk(best_sim: np.ndarray, best_idx: np.ndarray, sims: np.ndarray, offset: int, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Merge a block of similarities [Q, B] (columns ``offset``..``offset+B-1``) into the running
    top-k ([Q, k] similarities, descending, and their column indices; -inf / -1 where unfilled)."""
    block_idx = np.broadcast_to(np.arange(offset, offset + sims.shape[1]), sims.shape)
    all_sim = np.concatenate([best_sim, sims], axis=1)
    all_idx = np.concatenate([best_idx, block_idx], axis=1)
    order = np.argsort(-all_sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_sim, order, 1), np.take_along_axis(all_idx, order, 1)


def nearest(queries: np.ndarray, refs: np.ndarray, k: int, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours of each query row among the ``refs`` rows (both L2-normalised),
    computed over blocks of ``block`` reference rows with a running top-k."""
    q = len(queries)
    best_sim = np.full((q, k), -np.inf, dtype=np.float32)
    best_idx = np.full((q, k), -1, dtype=np.int64)
    for start in range(0, len(refs), block):
        sims = queries @ refs[start : start + block].T
        best_sim, best_idx = merge_topk(best_sim, best_idx, sims.astype(np.float32), start, k)
    return best_sim, best_idx


# -- runner ---------------------------------------------------------------------------------------


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _load(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im.copy()


def _embed(ids: Sequence[str], load: Callable[[str], Image.Image], scorer, batch: int) -> tuple[np.ndarray, np.ndarray]:
    clip, pix = [], []
    for chunk in _batches(list(ids), batch):
        ims = [load(s) for s in chunk]
        clip.append(scorer.encode_images(ims).numpy().astype(np.float32))
        pix.append(pixel_vectors(ims))
    if not clip:
        return np.zeros((0, 1), np.float32), np.zeros((0, PIXEL_SIZE**2), np.float32)
    return np.concatenate(clip), np.concatenate(pix)


def check_leakage(run_dir: Path, cfg=None, scorer=None, dataset=None, k: int = 3, batch: int = 256,
                  thresholds: dict[str, float] | None = None, splits: Sequence[str] | None = None,
                  pairs_png: int = 8) -> pd.DataFrame:
    """Run the check on ``run_dir``; returns the summary (one row per space × split) and writes
    ``RUN/leakage/{leakage.csv, summary.csv, closest.png}``. ``cfg`` defaults to ``RUN/config.yaml``;
    ``scorer`` and ``dataset`` are built from it when not given."""
    from discl.artifacts import ArtifactError, atomic_write_bytes, read_table, write_table

    run_dir = Path(run_dir)
    thresholds = {**THRESHOLDS, **(thresholds or {})}
    if cfg is None:
        from discl.config import load_config

        if not (run_dir / "config.yaml").is_file():
            raise ArtifactError(f"{run_dir}/config.yaml is missing: is {run_dir} a discl run folder?")
        cfg = load_config(run_dir / "config.yaml")
    manifest_path = run_dir / "filter" / "manifest.csv"
    if not manifest_path.is_file():
        raise ArtifactError(f"missing {manifest_path}: run `discl filter` (or `discl run`) first")
    manifest = read_table(manifest_path)
    kept = manifest[manifest["keep"].astype(str).str.lower().isin(["true", "1"])].reset_index(drop=True)
    if dataset is None:
        from discl.data import build_dataset

        dataset = build_dataset(cfg.data)
    if scorer is None:
        from discl.filtering.scorer import create_scorer

        fc = cfg.filtering
        scorer = create_scorer(fc.backend, fc.model, device=fc.device, batch_size=fc.batch_size)
    splits = [s for s in (splits or [s for s in dataset.splits if s != "train"])]
    spectrum = run_dir / "spectrum"
    refs: dict[str, tuple[pd.DataFrame, np.ndarray, np.ndarray]] = {}
    for split in splits:
        frame = dataset.split(split)
        clip, pix = _embed(frame["sample_id"].astype(str).tolist(), dataset.image, scorer, batch)
        refs[split] = (frame, clip, pix)
        logger.info("leakage: %d %s images encoded", len(frame), split)

    rows: list[dict[str, Any]] = []
    for start in range(0, len(kept), batch):
        part = kept.iloc[start : start + batch]
        q_clip, q_pix = _embed(part["file_name"].tolist(), lambda f: _load(spectrum / f), scorer, batch)
        for split, (frame, r_clip, r_pix) in refs.items():
            for space, q, r in (("clip", q_clip, r_clip), ("pixel", q_pix, r_pix)):
                if not len(r):
                    continue
                sim, idx = nearest(q, r, min(k, len(r)))
                for i, (_, syn) in enumerate(part.iterrows()):
                    for rank in range(sim.shape[1]):
                        real = frame.iloc[int(idx[i, rank])]
                        rows.append({"file_name": syn["file_name"], "sample_id": str(syn["sample_id"]),
                                     "label": int(syn["label"]), "lam": float(syn.get("lam", np.nan)),
                                     "space": space, "split": split, "rank": rank + 1,
                                     "real_sample_id": str(real["sample_id"]), "real_label": int(real["label"]),
                                     "similarity": float(sim[i, rank]),
                                     "duplicate": bool(sim[i, rank] >= thresholds[space])})
    columns = ["file_name", "sample_id", "label", "lam", "space", "split", "rank", "real_sample_id", "real_label",
               "similarity", "duplicate"]
    table = pd.DataFrame(rows, columns=columns)
    out = run_dir / "leakage"
    write_table(out / "leakage.csv", table)
    summary = summarize(table, thresholds, len(kept), splits)
    write_table(out / "summary.csv", summary)
    from discl.artifacts import atomic_write_json
    from discl.digests import file_digest

    atomic_write_json(out / "_done.json", {"filter_manifest": file_digest(manifest_path), "kept": int(len(kept))})
    png = closest_pairs_png(table, spectrum, dataset, pairs_png)
    if png is not None:
        atomic_write_bytes(out / "closest.png", png)
    return summary


def summarize(table: pd.DataFrame, thresholds: dict[str, float], n_kept: int, splits: Sequence[str]) -> pd.DataFrame:
    """Per space × split: synthetic images checked, near-duplicate pairs (rank ≤ k) and images with
    at least one, the threshold and the largest similarity seen (pure)."""
    rows = []
    for space in ("clip", "pixel"):
        for split in splits:
            t = table[(table["space"] == space) & (table["split"] == split)]
            top = t[t["rank"] == 1]
            rows.append({"space": space, "split": split, "threshold": thresholds[space], "synthetic_checked": n_kept,
                         "duplicate_pairs": int(t["duplicate"].sum()),
                         "images_with_duplicate": int(top["duplicate"].sum()),
                         "max_similarity": float(top["similarity"].max()) if len(top) else float("nan"),
                         "median_nearest": float(top["similarity"].median()) if len(top) else float("nan")})
    return pd.DataFrame(rows)


def closest_pairs_png(table: pd.DataFrame, spectrum: Path, dataset, n: int = 8, cell: int = 84) -> bytes | None:
    """The ``n`` closest (synthetic, real) pairs of each space side by side, similarity underneath."""
    import io

    from PIL import ImageDraw

    if not len(table) or n < 1:
        return None
    top = table[table["rank"] == 1]
    picks = [top[top["space"] == s].nlargest(n, "similarity") for s in ("clip", "pixel")]
    picks = [p for p in picks if len(p)]
    if not picks:
        return None
    label_h = 26
    cols = max(len(p) for p in picks)
    sheet = Image.new("RGB", (cols * (2 * cell + 8), len(picks) * (cell + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, p in enumerate(picks):
        for c, (_, row) in enumerate(p.iterrows()):
            x, y = c * (2 * cell + 8), r * (cell + label_h)
            syn = _load(spectrum / row["file_name"]).convert("RGB").resize((cell, cell))
            real = dataset.image(row["real_sample_id"]).convert("RGB").resize((cell, cell))
            sheet.paste(syn, (x, y))
            sheet.paste(real, (x + cell, y))
            if row["duplicate"]:
                draw.rectangle([x, y, x + 2 * cell - 1, y + cell - 1], outline=(220, 0, 0), width=2)
            draw.text((x + 2, y + cell + 1), f"{row['space']} {row['similarity']:.3f}", fill=(0, 0, 0))
            draw.text((x + 2, y + cell + 12), f"{row['split']} {row['real_sample_id']}"[:24], fill=(90, 90, 90))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def leakage_section(run_dir: Path) -> list[str]:
    """Markdown lines for the run report: the summary of ``discl leakage`` when it has run, else a
    line saying how to run it."""
    from discl.artifacts import read_table

    path = Path(run_dir) / "leakage" / "summary.csv"
    head = ["### Leakage check (kept synthetic images vs validation/test images)", ""]
    if not path.is_file():
        return [*head, f"Not run: `discl leakage {run_dir}`.", ""]
    from discl.artifacts import read_json
    from discl.digests import file_digest

    done = Path(run_dir) / "leakage" / "_done.json"
    checked = read_json(done) if done.is_file() else {}
    if checked.get("filter_manifest") != file_digest(Path(run_dir) / "filter" / "manifest.csv"):
        return [*head, "Stale: the filter's kept images changed since `discl leakage` ran (or it ran before this check "
                f"was recorded); rerun `discl leakage {run_dir}`.", ""]
    s = read_table(path)
    head[-1:] = [f"{checked.get('kept', '?')} kept synthetic images checked.", ""]
    lines = ["| space | split | threshold | near-duplicate pairs | largest similarity |", "|---|---|---|---|---|"]
    lines += [f"| {r.space} | {r.split} | {r.threshold:g} | {int(r.duplicate_pairs)} | {r.max_similarity:.4f} |"
              for r in s.itertuples()]
    return [*head, "\n".join(lines), "", "Closest pairs: leakage/closest.png; every pair: leakage/leakage.csv.", ""]
