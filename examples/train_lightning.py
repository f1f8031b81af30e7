"""DisCL with Lightning: fmnist-lt on a `discl run`'s spectrum with its curriculum.

    pip install discl[lightning]
    python examples/train_lightning.py runs/fmnist-lt [--epochs N]
"""
import argparse
import json
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2 as T

import discl
from discl.data import to_model_tensor
from discl.integrations.lightning import CurriculumCallback

p = argparse.ArgumentParser()
p.add_argument("run_dir", type=Path)
p.add_argument("--epochs", type=int, default=None)
p.add_argument("--seed", type=int, default=0)
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
# global batches, shared out by rank when each epoch starts (after Trainer.fit starts DDP): no Lightning sampler
sampler = curriculum.batch_sampler(cfg.training.batch_size)
loader = DataLoader(curriculum.dataset(train, spectrum, tf), batch_sampler=sampler)


class Classifier(L.LightningModule):
    def __init__(self, k):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cfg.data.channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(32, k))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=cfg.training.lr)


L.seed_everything(args.seed, verbose=False)
model = Classifier(len(train.classes))
# reload: Lightning measures the loader once per load, and the curriculum's epochs differ in size
trainer = L.Trainer(max_epochs=epochs, accelerator="auto", devices=1, use_distributed_sampler=False,
                    reload_dataloaders_every_n_epochs=1,
                    callbacks=[CurriculumCallback(curriculum, sampler)], logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
trainer.fit(model, loader)

test = discl.load_real_split(args.run_dir, "test", tf)
model.eval()
with torch.no_grad():
    correct = sum(int((model(x).argmax(-1) == y).sum()) for x, y in DataLoader(test, batch_size=256))
print(json.dumps({"steps": trainer.global_step, "test_top1": correct / len(test)}))
