"""A Lightning ``Callback`` that drives a :class:`~discl.curriculum.sampler.Curriculum` (extra: ``lightning``).

Give your ``Trainer`` ``use_distributed_sampler=False``, ``reload_dataloaders_every_n_epochs=1``
(Lightning takes an epoch's number of batches from the loader's length when it loads it, and the
curriculum's epochs differ in size: the callback sets the next epoch before that and fails at an
epoch start whose planned batches are not the ``Trainer``'s) and a train ``DataLoader`` over
``curriculum.dataset(...)`` with ``batch_sampler=curriculum.batch_sampler(batch_size)`` (the global
batch; it shards by rank itself, as ``discl train`` does, and reads the world size when an epoch
starts: ``Trainer.fit`` starts the process group after your ``DataLoader`` is made). The callback sets
the sampler's epoch before each epoch and, for the adaptive strategies, measures progress after it
with the module's softmax, then gives every process rank 0's choice (each process measures with its
own batch-norm statistics, which DDP does not keep equal), and logs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning

from discl.errors import BadInputError
from discl.integrations._feedback import model_proba

__all__ = ["CurriculumCallback"]


class CurriculumCallback(lightning.Callback):
    """Sets ``sampler``'s epoch at each train-epoch start; calls ``curriculum.after_epoch`` at each end.

    ``sampler`` is the loader's :class:`~discl.curriculum.sampler.CurriculumBatchSampler` (or
    ``CurriculumSampler``); its world size and rank must be the ``Trainer``'s, else the epoch start
    fails. ``forward(module, x)`` returns logits when ``module(x)`` does not. The curriculum's state and
    the sampler's epoch are saved in Lightning checkpoints (``state_dict``): ``Trainer.fit(...,
    ckpt_path=...)`` from an epoch-end checkpoint resumes with the same batches and, for the adaptive
    strategies, the same choices.
    """

    def __init__(self, curriculum, sampler, forward: Callable | None = None):
        self.curriculum, self.sampler, self.forward = curriculum, sampler, forward
        self.last_feedback: dict[str, Any] = {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        got = (self.sampler.num_replicas, self.sampler.rank)
        if got != (trainer.world_size, trainer.global_rank):
            raise BadInputError(
                f"the curriculum sampler shards for {got[0]} process(es) as rank {got[1]}, but this Trainer runs "
                f"{trainer.world_size} as rank {trainer.global_rank}: build it without num_replicas/rank "
                "(curriculum.batch_sampler(batch_size)) so it follows torch.distributed")
        self.sampler.set_epoch(trainer.current_epoch)
        planned = len(self.curriculum.batches(trainer.current_epoch, self.sampler.batch_size, *got))
        if trainer.num_training_batches != planned:
            if getattr(self, "_old_checkpoint", False):
                raise BadInputError(
                    f"epoch {trainer.current_epoch}: this fit resumed from a checkpoint saved before discl stored the "
                    "curriculum sampler's epoch in it, so the train loader was measured at epoch 0's length "
                    f"({trainer.num_training_batches} batches, {planned} planned): resume from a checkpoint saved "
                    "by this version, or restart the fit")
            raise BadInputError(
                f"epoch {trainer.current_epoch} of curriculum {self.curriculum.strategy.name!r} (stage "
                f"{self.curriculum.stage(trainer.current_epoch)}) has {planned} batches on this process, but the Trainer "
                f"will run {trainer.num_training_batches}: Lightning measures the train loader's length when it loads "
                "it. Give the Trainer reload_dataloaders_every_n_epochs=1 (the callback then sets each epoch before "
                "the loader is measured), and no limit_train_batches")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        feedback = self.curriculum.after_epoch(trainer.current_epoch, model_proba(pl_module, self.forward))
        if self.curriculum.needs_feedback:  # one choice for all processes: rank 0's
            state, feedback = trainer.strategy.broadcast((self.curriculum.state_dict(), feedback), src=0)
            self.curriculum.load_state_dict(state)
        self.last_feedback = feedback
        self.sampler.set_epoch(trainer.current_epoch + 1)  # before Lightning measures the next epoch's loader
        if "chosen_level" in self.last_feedback:
            pl_module.log("discl/chosen_level", float(self.last_feedback["chosen_level"]))

    def state_dict(self) -> dict[str, Any]:
        # the sampler's epoch too: a resumed fit measures the train loader before any epoch hook runs,
        # so the restore must put the sampler on the epoch the fit resumes at (the next one after an
        # epoch-end checkpoint) for the loader to have that epoch's length
        return {"curriculum": self.curriculum.state_dict(), "sampler_epoch": int(self.sampler.epoch)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "curriculum" not in state_dict:  # saved before the sampler's epoch was: the curriculum's state alone
            self.curriculum.load_state_dict(state_dict)
            self._old_checkpoint = True
            return
        self.curriculum.load_state_dict(state_dict["curriculum"])
        self.sampler.set_epoch(int(state_dict["sampler_epoch"]))
