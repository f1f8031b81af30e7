"""Epoch plans and their batch order: the data both the curriculum and the trainer depend on.

A planner returns, for an epoch, indices into the training pool (repeats allowed: oversampling) and a
dict of what to log. :func:`epoch_batches` shuffles an epoch's plan into global batches and
:func:`rank_share` gives process ``r`` of ``W`` its share of each batch. These live below both
:mod:`discl.curriculum.stage_data` and :mod:`discl.training`, so that ``discl train``, the public
:class:`~discl.curriculum.sampler.CurriculumSampler` and a user's own loop visit exactly the same items
in the same order (one implementation, not two).

Feedback (the adaptive strategies) goes through a plain function that maps a batch of probe images
[N, C, H, W] to class probabilities [N, K]: the curriculum never imports a model or a training loop.
``discl train`` passes uint8 images (its model normalises them); the public API passes the tensors
your ``probe_dataset``/``transform`` made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from discl.seeding import torch_generator

__all__ = ["EpochPlan", "EpochPlanner", "ProbaFn", "epoch_batches", "epoch_order", "rank_share", "order_digest"]

ProbaFn = Callable[[torch.Tensor], torch.Tensor]
"""Class probabilities [N, K] (softmax, eval mode) of a batch of probe images [N, C, H, W]: uint8 in
``discl train``, your transform's tensors through :func:`discl.create_curriculum`."""


@dataclass
class EpochPlan:
    """Which training-pool items an epoch visits (``indices``, int64, repeats allowed) and what to log."""

    indices: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)  # logged with the epoch (counts, levels, ...)


@runtime_checkable
class EpochPlanner(Protocol):
    def plan(self, epoch: int) -> EpochPlan: ...

    def after_epoch(self, epoch: int, predict_proba: ProbaFn) -> dict[str, Any]:
        """Feedback after an epoch (the adaptive curriculum measures progress here)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def epoch_batches(n_items: int, batch_size: int, world: int, epoch_generator: torch.Generator) -> list[np.ndarray]:
    """Shuffled global batches of positions 0..n_items-1.

    A final batch too small to give every process at least 2 items is dropped (batch norm needs 2).
    """
    order = torch.randperm(n_items, generator=epoch_generator).numpy()
    batches = [order[i : i + batch_size] for i in range(0, n_items, batch_size)]
    if batches and len(batches[-1]) < 2 * world:
        batches.pop()
    return batches


def epoch_order(n_items: int, batch_size: int, world: int, seed: int, epoch: int) -> list[np.ndarray]:
    """:func:`epoch_batches` with the generator ``discl train`` uses: seeded from (seed, epoch) only,
    so the order does not depend on the process, the worker count or a resume."""
    return epoch_batches(n_items, batch_size, world, torch_generator("train-order", int(seed), int(epoch)))


def rank_share(positions: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Process ``rank``'s part of a global batch: every ``world``-th position from ``rank``."""
    return positions[rank::world]


def order_digest(indices) -> str:
    """A short digest of a sequence of pool indices in order: ``discl train`` logs the one of each
    epoch's global order (column ``order_digest``), so another loop can check that it visits the same
    items in the same order without storing them."""
    import hashlib

    data = np.ascontiguousarray(np.asarray(indices, dtype=np.int64)).tobytes()
    return hashlib.blake2b(data, digest_size=8).hexdigest()
