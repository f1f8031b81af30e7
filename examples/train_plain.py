"""DisCL in a plain PyTorch loop: train fmnist-lt on a `discl run`'s spectrum with its curriculum.

    discl run configs/fmnist-lt.yaml            # mine, generate, filter (and discl's own training)
    python examples/train_plain.py runs/fmnist-lt [--epochs N] [--log epochs.jsonl]

Your model, transform and optimiser; from discl only the spectrum, the curriculum and its sampler.
Each epoch's `order_digest` equals the one `discl train` logs for the same config and seed.
"""
import argparse
import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2 as T

import discl
from discl.data import to_model_tensor

p = argparse.ArgumentParser()
p.add_argument("run_dir", type=Path)
p.add_argument("--epochs", type=int, default=None, help="default: the run's training.epochs")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--log", type=Path, default=None, help="write one JSON line per epoch here")
args = p.parse_args()

cfg = discl.load_config(args.run_dir / "config.yaml")  # the run's curriculum, batch size, image size
epochs, size = args.epochs or cfg.training.epochs, cfg.data.image_size
# discl's own view: channels converted, aspect kept, padded to a square (T.Resize((s, s)) would squash)
tf = T.Compose([T.Lambda(lambda im: to_model_tensor(im, size, cfg.data.channels)),
                T.ToDtype(torch.float32, scale=True)])
train = discl.load_real_split(args.run_dir, "train", tf)  # or your own dataset + its sample ids
spectrum = discl.load_spectrum(args.run_dir, transform=tf)  # the variants the CLIP filter kept
curriculum = discl.create_curriculum(cfg.curriculum, spectrum=spectrum, train_ids=train.sample_ids,
                                     train_labels=train.labels, epochs=epochs, seed=args.seed, holdout_seed=cfg.seed)
sampler = curriculum.sampler(cfg.training.batch_size)  # shards by rank under torch.distributed
loader = DataLoader(curriculum.dataset(train, spectrum, tf), sampler=sampler,
                    batch_size=sampler.per_replica_batch_size)

torch.manual_seed(args.seed)
k = len(train.classes)
model = nn.Sequential(nn.Conv2d(cfg.data.channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, k))
opt = torch.optim.Adam(model.parameters(), lr=cfg.training.lr)


def predict_proba(x):  # the adaptive strategies' hook: a batch of probe images -> class probabilities
    model.eval()
    with torch.no_grad():
        p = model(x).softmax(-1)
    model.train()
    return p


log = open(args.log, "w") if args.log else None
for epoch in range(epochs):
    sampler.set_epoch(epoch)
    order, loss_sum = list(sampler), 0.0
    for x, y in loader:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += float(loss) * len(y)
    feedback = curriculum.after_epoch(epoch, predict_proba)  # {} unless an adaptive strategy measured
    row = {"epoch": epoch, "stage": str(curriculum.stage(epoch)), "n_items": len(order),
           "order_digest": discl.order_digest(order), "train_loss": loss_sum / max(len(order), 1), **feedback}
    print(json.dumps(row))
    if log:
        log.write(json.dumps(row) + "\n")

test = discl.load_real_split(args.run_dir, "test", tf)
model.eval()
with torch.no_grad():
    correct = sum(int((model(x).argmax(-1) == y).sum()) for x, y in DataLoader(test, batch_size=256))
print(json.dumps({"test_top1": correct / len(test)}))
