"""Issue 24, target 4: a user's own PyTorch loop, fed only through the public API (the run's config,
its real split, its spectrum, the curriculum's sampler and dataset), trains the same weights as
``discl train`` and so reaches its test accuracy.

Both loops start from the same weights (the run's CE baseline), with the same optimiser, per-step
learning rate, batch size and seed, no augmentation and the last epoch's weights (``select_on:
last``). The model, optimiser and schedule come from discl's helpers: what is tested is the data
path. On one CPU thread the two loops are bit-identical when the user's transform decodes an image
as ``discl train`` does (``docs/own-training-loop.md``, "How close to discl train"): measured on the
tiny fmnist-lt run, weights equal to the bit and test top-1 0.29 for both. With the example's
transform instead (bilinear ``Resize``, ``ToDtype(scale=True)``) the 28 -> 14 px pixels differ by 2
grey levels on average (up to 23) and the weights by up to 0.32 after 42 steps; ``ToDtype`` alone
(x * (1/255) instead of x / 255) moves them by up to 1.5e-3. Test top-1 stayed 0.29 in both.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import discl

# what discl train changes from the run's config: no augmentation (a user's augmentation draws its own
# random numbers), the last epoch's weights (no selection on validation), and the run's CE baseline as
# the starting weights, by path (the config's `init_from: baseline` would ask for a baseline of this
# config, which the tiny run trained with augmentation)
OVERRIDES = ["training.augment=false", "training.select_on=last"]


def _discl_decoding(size: int, channels: int):
    """The user's transform that reproduces discl train's in-memory pixels: the image converted to
    the channels, resized with PIL's bicubic filter (discl letterboxes; these images are square) and
    divided by 255 (``ToDtype(scale=True)`` multiplies by 1/255, which differs in the last bit)."""
    from torchvision.transforms import v2 as T

    return T.Compose([T.Grayscale(channels), T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC),
                      T.PILToTensor(), lambda x: x.float().div(255.0)])


def _own_loop(run: Path, cfg, init: Path) -> tuple[torch.nn.Module, list[str], float]:
    """A user's loop: the data through the public API only; (model, per-epoch order digests, test top-1)."""
    from discl.training.checkpoint import load_weights
    from discl.training.loop import build_optimizer, lr_at
    from discl.training.models import create_classifier

    tc, size, ch = cfg.training, cfg.data.image_size, cfg.data.channels
    tf = _discl_decoding(size, ch)
    train = discl.load_real_split(run, "train", tf)
    spectrum = discl.load_spectrum(run)
    cur = discl.create_curriculum(cfg.curriculum, spectrum=spectrum, train_ids=train.sample_ids,
                                  train_labels=train.labels, epochs=tc.epochs, seed=tc.seed, holdout_seed=cfg.seed)
    sampler = cur.sampler(tc.batch_size)
    loader = DataLoader(cur.dataset(train, spectrum, tf), sampler=sampler, batch_size=sampler.per_replica_batch_size)
    model = create_classifier(tc, len(train.classes), ch, size, train.classes, tc.seed)
    model.load_state_dict(load_weights(init)[0])
    opt = build_optimizer(model, tc)
    step, digests = 0, []
    for epoch in range(tc.epochs):
        sampler.set_epoch(epoch)
        digests.append(discl.order_digest(list(sampler)))
        model.train()
        n = len(loader)
        for b, (x, y) in enumerate(loader):
            for group in opt.param_groups:  # discl's schedule: per step, cosine over the epochs' progress
                group["lr"] = lr_at(tc, step, (epoch + b / n) / tc.epochs)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    test = discl.load_real_split(run, "test", tf)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x).argmax(-1) for x, _ in DataLoader(test, batch_size=512)])
    return model, digests, float((pred == torch.tensor(test.labels)).double().mean())


def test_own_loop_trains_discl_trains_weights_and_accuracy(tiny_run, tmp_path):
    from discl.config import load_config
    from discl.training.checkpoint import load_weights
    from discl.training.recipe import train_curriculum

    run = tmp_path / "run"  # a copy: the session's tiny run stays as other tests expect it
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("report*", "discl-s0"))
    init = run / "train" / "ce-s0" / "best.safetensors"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same float operations in the same order in both loops
    try:
        with torch.random.fork_rng(devices=[]):  # discl train re-seeds the global RNG per epoch
            metrics = train_curriculum(load_config(run / "config.yaml", [*OVERRIDES, f"training.init_from={init}"]),
                                       run, seed=0, name="own-loop-s0")
        out = run / "train" / "own-loop-s0"
        cfg = discl.load_config(out / "config.yaml")  # the resolved config discl train saved
        assert not cfg.training.augment and cfg.training.select_on == "last" and cfg.training.loss == "ce"
        model, digests, top1 = _own_loop(run, cfg, init)
    finally:
        torch.set_num_threads(threads)
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert digests == [r["order_digest"] for r in logged] and len(digests) == cfg.training.epochs
    theirs, _ = load_weights(out / "best.safetensors")  # select_on last: the last epoch's weights
    mine = model.state_dict()
    assert set(mine) == set(theirs)
    unequal = {k: float((mine[k].double() - theirs[k].double()).abs().max()) for k in theirs
               if not torch.equal(mine[k], theirs[k])}
    assert not unequal, f"weights differ from discl train's (max abs difference per tensor): {unequal}"
    assert top1 == metrics["test"]["top1"]
