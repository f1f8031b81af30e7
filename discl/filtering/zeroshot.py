"""Zero-shot classification with any scorer: the class embedding is the mean of the normalised
embeddings of several caption templates (CLIP's prompt ensembling)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from discl.filtering.captions import ZERO_SHOT_TEMPLATES, captions_for

log = logging.getLogger(__name__)


def zero_shot_head(scorer, classes: Sequence[str], templates: Sequence[str] = ZERO_SHOT_TEMPLATES) -> torch.Tensor:
    """[C, D] normalised class embeddings."""
    caps = captions_for(list(templates), list(classes))
    emb = scorer.encode_texts([c for row in caps for c in row]).view(len(templates), len(classes), -1)
    return F.normalize(emb.mean(0), dim=-1)


def zero_shot_accuracy(image_emb: torch.Tensor, head: torch.Tensor, labels: np.ndarray) -> float:
    pred = (image_emb @ head.t()).argmax(1).numpy()
    return float((pred == np.asarray(labels)).mean())


def evaluate_embedded(weights=None, limit: int | None = None, folder: str | None = None, batch_size: int = 512,
                      device: str = "cpu") -> dict:
    """Zero-shot top-1 of the embedded CLIP on the clean official test split and on the styled
    ``fmnist-lt`` test images (the same 10k test images with the task's acquisition style)."""
    import time

    from discl.data import fashion_mnist as fm
    from discl.data.tasks import build_task
    from discl.filtering.backends.embedded import create
    from discl.seeding import numpy_rng

    scorer = create(str(weights) if weights else "embedded", device=device, batch_size=batch_size)
    images, labels = fm.load_split("test", folder)
    idx = np.arange(len(labels))
    if limit is not None:
        per = max(1, limit // 10)
        idx = np.sort(np.concatenate([numpy_rng("fmnist-test-limit", 0, c).permutation(np.flatnonzero(labels == c))[:per]
                                      for c in range(10)]))
    lt = build_task("fmnist-lt", seed=0, folder=folder, test_limit=limit)
    lt_test = lt.split("test")
    sets = {
        "fmnist_test_clean": (torch.from_numpy(images[idx]).unsqueeze(1), labels[idx]),
        "fmnist_lt_test_styled": (lt.tensors(list(lt_test["sample_id"]), 28, 1), lt_test["label"].to_numpy()),
    }
    head = zero_shot_head(scorer, fm.CLASSES)
    single = zero_shot_head(scorer, fm.CLASSES, ["a photo of a {name}"])
    out = {"scorer": scorer.id, "templates": list(ZERO_SHOT_TEMPLATES), "sets": {}}
    for name, (x, y) in sets.items():
        start = time.monotonic()
        emb = scorer.encode_uint8(x)
        sims = emb @ single.t()
        own = sims[torch.arange(len(y)), torch.tensor(np.asarray(y), dtype=torch.long)]
        out["sets"][name] = {
            "n": int(len(y)),
            "accuracy": zero_shot_accuracy(emb, head, y),
            "accuracy_single_template": zero_shot_accuracy(emb, single, y),
            "templates": len(ZERO_SHOT_TEMPLATES),
            # cosine of each image with its own class text "a photo of a {name}": calibrates thresholds
            "sim_own_class_quantiles": {str(q): float(own.quantile(q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
            "sim_other_class_mean": float((sims.sum(1) - own).mean() / (sims.shape[1] - 1)),
            "seconds": round(time.monotonic() - start, 1),
        }
        log.info("%s: %s", name, out["sets"][name])
    return out
