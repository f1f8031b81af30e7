"""End to end through the CLI: every stage on the embedded task at a tiny size, rerun, kill + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from conftest import ROOT, TINY, discl
from PIL import Image


def _spectrum_bytes(run: Path) -> dict[str, bytes]:
    meta = pd.read_csv(run / "spectrum" / "metadata.csv")
    return {fn: (run / "spectrum" / fn).read_bytes() for fn in meta["file_name"]}


def test_every_stage_writes_its_artifacts(tiny_run: Path):
    run = tiny_run
    out = (run / "_stdout.txt").read_text()
    assert "Report:" in out and "| ce |" in out and "| discl |" in out
    assert (run / "config.yaml").is_file()
    hard = pd.read_csv(run / "mining" / "hard.csv")
    assert len(hard) > 0 and {"sample_id", "label", "class_name"} <= set(hard.columns)
    # every hard image is from a class with fewer than 20 training images (the configured criterion)
    from discl.config import load_config
    from discl.data import build_dataset

    cfg = load_config(run / "config.yaml")
    counts = build_dataset(cfg.data).class_counts("train")
    assert all(counts[lbl] < 20 for lbl in hard["label"])
    meta = pd.read_csv(run / "spectrum" / "metadata.csv")
    assert len(meta) == len(hard) * 2 * 2  # hard x levels x seeds
    assert not meta.duplicated(["sample_id", "lam", "k"]).any()
    assert set(meta["lam"]) == {0.0, 0.5}
    for fn in meta["file_name"]:
        with Image.open(run / "spectrum" / fn) as im:
            im.load()
    filt = pd.read_csv(run / "filter" / "manifest.csv")
    assert len(filt) == len(meta) and {"keep", "sim_text", "sim_image"} <= set(filt.columns)
    for name in ("ce-s0", "discl-s0"):
        m = json.loads((run / "train" / name / "metrics.json").read_text())
        assert 0.0 <= m["test"]["top1"] <= 1.0
        assert (run / "train" / name / "log.csv").is_file()
    results = pd.read_csv(run / "results.csv")
    assert set(results["method"]) == {"ce", "discl"}
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    assert (run / "report.md").read_text().startswith("# DisCL run")


def test_second_run_does_no_work(tiny_run: Path):
    markers = {p.name: p.stat().st_mtime_ns for p in (tiny_run / ".stages").glob("*.json")}
    images = {p: p.stat().st_mtime_ns for p in (tiny_run / "spectrum").rglob("*.png")}
    p = discl("run", "configs/fmnist-lt.yaml", "--run-dir", str(tiny_run), *TINY)
    assert "nothing to redo" in p.stdout
    assert markers == {p.name: p.stat().st_mtime_ns for p in (tiny_run / ".stages").glob("*.json")}
    assert images == {p: p.stat().st_mtime_ns for p in (tiny_run / "spectrum").rglob("*.png")}


def test_changed_setting_reruns_what_depends_on_it():
    from discl.config import load_config, section_digest
    from discl.pipeline import stage_sections

    def digests(cfg):
        return {k: section_digest(cfg, *v) for k, v in stage_sections(cfg).items()}

    a = digests(load_config("configs/fmnist-lt.yaml", TINY))
    b = digests(load_config("configs/fmnist-lt.yaml", [*TINY, "filtering.threshold=0.61"]))
    assert a["mine"] == b["mine"] and a["generate"] == b["generate"]
    assert a["filter"] != b["filter"] and a["train"] != b["train"] and a["train-real"] == b["train-real"]
    c = digests(load_config("configs/fmnist-lt.yaml", [*TINY, "training.epochs=7"]))
    assert a["mine"] == c["mine"]  # class frequency does not depend on a model
    d, e = (digests(load_config("configs/fmnist-lq.yaml", o)) for o in ([], ["training.epochs=7"]))
    assert d["mine"] != e["mine"]  # out-of-fold mining does


def test_killed_mid_generation_resumes_to_the_same_bytes(tiny_run: Path, tmp_path: Path):
    run = tmp_path / "killed"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "discl", "run", "configs/fmnist-lt.yaml", "--run-dir", str(run), *TINY],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if any((run / "spectrum").rglob("*.png")) if (run / "spectrum").exists() else False:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.wait()
    assert killed, "the run finished before any image appeared; nothing was interrupted"
    assert not (run / ".stages" / "generate.json").exists()
    discl("run", "configs/fmnist-lt.yaml", "--run-dir", str(run), *TINY)
    assert _spectrum_bytes(run) == _spectrum_bytes(tiny_run)
    assert not list((run / "spectrum").rglob("*.tmp"))
