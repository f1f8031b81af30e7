"""The independent judge of class content (issue 22): does a synthetic variant still show its class?

A small CNN (``discl.generation.prior_eval``'s network and training loop) trained on the prior pool
shown in every style (:data:`discl.data.tasks.PRIOR_STYLES`: clean, acquisition-styled,
low-quality), the stand-in for web data of every kind of photo. It never sees a task image: the
prior pool is one fixed draw that no task of any seed draws from (``tests/test_judge.py`` checks the
ids it trains on). It is the yardstick beside the model-free measures of
:mod:`discl.evaluation.fidelity`: its accuracy on variants at a level λ, against its accuracy on the
task's real test images of the same classes, says how recognisable that level is.

Deterministic: the recipe's seed fixes the initial weights and the batch order, and it trains with
one torch thread (results of a convolution may differ in the last bit between thread counts).
Training on the 60k pool images takes a few CPU minutes; :func:`create_judge` keeps the trained
weights in the user's cache folder (``$DISCL_CACHE_DIR`` > ``$XDG_CACHE_HOME/discl`` >
``~/.cache/discl``, then ``judge/``), keyed by a digest of the recipe, the code version and the
training images' bytes, so a benchmark trains it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from discl.data.tasks import PRIOR_STYLES, build_prior_pool
from discl.digests import digest_of
from discl.generation.prior_eval import accuracy, build_classifier, train_classifier

logger = logging.getLogger(__name__)

JUDGE_VERSION = 1  # bump when the network or its training loop changes: cached weights are then retrained


@dataclass(frozen=True)
class JudgeRecipe:
    """Everything that decides the judge's weights."""

    styles: tuple[str, ...] = PRIOR_STYLES
    epochs: int = 3
    seed: int = 0
    per_class: int | None = None  # the first N pool images per (style, class); None = all 2,000 (tests use fewer)

    def __post_init__(self):
        unknown = [s for s in self.styles if s not in PRIOR_STYLES]
        if unknown or not self.styles:
            raise ValueError(f"judge styles {list(self.styles)}: choose from {list(PRIOR_STYLES)}")
        if self.epochs < 1 or (self.per_class is not None and self.per_class < 1):
            raise ValueError("judge epochs and per_class must be >= 1")


@dataclass
class Judge:
    model: nn.Module
    recipe: JudgeRecipe
    digest: str
    sample_ids: list[str]  # the prior-pool rows it trained on
    source_indices: np.ndarray  # their indices in Fashion-MNIST's official train split

    def accuracy(self, images, labels) -> float:
        """Top-1 accuracy on uint8 images [N, 28, 28] or [N, 1, 28, 28] (numpy or torch)."""
        x = torch.as_tensor(np.array(images, dtype=np.uint8))  # a copy: inputs may be read-only views
        if x.ndim == 3:
            x = x[:, None]
        y = torch.as_tensor(np.array(labels, dtype=np.int64))
        with _threads(1):
            return accuracy(self.model, x, y)


def build_training_set(recipe: JudgeRecipe, data_root: str | None = None, pool=None):
    """The prior-pool rows the judge trains on: (frame, uint8 images [N, 1, 28, 28], labels).
    ``pool``: a :func:`build_prior_pool` the caller already holds (it must hold the recipe's styles)."""
    if pool is None:
        pool = build_prior_pool(styles=tuple(recipe.styles), folder=data_root)
    frame = pool.frame.reset_index(drop=True)
    frame = frame[frame["style"].isin(recipe.styles)]
    missing = set(recipe.styles) - set(frame["style"])
    if missing:
        raise ValueError(f"the prior pool given lacks the judge's style(s) {sorted(missing)}")
    if recipe.per_class is not None:
        frame = frame.groupby(["style", "label"], sort=False).head(recipe.per_class)
    images = torch.from_numpy(np.ascontiguousarray(pool.images[frame["row"].to_numpy()]))[:, None]
    return frame, images, torch.as_tensor(frame["label"].to_numpy().copy()).long()


def judge_digest(recipe: JudgeRecipe, images: torch.Tensor, labels: torch.Tensor) -> str:
    data = hashlib.blake2b(images.numpy().tobytes() + labels.numpy().tobytes(), digest_size=8).hexdigest()
    return digest_of({"version": JUDGE_VERSION, "recipe": asdict(recipe), "data": data})


def create_judge(recipe: JudgeRecipe | None = None, data_root: str | None = None,
                 cache_dir: str | Path | None = None, use_cache: bool = True, pool=None) -> Judge:
    """The judge of ``recipe``: loaded from the cache when it holds this digest, else trained (and
    cached when ``use_cache``). ``cache_dir`` defaults to the user's discl cache folder + ``judge``;
    ``pool`` as in :func:`build_training_set`."""
    from safetensors.torch import load_file, save

    from discl.artifacts import atomic_write_bytes

    recipe = recipe or JudgeRecipe()
    frame, images, labels = build_training_set(recipe, data_root, pool)
    digest = judge_digest(recipe, images, labels)
    path = Path(cache_dir) if cache_dir else default_cache_dir()
    path = path / f"judge-{digest}.safetensors"
    if use_cache and path.is_file():
        model = build_classifier()
        model.load_state_dict(load_file(str(path)))
        logger.info("judge %s loaded from %s", digest, path)
    else:
        t0 = time.perf_counter()
        with _threads(1):
            model = train_classifier(images, labels, recipe.epochs, recipe.seed)
        logger.info("judge %s trained on %d prior-pool images in %.0f s", digest, len(labels), time.perf_counter() - t0)
        if use_cache:
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            atomic_write_bytes(path, save(state, metadata={"recipe": json.dumps(asdict(recipe)),
                                                             "version": str(JUDGE_VERSION)}))
    model.eval().requires_grad_(False)
    return Judge(model, recipe, digest, list(frame["sample_id"]), frame["source_index"].to_numpy())


def default_cache_dir() -> Path:
    from discl.fingerprint import cache_path

    return cache_path().parent / "judge"


class _threads:
    """Run a block with ``n`` torch threads, restoring the caller's count afterwards."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)
