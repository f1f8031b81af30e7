"""Hugging Face ``Trainer`` support for a :class:`~discl.curriculum.sampler.Curriculum` (extra: ``hf``).

``Trainer`` (transformers 5.x) takes the steps per epoch, and the length of the learning-rate
schedule, from the train loader's length when training starts, and never asks again. A curriculum's
epochs have different sizes (``fixed`` over levels of different counts, ``reverse``...), so a loader
that is one curriculum epoch long would cut the longer epochs short or overrun the schedule. Here the
loader is the WHOLE curriculum instead: :class:`CurriculumRunBatchSampler` yields epoch 0's batches,
then epoch 1's, ... (each epoch's batches exactly ``discl train``'s: ``Curriculum.batches``), and
:class:`CurriculumTrainer` runs it as one ``Trainer`` epoch (``num_train_epochs=1``, no
``max_steps``). ``Trainer`` then makes ``ceil(total batches / gradient_accumulation_steps)``
optimizer steps, and its schedule spans exactly the curriculum. :class:`CurriculumCallback` maps the
global step back to curriculum epochs: at the step that finishes an epoch it calls
``curriculum.after_epoch`` and logs the epoch's stage and ``order_digest`` (of the indices the sampler
yielded for it, comparable with ``discl train``'s ``log.jsonl``).

The adaptive strategies are refused: their later epochs' sizes depend on feedback, so the total step
count (the schedule's length) is unknown when ``Trainer`` fixes it, and ``Trainer`` fetches batches
ahead (accelerate's loader looks one batch ahead; gradient accumulation collects several), so the
next epoch's first batch would be planned before the feedback on the last one. Train them in your own
loop (``examples/train_plain.py``) or with Lightning (:mod:`discl.integrations.lightning`).

Under DDP on ``W`` processes, ``Trainer`` shards the loader itself: accelerate's ``prepare_data_loader``
with a batch sampler hands each process whole loader batches in turn (batch ``i`` to process
``i mod W``). Build the sampler with the global batch and ``num_processes=W``
(:class:`CurriculumTrainer` checks it against ``TrainingArguments.world_size``): it yields each
global batch of ``discl train`` on ``W`` processes as its ``W`` process shares in rank order, so
process ``r`` trains on exactly the items ``discl train``'s rank ``r`` does, batch by batch, and one
optimizer step (without gradient accumulation) is one global batch (tested under ``torchrun`` with
two CPU processes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import transformers
from torch.utils.data import DataLoader, Sampler

from discl.curriculum.epochs import order_digest, rank_share
from discl.errors import BadInputError
from discl.integrations._feedback import model_proba

__all__ = ["CurriculumCallback", "CurriculumRunBatchSampler", "CurriculumTrainer"]


class CurriculumRunBatchSampler(Sampler):
    """The batches of every curriculum epoch, one epoch after the other: ``Trainer``'s one epoch.

    ``batch_size`` is the global batch. On one process epoch ``e``'s batches are
    ``curriculum.batches(e, batch_size)`` (``discl train``'s); with ``num_processes=W`` (DDP) each of
    ``curriculum.global_batches(e, batch_size, W)`` is yielded as its ``W`` process shares in rank
    order, which accelerate's sharding hands to processes ``0 .. W-1``: every process trains on
    ``discl train``'s share of every global batch. Batches are planned when iteration reaches their
    epoch. ``digests[e]`` is the ``order_digest`` of epoch ``e``'s global order (``discl train``'s
    ``log.jsonl`` column), set once the epoch was yielded whole. ``set_epoch`` is a no-op: ``Trainer``
    calls it with its own epoch, always 0 here.

    The per-process batch size is ``items_per_batch`` (``ceil(batch_size / W)``), not a
    ``batch_size`` attribute: accelerate's DDP sharding (``BatchSamplerShard``) reads ``batch_size``
    and then drops every group of ``W`` batches whose last one is short; without it it hands out
    batches of any length, and none is lost.
    """

    def __init__(self, curriculum, batch_size: int, epochs: int, num_processes: int = 1):
        if curriculum.needs_feedback:
            raise BadInputError(_ADAPTIVE.format(name=curriculum.strategy.name))
        if int(num_processes) < 1:
            raise BadInputError(f"num_processes must be at least 1, got {num_processes}")
        self.curriculum, self.global_batch, self.epochs = curriculum, int(batch_size), int(epochs)
        self.num_processes = int(num_processes)
        self.items_per_batch = -(-self.global_batch // self.num_processes)
        self.counts = [len(curriculum.global_batches(e, self.global_batch, self.num_processes)) * self.num_processes
                       for e in range(self.epochs)]  # loader batches (process shares) per epoch
        self.digests: dict[int, str] = {}

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return sum(self.counts)

    def __iter__(self) -> Iterator[list[int]]:
        self.digests = {}
        world = self.num_processes
        for e in range(self.epochs):
            batches = self.curriculum.global_batches(e, self.global_batch, world)
            if len(batches) * world != self.counts[e]:
                raise BadInputError(f"curriculum epoch {e} has {len(batches)} batches, but {self.counts[e] // world} "
                                    "when training started: its plan changed (was the curriculum's state loaded since?)")
            for b in batches:
                for rank in range(world):
                    yield rank_share(b, rank, world).tolist()
            self.digests[e] = order_digest(np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64))


_ADAPTIVE = (
    "curriculum {name!r} chooses its next epochs from feedback, which Hugging Face Trainer cannot train exactly: "
    "it fixes the step count and learning-rate schedule before training (an adaptive run's later epoch sizes are "
    "not known then) and fetches batches ahead of the step that ends an epoch (the next epoch would be planned "
    "before the feedback). Train it in your own loop (examples/train_plain.py) or with Lightning "
    "(discl.integrations.lightning)")


class CurriculumCallback(transformers.TrainerCallback):
    """At the optimizer step that finishes a curriculum epoch: ``curriculum.after_epoch`` and a log row.

    ``history`` gets one row per curriculum epoch: its ``epoch``, ``stage``, ``order_digest`` (what
    the sampler yielded for it), ``batches``, ``end_step`` (the global step that finished it) and what
    ``after_epoch`` returned (nothing for the non-adaptive strategies). Epoch ``e`` ends at the step
    that reaches its last batch: with gradient accumulation ``G`` on ``W`` processes a step covers
    ``G × W`` loader batches, so an epoch may end mid-step (then the step also trains the next
    epoch's first batches). A run resumed from a checkpoint logs the epochs that end after it (its
    ``end_step`` values are those of the run without the interruption).
    """

    def __init__(self, curriculum, sampler: CurriculumRunBatchSampler, forward: Callable | None = None):
        self.curriculum, self.sampler, self.forward = curriculum, sampler, forward
        self.history: list[dict[str, Any]] = []
        self.ends = np.cumsum(sampler.counts).tolist()  # loader batches done at the end of each epoch
        self.epoch = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.per_step = max(1, args.gradient_accumulation_steps) * max(1, args.world_size)
        # resumed (``train(resume_from_checkpoint=...)``: the state is loaded before this hook): the epochs
        # the checkpoint's steps finished are done; ``history`` starts at the first one still running
        done = state.global_step * self.per_step
        self.epoch = sum(1 for end in self.ends if done >= end)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        done = state.global_step * self.per_step
        while self.epoch < len(self.ends) and (done >= self.ends[self.epoch] or state.global_step >= state.max_steps):
            e = self.epoch
            out = self.curriculum.after_epoch(e, model_proba(model, self.forward))
            self.history.append({"epoch": e, "stage": str(self.curriculum.stage(e)),
                                 "order_digest": self.sampler.digests.get(e), "batches": self.sampler.counts[e],
                                 "end_step": state.global_step, **out})
            self.epoch += 1


class CurriculumTrainer(transformers.Trainer):
    """A ``Trainer`` whose train loader is the whole curriculum (see the module docstring).

    Pass ``curriculum_sampler=CurriculumRunBatchSampler(curriculum, batch_size, epochs)`` and
    ``TrainingArguments(num_train_epochs=1)`` with no ``max_steps``: the curriculum's epochs are in
    the sampler, and ``Trainer`` takes the step count from its length.
    """

    def __init__(self, *args, curriculum_sampler: CurriculumRunBatchSampler, **kwargs):
        if not isinstance(curriculum_sampler, CurriculumRunBatchSampler):
            raise BadInputError(
                "curriculum_sampler must be a CurriculumRunBatchSampler(curriculum, batch_size, epochs): Trainer "
                "trains the whole curriculum as one of its epochs (a per-epoch sampler would repeat epoch 0)")
        self.curriculum_sampler = curriculum_sampler
        super().__init__(*args, **kwargs)
        if curriculum_sampler.num_processes != self.args.world_size:
            raise BadInputError(
                f"the CurriculumRunBatchSampler was built for {curriculum_sampler.num_processes} process(es) but this "
                f"Trainer runs {self.args.world_size}: build it with the global batch and num_processes="
                f"{self.args.world_size} (it yields each global batch as one share per process, the items discl "
                "train gives each rank)")
        if self.args.max_steps > 0 or self.args.num_train_epochs != 1:
            raise BadInputError(
                f"CurriculumTrainer got num_train_epochs={self.args.num_train_epochs:g}, max_steps={self.args.max_steps}: "
                f"pass num_train_epochs=1 and no max_steps. The curriculum's {curriculum_sampler.epochs} epochs "
                f"({len(curriculum_sampler)} batches) are one Trainer epoch, so that Trainer's step count and "
                "learning-rate schedule span exactly the curriculum")

    def get_train_dataloader(self) -> DataLoader:
        loader = DataLoader(self.train_dataset, batch_sampler=self.curriculum_sampler, collate_fn=self.data_collator,
                            num_workers=self.args.dataloader_num_workers,
                            pin_memory=self.args.dataloader_pin_memory)
        return self.accelerator.prepare(loader)

