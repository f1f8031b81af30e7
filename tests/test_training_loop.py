"""The trainer: stage-data composition, exact resume after a kill, and a 2-process CPU run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from discl.curriculum.base import Stage
from discl.curriculum.config import CurriculumConfig
from discl.curriculum.stage_data import plan_stage_epoch, select_holdout, tail_classes
from discl.curriculum.testing import head_tail_pool_meta
from discl.training.checkpoint import load_weights
from discl.training.config import TrainConfig
from discl.training.loop import TensorData, fit
from discl.training.models import create_model

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def test_stage_epoch_composition_follows_the_tail_quota():
    meta, cfg = head_tail_pool_meta(), CurriculumConfig(real_fraction=0.3)
    plan = plan_stage_epoch(meta, Stage((0.1,)), epoch=0, seed=0, cfg=cfg)
    idx, info = plan.indices, plan.info
    sel = meta.iloc[idx]
    # head: 30% of the 90 non-hard per class (108 in all) + the 40 hard + their 40 variants at 0.1
    assert info["n_real_sampled"] == 108 and info["n_real_hard"] == 40
    head = sel[sel.label < 4]
    assert (head.kind == "synthetic").sum() == 40 and set(head[head.kind == "synthetic"].lam) == {0.1}
    quota = round((108 + 40 + 40) / 4)
    assert info["tail_quota"] == quota == 47
    for c in (4, 5):  # all 5 real images, then 30 synthetic (all there are), then oversampled real
        rows = sel[sel.label == c]
        assert len(rows) == quota
        assert (rows.kind == "synthetic").sum() == 30 and set(rows[rows.kind == "synthetic"].lam) == {0.1}
        assert (rows.kind == "real").sum() == 17
    assert info["n_synthetic"] == 100 and info["synthetic_by_level"] == {"0.1": 100}
    # a fresh real fraction each epoch, the same for the same (seed, epoch)
    again = plan_stage_epoch(meta, Stage((0.1,)), 0, 0, cfg).indices
    other = plan_stage_epoch(meta, Stage((0.1,)), 1, 0, cfg).indices
    assert np.array_equal(idx, again) and not np.array_equal(np.sort(idx), np.sort(other))
    # real only: the quota is kept by oversampling the real tail images
    real = plan_stage_epoch(meta, Stage(), 3, 0, cfg)
    rsel = meta.iloc[real.indices]
    assert (rsel.kind == "synthetic").sum() == 0
    assert all((rsel.label == c).sum() == real.info["tail_quota"] for c in (4, 5))
    # a per-class cap on synthetic images
    capped = plan_stage_epoch(meta, Stage((0.1, 0.5)), 0, 0, CurriculumConfig(real_fraction=0.3, synthetic_cap_per_class=3))
    csel = meta.iloc[capped.indices]
    assert csel[csel.kind == "synthetic"].groupby("label").size().max() <= 3
    # without the quota: every hard variant at the level, no oversampling
    free = plan_stage_epoch(meta, Stage((0.5,)), 0, 0, CurriculumConfig(real_fraction=1.0, tail_quota=False))
    assert free.info["n_synthetic"] == 40 + 60 and free.info["n_real"] == 410 and free.info["n_tail_oversampled"] == 0


def test_holdout_and_tail_classes():
    hard = pd.DataFrame({"sample_id": [f"s{i}" for i in range(10)], "label": [0] * 6 + [1] * 3 + [2]})
    held = select_holdout(hard, 4, seed=0)
    assert held == select_holdout(hard, 4, seed=0) and held != select_holdout(hard, 4, seed=1)
    labels = hard.set_index("sample_id").loc[held, "label"].tolist()
    assert labels.count(0) == 4 and labels.count(1) == 2 and labels.count(2) == 0  # one hard image stays per class
    assert list(tail_classes(np.array([0] * 100 + [1] * 5), np.array([0] * 10 + [1] * 5), 2, 0.5)) == [1]


TRAIN_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from pathlib import Path
    from discl.training.config import TrainConfig
    from discl.training.loop import TensorData, fit
    from discl.training.models import create_model
    out, epochs = Path(sys.argv[1]), int(sys.argv[2])
    g = torch.Generator().manual_seed(0)
    y = torch.arange(600) % 3
    x = (torch.rand(600, 1, 16, 16, generator=g) * 80).to(torch.uint8)
    for c in range(3):
        x[y == c, :, 5 * c:5 * c + 4] = 240
    cfg = TrainConfig(model="resnet8", epochs=epochs, batch_size=40, lr=2e-3, warmup_steps=5)
    model = create_model("resnet8", 3, 1, 16, seed=0)
    res = fit(model, TensorData(x, y), TensorData(x[:90], y[:90]), cfg, num_classes=3, out_dir=out, seed=0,
              header={"model": "resnet8"}, progress=False)
    # one write per line: with PYTHONUNBUFFERED a multi-part print interleaves between the two ranks
    sys.stdout.write(f"DONE {res.history[-1]['train_seen']} {len(res.history)}\\n")
""")


def _weights(path):
    sd, _ = load_weights(path)
    return sd


def test_resume_after_sigkill_gives_identical_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run([PY, str(script), str(ref), "5"], check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.Popen([PY, str(script), str(cut), "5"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # kill once epoch 2 is checkpointed, mid epoch 3
        log = cut / "log.jsonl"
        if log.is_file() and len(log.read_text().splitlines()) >= 2:
            time.sleep(0.3)
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= len((cut / "log.jsonl").read_text().splitlines()) < 5, "killed mid-training"
    done = subprocess.run([PY, str(script), str(cut), "5"], check=True, env=env, capture_output=True, text=True, timeout=300)
    assert "DONE" in done.stdout
    a, b = _weights(ref / "checkpoint.safetensors"), _weights(cut / "checkpoint.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert pd.read_csv(ref / "log.csv")["train_loss"].tolist() == pd.read_csv(cut / "log.csv")["train_loss"].tolist()
    assert (cut / "best.safetensors").is_file() and json.loads((cut / "best.json").read_text())["select_on"] == "val_accuracy"


def test_two_process_cpu_run_matches_sample_counts(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    torchrun = Path(PY).with_name("torchrun")
    out = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script),
                          str(tmp_path / "ddp"), "2"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # 600 items in global batches of 40 (20 per process): 15 steps, every item seen once per epoch
    assert out.stdout.count("DONE 600 2") == 2
    log = pd.read_csv(tmp_path / "ddp" / "log.csv")
    assert log["train_seen"].tolist() == [600, 600] and log["step"].tolist() == [15, 30]


def test_the_world_size_is_logged_and_a_one_process_cpu_launch_is_named(caplog, monkeypatch):
    """``accelerate launch --num_processes 2 --cpu`` starts one process: the start of training says how
    many processes train, and (with the variable that launch sets) how to get several on CPUs."""
    torch.set_num_threads(1)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    x, y = torch.zeros(8, 1, 8, 8, dtype=torch.uint8), torch.arange(8) % 2
    cfg = TrainConfig(model="resnet8", epochs=1, batch_size=4, augment=False)
    with caplog.at_level("INFO", logger="discl.training.loop"):
        fit(create_model("resnet8", 2, 1, 8, seed=0), TensorData(x, y), None, cfg, num_classes=2, seed=0,
            progress=False)
    text = caplog.text
    assert "training on 1 process(es) (world size 1, ranks 0..0" in text and "global batch 4 = 4 per process" in text
    assert "use torchrun --nproc_per_node N" in text
