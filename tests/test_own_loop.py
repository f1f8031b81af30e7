"""DisCL in a user's own training loop (issue 24): the public API, the spectrum for Hugging Face
datasets, the sampler's indices against ``discl train``'s, the adaptive hook, and the examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import discl
from discl.curriculum.epochs import order_digest
from discl.errors import BadInputError

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "own-training-loop.md"


def test_every_public_name_has_a_docstring_and_is_in_the_docs_page():
    text = DOCS.read_text()
    assert len(discl.__all__) >= 8
    for name in discl.__all__:
        obj = getattr(discl, name)
        assert (obj.__doc__ or "").strip(), f"discl.{name} has no docstring"
        assert f"`{name}" in text, f"discl.{name} is not in {DOCS.name}"
    assert "docs/own-training-loop.md" in "\n".join(ROOT.joinpath("README.md").read_text().splitlines()[:12])


def test_import_discl_stays_light():
    code = "import sys, discl; print(sorted(m for m in ('datasets', 'lightning', 'transformers', 'pandas', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []


def _spectrum_folder(root: Path, n_classes: int = 12) -> pd.DataFrame:
    """A spectrum folder as discl generate writes it, with sample ids that name dataset splits."""
    from PIL import Image

    from discl.artifacts import write_table

    rows = []
    for c in range(n_classes):
        for sid in (f"train-{c:03d}", f"test-{c:03d}"):
            name = f"images/{c}/{sid}_l0.5_k0.png"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), 10 * c, np.uint8)).save(root / name)
            rows.append({"file_name": name, "sample_id": sid, "source_sample_id": sid, "label": c,
                         "class_name": f"class {c}", "lam": 0.5, "seed": 1000 + c, "k": 0, "prompt": f"a photo of {c}"})
    meta = pd.DataFrame(rows)
    write_table(root / "metadata.csv", meta)
    return meta


def test_the_spectrum_loads_with_hf_datasets_with_provenance_keep_and_integer_labels(tmp_path):
    datasets = pytest.importorskip("datasets")
    from discl.data.spectrum import write_dataset_card, write_filtered_metadata

    spectrum = tmp_path / "spectrum"
    meta = _spectrum_folder(spectrum)
    write_dataset_card(spectrum)  # what discl generate does after metadata.csv
    gen = datasets.load_dataset(str(spectrum), split="train")
    assert gen.num_rows == 24 and {"sample_id", "lam", "seed", "k", "prompt", "class_name"} <= set(gen.column_names)
    assert gen.features["label"].dtype == "int64"
    assert {(r["sample_id"], r["label"]) for r in gen.select_columns(["sample_id", "label"])} == set(
        zip(meta["sample_id"], meta["label"]))
    manifest = meta.assign(sim_text=0.3, keep=meta["label"] % 2 == 0)  # what discl filter adds
    write_filtered_metadata(spectrum, manifest)
    hf = datasets.load_dataset(str(spectrum), split="train")
    assert {"keep", "sim_text", "seed", "sample_id"} <= set(hf.column_names) and hf.num_rows == 24
    kept = hf.filter(lambda r: r["keep"])
    assert sorted(set(kept["label"])) == list(range(0, 12, 2)) and kept[0]["image"].size == (8, 8)
    generated = [n for n in datasets.get_dataset_config_names(str(spectrum)) if n.startswith("generated-")]
    assert datasets.load_dataset(str(spectrum), generated[0], split="train").num_rows == 24
    # datasets caches a local folder by its name and config: another run's `spectrum` is not read from it
    other = tmp_path / "other" / "spectrum"
    _spectrum_folder(other, n_classes=11)
    write_dataset_card(other)
    assert datasets.load_dataset(str(other), split="train").num_rows == 22


def test_load_spectrum_of_a_run(tiny_run):
    spectrum = discl.load_spectrum(tiny_run)
    manifest = pd.read_csv(tiny_run / "filter" / "manifest.csv")
    assert len(spectrum) == int(manifest["keep"].sum()) > 0
    item = spectrum[0]
    assert {"image", "label", "lam", "seed", "sample_id", "sim_text", "sim_image", "keep"} <= set(item)
    assert item["keep"] is True and isinstance(item["label"], int) and item["image"].size == (28, 28)
    # an empty text field is "" as written (pandas would read NaN), filtered or not
    assert manifest["negative_prompt"].isna().all() and item["negative_prompt"] == "" and isinstance(item["prompt"], str)
    assert item["drop_reason"] == "" and spectrum.to_hf_dataset()[0]["drop_reason"] == ""  # kept: no reason
    assert discl.load_spectrum(tiny_run, kept_only=False)[0]["negative_prompt"] == ""
    assert len(discl.load_spectrum(tiny_run, kept_only=False)) == len(manifest)
    hf = spectrum.to_hf_dataset()
    assert hf.num_rows == len(spectrum) and hf[0]["sample_id"] == item["sample_id"]
    import datasets

    folder = datasets.load_dataset(str(tiny_run / "spectrum"), split="train")  # the card discl wrote
    assert folder.num_rows == len(manifest) and {"keep", "sim_text", "image_key"} <= set(folder.column_names)


def _run_curriculum(run: Path, epochs: int | None = None, **kw):
    cfg = discl.load_config(run / "config.yaml")
    train = discl.load_real_split(run, "train")
    spectrum = discl.load_spectrum(run)
    cur = discl.create_curriculum(kw.pop("strategy", cfg.curriculum), spectrum=spectrum, train_ids=train.sample_ids,
                                  train_labels=train.labels, epochs=epochs or cfg.training.epochs, seed=0, **kw)
    return cfg, train, spectrum, cur


def test_the_sampler_gives_discl_trains_epochs_and_shards_them_by_rank(tiny_run):
    cfg, train, spectrum, cur = _run_curriculum(tiny_run)
    logged = [json.loads(line) for line in (tiny_run / "train" / "discl-s0" / "log.jsonl").read_text().splitlines()]
    assert len(logged) == cfg.training.epochs
    sampler = cur.sampler(cfg.training.batch_size, num_replicas=1, rank=0)
    shards = [cur.sampler(cfg.training.batch_size, num_replicas=2, rank=r) for r in (0, 1)]
    for row in logged:
        e = row["epoch"]
        sampler.set_epoch(e)
        mine = list(sampler)
        assert order_digest(mine) == row["order_digest"] and len(mine) == row["n_items"]
        for s in shards:
            s.set_epoch(e)
        a, b = list(shards[0]), list(shards[1])
        assert abs(len(a) - len(b)) <= 1 and sorted(a + b) == sorted(mine)  # nothing dropped: last batch >= 4
        assert a[:2] == mine[0:4:2] and b[:2] == mine[1:4:2]  # every 2nd item of each batch, as discl train
    # the dataset maps pool indices to the user's real items and to the spectrum
    ds = cur.dataset(train, spectrum, transform=lambda im: np.asarray(im))
    syn = int(np.flatnonzero(cur.spectrum_index >= 0)[0])
    x, y = ds[syn]
    assert y == spectrum.frame.at[int(cur.spectrum_index[syn]), "label"] and x.shape == (28, 28)
    assert ds[0] == train[int(cur.real_index[0])]


def test_the_adaptive_hook_takes_a_probability_function(tiny_run, caplog):
    import logging

    from torchvision.transforms import v2 as T

    tf = T.Compose([T.Grayscale(1), T.PILToTensor(), T.ToDtype(torch.float32, scale=True)])
    run = tiny_run
    train = discl.load_real_split(run, "train", tf)
    spectrum = discl.load_spectrum(run)
    with pytest.raises(BadInputError, match="real_dataset"):
        discl.create_curriculum("adaptive", levels=[0.0, 0.5, 1.0], spectrum=spectrum, train_ids=train.sample_ids,
                                train_labels=train.labels, epochs=4)
    caplog.set_level(logging.INFO, logger="discl.curriculum.sampler")
    cur = discl.create_curriculum("adaptive", levels=[0.0, 0.5, 1.0], spectrum=spectrum, train_ids=train.sample_ids,
                                  train_labels=train.labels, epochs=4, real_dataset=train, transform=tf)
    assert cur.needs_feedback and cur.holdout and cur.stage(0).levels == (0.0,)
    held = [r.getMessage() for r in caplog.records if "held out to measure progress" in r.getMessage()]
    assert held and f"{len(cur.holdout)} hard images held out" in held[-1]  # capped classes, if any, are named there
    assert all(i not in cur.holdout for i in np.asarray(train.sample_ids)[cur.real_index[cur.real_index >= 0]])
    seen = []

    def predict_proba(x):  # favours nothing: the real level is made to gain most at the first check
        seen.append(tuple(x.shape))
        return torch.full((len(x), 10), 0.1)

    out = cur.after_epoch(0, predict_proba)
    assert out["chosen_level"] in (0.0, 0.5, 1.0) and seen and all(s[1:] == (1, 28, 28) for s in seen)
    assert out["progress_top2"] and out["progress_gap_paired_n"] >= 1  # the probes name their held-out images
    state = cur.state_dict()
    again = discl.create_curriculum("adaptive", levels=[0.0, 0.5, 1.0], spectrum=spectrum, train_ids=train.sample_ids,
                                    train_labels=train.labels, epochs=4, real_dataset=train, transform=tf)
    again.load_state_dict(state)
    assert again.stage(1) == cur.stage(1)
    with pytest.raises(ValueError, match="class probabilities"):
        cur.after_epoch(1, lambda x: torch.zeros(len(x)))


def _example(name: str, *args: str, timeout: int = 300) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    p = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, f"{name} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def test_plain_example_visits_discl_trains_epochs(tiny_run, tmp_path):
    assert len((ROOT / "examples" / "train_plain.py").read_text().splitlines()) <= 80
    out = _example("train_plain.py", str(tiny_run), "--log", str(tmp_path / "epochs.jsonl"))
    mine = [json.loads(line) for line in (tmp_path / "epochs.jsonl").read_text().splitlines()]
    logged = [json.loads(line) for line in (tiny_run / "train" / "discl-s0" / "log.jsonl").read_text().splitlines()]
    assert [r["order_digest"] for r in mine] == [r["order_digest"] for r in logged]
    assert [r["stage"] for r in mine] == [r["stage"] for r in logged]
    assert 0.0 <= json.loads(out.strip().splitlines()[-1])["test_top1"] <= 1.0


def test_hf_trainer_example_trains_every_epoch_in_discl_trains_order(tiny_run, tmp_path):
    pytest.importorskip("transformers")
    out = json.loads(_example("train_hf_trainer.py", str(tiny_run), "--out", str(tmp_path)).strip().splitlines()[-1])
    logged = [json.loads(line) for line in (tiny_run / "train" / "discl-s0" / "log.jsonl").read_text().splitlines()]
    cfg, _, _, cur = _run_curriculum(tiny_run)
    counts = [len(cur.batches(e, cfg.training.batch_size)) for e in range(cfg.training.epochs)]
    assert [r["epoch"] for r in out["epochs"]] == list(range(cfg.training.epochs))
    assert [r["order_digest"] for r in out["epochs"]] == [r["order_digest"] for r in logged]
    assert [r["stage"] for r in out["epochs"]] == [r["stage"] for r in logged]
    assert [r["batches"] for r in out["epochs"]] == counts
    assert [r["end_step"] for r in out["epochs"]] == np.cumsum(counts).tolist()  # each epoch ends at its last batch
    assert out["steps"] == sum(counts)  # one optimizer step per batch: the LR schedule spans exactly the curriculum


def test_hf_trainer_trains_a_curriculum_whose_epochs_differ_in_size_item_by_item(tiny_run, tmp_path):
    """Each item's pool index is its input: the model records what every optimizer step trained on."""
    pytest.importorskip("transformers")
    from transformers import TrainingArguments

    from discl.integrations.hf import CurriculumCallback, CurriculumRunBatchSampler, CurriculumTrainer

    _, train, spectrum, cur = _run_curriculum(tiny_run, epochs=3, strategy="fixed", levels=[0.0, 0.5],
                                              stages=[0.34, 0.33, 0.33], tail_quota=False)
    counts = [len(cur.batches(e, 16)) for e in range(3)]
    assert len(set(counts)) > 1  # epochs of different sizes: what Trainer's per-epoch loader could not train

    class Indices(torch.utils.data.Dataset):
        def __len__(self):
            return len(cur)

        def __getitem__(self, i):
            return {"x": torch.tensor([float(i)]), "labels": torch.tensor(0)}

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w, self.seen = torch.nn.Parameter(torch.zeros(1)), []

        def forward(self, x, labels=None):
            self.seen.append(x[:, 0].long().tolist())
            return {"loss": (self.w * x[:, 0]).mean() * 0 + self.w.sum()}

    sampler = CurriculumRunBatchSampler(cur, 16, 3)
    callback = CurriculumCallback(cur, sampler)
    model = Recorder()
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=16,
                             use_cpu=True, report_to=[], save_strategy="no", logging_strategy="no",
                             disable_tqdm=True, remove_unused_columns=False, lr_scheduler_type="linear")
    trainer = CurriculumTrainer(model=model, args=args, train_dataset=Indices(), callbacks=[callback],
                                curriculum_sampler=sampler)
    trainer.train()
    assert trainer.state.global_step == trainer.state.max_steps == sum(counts) == len(model.seen)
    assert model.seen == [b.tolist() for e in range(3) for b in cur.batches(e, 16)]  # every item, in order
    assert [r["order_digest"] for r in callback.history] == [order_digest(cur.indices(e, 16)) for e in range(3)]
    assert [r["end_step"] for r in callback.history] == np.cumsum(counts).tolist()
    assert trainer.lr_scheduler.get_last_lr()[0] == 0.0  # the linear schedule ends with the curriculum's last step


