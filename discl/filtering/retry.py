"""Regenerating dropped cells (the authors' long-tail rule: up to 5 retries with another prompt while
the CLIP cosine is below the threshold, keeping the best candidate).

The generator is passed in as a callable, so filtering does not depend on the generation package:
``regenerate(row, attempt) -> dict`` writes a new image and returns the fields that change (at least
``file_name``, relative to the spectrum folder; usually ``prompt`` and ``seed`` too; derive the seed
with :func:`discl.seeding.derive_seed` from the row's ids and ``attempt``). ``score(rows) -> list of
{sim_text, sim_prompt, sim_image}`` scores candidate rows. Only rows that failed a *threshold* are
retried (a top-q drop is a ranking, not a fidelity failure). Every candidate is recorded in the
returned log (``RUN/filter/retries.csv``) with its ``key``: a digest of ``context`` (what the
candidate's image and scores depend on besides its row: the scorer, the prompts, the generation keys
and weights; see :func:`discl.digests.retry_context`), the original row (its ``image_key`` when the
manifest has one) and the attempt. A candidate of a previous log is reused only when its key is
unchanged and its file still exists, so a rerun regenerates nothing while a changed scorer,
generator or prompt set never keeps old candidates with old scores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from discl.filtering.rules import FilterRules, apply_rules, row_thresholds
from discl.filtering.scores import SCORE_COLUMN, clipscore

log = logging.getLogger(__name__)

SIMS = ("sim_text", "sim_prompt", "sim_image")


def _fails(value: float, threshold: float) -> bool:
    return not np.isnan(threshold) and (np.isnan(value) or value < threshold)


def candidate_key(context: str, row: dict, attempt: int) -> str:
    """The key of retry ``attempt`` of ``row`` (pure)."""
    from discl.digests import digest_of

    ident = row.get("image_key") or {c: row.get(c) for c in ("file_name", "sample_id", "lam", "k", "seed", "prompt")}
    return digest_of({"context": context, "row": ident, "attempt": int(attempt)})


def retry_dropped(
    manifest: pd.DataFrame,
    rules: FilterRules,
    retries: int,
    regenerate: Callable[[dict, int], dict],
    score: Callable[[list[dict]], list[dict]],
    previous: pd.DataFrame | None = None,
    context: str = "",
    root: Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(manifest with the best candidate of each retried row and the rules re-applied, candidate log).

    Added columns: ``attempts`` (candidates tried) and ``original_file`` (the replaced file, or "").
    """
    column = SCORE_COLUMN[rules.score]
    thr, _ = row_thresholds(manifest, rules)
    out = manifest.copy()
    out["attempts"] = 0
    out["original_file"] = ""
    done = {}
    if previous is not None and len(previous) and "key" in previous.columns:
        done = {str(r["key"]): {k: v for k, v in r.items() if k != "key"} for r in previous.to_dict("records")
                if root is None or (Path(root) / str(r["file_name"])).is_file()}
    failing = [i for i in range(len(out)) if _fails(float(out[column].iat[i]), thr[i])]
    best = {i: out.iloc[i].to_dict() for i in failing}
    log_rows = []
    for attempt in range(1, retries + 1):
        if not failing:
            break
        fresh, cands = [], {}
        keys = {}
        for i in failing:
            keys[i] = candidate_key(context, manifest.iloc[i].to_dict(), attempt)
            if keys[i] in done:
                cands[i] = {**best[i], **done[keys[i]]}
            else:
                cands[i] = {**best[i], **manifest.iloc[i].to_dict(), **regenerate(manifest.iloc[i].to_dict(), attempt)}
                fresh.append(i)
        if fresh:
            for i, sims in zip(fresh, score([cands[i] for i in fresh])):
                cands[i].update({k: float(sims[k]) for k in SIMS})
        for i in failing:
            c = cands[i]
            c["original_file"], c["attempt"] = out["file_name"].iat[i], attempt
            log_rows.append({**{k: c.get(k) for k in ("original_file", "attempt", "file_name", "prompt", "seed", *SIMS)},
                             "key": keys[i]})
            out.iat[i, out.columns.get_loc("attempts")] = attempt
            if np.nan_to_num(c[column], nan=-np.inf) > np.nan_to_num(best[i][column], nan=-np.inf):
                best[i] = c
        failing = [i for i in failing if _fails(float(best[i][column]), thr[i])]
        log.info("retry %d: %d cells still below their threshold", attempt, len(failing))
    for i, row in best.items():
        if row["file_name"] != out["file_name"].iat[i]:
            out.iat[i, out.columns.get_loc("original_file")] = out["file_name"].iat[i]
            for k in manifest.columns:
                if k in row and k not in ("keep", "drop_reason"):
                    out.iat[i, out.columns.get_loc(k)] = row[k]
    if "clipscore" in out.columns:
        out["clipscore"] = clipscore(out["sim_prompt"].to_numpy(dtype=float))
    out = apply_rules(out.drop(columns=["keep", "drop_reason"], errors="ignore"), rules)
    cols = ["original_file", "attempt", "file_name", "prompt", "seed", *SIMS, "key"]
    return out, pd.DataFrame(log_rows, columns=cols)
