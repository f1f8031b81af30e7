"""Run by tests/test_curriculum_api.py under ``torchrun --nproc_per_node 2``: Hugging Face ``Trainer`` over
a curriculum on two CPU processes; each process writes the pool indices it trained on, per curriculum
epoch, and the callback's history to ``OUT/rank<r>.json``."""

import json
import os
import sys

import torch
from transformers import TrainingArguments

sys.path.insert(0, os.path.dirname(__file__))
import test_curriculum_api as T  # noqa: E402

from discl.integrations.hf import CurriculumCallback, CurriculumRunBatchSampler, CurriculumTrainer  # noqa: E402

out, world, rank = sys.argv[1], int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
cur = T._curriculum("reverse")
sampler = CurriculumRunBatchSampler(cur, 8, 4, num_processes=world)  # the global batch
seen: dict[int, list[list[int]]] = {}


class Items(torch.utils.data.Dataset):
    def __len__(self):
        return len(cur)

    def __getitem__(self, i):
        return torch.tensor([float(i)]), int(cur.meta.at[int(i), "label"])


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 3)

    def forward(self, x, labels=None):
        seen.setdefault(cb.epoch, []).append([int(v) for v in x.flatten()])
        logits = self.lin(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def collate(items):
    return {"x": torch.stack([a for a, _ in items]), "labels": torch.tensor([b for _, b in items])}


cb = CurriculumCallback(cur, sampler)
args = TrainingArguments(output_dir=out, num_train_epochs=1, per_device_train_batch_size=sampler.items_per_batch,
                         save_strategy="no", report_to=[], use_cpu=True, remove_unused_columns=False,
                         disable_tqdm=True, logging_strategy="no", ddp_backend="gloo")
trainer = CurriculumTrainer(model=Net(), args=args, train_dataset=Items(), data_collator=collate, callbacks=[cb],
                            curriculum_sampler=sampler)
trainer.train()
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({"seen": seen, "history": cb.history, "steps": trainer.state.global_step}, f)
