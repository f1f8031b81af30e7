"""How good is the embedded prior? A classifier's accuracy on its samples vs on real images.

A small CNN is trained on the real prior pool (28 px, clean). It is then scored on the real test
split (clean Fashion-MNIST, 28 px), on the same test images after a round trip through the prior's
resolution (the ceiling any sample upsampled from that resolution can reach), and on the prior's
class-conditional samples at each guidance scale, upsampled to 28 px. The quality bar is
``accuracy(samples) >= 0.9 * accuracy(real test)`` at the guidance scale the demo uses.
"""

from __future__ import annotations

import logging
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from discl.generation.prior import class_samples, from_model_space, load_prior, to_model_space

logger = logging.getLogger(__name__)


def build_classifier() -> nn.Module:
    """The small CNN of this evaluation and of the judge (:mod:`discl.evaluation.judge`): 28 px grayscale in, 10 logits out."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def train_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int = 3, seed: int = 0) -> nn.Module:
    """Adam, batch 128, ``epochs`` passes; ``seed`` fixes the initial weights and the batch order (the
    caller's global torch RNG is left as it was)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = images.float() / 255.0
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), 128):
            idx = perm[s:s + 128]
            loss = F.cross_entropy(model(x[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.inference_mode()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    preds = torch.cat([model(images[s:s + 1000].float() / 255.0).argmax(1) for s in range(0, len(images), 1000)])
    return float((preds == labels).float().mean())


def evaluate_prior(folder=None, guidance: list[float] = (1.0, 2.0, 3.0), per_class: int = 100, steps: int = 50,
                   classifier_epochs: int = 3, data_root: str | None = None, seed: int = 0,
                   clipped_eps: bool = True) -> dict:
    """``clipped_eps=False`` samples with diffusers' default DDIM step (the ablation)."""
    from discl.data import fashion_mnist as fm
    from discl.data.tasks import build_prior_pool

    prior = load_prior(folder)
    pool = build_prior_pool(0, data_root)
    tr_x = pool.tensors(list(pool.frame["sample_id"]), 28, 1)
    tr_y = torch.as_tensor(pool.frame["label"].to_numpy().copy()).long()
    te_images, te_labels = fm.load_split("test", data_root)
    te_x = torch.from_numpy(te_images.copy()).unsqueeze(1)
    te_y = torch.from_numpy(te_labels.astype("int64"))
    t0 = time.perf_counter()
    clf = train_classifier(tr_x, tr_y, classifier_epochs, seed)
    real = accuracy(clf, te_x, te_y)
    roundtrip = accuracy(clf, from_model_space(to_model_space(te_x, prior.resolution), (28, 28)), te_y)
    res = {"classifier_epochs": classifier_epochs, "real_test_accuracy": round(real, 4),
           "real_test_at_prior_resolution_accuracy": round(roundtrip, 4), "resolution": prior.resolution,
           "steps": steps, "clipped_eps": clipped_eps, "per_class": per_class, "samples": {}}
    labels = torch.arange(prior.num_classes).repeat_interleave(per_class)
    for gs in guidance:
        t1 = time.perf_counter()
        x = from_model_space(class_samples(prior, labels, seed=seed, steps=steps, guidance_scale=gs,
                                                 clipped_eps=clipped_eps), (28, 28))
        acc = accuracy(clf, x, labels)
        res["samples"][str(gs)] = {"accuracy": round(acc, 4), "ratio_to_real": round(acc / real, 4),
                                   "seconds": round(time.perf_counter() - t1, 1)}
        logger.info("guidance %.1f: sample accuracy %.3f (%.2f of real)", gs, acc, acc / real)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res
