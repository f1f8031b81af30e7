"""FLYP fine-tuning and the zero-shot head on a tiny open_clip model (random weights, offline)."""

from pathlib import Path

import torch
import torch.nn.functional as F

from discl.filtering.testing import register_tiny_open_clip
from discl.training.clip import caption_rows, create_clip_classifier, flyp_loss
from discl.training.config import TrainConfig
from discl.training.loop import TensorData, fit, predict_proba


def test_flyp_loss_prefers_matched_pairs():
    e = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    scale = torch.tensor(20.0)
    assert flyp_loss(e, e, scale) < flyp_loss(e, e.roll(1, 0), scale)


class _PairEncoder(torch.nn.Module):
    """Two linear towers and a learnable scale: the smallest model with FLYP's gradient paths."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.img, self.txt = torch.nn.Linear(5, 4), torch.nn.Linear(3, 4)
        self.logit_scale = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, a, b):
        return flyp_loss(F.normalize(self.img(a), dim=-1), F.normalize(self.txt(b), dim=-1), self.logit_scale.exp())


def _global_batch():
    g = torch.Generator().manual_seed(3)
    return torch.randn(7, 5, generator=g), torch.randn(7, 3, generator=g)  # 7: shares of 4 and 3 items


def _flyp_ddp_worker(rank: int, world: int, folder: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/pg", rank=rank, world_size=world)
    try:
        model = DistributedDataParallel(_PairEncoder())
        a, b = _global_batch()
        loss = model(a[rank::world], b[rank::world])  # the loop's split: rank r takes every W-th item
        loss.backward()
        grads = {k: p.grad.clone() for k, p in model.module.named_parameters()}
        torch.save({"loss": loss.detach(), "grads": grads}, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_flyp_loss_under_ddp_is_the_global_batch_loss(tmp_path):
    """2 gloo processes, unequal shares: each one's loss and the DDP-averaged gradients equal the
    single-process loss and gradients on the same global batch (not a (batch/W)-way problem)."""
    import torch.multiprocessing as mp

    mp.spawn(_flyp_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ref = _PairEncoder()
    a, b = _global_batch()
    loss = ref(a, b)
    loss.backward()
    for rank in range(2):
        got = torch.load(Path(tmp_path) / f"rank{rank}.pt")
        torch.testing.assert_close(got["loss"], loss.detach(), msg=f"rank {rank}: loss")
        for k, p in ref.named_parameters():
            torch.testing.assert_close(got["grads"][k], p.grad, msg=f"rank {rank}: gradient of {k}")


def test_every_image_gets_the_same_caption_whatever_the_number_of_processes():
    """With W processes (rank r holds positions r, r+W, ... of the global batch, as the loop splits
    it), the gathered captions are the single-process captions of the same images."""
    labels = torch.tensor([2, 0, 1, 1, 2, 0, 0])
    one = caption_rows(labels, 3)
    for world in (2, 3):
        for rank in range(world):
            assert torch.equal(caption_rows(labels[rank::world], 3, rank, world), one[rank::world])


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
