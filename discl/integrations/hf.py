"""Hugging Face ``Trainer`` support for a :class:`~discl.curriculum.sampler.Curriculum` (extra: ``hf``).

``Trainer`` builds its own sampler, so :class:`CurriculumTrainer` hands it the curriculum's, and
:class:`CurriculumCallback` sets the epoch and gives the adaptive strategies their feedback. On one
process the batches are exactly ``discl train``'s. Under DDP, ``Trainer`` shards the loader itself
(accelerate's ``prepare_data_loader``): build the sampler with ``num_replicas=1, rank=0`` there; the
epoch's items and order are then ``discl train``'s, the split of the batches over processes
accelerate's (not tested under DDP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import transformers
from torch.utils.data import DataLoader

from discl.curriculum.epochs import order_digest
from discl.integrations._feedback import model_proba

__all__ = ["CurriculumCallback", "CurriculumTrainer"]


class CurriculumCallback(transformers.TrainerCallback):
    """Sets ``sampler``'s epoch at each epoch start; calls ``curriculum.after_epoch`` at each end."""

    def __init__(self, curriculum, sampler, forward: Callable | None = None):
        self.curriculum, self.sampler, self.forward = curriculum, sampler, forward
        self.history: list[dict[str, Any]] = []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch = int(round(state.epoch or 0))
        self.sampler.set_epoch(self.epoch)
        self.order = order_digest(list(self.sampler))  # what this epoch visits, comparable with discl train's log

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        out = self.curriculum.after_epoch(self.epoch, model_proba(model, self.forward))
        self.history.append({"epoch": self.epoch, "stage": str(self.curriculum.stage(self.epoch)),
                             "order_digest": self.order, **out})


class CurriculumTrainer(transformers.Trainer):
    """A ``Trainer`` whose train loader is the curriculum's: pass ``curriculum_sampler=...``."""

    def __init__(self, *args, curriculum_sampler, **kwargs):
        self.curriculum_sampler = curriculum_sampler
        super().__init__(*args, **kwargs)

    def get_train_dataloader(self) -> DataLoader:
        loader = DataLoader(self.train_dataset, sampler=self.curriculum_sampler, collate_fn=self.data_collator,
                            batch_size=self.curriculum_sampler.per_replica_batch_size,
                            num_workers=self.args.dataloader_num_workers)
        return self.accelerator.prepare(loader)
