"""The public curriculum/spectrum API (issue 24) and the stage-data rules it shares with ``discl train``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from discl.curriculum.base import Stage
from discl.curriculum.config import CurriculumConfig
from discl.curriculum.stage_data import plan_stage_epoch
from discl.curriculum.testing import head_tail_pool_meta
from discl.errors import BadInputError


def _all_tail_meta():
    """3 classes, every class mostly hard (all tail): 4 real each (3 hard), 2 variants per hard image per level."""
    rows = []
    for c in range(3):
        for i in range(4):
            hard = i < 3
            rows.append(("real", f"r{c}-{i}", c, 1.0, hard, True))
            if hard:
                for lam in (0.1, 0.5):
                    rows += [("synthetic", f"r{c}-{i}", c, lam, True, True)] * 2
    return pd.DataFrame(rows, columns=["kind", "sample_id", "label", "lam", "hard", "tail"])


def test_every_class_a_tail_class_trains_on_its_real_and_the_stage_synthetic_images():
    meta = _all_tail_meta()
    plan = plan_stage_epoch(meta, Stage((0.1,)), 0, 0, CurriculumConfig())
    sel = meta.iloc[plan.indices]
    assert len(sel) == 3 * (4 + 6)  # all 4 real + the 6 variants at λ=0.1 of each class
    assert (sel.kind == "real").sum() == 12 and set(sel[sel.kind == "synthetic"].lam) == {0.1}
    assert plan.info["n_tail_real"] == 12 and plan.info["n_tail_synthetic"] == 18
    real = plan_stage_epoch(meta, Stage(), 2, 0, CurriculumConfig())
    assert len(real.indices) == 12 and (meta.iloc[real.indices].kind == "real").all()
    capped = plan_stage_epoch(meta, Stage((0.1, 0.5)), 0, 0, CurriculumConfig(synthetic_cap_per_class=2))
    assert (meta.iloc[capped.indices].query("kind == 'synthetic'").groupby("label").size() == 2).all()


def test_an_epoch_of_no_item_is_an_error():
    meta = _all_tail_meta()
    meta = meta[meta.kind == "synthetic"]  # no real image at all: a real-only stage has nothing
    with pytest.raises(BadInputError, match="epoch 1 .*no training image"):
        plan_stage_epoch(meta, Stage(), 1, 0, CurriculumConfig())
    assert len(plan_stage_epoch(meta, Stage((0.5,)), 1, 0, CurriculumConfig()).indices) == 18


class _Stages:
    """A strategy that plays a fixed list of stages (what the planner asks a strategy for)."""

    name, needs_feedback, uses_holdout = "listed", False, False

    def __init__(self, stages):
        self.stages = stages

    def stage(self, epoch):
        return self.stages[epoch]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


# the per-epoch global order (world 1) and the rank-concatenated order (world 2) of this meta, computed
# with the code before the Curriculum refactor (commit 4474505: plan_stage_epoch + training.loop.epoch_batches)
BEFORE = ["965d689591245c79", "10bda541c91c19e6", "499c9ae58fa45a55", "3e60424ab7787d24", "51135a3a2e45386a",
          "24289db1409f08d4", "c709633d10bb0246", "aeff1edc62375a12"]


def test_curriculum_epochs_are_those_of_the_code_before_the_refactor():
    from discl.curriculum.epochs import order_digest
    from discl.curriculum.sampler import Curriculum

    stages = [Stage((0.1,)), Stage((0.5,)), Stage((0.1, 0.5), share=0.5), Stage()]
    cur = Curriculum(_Stages(stages), CurriculumConfig(), head_tail_pool_meta(), seed=3)
    got = []
    for e in range(len(stages)):
        got.append(order_digest(cur.indices(e, batch_size=32)))
        sampler = cur.sampler(32, num_replicas=2, rank=0)
        sampler.set_epoch(e)
        shards = [cur.indices(e, 32, 2, r) for r in (0, 1)]
        assert list(sampler) == shards[0].tolist()
        per = 16  # each rank's share of a global batch of 32
        inter = [s[i : i + per] for i in range(0, max(map(len, shards)), per) for s in shards]
        got.append(order_digest(np.concatenate(inter)))
    assert got == BEFORE


# -- create_curriculum on a small spectrum made here (no run): labels, ranks, HF Trainer, probes ----------------

IDS = [f"s{i:03d}" for i in range(60)]
LABELS = [0] * 30 + [1] * 25 + [2] * 5
HARD = IDS[55:] + IDS[30:34]
NAMES = ["shirt", "bag", "boot"]  # the run's classes, in its label order


def _spectrum(root=None, extra=()):
    """4 variants per level (0.1, 0.3, 0.5) of each hard image, labelled with the run's classes."""
    from discl.data.spectrum import Spectrum

    rows = [dict(sample_id=s, label=LABELS[IDS.index(s)] if s in IDS else 0, lam=lam, k=k,
                 class_name=NAMES[LABELS[IDS.index(s)] if s in IDS else 0], file_name=f"images/{s}_l{lam}_k{k}.png") for s in [*HARD, *extra] for lam in (0.1, 0.3, 0.5)
            for k in range(4)]
    sp = Spectrum(pd.DataFrame(rows), root or "/nonexistent")
    if root is not None:
        from PIL import Image

        for i, name in enumerate(sp.frame["file_name"]):
            (sp.root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((4, 4), i % 256, np.uint8)).save(sp.root / name)
    return sp


