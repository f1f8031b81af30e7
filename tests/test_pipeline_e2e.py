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
import pytest
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


def test_a_stage_its_own_command_finished_is_not_counted_as_run(tiny_run: Path, tmp_path: Path):
    """`discl mine` then `discl run`: mining is complete for the run's digest but the run has no marker of
    it; the run records it and says it redid nothing (it used to list mine under "stages run")."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    (copy / ".stages" / "mine.json").unlink()  # what `discl mine` leaves: mining/_done.json only
    p = discl("run", "configs/fmnist-lt.yaml", "--run-dir", str(copy), *TINY)
    assert "nothing to redo" in p.stdout and "made by its own command" in p.stderr
    assert (copy / ".stages" / "mine.json").is_file()


def test_changed_setting_reruns_what_depends_on_it():
    from discl.config import load_config
    from discl.digests import filter_digest, generate_digest, mine_digest

    def digests(cfg):
        return {"mine": mine_digest(cfg, {}, content=""), "generate": generate_digest(cfg, "h", "", {}, content=""),
                "filter": filter_digest(cfg, "s", "", {}, content="")}

    a = digests(load_config("configs/fmnist-lt.yaml", TINY))
    b = digests(load_config("configs/fmnist-lt.yaml", [*TINY, "filtering.threshold=0.61"]))
    assert a["mine"] == b["mine"] and a["generate"] == b["generate"] and a["filter"] != b["filter"]
    c = digests(load_config("configs/fmnist-lt.yaml", [*TINY, "training.epochs=7"]))
    assert a == c  # class frequency does not depend on a model
    d, e = (digests(load_config("configs/fmnist-lq.yaml", o)) for o in ([], ["mining.epochs=7"]))
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


def _mtimes(paths) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in paths}


def _flip_first_weight_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8 + int.from_bytes(data[:8], "little")] ^= 1  # lowest byte of the first weight: still a valid file
    path.write_bytes(bytes(data))


def test_weights_enter_the_stage_digests(tmp_path: Path, monkeypatch):
    """Fast check of the digests: a touched prior changes none, a changed byte changes generate (the
    filter and training follow through the spectrum's content, see tests/test_stage_digests.py)."""
    import shutil

    from discl.config import load_config
    from discl.evaluation.results import stage_digest
    from discl.fingerprint import model_fingerprints
    from discl.generation.prior import ASSET_DIR
    from discl.generation.runner import spectrum_digest

    monkeypatch.setenv("DISCL_CACHE_DIR", str(tmp_path / "cache"))
    prior = Path(shutil.copytree(ASSET_DIR, tmp_path / "prior"))
    cfg = load_config("configs/fmnist-lt.yaml", [*TINY, f"generation.model={prior}"])

    def digests():
        fps = model_fingerprints(cfg)
        return {k: stage_digest(cfg, k, fps, tmp_path) for k in ("mine", "generate", "filter")} | {
            "spectrum": spectrum_digest(cfg, tmp_path)}

    a = digests()
    os.utime(prior / "prior.safetensors")
    assert digests() == a
    _flip_first_weight_byte(prior / "prior.safetensors")
    b = digests()
    assert a["mine"] == b["mine"] and a["filter"] == b["filter"]
    assert a["generate"] != b["generate"] and a["spectrum"] != b["spectrum"] == b["generate"]


@pytest.mark.slow
def test_new_weights_behind_the_same_config_rerun_generate_filter_and_train(tmp_path: Path, monkeypatch):
    """generation.model points at a copy of the shipped prior: touching it redoes nothing, a changed
    byte of its weights regenerates, refilters and retrains (the config is the same all along).
    About 20 s on 2 idle cores (two small runs with training), hence slow."""
    import shutil

    from discl.config import load_config
    from discl.generation.prior import ASSET_DIR
    from discl.pipeline import run

    monkeypatch.setenv("DISCL_CACHE_DIR", str(tmp_path / "cache"))
    prior = Path(shutil.copytree(ASSET_DIR, tmp_path / "prior"))
    small = ["methods=[discl]", "generation.levels=[0.5]", "generation.seeds_per_level=1", "generation.steps=4",
             "curriculum.levels=[0.5]", "curriculum.stages=[0.5, 0.5]", "training.epochs=2", "data.image_size=12"]
    cfg = load_config("configs/fmnist-lt.yaml", [*TINY, *small, f"generation.model={prior}"])
    out = tmp_path / "run"
    assert set(run(cfg, out).values()) == {"ran"}
    marker = json.loads((out / ".stages" / "filter.json").read_text())
    assert marker["models"]["generation"]["model"]["model"] == str(prior)
    assert "generation.model: " + str(prior) in (out / "report.md").read_text()

    def outputs():
        return _mtimes([*(out / "spectrum").rglob("*.png"), *(out / ".stages").glob("*.json"),
                        out / "filter" / "manifest.csv", out / "train" / "discl-s0" / "metrics.json"])

    before = outputs()
    os.utime(prior / "prior.safetensors")  # new mtime, same bytes
    status = run(cfg, out)
    assert {k: v for k, v in status.items() if k != "report"} == dict.fromkeys(
        ["mine", "generate", "filter", "train-ce-s0", "train-discl-s0"], "skipped")  # ce: discl's init_from baseline
    assert outputs() == before

    _flip_first_weight_byte(prior / "prior.safetensors")
    status = run(cfg, out)
    assert status["mine"] == "skipped"
    assert status["generate"] == status["filter"] == status["train-discl-s0"] == "ran"
    after = outputs()
    rewritten = {p for p in before if after.get(p) != before[p]}
    assert {p for p in before if p.suffix == ".png"} <= rewritten  # every image made again, none reused
    assert out / "filter" / "manifest.csv" in rewritten and out / "train" / "discl-s0" / "metrics.json" in rewritten
    assert json.loads((out / ".stages" / "generate.json").read_text())["models"] != marker["models"]["generation"]

    status = run(cfg, out)  # and the new weights are now the finished state
    assert {k for k, v in status.items() if v == "ran"} == {"report"}
    # a stage its own command finished (`discl mine` writes mining/_done.json, not the run's marker) is
    # recorded as this run's and counted as skipped: "stages run" lists only work done
    (out / ".stages" / "mine.json").unlink()
    status = run(cfg, out)
    assert {k for k, v in status.items() if v == "ran"} == {"report"} and status["mine"] == "skipped"
    assert (out / ".stages" / "mine.json").is_file()


def test_report_reuses_distances_until_the_filter_changes(tiny_run: Path, tmp_path: Path):
    """Rewriting the report runs no model while the filter output, the CLIP and the settings are the same."""
    import shutil

    import torch

    from discl.config import load_config
    from discl.evaluation.report import write_report

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    cfg = load_config(run / "config.yaml")
    key_path, csv = run / "report" / "distances.key.json", run / "report" / "distances.csv"
    key = json.loads(key_path.read_text())
    assert key["clip"]["model"]["source"] == "files" and key["settings"]["max_reference"] == 1000
    assert key["filter_stage"] == json.loads((run / ".stages" / "filter.json").read_text())["digest"]
    forwards = []
    hook = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: forwards.append(type(m).__name__))
    try:
        table = csv.read_bytes()
        write_report(cfg, run)
        assert forwards == [] and csv.read_bytes() == table and json.loads(key_path.read_text()) == key
        changed = load_config(run / "config.yaml", ["filtering.threshold=0.61"])
        write_report(changed, run)
        assert forwards, "a changed filter must recompute the distances"
        assert json.loads(key_path.read_text())["filter_stage"] != key["filter_stage"]
        write_report(cfg, run)  # back to the run's own config: its key again
        forwards.clear()  # the reference images: another test subset is another reference (issue 23)
        write_report(load_config(run / "config.yaml", ["data.test_limit=100"]), run)
        assert forwards, "another data.test_limit must recompute the distances"
        assert json.loads(key_path.read_text())["filter_stage"] == key["filter_stage"]  # the filter did not change
    finally:
        hook.remove()


