"""DisCL with Hugging Face `Trainer`: fmnist-lt on a `discl run`'s spectrum with its curriculum.

    pip install discl[hf]
    python examples/train_hf_trainer.py runs/fmnist-lt [--epochs N] [--out DIR]

Trainer fixes its step count and learning-rate schedule from the loader's length, so the loader is the
whole curriculum (every epoch's batches, one after the other) and Trainer runs it as one epoch; the
callback logs each curriculum epoch as its last step ends. Adaptive curricula are refused (see
discl/integrations/hf.py): train those with train_plain.py or train_lightning.py.
"""
import argparse
import json
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2 as T
from transformers import TrainingArguments

import discl
from discl.data import to_model_tensor
from discl.integrations.hf import CurriculumCallback, CurriculumRunBatchSampler, CurriculumTrainer

p = argparse.ArgumentParser()
p.add_argument("run_dir", type=Path)
p.add_argument("--epochs", type=int, default=None)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", type=Path, default=Path("hf-out"))
args = p.parse_args()

cfg = discl.load_config(args.run_dir / "config.yaml")
epochs, size = args.epochs or cfg.training.epochs, cfg.data.image_size
# discl's own view: channels converted, aspect kept, padded to a square (T.Resize((s, s)) would squash)
tf = T.Compose([T.Lambda(lambda im: to_model_tensor(im, size, cfg.data.channels)),
                T.ToDtype(torch.float32, scale=True)])
train = discl.load_real_split(args.run_dir, "train", tf)
spectrum = discl.load_spectrum(args.run_dir, transform=tf)
curriculum = discl.create_curriculum(cfg.curriculum, spectrum=spectrum, train_ids=train.sample_ids,
                                     train_labels=train.labels, epochs=epochs, seed=args.seed, holdout_seed=cfg.seed)
# every epoch's batches (discl train's), one after the other; under DDP (torchrun / accelerate launch) each
# global batch as one share per process, the items discl train gives each rank
world = int(os.environ.get("WORLD_SIZE", 1))
sampler = CurriculumRunBatchSampler(curriculum, cfg.training.batch_size, epochs, num_processes=world)


class Net(nn.Module):  # Trainer wants a dict with the loss when labels are given
    def __init__(self, k):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cfg.data.channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(32, k))

    def forward(self, pixel_values, labels=None):
        logits = self.body(pixel_values)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits} if loss is not None else {"logits": logits}


def collate(items):
    return {"pixel_values": torch.stack([x for x, _ in items]), "labels": torch.tensor([y for _, y in items])}


torch.manual_seed(args.seed)
model = Net(len(train.classes))
callback = CurriculumCallback(curriculum, sampler, forward=lambda m, x: m(x)["logits"])
targs = TrainingArguments(output_dir=str(args.out), num_train_epochs=1, learning_rate=cfg.training.lr,
                          per_device_train_batch_size=sampler.items_per_batch, save_strategy="no",
                          report_to=[], logging_strategy="no", use_cpu=not torch.cuda.is_available(),
                          remove_unused_columns=False, seed=args.seed, disable_tqdm=True)
trainer = CurriculumTrainer(model=model, args=targs, train_dataset=curriculum.dataset(train, spectrum, tf),
                            data_collator=collate, callbacks=[callback], curriculum_sampler=sampler)
trainer.train()

test = discl.load_real_split(args.run_dir, "test", tf)
model.eval()
with torch.no_grad():
    correct = sum(int((model(b["pixel_values"])["logits"].argmax(-1) == b["labels"]).sum())
                  for b in DataLoader(test, batch_size=256, collate_fn=collate))
print(json.dumps({"epochs": callback.history, "steps": trainer.state.global_step, "test_top1": correct / len(test)}))
