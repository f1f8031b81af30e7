"""A Lightning ``Callback`` that drives a :class:`~discl.curriculum.sampler.Curriculum` (extra: ``lightning``).

Give your ``Trainer`` ``use_distributed_sampler=False`` and a train ``DataLoader`` over
``curriculum.dataset(...)`` with ``sampler=curriculum.sampler(batch_size)`` (it shards by rank
itself, as ``discl train`` does). The callback sets the sampler's epoch before each epoch and, for the
adaptive strategies, measures progress after it with the module's softmax and logs the choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning

from discl.integrations._feedback import model_proba

__all__ = ["CurriculumCallback"]


class CurriculumCallback(lightning.Callback):
    """Sets ``sampler``'s epoch at each train-epoch start; calls ``curriculum.after_epoch`` at each end.

    ``forward(module, x)`` returns logits when ``module(x)`` does not. The curriculum's state is saved in
    Lightning checkpoints (``state_dict``), so a resumed adaptive run makes the same choices.
    """

    def __init__(self, curriculum, sampler, forward: Callable | None = None):
        self.curriculum, self.sampler, self.forward = curriculum, sampler, forward
        self.last_feedback: dict[str, Any] = {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.sampler.set_epoch(trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.last_feedback = self.curriculum.after_epoch(trainer.current_epoch, model_proba(pl_module, self.forward))
        if "chosen_level" in self.last_feedback:
            pl_module.log("discl/chosen_level", float(self.last_feedback["chosen_level"]))

    def state_dict(self) -> dict[str, Any]:
        return self.curriculum.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curriculum.load_state_dict(state_dict)
