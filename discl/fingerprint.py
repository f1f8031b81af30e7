"""Which weights produced a run: fingerprints of the models a config loads.

The stage digests of ``discl run`` come from config sections; a config names its models by
reference ("embedded", a folder, a hub id), and the weights behind a reference can change while
the config does not (a retrained prior copied over the shipped one, a re-saved local folder). A
fingerprint pins the reference to the weights:

- the embedded prior / CLIP, a local file or folder: a content digest (blake2b) of its weight and
  config files (``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``, ``*.json``,
  ``*.txt`` such as vocab/merges, ``*.model`` such as sentencepiece; hidden folders skipped);
- a hub id: its name. The commit of the snapshot in the local Hugging Face cache is recorded
  (``commit``, shown in ``models.json`` and the report) but does not enter the digests
  (:func:`fingerprints_digest`): the first run of an uncached id downloads it, and a digest that
  changed with the download would redo every stage on the next plain rerun. New weights pushed
  under the same id therefore do not rerun anything; save the model to a local folder to pin it
  by content;
- an open_clip pretrained tag (``ViT-B-32/openai``): by name only.

An embedded prior's fingerprint also records the conditioning style its ``prior_config.json``
stores (``condition_style``, information only like ``commit``: the file's digest covers it), for the
stage digests to resolve ``generation.condition_style`` against.

Per-file digests are cached in ``~/.cache/discl/file-digests.json`` (``$DISCL_CACHE_DIR`` or
``$XDG_CACHE_HOME/discl`` when set), keyed by (absolute path, size, mtime_ns): a multi-GB SDXL
folder is read once per change, not once per run. The cache lives in the user's cache folder, not
in a run folder, because it is keyed by absolute paths on this machine and serves every run folder
(a sweep over many runs of one model hashes it once). The key also holds the inode and ctime, and
a file modified less than ``RACY_SECONDS`` before it was hashed is not cached (git's "racy" rule:
a same-size rewrite within one timestamp tick would otherwise keep its old digest). The cache only
saves time: a lost, unwritable or corrupt cache means the files are read again (a touched file with
unchanged content gets the same digest, so a rerun does nothing).

:func:`model_references` is pure (config -> references); :func:`model_fingerprints` does the IO.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from discl import assets
from discl.assets import EMBEDDED
from discl.errors import ModelNotFoundError
from discl.methods import INIT_BASELINES

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json", ".txt", ".model")
CHUNK = 1 << 20
RACY_SECONDS = 2.0
# recorded, not part of any digest (see the module doc): a hub snapshot's commit; the style an embedded
# prior's config file stores (:func:`prior_condition_style`), already in the digest of that file
INFO_ONLY_KEYS = frozenset({"commit", "condition_style"})


def cache_path() -> Path:
    """``$DISCL_CACHE_DIR`` > ``$XDG_CACHE_HOME/discl`` > ``~/.cache/discl``, then ``file-digests.json``."""
    root = os.environ.get("DISCL_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = str(Path(xdg) / "discl") if xdg else str(Path.home() / ".cache" / "discl")
    return Path(root) / "file-digests.json"


def _stat_key(path: Path) -> tuple[str, list[int]]:
    st = path.stat()
    return str(path.resolve()), [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, entries: dict[str, Any]) -> None:
    from discl.artifacts import atomic_write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        live = {k: v for k, v in entries.items() if os.path.exists(k)}  # forget deleted files
        atomic_write_text(path, json.dumps(live, sort_keys=True))
    except Exception as e:  # noqa: BLE001 - a cache that cannot be written only costs time
        log.debug("fingerprint cache %s not written: %s", path, e)


def file_digests(paths: list[Path]) -> list[str]:
    """blake2b-256 hex of each file's bytes; files whose (path, size, mtime_ns) are cached are not read."""
    cpath = cache_path()
    cache = _read_cache(cpath)
    out, changed = [], False
    for p in paths:
        key, stat = _stat_key(Path(p))
        hit = cache.get(key)
        if isinstance(hit, dict) and hit.get("stat") == stat and isinstance(hit.get("digest"), str):
            out.append(hit["digest"])
            continue
        h = hashlib.blake2b(digest_size=32)
        with open(p, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        log.debug("fingerprint: hashed %s (%d bytes)", p, stat[0])
        out.append(h.hexdigest())
        if time.time_ns() - stat[1] > RACY_SECONDS * 1e9:  # else it may still change unseen
            cache[key] = {"stat": stat, "digest": h.hexdigest()}
            changed = True
    if changed:  # merge with what other processes wrote meanwhile
        _write_cache(cpath, {**_read_cache(cpath), **cache})
    return out


def weight_files(path: str | Path) -> list[Path]:
    """The files a content fingerprint covers: the file itself, or a folder's weight/config files."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ModelNotFoundError(f"model path {path} does not exist")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise ModelNotFoundError(f"model folder {path} holds no weight or config files ({', '.join(WEIGHT_SUFFIXES)})")
    return files


def content_digest(files: list[Path], root: Path | None = None) -> str:
    """One digest over (relative name, content digest) of each file: renaming or editing any changes it."""
    names = [str(p.relative_to(root)) if root else p.name for p in files]
    h = hashlib.blake2b(digest_size=8)
    for name, d in sorted(zip(names, file_digests(files))):
        h.update(f"{name}\0{d}\n".encode())
    return h.hexdigest()


def files_fingerprint(ref: str, files: list[Path] | None = None) -> dict[str, str]:
    """Fingerprint of a local file or folder (or of the given asset files, for the embedded models)."""
    root = None
    if files is None:  # a user's path (the embedded assets pass their files: "embedded" is a label)
        path = Path(ref).expanduser()
        files = weight_files(path)
        root = path if path.is_dir() else None
    return {"model": ref, "source": "files", "digest": content_digest(files, root)}


def hub_fingerprint(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> dict[str, str]:
    """A hub id by name, with the commit of its locally cached snapshot recorded when there is one.

    ``snapshot_download(local_files_only=True)`` resolves the revision through the cache's refs and
    returns ``.../snapshots/<commit>`` without touching the network. The commit is information
    only (:data:`INFO_ONLY_KEYS`): cached or not, the digest of a hub id is that of its name.
    """
    name = repo_id if revision is None else f"{repo_id}@{revision}"
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
        return {"model": name, "source": "hub", "commit": Path(folder).name}
    except Exception as e:  # noqa: BLE001 - not cached, invalid id, no huggingface_hub: the name is all we know
        log.debug("fingerprint: %s is not in the local hub cache (%s)", repo_id, e)
        return {"model": name, "source": "hub", "commit": ""}


def reference_fingerprint(ref: str) -> dict[str, str]:
    """A local path gets a content fingerprint, anything else is treated as a hub id."""
    if Path(ref).expanduser().exists():
        return files_fingerprint(ref)
    if ref.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"model path {ref} does not exist")
    return hub_fingerprint(ref)


# -- which models a config loads ----------------------------------------------------------------


def model_references(cfg) -> dict[str, dict[str, str]]:
    """Pure: {config section: {field: reference}} for every model the config's stages load.

    References: ``embedded-prior`` / ``embedded-clip`` (the shipped assets), ``file:PATH`` (a local
    file or folder), ``hub:ID`` (a hub id or a local folder, decided when fingerprinted),
    ``name:SPEC`` (an open_clip pretrained tag, by name only).
    """
    g, f, t = cfg.generation, cfg.filtering, cfg.training
    out: dict[str, dict[str, str]] = {}
    if cfg.prompts.text_model:
        out["prompts"] = {"text_model": f"hub:{cfg.prompts.text_model}"}
    if g.backend == EMBEDDED:
        out["generation"] = {"model": "embedded-prior" if g.model in ("", EMBEDDED) else f"file:{g.model}"}
    else:
        out["generation"] = {"model": f"hub:{g.model}"}
    for i, lora in enumerate(getattr(g, "lora", ())):  # adapters fused into the generator's weights
        out["generation"][f"lora[{i}]"] = f"file:{lora.path}"
    out["filtering"] = {"model": scorer_reference(f.backend, f.model)}
    train = {}
    if t.pretrained_path:
        train["pretrained_path"] = f"file:{t.pretrained_path}"
    if t.init_from and t.init_from not in INIT_BASELINES:  # a baseline of the run is made by the run itself
        train["init_from"] = f"file:{t.init_from}"
    if t.model == "clip" and t.clip_model == EMBEDDED:  # the shipped weights (or a file), by content
        train["clip_pretrained"] = scorer_reference(EMBEDDED, t.clip_pretrained or EMBEDDED)
    elif t.model == "clip" and t.clip_pretrained:
        train["clip_pretrained"] = _open_clip_reference(t.clip_pretrained, f"{t.clip_model}/{t.clip_pretrained}")
    elif t.pretrained and t.model.startswith(("timm:", "torchvision:")):
        train["pretrained"] = f"name:{t.model}"
    if train:
        out["training"] = train
    return out


def scorer_reference(backend: str, model: str) -> str:
    """Pure: the reference of a CLIP scorer's weights (``filtering.backend`` / ``filtering.model``)."""
    if backend == EMBEDDED:
        return "embedded-clip" if model in ("", EMBEDDED) else f"file:{model}"
    if backend == "open_clip":
        return _open_clip_reference(model.partition("/")[2], model)
    return f"hub:{model}"


def _open_clip_reference(pretrained: str, spec: str) -> str:
    """open_clip's pretrained part is a tag (``openai``) or a checkpoint file."""
    is_file = pretrained.startswith(("/", ".", "~")) or pretrained.lower().endswith(WEIGHT_SUFFIXES)
    return f"file:{pretrained}" if is_file else f"name:open_clip:{spec}"


def prior_condition_style(model: str) -> str | None:
    """The style the embedded prior ``model`` (``generation.model``) samples with when
    ``generation.condition_style`` is unset, from its ``prior_config.json`` (no weights loaded); None
    when the file cannot be read (loading the prior reports that). Recorded in the prior's
    fingerprint so that the pure stage digests can tell an explicit style equal to it, which
    changes no image, from another (:func:`discl.digests.effective_condition_style`)."""
    folder = assets.PRIOR_DIR if model in ("", EMBEDDED) else Path(model).expanduser()
    try:
        meta = json.loads((folder / assets.PRIOR_CONFIG_NAME).read_text(encoding="utf-8"))
        return assets.stored_condition_style(meta) if isinstance(meta, dict) else None
    except (OSError, ValueError, TypeError, IndexError):
        return None


def fingerprint(ref: str) -> dict[str, str]:
    """The fingerprint of one reference from :func:`model_references` (reads files or the hub cache)."""
    kind, _, value = ref.partition(":")
    if ref == "embedded-prior":
        return files_fingerprint(EMBEDDED, [assets.PRIOR_DIR / assets.PRIOR_WEIGHTS_NAME,
                                           assets.PRIOR_DIR / assets.PRIOR_CONFIG_NAME])
    if ref == "embedded-clip":
        return files_fingerprint(EMBEDDED, [assets.CLIP_WEIGHTS_PATH, assets.CLIP_CONFIG_PATH])
    if kind == "file":
        return files_fingerprint(value)
    if kind == "hub":
        return reference_fingerprint(value)
    if kind == "name":
        return {"model": value, "source": "name-only"}
    raise ValueError(f"unknown model reference {ref!r}")


def model_fingerprints(cfg, sections: Collection[str] | None = None) -> dict[str, dict[str, dict[str, str]]]:
    """{config section: {field: fingerprint}} of every model the config loads (of ``sections`` only,
    when given: a run without synthetic data does not need the generator's weights to exist)."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for sec, refs in model_references(cfg).items():
        if sections is not None and sec not in sections:
            continue
        out[sec] = {}
        for name, ref in refs.items():
            try:
                out[sec][name] = fingerprint(ref)
            except ModelNotFoundError as e:
                raise ModelNotFoundError(f"{sec}.{name}: {e}") from None
    g = cfg.generation
    if g.backend == EMBEDDED and "model" in out.get("generation", {}):
        style = prior_condition_style(g.model)
        if style is not None:
            out["generation"]["model"] = {**out["generation"]["model"], "condition_style": style}
    return out


def fingerprints_digest(fingerprints: Any) -> str:
    """A short digest of fingerprints (any JSON-able nesting of them), for stage and spectrum digests.

    Keys in :data:`INFO_ONLY_KEYS` (a hub snapshot's commit) are left out.
    """

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in INFO_ONLY_KEYS}
        return [strip(v) for v in x] if isinstance(x, list) else x

    payload = json.dumps(strip(fingerprints), sort_keys=True).encode()
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


def short(fp: dict[str, str]) -> str:
    """One line for reports: ``embedded (files 1a2b...)``, ``org/name@commit``, ``org/name (name only)``."""
    if fp.get("source") == "files":
        return f"{fp['model']} (files {fp['digest']})"
    if fp.get("source") == "hub":
        return f"{fp['model']} (hub; cached snapshot {fp['commit'] or 'none'})"
    return f"{fp['model']} (name only)"
