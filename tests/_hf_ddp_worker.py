"""Run by tests/test_curriculum_api.py under ``torchrun --nproc_per_node 2``: Hugging Face ``Trainer`` over
a curriculum on two CPU processes; each process writes the pool indices it trained on, per curriculum
epoch, and the callback's history to ``OUT/rank<r>.json``."""

import json
import os
import sys

from transformers import TrainingArguments

sys.path.insert(0, os.path.dirname(__file__))
import test_curriculum_api as T  # noqa: E402

from discl.integrations.hf import CurriculumCallback, CurriculumRunBatchSampler, CurriculumTrainer  # noqa: E402

out, world, rank = sys.argv[1], int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
cur = T._curriculum("reverse")
sampler = CurriculumRunBatchSampler(cur, 8, 4, num_processes=world)  # the global batch
seen: dict[int, list[list[int]]] = {}  # curriculum epoch -> the batches this process trained on
cb = CurriculumCallback(cur, sampler)
args = TrainingArguments(output_dir=out, num_train_epochs=1, per_device_train_batch_size=sampler.items_per_batch,
                         save_strategy="no", report_to=[], use_cpu=True, remove_unused_columns=False,
                         disable_tqdm=True, logging_strategy="no", ddp_backend="gloo")
model = T._HFRecorder(lambda batch: seen.setdefault(cb.epoch, []).append(batch))
trainer = CurriculumTrainer(model=model, args=args, train_dataset=T._Indexed(cur), data_collator=T._hf_collate,
                            callbacks=[cb], curriculum_sampler=sampler)
trainer.train()
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({"seen": seen, "history": cb.history, "steps": trainer.state.global_step}, f)
