"""Model fingerprints: content digests cached by (path, size, mtime_ns), hub snapshots, config references."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import TINY

from discl import fingerprint as fpm
from discl.errors import ModelNotFoundError


@pytest.fixture(autouse=True)
def digest_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DISCL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "file-digests.json"


@pytest.fixture
def prior_copy(tmp_path) -> Path:
    from discl.generation.prior import ASSET_DIR

    return Path(shutil.copytree(ASSET_DIR, tmp_path / "prior"))


def test_folder_digest_follows_content_not_mtime(prior_copy: Path, digest_cache: Path):
    a = fpm.files_fingerprint(str(prior_copy))
    assert a["source"] == "files" and len(a["digest"]) == 16
    assert fpm.weight_files(prior_copy) == [prior_copy / "prior.safetensors", prior_copy / "prior_config.json"]
    cache = json.loads(digest_cache.read_text())
    key = str((prior_copy / "prior.safetensors").resolve())
    st = (prior_copy / "prior.safetensors").stat()
    assert cache[key]["stat"] == [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    os.utime(prior_copy / "prior.safetensors")  # touched: re-read, same digest
    assert fpm.files_fingerprint(str(prior_copy)) == a
    (prior_copy / "recipe.yaml").write_text("not a weight file\n")
    assert fpm.files_fingerprint(str(prior_copy)) == a
    w = prior_copy / "prior.safetensors"
    w.write_bytes(w.read_bytes()[:-1] + bytes([w.read_bytes()[-1] ^ 1]))
    assert fpm.files_fingerprint(str(prior_copy))["digest"] != a["digest"]


def test_cached_digest_is_not_recomputed_while_size_and_mtime_hold(prior_copy: Path, digest_cache: Path):
    w = prior_copy / "prior.safetensors"
    real = fpm.file_digests([w])[0]
    cache = json.loads(digest_cache.read_text())
    cache[str(w.resolve())]["digest"] = "sentinel"  # what the cache says is returned without reading the file
    digest_cache.write_text(json.dumps(cache))
    assert fpm.file_digests([w]) == ["sentinel"]
    os.utime(w, ns=(w.stat().st_atime_ns, w.stat().st_mtime_ns + 1))
    assert fpm.file_digests([w]) == [real]


def test_unwritable_cache_costs_time_not_correctness(prior_copy: Path, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("DISCL_CACHE_DIR", str(blocker / "sub"))  # a folder under a file: cannot be created
    assert fpm.file_digests([prior_copy / "prior.safetensors"]) == fpm.file_digests([prior_copy / "prior.safetensors"])


def test_missing_or_empty_model_paths_are_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        fpm.fingerprint(f"file:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no weight or config files"):
        fpm.fingerprint(f"file:{tmp_path / 'empty'}")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        fpm.fingerprint("hub:./not-here")


def test_hub_id_is_digested_by_name_and_records_the_cached_commit(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    fp = fpm.hub_fingerprint("org/tiny-model", cache_dir=tmp_path / "hub")
    assert fp == {"model": "org/tiny-model", "source": "hub", "commit": commit}
    assert commit in fpm.short(fp)
    uncached = fpm.hub_fingerprint("org/tiny-model", cache_dir=tmp_path / "elsewhere")
    assert uncached == {"model": "org/tiny-model", "source": "hub", "commit": ""}
    # downloading a model (uncached -> cached) must not change any stage digest
    assert fpm.fingerprints_digest({"generation": {"model": fp}}) == fpm.fingerprints_digest(
        {"generation": {"model": uncached}})
    other = fpm.hub_fingerprint("org/other-model", cache_dir=tmp_path / "hub")
    assert fpm.fingerprints_digest({"m": other}) != fpm.fingerprints_digest({"m": uncached})


def test_model_references_follow_the_config():
    from discl.config import load_config

    cfg = load_config("configs/fmnist-lt.yaml", TINY)
    assert fpm.model_references(cfg) == {"generation": {"model": "embedded-prior"},
                                         "filtering": {"model": "embedded-clip"}}
    cfg = load_config("configs/fmnist-lt.yaml", [*TINY, "generation.backend=diffusers",
                                                 "generation.model=stabilityai/sdxl", "filtering.backend=open_clip",
                                                 "filtering.model=ViT-B-32/openai",
                                                 "training.init_from=/ckpt/best.safetensors"])
    assert fpm.model_references(cfg) == {"generation": {"model": "hub:stabilityai/sdxl"},
                                         "filtering": {"model": "name:open_clip:ViT-B-32/openai"},
                                         "training": {"init_from": "file:/ckpt/best.safetensors"}}
    cfg = load_config("configs/fmnist-lt.yaml", [*TINY, "filtering.backend=open_clip",
                                                 "filtering.model=ViT-B-32//models/clip.safetensors"])
    assert fpm.model_references(cfg)["filtering"] == {"model": "file:/models/clip.safetensors"}


def test_embedded_assets_and_scorer_id_share_the_digest():
    from discl.filtering.backends.embedded import weights_digest
    from discl.filtering.embedded_clip import WEIGHTS_PATH

    fp = fpm.fingerprint("embedded-clip")
    assert fp["model"] == "embedded" and fp["source"] == "files"
    assert weights_digest() == fpm.file_digests([WEIGHTS_PATH])[0][:12]
    assert fpm.fingerprint("embedded-prior")["digest"] != fp["digest"]


def test_filter_score_cache_key_follows_a_local_folder(tmp_path):
    from discl.filtering.runner import scorer_id_for

    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "config.json").write_text('{"projection_dim": 8}')
    (folder / "model.safetensors").write_bytes(b"weights-v1")
    a = scorer_id_for("transformers", str(folder))
    assert a.startswith(f"transformers:{folder}@")
    (folder / "model.safetensors").write_bytes(b"weights-v2")
    assert scorer_id_for("transformers", str(folder)) != a
    assert scorer_id_for("transformers", "org/not-cached") == "transformers:org/not-cached"  # name only, as before


def test_a_missing_model_folder_names_the_config_key(tmp_path):
    from discl.config import load_config

    cfg = load_config("configs/fmnist-lt.yaml", [*TINY, f"generation.model={tmp_path / 'gone'}"])
    with pytest.raises(ModelNotFoundError, match=r"^generation\.model: model path .*gone does not exist"):
        fpm.model_fingerprints(cfg)
    assert "generation" not in fpm.model_fingerprints(cfg, sections={"data", "filtering"})


def test_a_folder_named_embedded_in_the_working_directory_changes_nothing(tmp_path, monkeypatch):
    before = fpm.fingerprint("embedded-prior")
    (tmp_path / "embedded").mkdir()
    (tmp_path / "embedded" / "x.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert fpm.fingerprint("embedded-prior") == before


def test_a_file_hashed_right_after_a_write_is_not_cached(tmp_path):
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"aaaa")
    first = fpm.file_digests([f])[0]
    assert str(f.resolve()) not in fpm._read_cache(fpm.cache_path())  # too fresh to trust its mtime
    f.write_bytes(b"bbbb")  # same size, possibly the same mtime tick
    assert fpm.file_digests([f])[0] != first
