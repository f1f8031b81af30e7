"""SIGKILL harness: kill `discl generate`, `discl filter` and `discl train` at random points, rerun,
and check that nothing is lost, duplicated or corrupted and that the final outputs equal those of an
uninterrupted run (same bytes for images, same final weights for training).

The default run kills each stage a few times; `make test-slow` runs >= 20 kills per stage.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, TINY, discl
from PIL import Image
from safetensors.torch import load_file

CFG = ["--config", "configs/fmnist-lt.yaml"]
# a slightly longer generation and training than TINY so that kills land mid-work
HARNESS = [*TINY, "generation.seeds_per_level=3", "training.epochs=4"]


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-m", "discl", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_when(args: list[str], progress: Callable[[], int], target: int, timeout: float = 300) -> bool:
    """Start the command, SIGKILL it once ``progress()`` reaches ``target``; True if it was killed."""
    proc = _start(args)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if progress() >= target:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), f"{args} failed: {err}"
    return False


def _count(folder: Path, pattern: str) -> int:
    return sum(1 for _ in folder.rglob(pattern)) if folder.exists() else 0


def _lines(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except OSError:
        return 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of mine + generate + filter + train (CE baseline) at the harness size."""
    run = tmp_path_factory.mktemp("ref") / "run"
    common = [*CFG, "--run-dir", str(run), *HARNESS]
    for cmd in (["mine"], ["generate"], ["filter"], ["baseline", "--seeds", "0"]):
        discl(*cmd, *common)
    return run


def _fresh_run(tmp_path: Path, reference: Path, upto: str) -> Path:
    """A new run folder holding the reference's artifacts up to (not including) stage ``upto``."""
    import shutil

    run = tmp_path / "run"
    run.mkdir(parents=True)
    shutil.copytree(reference / "mining", run / "mining")
    if upto in ("filter", "train"):
        shutil.copytree(reference / "spectrum", run / "spectrum")
    if upto == "train":
        shutil.copytree(reference / "filter", run / "filter")
    return run


def _check_spectrum(run: Path, reference: Path) -> None:
    meta = pd.read_csv(run / "spectrum" / "metadata.csv")
    ref = pd.read_csv(reference / "spectrum" / "metadata.csv")
    assert not meta.duplicated(["sample_id", "lam", "k"]).any(), "a job appears twice in the manifest"
    assert len(meta) == len(ref)
    pd.testing.assert_frame_equal(meta.sort_values("file_name").reset_index(drop=True),
                                  ref.sort_values("file_name").reset_index(drop=True))
    on_disk = {p.relative_to(run / "spectrum").as_posix() for p in (run / "spectrum").rglob("*.png")}
    assert on_disk >= set(meta["file_name"]), "a manifest row has no image"
    extra = on_disk - set(meta["file_name"]) - {p.relative_to(reference / "spectrum").as_posix()
                                                 for p in (reference / "spectrum").rglob("*.png")}
    assert not extra, f"images outside the manifest: {sorted(extra)[:3]}"
    assert not list((run / "spectrum").rglob("*.tmp")), "temp files left behind"
    for fn in meta["file_name"]:
        with Image.open(run / "spectrum" / fn) as im:
            im.load()
        assert (run / "spectrum" / fn).read_bytes() == (reference / "spectrum" / fn).read_bytes(), fn


def _trials(n: int, kill: Callable[[int], bool], finish: Callable[[], None], seed: int) -> int:
    rng = random.Random(seed)
    kills = 0
    for _ in range(n):
        if kill(rng.randint(1, 10_000)):
            kills += 1
        else:
            break
    finish()
    return kills


