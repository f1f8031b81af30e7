"""Safety (issue 7, items 5-6): no unsafe deserialisation or code execution in the package source,
output paths confined to the run folder, and clear errors on read-only or full disks that leave the
finished files intact."""

from __future__ import annotations

import ast
import contextlib
import errno
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from discl.artifacts import (
    ArtifactError,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_text,
    confine,
    write_table,
)

PACKAGE = Path(__file__).resolve().parent.parent / "discl"
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}


def scan(source: str, filename: str = "<src>") -> list[str]:
    """Unsafe constructs in Python ``source`` (one line per finding)."""
    found = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: imports {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"{where}: imports from {node.module}")
        elif isinstance(node, ast.Call):
            f = node.func
            kw = {k.arg: k.value for k in node.keywords}
            name = f.id if isinstance(f, ast.Name) else None
            attr = f.attr if isinstance(f, ast.Attribute) else None
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
            if name in ("eval", "exec", "compile", "__import__"):
                found.append(f"{where}: calls {name}()")
            if name == "hash":
                found.append(f"{where}: calls the salted builtin hash() (use discl.seeding.derive_seed)")
            if owner == "torch" and attr == "load":
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    found.append(f"{where}: torch.load without weights_only=True")
            if owner in ("np", "numpy") and attr == "load":
                ap = kw.get("allow_pickle")
                if isinstance(ap, ast.Constant) and ap.value is True:
                    found.append(f"{where}: np.load(allow_pickle=True)")
            if attr in ("read_pickle", "to_pickle"):
                found.append(f"{where}: pandas {attr}")
            if owner == "yaml" and attr in ("load", "load_all", "unsafe_load", "full_load", "full_load_all"):
                found.append(f"{where}: yaml.{attr} (use yaml.safe_load)")
            trc = kw.get("trust_remote_code")
            if isinstance(trc, ast.Constant) and trc.value is True:
                found.append(f"{where}: trust_remote_code=True")
    return found


def test_scanner_finds_what_it_looks_for():
    bad = """
import pickle
from dill import loads
import torch, yaml, numpy as np
torch.load("x.pt")
torch.load("x.pt", weights_only=False)
np.load("a.npy", allow_pickle=True)
yaml.load(open("c.yaml"))
eval("1+1")
exec("x = 1")
seed = hash(("a", 1))
m = AutoModel.from_pretrained("x", trust_remote_code=True)
"""
    found = scan(bad)
    assert len(found) == 10, found
    ok = """
import torch, yaml
torch.load("x.pt", weights_only=True, map_location="cpu")
yaml.safe_load("a: 1")
model.eval()
m = AutoModel.from_pretrained("x", trust_remote_code=cfg.trust_remote_code)
"""
    assert scan(ok) == []


def test_package_source_has_no_unsafe_constructs():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    found = [f for path in files for f in scan(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))]
    assert found == [], "\n".join(found)


def test_no_pickle_files_shipped():
    suspicious = [p for p in PACKAGE.rglob("*") if p.suffix in (".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib")]
    assert suspicious == []


# -- path confinement --------------------------------------------------------------------------


def test_confine_refuses_escapes(tmp_path):
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    assert confine(run, "sub/a.png") == (run / "sub" / "a.png").resolve()
    assert confine(run, "sub/../b.png") == (run / "b.png").resolve()
    for bad in ("../outside.png", "sub/../../outside.png", "/etc/passwd", str(tmp_path / "x")):
        with pytest.raises(ArtifactError, match="escapes|must be relative"):
            confine(run, bad)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (run / "link").symlink_to(scratch)  # a sub-folder on other storage, put there by the user: followed
    assert confine(run, "link/a.png") == scratch.resolve() / "a.png"
    with pytest.raises(ArtifactError, match="escapes"):
        confine(run, "link/../../outside.png")  # decided on the text, whatever the link points to


# -- disks -------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "64k"):
    """A real tiny filesystem (needs root with mount rights; the test skips otherwise)."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_no_space_left_gives_a_clear_error():
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    with pytest.raises(ArtifactError, match="no space left on device while writing /dev/full") as info:
        append_jsonl(Path("/dev/full"), [{"a": 1}])
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC


def test_full_disk_keeps_finished_files(tmp_path):
    with small_tmpfs(tmp_path / "fs") as fs:
        run = fs / "run"
        write_table(run / "manifest.csv", pd.DataFrame({"a": [1, 2, 3]}))
        before = (run / "manifest.csv").read_bytes()
        with pytest.raises(ArtifactError, match="no space left on device while writing .*manifest.csv"):
            atomic_write_bytes(run / "manifest.csv", b"x" * 200_000)  # larger than the whole filesystem
        assert (run / "manifest.csv").read_bytes() == before
        assert sorted(p.name for p in run.iterdir()) == ["manifest.csv"]  # no temp file left behind


def test_read_only_folder_gives_a_clear_error(tmp_path):
    out = tmp_path / "out"
    atomic_write_text(out / "done.txt", "finished\n")
    if os.geteuid() == 0:  # root ignores permission bits: use a read-only filesystem instead
        with small_tmpfs(tmp_path / "fs") as fs:
            atomic_write_text(fs / "done.txt", "finished\n")
            subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
            with pytest.raises(ArtifactError, match="read-only or not writable"):
                atomic_write_text(fs / "new.txt", "x")
            with pytest.raises(ArtifactError, match="read-only or not writable"):
                atomic_write_text(fs / "done.txt", "overwritten")
            assert (fs / "done.txt").read_text() == "finished\n"
        return
    out.chmod(0o500)
    try:
        with pytest.raises(ArtifactError, match="read-only or not writable"):
            atomic_write_text(out / "new.txt", "x")
        assert (out / "done.txt").read_text() == "finished\n"
    finally:
        out.chmod(0o700)


def test_file_where_a_folder_is_expected(tmp_path):
    (tmp_path / "run").write_text("I am a file")
    with pytest.raises(ArtifactError, match=r"cannot write .*run/mining/hard\.csv"):
        atomic_write_text(tmp_path / "run" / "mining" / "hard.csv", "x")
    assert (tmp_path / "run").read_text() == "I am a file"
