"""A user's own data changes between runs (issue 23): never a stale number, and ``--force`` forces.

A tiny long-tailed CSV dataset and a run without synthetic images (``ce`` and ``real_only``: mining
and training, a few seconds); what happens to the stages when the images behind the config change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from discl.config import load_config
from discl.evaluation.results import collect_results
from discl.pipeline import run

COUNTS = {"ankle_boot": 12, "bag": 8, "heron": 3}  # heron is the tail (frequency_below 5)


def _png(path: Path, colour, rng) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    px = np.clip(np.array(colour) + rng.normal(0, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(px, "RGB").save(path)


@pytest.fixture
def user(tmp_path):
    """(config, run folder, data folder): RGB PNGs listed in data.csv with path,label,split."""
    rng = np.random.default_rng(0)
    colours = {"ankle_boot": (200, 40, 40), "bag": (40, 200, 40), "heron": (40, 40, 200)}
    rows = ["path,label,split"]
    data = tmp_path / "data"
    for c, n in COUNTS.items():
        for split, k in (("train", n), ("val", 2), ("test", 3)):
            for i in range(k):
                _png(data / f"img/{c}-{split}-{i}.png", colours[c], rng)
                rows.append(f"img/{c}-{split}-{i}.png,{c},{split}")
    (data / "data.csv").write_text("\n".join(rows) + "\n")
    cfg = load_config(Path("configs/fmnist-lt.yaml"), [
        "data.task=csv", f"data.root={data / 'data.csv'}", "data.image_size=8", "data.channels=3",
        "data.many_threshold=10", "data.few_threshold=5", "mining.criteria=[class_frequency]",
        "mining.frequency_below=5", "training.model=resnet8", "training.epochs=1", "training.batch_size=16",
        "methods=[ce, real_only]", "seeds=[0]"])
    return cfg, tmp_path / "run", data


def _ran(status: dict[str, str]) -> set[str]:
    return {k for k, v in status.items() if v == "ran" and k != "report"}


def test_appended_images_rerun_mining_and_training_and_old_results_are_stale(user):
    cfg, out, data = user
    assert _ran(run(cfg, out)) == {"mine", "train-ce-s0", "train-real_only-s0"}
    assert _ran(run(cfg, out)) == set()
    rng = np.random.default_rng(1)
    rows = []
    for i in range(3, 10):  # the rarest class grows past the frequency threshold
        _png(data / f"img/heron-train-{i}.png", (40, 40, 200), rng)
        rows.append(f"img/heron-train-{i}.png,heron,train")
    (data / "data.csv").write_text((data / "data.csv").read_text() + "\n".join(rows) + "\n")
    # before the rerun, the finished runs are of other data: not reported as current
    assert set(collect_results(cfg, out)["status"]) == {"stale"}
    assert _ran(run(cfg, out)) == {"mine", "train-ce-s0", "train-real_only-s0"}
    summary = json.loads((out / "mining" / "summary.json").read_text())
    hard = (out / "mining" / "hard.csv").read_text()
    assert "heron" not in hard, summary  # 10 training images now: no longer below the threshold
    assert set(collect_results(cfg, out)["status"]) == {"ok"}


def test_force_reruns_every_stage(user):
    cfg, out, _ = user
    run(cfg, out)
    outputs = [out / "train" / "ce-s0" / "metrics.json", out / "train" / "real_only-s0" / "metrics.json",
               out / "mining" / "hard.csv"]
    stamps = {p: p.stat().st_mtime_ns for p in outputs}
    assert _ran(run(cfg, out, force=True)) == {"mine", "train-ce-s0", "train-real_only-s0"}
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items()), "--force must redo the work, not only say so"
    assert set(collect_results(cfg, out)["status"]) == {"ok"}


def test_a_deleted_stage_folder_is_not_complete(user):
    import shutil

    cfg, out, _ = user
    run(cfg, out)
    shutil.rmtree(out / "mining")  # `rm -r RUN/mining`: mined again, not "complete, skipped" then "missing hard.csv"
    status = run(cfg, out)
    assert status["mine"] == "ran" and (out / "mining" / "hard.csv").is_file()
    assert _ran(status) == {"mine"}  # the same data: the same hard.csv, so the training runs stay valid


def test_the_cli_summary_lists_only_the_stages_that_ran(user, capsys):
    from discl.cli import main

    cfg, out, _ = user
    cfg_path = out.parent / "user.yaml"
    out.mkdir()
    from discl.config import save_config

    save_config(cfg, cfg_path)
    assert main(["run", str(cfg_path), "--run-dir", str(out)]) == 0
    assert main(["run", str(cfg_path), "--run-dir", str(out)]) == 0
    assert "nothing to redo" in capsys.readouterr().out
    stamp = (out / "train" / "ce-s0" / "metrics.json").stat().st_mtime_ns
    assert main(["run", str(cfg_path), "--run-dir", str(out), "--force"]) == 0
    assert "stages run: mine, train-ce-s0, train-real_only-s0" in capsys.readouterr().out
    assert (out / "train" / "ce-s0" / "metrics.json").stat().st_mtime_ns != stamp  # and they did run


def test_a_stage_remade_by_its_own_command_with_other_settings_is_run_again(user):
    """`discl mine CONFIG key=value` (or `discl train ...`) between two `discl run CONFIG`: the run's
    next pass must not take the remade stage as its own (issue 23's trial: it trained on it, `ok`)."""
    import dataclasses

    from discl.mining.runner import mine
    from discl.pipeline import train_method

    cfg, out, _ = user
    run(cfg, out)
    hard = (out / "mining" / "hard.csv").read_text()
    other = dataclasses.replace(cfg, mining=dataclasses.replace(cfg.mining, frequency_below=10))
    mine(other, out)  # what `discl mine CONFIG mining.frequency_below=10` does
    assert (out / "mining" / "hard.csv").read_text() != hard
    assert _ran(run(cfg, out)) == {"mine"}  # mined again for this config: the same hard.csv, training stays valid
    assert (out / "mining" / "hard.csv").read_text() == hard
    longer = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, epochs=2))
    train_method(longer, out, "ce", 0)  # `discl baseline CONFIG training.epochs=2`
    assert _ran(run(cfg, out)) >= {"train-ce-s0"}  # not "complete, skipped" and then stale forever
    assert set(collect_results(cfg, out)["status"]) == {"ok"}