def _curriculum(strategy="reverse", labels=LABELS, spectrum=None, **kw):
    import discl

    return discl.create_curriculum(strategy, spectrum=spectrum or _spectrum(), train_ids=IDS, train_labels=labels,
                                   epochs=4, seed=0, hard_ids=kw.pop("hard_ids", HARD),
                                   **({"levels": [0.1, 0.3, 0.5]} | kw))


def test_train_labels_that_are_not_the_runs_class_indices_are_an_error():
    relabelled = [{0: 1, 1: 2, 2: 0}[y] for y in LABELS]  # the same classes numbered another way
    with pytest.raises(BadInputError, match=r"sample 's055' has label 0 in train_labels but 2 in the spectrum.*class indices"):
        _curriculum(labels=relabelled)
    # a spectrum made from images that are not in train_ids (another split, another dataset)
    with pytest.raises(BadInputError, match=r"1 source images of the spectrum are not in train_ids, e.g. 'other-1'"):
        _curriculum(spectrum=_spectrum(extra=["other-1"]))
    assert len(_curriculum()) > len(IDS)
    # with the user's class names, the spectrum's labels are mapped to the user's
    mine = [NAMES[i] for i in (2, 0, 1)]  # user label 0 = boot, 1 = shirt, 2 = bag
    cur = _curriculum(labels=relabelled, class_names=mine)
    syn = cur.meta[cur.meta.kind == "synthetic"]
    assert (syn.label.to_numpy() == [relabelled[IDS.index(s)] for s in syn.sample_id]).all()
    with pytest.raises(BadInputError, match="the spectrum's class 'boot' is not in class_names"):
        _curriculum(labels=relabelled, class_names=["shirt", "bag"])


def test_spectrum_sources_that_are_not_hard_images_are_left_out_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="discl.curriculum.sampler"):
        cur = _curriculum(hard_ids=IDS[55:])  # the spectrum also has variants of s030..s033
    assert "4 source images of the spectrum (e.g. 's030') are not in hard_ids" in caplog.text
    assert set(cur.meta.loc[cur.meta.kind == "synthetic", "sample_id"]) == set(IDS[55:])


