"""FLYP fine-tuning and the zero-shot head on a tiny open_clip model (random weights, offline)."""

import torch

from discl.filtering.testing import register_tiny_open_clip
from discl.training.clip import create_clip_classifier, flyp_loss
from discl.training.config import TrainConfig
from discl.training.loop import TensorData, fit, predict_proba


def test_flyp_loss_prefers_matched_pairs():
    e = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    scale = torch.tensor(20.0)
    assert flyp_loss(e, e, scale) < flyp_loss(e, e.roll(1, 0), scale)


def test_clip_classifier_trains_with_flyp_and_head_follows_text_tower(tmp_path):
    torch.set_num_threads(1)
    arch = register_tiny_open_clip(tmp_path)
    names = ["t-shirt", "trouser", "bag"]
    model = create_clip_classifier(arch, None, names, seed=0)
    x = (torch.rand(48, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    y = torch.arange(48) % 3
    for c in range(3):
        x[y == c, :, 8 * c : 8 * c + 6] = 255
    head0 = model.eval().zero_shot_head().detach().clone()
    assert predict_proba(model, x).shape == (48, 3)
    cfg = TrainConfig(model="clip", loss="flyp", optimizer="adamw", lr=1e-3, weight_decay=0.2, epochs=3,
                      batch_size=16, warmup_steps=2, augment=False)
    res = fit(model, TensorData(x, y), TensorData(x[:12], y[:12]), cfg, num_classes=3, seed=0, progress=False)
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in res.history)
    head1 = res.model.eval().zero_shot_head().detach()
    assert not torch.allclose(head0, head1), "the zero-shot head is rebuilt from the fine-tuned text tower"
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