def test_a_training_marker_depends_only_on_what_its_method_reads(tmp_path: Path):
    from discl.config import load_config
    from discl.evaluation.results import train_run_digest

    def train_config_digest(cfg, method, seed):
        return train_run_digest(cfg, tmp_path, method, seed, {})

    cfg = load_config("configs/fmnist-lt.yaml", TINY)
    other_strategy = load_config("configs/fmnist-lt.yaml", [*TINY, "curriculum.strategy=adaptive"])
    other_option = load_config("configs/fmnist-lt.yaml", [*TINY, "curriculum.class_min_holdout=9"])
    # `mixed` and `ce` read neither the configured strategy nor adaptive_class's option
    for method in ("mixed", "single@0.5", "ce"):
        assert train_config_digest(cfg, method, 0) == train_config_digest(other_strategy, method, 0)
        assert train_config_digest(cfg, method, 0) == train_config_digest(other_option, method, 0)
    # `discl` follows the configured strategy; adaptive_class follows its own option
    assert train_config_digest(cfg, "discl", 0) != train_config_digest(other_strategy, "discl", 0)
    assert train_config_digest(cfg, "adaptive_class", 0) != train_config_digest(other_option, "adaptive_class", 0)
    assert train_config_digest(cfg, "single@0.5", 0) != train_config_digest(cfg, "single@0.3", 0)
    assert train_config_digest(cfg, "mixed", 0) != train_config_digest(cfg, "mixed", 1)


def test_a_rerun_names_the_config_keys_changed_since_the_folders_last_run(tmp_path: Path, caplog):
    import logging

    from discl.config import load_config, save_config
    from discl.configtools import config_changes
    from discl.pipeline import _log_config_changes

    assert config_changes({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 1, "c": 5}, "e": 4}) == [
        ("a.c", 2, 5), ("e", None, 4), ("d", 3, None)]
    before = load_config("configs/fmnist-lt.yaml", TINY)
    save_config(before, tmp_path / "config.yaml")
    caplog.set_level(logging.INFO, logger="discl.pipeline")
    _log_config_changes(tmp_path / "config.yaml", before)
    assert "config changed" not in caplog.text  # the same config: nothing said
    _log_config_changes(tmp_path / "config.yaml", load_config("configs/fmnist-lt.yaml", [*TINY, "filtering.threshold=0.61"]))
    assert f"filtering.threshold: {before.filtering.threshold!r} -> 0.61" in caplog.text
    caplog.clear()
    _log_config_changes(tmp_path / "config.yaml", load_config("configs/fmnist-lt.yaml", [
        *TINY, "data.class_names=[" + ",".join(f"class{i:04d}" for i in range(1000)) + "]"]))
    assert "data.class_names: [] -> ['class0000'," in caplog.text and len(caplog.text) < 600  # shortened
