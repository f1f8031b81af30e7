"""Hugging Face ``Trainer`` support for a :class:`~discl.curriculum.sampler.Curriculum` (extra: ``hf``).

``Trainer`` builds its own sampler, so :class:`CurriculumTrainer` hands it the curriculum's, and
:class:`CurriculumCallback` sets the epoch and gives the adaptive strategies their feedback.

``Trainer`` (transformers 5.x) fixes the number of steps per epoch, and the learning-rate schedule,
from the length of the first epoch's loader. A curriculum whose epochs have different sizes (``reverse``,
most ``fixed`` schedules over levels of different counts, the adaptive ones) would be cut short or run
past its schedule, so the callback fails at the start of training (or of the first adaptive epoch)
whose batch count differs from epoch 0's; train those in your own loop or with Lightning. When every
epoch has the same number of batches, on one process the batches are exactly ``discl train``'s.

Under DDP, ``Trainer`` shards the loader itself (accelerate's ``prepare_data_loader``): it hands each
process whole batches of the loader in turn, so the sampler must not shard too (build it with
``num_replicas=1, rank=0``; :class:`CurriculumTrainer` checks) and one optimizer step covers ``W``
loader batches. Give the sampler ``batch_size = B // W`` for a global batch of ``B``: the epoch's
permutation does not depend on the batch size, so each step then trains on the ``B`` items of
``discl train``'s global batch (split over processes differently; not tested here under DDP).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import transformers
from torch.utils.data import DataLoader

from discl.curriculum.epochs import order_digest
from discl.errors import BadInputError
from discl.integrations._feedback import model_proba

__all__ = ["CurriculumCallback", "CurriculumTrainer"]


class CurriculumCallback(transformers.TrainerCallback):
    """Sets ``sampler``'s epoch at each epoch start; calls ``curriculum.after_epoch`` at each end.

    Fails when an epoch has another number of batches than epoch 0 (see the module docstring).
    """

    def __init__(self, curriculum, sampler, forward: Callable | None = None):
        self.curriculum, self.sampler, self.forward = curriculum, sampler, forward
        self.history: list[dict[str, Any]] = []
        self.first_batches: int | None = None

    def _n_batches(self, epoch: int) -> int:
        return len(self.curriculum.batches(epoch, self.sampler.batch_size, self.sampler.num_replicas, self.sampler.rank))

    def _check(self, epoch: int, n: int) -> None:
        if n != self.first_batches:
            raise BadInputError(
                f"curriculum {self.curriculum.strategy.name!r}: epoch {epoch} (stage {self.curriculum.stage(epoch)}) has {n} "
                f"batches but epoch 0 has {self.first_batches}; Hugging Face Trainer fixes the steps per epoch and the "
                "learning-rate schedule from the first epoch's length, so this epoch would be cut short or overrun. "
                "Train this curriculum with your own loop (examples/train_plain.py) or Lightning, or choose one whose "
                "epochs are the same size")

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_batches = self._n_batches(0)
        if not self.curriculum.needs_feedback:  # every epoch's plan is known now: fail before training
            for e in range(1, math.ceil(args.num_train_epochs)):
                self._check(e, self._n_batches(e))

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch = int(round(state.epoch or 0))
        self.sampler.set_epoch(self.epoch)
        if self.first_batches is None:
            self.first_batches = self._n_batches(0)
        self._check(self.epoch, self._n_batches(self.epoch))
        self.order = order_digest(list(self.sampler))  # what this epoch visits, comparable with discl train's log

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        out = self.curriculum.after_epoch(self.epoch, model_proba(model, self.forward))
        self.history.append({"epoch": self.epoch, "stage": str(self.curriculum.stage(self.epoch)),
                             "order_digest": self.order, **out})


class CurriculumTrainer(transformers.Trainer):
    """A ``Trainer`` whose train loader is the curriculum's: pass ``curriculum_sampler=...``
    (built with ``num_replicas=1, rank=0``: accelerate shards the loader across processes)."""

    def __init__(self, *args, curriculum_sampler, **kwargs):
        self.curriculum_sampler = curriculum_sampler
        super().__init__(*args, **kwargs)

    def get_train_dataloader(self) -> DataLoader:
        s = self.curriculum_sampler
        if s.num_replicas != 1:
            raise BadInputError(
                f"the curriculum sampler shards for {s.num_replicas} processes, but Trainer's accelerate shards the "
                "loader itself: build it with curriculum.sampler(batch_size // world_size, num_replicas=1, rank=0)")
        loader = DataLoader(self.train_dataset, sampler=s, collate_fn=self.data_collator,
                            batch_size=s.per_replica_batch_size, num_workers=self.args.dataloader_num_workers)
        return self.accelerator.prepare(loader)