def test_hf_trainer_refuses_adaptive_curricula_and_per_epoch_trainer_settings(tiny_run, tmp_path):
    pytest.importorskip("transformers")
    from transformers import TrainingArguments

    from discl.integrations.hf import CurriculumRunBatchSampler, CurriculumTrainer

    cfg, train, spectrum, cur = _run_curriculum(tiny_run, epochs=2)
    sampler = CurriculumRunBatchSampler(cur, 64, 2)
    assert len(sampler) == sum(len(cur.batches(e, 64)) for e in range(2))
    assert [b for b in sampler] == [b.tolist() for e in range(2) for b in cur.batches(e, 64)]
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=2, use_cpu=True, report_to=[])
    with pytest.raises(BadInputError, match="num_train_epochs=1"):
        CurriculumTrainer(model=torch.nn.Linear(2, 2), args=args, train_dataset=cur.dataset(train, spectrum),
                          curriculum_sampler=sampler)
    with pytest.raises(BadInputError, match="CurriculumRunBatchSampler"):
        CurriculumTrainer(model=torch.nn.Linear(2, 2), args=args, curriculum_sampler=cur.sampler(64))
    tf = lambda im: torch.zeros(1, 28, 28)  # noqa: E731
    _, _, _, adaptive = _run_curriculum(tiny_run, epochs=2, strategy="adaptive", levels=[0.0, 0.5, 1.0],
                                        real_dataset=[(torch.zeros(1, 28, 28), 0)] * len(train), transform=tf)
    with pytest.raises(BadInputError, match="own loop"):
        CurriculumRunBatchSampler(adaptive, 64, 2)


def test_lightning_example_runs(tiny_run):
    pytest.importorskip("lightning")
    out = json.loads(_example("train_lightning.py", str(tiny_run), "--epochs", "1").strip().splitlines()[-1])
    assert out["steps"] > 0 and 0.0 <= out["test_top1"] <= 1.0