def _ranks_worker(rank, world, port, out):
    import torch.distributed as dist

    cur = _curriculum()
    sampler, batches = cur.sampler(8), cur.batch_sampler(8)  # made before the process group, as under Lightning
    early = cur.sampler(8)
    early_batch = early.per_replica_batch_size  # a DataLoader made now would batch by the one-process size
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        got = {}
        for e in range(4):
            sampler.set_epoch(e)
            batches.set_epoch(e)
            got[e] = {"items": list(sampler), "batches": list(batches), "len": len(batches)}
        early.set_epoch(0)
        try:
            list(early)
            got["early"] = None
        except BadInputError as err:
            got["early"] = (early_batch, str(err))
        torch.save(got, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_a_sampler_made_before_the_process_group_starts_shards_by_rank(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ranks_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    cur = _curriculum()
    for r in (0, 1):
        got = torch.load(tmp_path / f"rank{r}.pt")
        for e in range(4):
            want = cur.batches(e, 8, num_replicas=2, rank=r)
            assert got[e]["items"] == np.concatenate(want).tolist()
            assert got[e]["batches"] == [b.tolist() for b in want] and got[e]["len"] == len(want)
            assert all(len(b) == 4 for b in want[:-1])
        assert got["early"][0] == 8 and "batch_sampler=curriculum.batch_sampler" in got["early"][1]


class _HFRecorder(torch.nn.Module):
    """A linear model that calls ``record(indices)`` with the pool indices of every batch it trains on."""

    def __init__(self, record):
        super().__init__()
        self.lin, self.record = torch.nn.Linear(1, 3), record

    def forward(self, x, labels=None):
        self.record([int(v) for v in x.flatten()])
        logits = self.lin(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def _hf_collate(items):
    return {"x": torch.stack([a for a, _ in items]), "labels": torch.tensor([b for _, b in items])}


def _hf_train(cur, sampler, out, save_steps=None, resume=None, history=None):
    from transformers import TrainingArguments

    from discl.integrations.hf import CurriculumCallback, CurriculumTrainer

    seen: dict[int, list[int]] = {}  # curriculum epoch -> pool indices trained on
    cb = CurriculumCallback(cur, sampler)
    args = TrainingArguments(output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=sampler.items_per_batch,
                             save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500, report_to=[],
                             use_cpu=True, remove_unused_columns=False, disable_tqdm=True, logging_strategy="no")
    model = _HFRecorder(lambda batch: seen.setdefault(cb.epoch, []).extend(batch))
    trainer = CurriculumTrainer(model=model, args=args, train_dataset=_Indexed(cur), data_collator=_hf_collate,
                                callbacks=[cb], curriculum_sampler=sampler)
    trainer.train(resume_from_checkpoint=resume)
    if history is not None:
        history.extend(cb.history)
    return seen, trainer.state.global_step


def test_hf_trainer_trains_every_item_of_every_epoch_of_curricula_whose_epochs_differ_in_size(tmp_path):
    pytest.importorskip("transformers")
    from discl.integrations.hf import CurriculumRunBatchSampler

    for name in ("reverse", "real_only"):
        cur = _curriculum(name)
        counts = [len(cur.batches(e, 8)) for e in range(4)]
        assert name == "real_only" or len(set(counts)) > 1
        seen, steps = _hf_train(cur, CurriculumRunBatchSampler(cur, 8, 4), tmp_path)
        assert seen == {e: cur.indices(e, 8).tolist() for e in range(4)} and steps == sum(counts)


def test_hf_trainer_resumed_mid_curriculum_logs_the_epochs_after_its_checkpoint(tmp_path):
    pytest.importorskip("transformers")
    from discl.integrations.hf import CurriculumRunBatchSampler

    cur = _curriculum("reverse")
    counts = [len(cur.batches(e, 8)) for e in range(4)]
    whole: list[dict] = []
    _hf_train(cur, CurriculumRunBatchSampler(cur, 8, 4), tmp_path / "a", save_steps=counts[0] + 1, history=whole)
    assert [h["end_step"] for h in whole] == np.cumsum(counts).tolist()
    resumed: list[dict] = []  # from the checkpoint one step into epoch 1
    seen, steps = _hf_train(cur, CurriculumRunBatchSampler(cur, 8, 4), tmp_path / "b",
                            resume=str(tmp_path / "a" / f"checkpoint-{counts[0] + 1}"), history=resumed)
    assert resumed == whole[1:] and steps == sum(counts)
    assert seen[1] == cur.indices(1, 8).tolist()[8:] and seen[3] == cur.indices(3, 8).tolist()


def test_hf_trainer_under_ddp_gives_each_process_discl_trains_share_of_every_batch(tmp_path):
    """torchrun, two CPU processes (~15 s): with num_processes=2 and the global batch, process r trains on
    rank r's share of every global batch of discl train on two processes; one step is one global batch."""
    pytest.importorskip("transformers")
    import json

    from discl.curriculum.epochs import order_digest

    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(Path(__file__).with_name("_hf_ddp_worker.py")),
                          str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    cur = _curriculum("reverse")
    glob = [cur.global_batches(e, 8, 2) for e in range(4)]
    for r in (0, 1):
        got = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert got["seen"] == {str(e): [b.tolist() for b in cur.batches(e, 8, 2, r)] for e in range(4)}
        assert got["steps"] == sum(len(g) for g in glob)
        assert [h["end_step"] for h in got["history"]] == np.cumsum([len(g) for g in glob]).tolist()
        assert [h["order_digest"] for h in got["history"]] == [order_digest(np.concatenate(g)) for g in glob]
    # built for another process count than the Trainer's: refused
    from transformers import TrainingArguments

    from discl.integrations.hf import CurriculumRunBatchSampler, CurriculumTrainer

    args = TrainingArguments(output_dir=str(tmp_path / "one"), num_train_epochs=1, report_to=[], use_cpu=True)
    with pytest.raises(BadInputError, match=r"built for 2 process\(es\) but this Trainer runs 1"):
        CurriculumTrainer(model=torch.nn.Linear(1, 3), args=args, train_dataset=_Indexed(cur),
                          curriculum_sampler=CurriculumRunBatchSampler(cur, 8, 4, num_processes=2))


def test_accelerates_ddp_sharding_of_the_hf_run_sampler_loses_no_batch():
    """Under DDP accelerate wraps the sampler in BatchSamplerShard, which drops every group of W
    batches ending in a short one when the sampler has a ``batch_size``: each epoch's short last batch
    sits mid-stream here, so whole epochs were silently lost. Every batch must reach some process."""
    pytest.importorskip("accelerate")
    from accelerate.data_loader import BatchSamplerShard

    from discl.integrations.hf import CurriculumRunBatchSampler

    cur = _curriculum("reverse")
    sampler = CurriculumRunBatchSampler(cur, 8, 4)
    want = [tuple(b) for b in sampler]
    assert any(len(b) < 8 for b in want[:-1]), "the test needs a short batch before the last one"
    got = []
    for rank in (0, 1):
        got += [tuple(b) for b in BatchSamplerShard(sampler, num_processes=2, process_index=rank,
                                                      split_batches=False, even_batches=True)]
    assert set(want) <= set(got)


def test_adaptive_probes_must_not_be_augmented(tmp_path):
    spectrum = _spectrum(tmp_path)

    class Real(torch.utils.data.Dataset):
        def __init__(self, noise):
            self.noise = noise

        def __len__(self):
            return len(IDS)

        def __getitem__(self, i):
            x = torch.full((1, 4, 4), float(i))
            return (x + torch.rand(1, 4, 4) if self.noise else x), LABELS[i]

    def tf(im):
        return torch.as_tensor(np.array(im), dtype=torch.float32)[None]

    def aug(im):
        return tf(im) + torch.rand(1, 4, 4)

    kw = dict(levels=[0.1, 0.5, 1.0], holdout_per_class=1)
    with pytest.raises(BadInputError, match=r"probe dataset gives two different images for held-out sample .*probe_dataset="):
        _curriculum("adaptive", spectrum=spectrum, real_dataset=Real(True), transform=tf, **kw)
    with pytest.raises(BadInputError, match=r"transform gives two different tensors for spectrum image 'images/"):
        _curriculum("adaptive", spectrum=spectrum, real_dataset=Real(False), transform=aug, **kw)
    cur = _curriculum("adaptive", spectrum=spectrum, real_dataset=Real(True), probe_dataset=Real(False), transform=tf, **kw)
    x, y = cur.probes[1.0]
    assert len(x) == len(cur.holdout) > 0 and torch.equal(x[0], torch.full((1, 4, 4), float(IDS.index(cur.holdout[0]))))


class _Indexed(torch.utils.data.Dataset):
    """Pool index i -> (tensor [i], label): what a process trained on is readable from its batches."""

    def __init__(self, cur):
        self.cur = cur

    def __len__(self):
        return len(self.cur)

    def __getitem__(self, i):
        return torch.tensor([float(i)]), int(self.cur.meta.at[int(i), "label"])


try:
    import lightning as L
except ImportError:  # the lightning tests skip
    L = None

if L is not None:

    class _Recorder(L.LightningModule):
        """Saves the pool indices of every batch it trained on (per epoch) to ``out/rank<r>.pt``."""

        def __init__(self, out):
            super().__init__()
            self.lin, self.seen, self.out = torch.nn.Linear(1, 3), {}, out

        def training_step(self, batch, _):
            self.seen.setdefault(self.current_epoch, []).append([int(v) for v in batch[0].flatten()])
            return torch.nn.functional.cross_entropy(self.lin(batch[0]), batch[1])

        def on_train_end(self):
            torch.save(self.seen, f"{self.out}/rank{self.global_rank}.pt")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.1)


def _lightning_fit(cur, out, devices=1, epochs=4, callbacks_extra=(), ckpt_path=None, **trainer_kw):
    from discl.integrations.lightning import CurriculumCallback

    batches = cur.batch_sampler(8)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=devices, use_distributed_sampler=False,
                        callbacks=[CurriculumCallback(cur, batches), *callbacks_extra], logger=False,
                        **({"enable_checkpointing": False} | trainer_kw),
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_Recorder(str(out)), torch.utils.data.DataLoader(_Indexed(cur), batch_sampler=batches), ckpt_path=ckpt_path)


def test_lightning_trains_every_batch_of_epochs_of_different_sizes(tmp_path):
    pytest.importorskip("lightning")
    cur = _curriculum("reverse")
    with pytest.raises(BadInputError, match=r"epoch 1 .* has 7 batches on this process, but the Trainer will run 4.*"
                                            r"reload_dataloaders_every_n_epochs=1"):
        _lightning_fit(cur, tmp_path)
    _lightning_fit(cur, tmp_path, reload_dataloaders_every_n_epochs=1)
    assert torch.load(tmp_path / "rank0.pt") == {e: [b.tolist() for b in cur.batches(e, 8)] for e in range(4)}


def test_lightning_resumes_from_an_epoch_end_checkpoint_with_that_epochs_batches(tmp_path):
    """A resumed fit measures its train loader before any epoch hook: the restored callback sets the epoch."""
    pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint

    cur = _curriculum("reverse")
    assert len({len(cur.batches(e, 8)) for e in range(4)}) > 1  # epochs of different sizes
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_epochs=1, save_top_k=-1, filename="{epoch}")
    _lightning_fit(cur, tmp_path, epochs=2, reload_dataloaders_every_n_epochs=1, callbacks_extra=[ckpt],
                   enable_checkpointing=True)
    resumed = _curriculum("reverse")
    _lightning_fit(resumed, tmp_path, epochs=4, reload_dataloaders_every_n_epochs=1,
                   ckpt_path=str(tmp_path / "ckpt" / "epoch=1.ckpt"))
    assert torch.load(tmp_path / "rank0.pt") == {e: [b.tolist() for b in cur.batches(e, 8)] for e in (2, 3)}


def test_lightning_ddp_gives_each_process_its_share_of_every_batch(tmp_path):
    """The audit's case: the batch sampler is made before Trainer.fit starts the process group (~20 s)."""
    pytest.importorskip("lightning")
    cur = _curriculum("reverse")
    _lightning_fit(cur, tmp_path, devices=2, epochs=2, strategy="ddp_spawn", reload_dataloaders_every_n_epochs=1)
    for r in (0, 1):
        assert torch.load(tmp_path / f"rank{r}.pt") == {e: [b.tolist() for b in cur.batches(e, 8, 2, r)] for e in range(2)}