def _generate_case(tmp_path: Path, reference: Path, trials: int, seed: int = 0) -> int:
    run = _fresh_run(tmp_path, reference, "generate")
    total = len(pd.read_csv(reference / "spectrum" / "metadata.csv"))
    args = ["generate", *CFG, "--run-dir", str(run), *HARNESS]
    progress = {"done": 0}

    def kill(r: int) -> bool:
        target = progress["done"] + 1 + r % max(1, total // 4)
        killed = kill_when(args, lambda: _count(run / "spectrum", "*.png"), min(target, total))
        progress["done"] = _count(run / "spectrum", "*.png")
        return killed

    kills = _trials(trials, kill, lambda: discl(*args), seed=1 + seed)
    _check_spectrum(run, reference)
    return kills


def _filter_case(tmp_path: Path, reference: Path, trials: int, seed: int = 0) -> int:
    run = _fresh_run(tmp_path, reference, "filter")
    args = ["filter", *CFG, "--run-dir", str(run), *HARNESS]
    rng = random.Random(2 + seed)

    def kill(r: int) -> bool:
        # kill after a random delay: filtering is short, so time is the finer-grained trigger
        proc = _start(args)
        time.sleep(rng.uniform(0.5, 6.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        return False

    kills = _trials(trials, kill, lambda: discl(*args), seed=2 + seed)
    got = pd.read_csv(run / "filter" / "manifest.csv")
    ref = pd.read_csv(reference / "filter" / "manifest.csv")
    pd.testing.assert_frame_equal(got, ref)
    assert not list((run / "filter").rglob("*.tmp"))
    return kills


def _train_case(tmp_path: Path, reference: Path, trials: int, seed: int = 0) -> int:
    run = _fresh_run(tmp_path, reference, "train")
    args = ["baseline", *CFG, "--run-dir", str(run), *HARNESS]  # HARNESS sets seeds=[0]
    log = run / "train" / "ce-s0" / "log.csv"

    def kill(r: int) -> bool:
        target = _lines(log) + 1  # the header, then one line per finished epoch: kill during the next epoch
        return kill_when(args, lambda: _lines(log), target + (r % 2))

    kills = _trials(trials, kill, lambda: discl(*args), seed=3 + seed)
    a = load_file(run / "train" / "ce-s0" / "best.safetensors")
    b = load_file(reference / "train" / "ce-s0" / "best.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), f"weights differ after resume: {k}"
    def untimed(path: Path) -> pd.DataFrame:  # wall-clock columns differ between runs by nature
        frame = pd.read_csv(path)
        return frame.drop(columns=[c for c in frame.columns if c.endswith("_s")])

    pd.testing.assert_frame_equal(untimed(log), untimed(reference / "train" / "ce-s0" / "log.csv"))
    return kills


def kill_series(case, tmp_path: Path, reference: Path, kills: int) -> int:
    """Run kill series on fresh copies until ``kills`` SIGKILLs have landed mid-work (each series
    ends when its stage finishes before the next trigger and checks the final outputs)."""
    total = 0
    for i in range(3 * kills):
        if total >= kills:
            break
        total += case(tmp_path / f"series{i}", reference, kills - total, seed=i)
    assert total >= kills, f"only {total} of {kills} kills landed mid-work"
    return total


def test_generate_survives_sigkill(tmp_path, reference):
    kill_series(_generate_case, tmp_path, reference, kills=2)  # 20: test_twenty_kills (slow); one more via discl run: test_pipeline_e2e


def test_filter_survives_sigkill(tmp_path, reference):
    kill_series(_filter_case, tmp_path, reference, kills=2)


def test_train_survives_sigkill(tmp_path, reference):
    kill_series(_train_case, tmp_path, reference, kills=2)


@pytest.mark.slow
@pytest.mark.parametrize("case", [_generate_case, _filter_case, _train_case], ids=["generate", "filter", "train"])
def test_twenty_kills(tmp_path, reference, case):
    kill_series(case, tmp_path, reference, kills=20)


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    """What a SIGKILL between mkstemp and rename leaves behind is cleaned by the next run."""
    from discl.artifacts import _OWNER, clean_stale_temp

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = _OWNER.rpartition("-")[0]
    stale = tmp_path / "a" / f".img.png.{host}-{dead.stdout.strip()}.x1y2.tmp"
    live = tmp_path / "a" / f".img2.png.{_OWNER}.zz9.tmp"
    other = tmp_path / ".img3.png.otherhost-1.q.tmp"
    for p in (stale, live, other):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    assert clean_stale_temp(tmp_path) == 1
    assert not stale.exists() and live.exists() and other.exists()  # a live writer / another host: kept
    os.utime(other, (0, 0))
    assert clean_stale_temp(tmp_path) == 1 and not other.exists()
