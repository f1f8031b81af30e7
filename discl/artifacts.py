"""Run-folder artifacts: atomic writes, path confinement, manifests.

Every file a stage writes goes through a temp file in the same folder and ``os.replace``, so a kill
leaves either the old file or the new one, never a partial file under the final name. Paths taken
from data (manifest rows, configs) are confined to the run folder.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from discl.errors import DisclError


class ArtifactError(DisclError):
    """An artifact cannot be written or read; the message names the file."""


def _raise_io(path: Path, e: OSError) -> None:
    if e.errno == errno.ENOSPC:
        raise ArtifactError(f"no space left on device while writing {path}; finished files are kept, free space and rerun") from e
    if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        raise ArtifactError(f"cannot write {path}: the folder is read-only or not writable ({e.strerror})") from e
    raise ArtifactError(f"cannot write {path}: {e}") from e


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


TMP_SUFFIX = ".tmp"
_OWNER = f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"


def _owner_alive(owner: str) -> bool | None:
    """True/False for a writer on this host; None when it ran on another host (cannot tell)."""
    host, _, pid = owner.rpartition("-")
    if host != socket.gethostname().replace(".", "_") or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temp(folder: Path, max_age_s: float = 3600.0) -> int:
    """Remove temp files that killed writers left under ``folder``; returns how many.

    A SIGKILL between ``mkstemp`` and ``os.replace`` leaves ``.<name>.<host>-<pid>.*.tmp``. Files of a
    dead process on this host go at once; files of live processes (a concurrent shard) stay; files
    from other hosts go only when older than ``max_age_s``.
    """
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for tmp in folder.rglob(f".*{TMP_SUFFIX}"):
        parts = tmp.name.split(".")
        owner = parts[-3] if len(parts) >= 4 else ""
        alive = _owner_alive(owner)
        try:
            if alive is False or (alive is None and time.time() - tmp.stat().st_mtime > max_age_s):
                tmp.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_OWNER}.", suffix=TMP_SUFFIX)
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; artifacts get the usual mode
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as e:
        _raise_io(path, e)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"missing artifact {path}") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path} is not valid JSON: {e}") from None


def write_table(path: Path, frame: pd.DataFrame) -> None:
    """Write a manifest atomically; the suffix picks the format (.csv or .parquet)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import io

        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        atomic_write_bytes(path, buf.getvalue())
    elif path.suffix == ".csv":
        atomic_write_text(path, frame.to_csv(index=False))
    elif path.suffix == ".jsonl":
        atomic_write_text(path, frame.to_json(orient="records", lines=True))
    else:
        raise ArtifactError(f"unknown table format for {path} (use .csv, .parquet or .jsonl)")


def read_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing artifact {path}")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False, na_values=[""])
        if path.suffix == ".jsonl":
            return pd.read_json(path, orient="records", lines=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ArtifactError(f"cannot read {path}: {e}") from e
    raise ArtifactError(f"unknown table format for {path}")


def append_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows to a JSONL log with one write + fsync per call.

    Used for per-shard progress logs; readers must tolerate (and drop) a torn last line, which
    :func:`read_jsonl` does.
    """
    path = Path(path)
    payload = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in rows)
    if not payload:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        _raise_io(path, e)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL log; a torn last line (a kill mid-write) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # only the last line may be torn
                break
            raise ArtifactError(f"{path}: line {i + 1} is not valid JSON") from None
    return rows


def normalise_relative(relative: str | Path) -> str | None:
    """``relative`` as a normalised POSIX path (``a/./b/../c`` → ``a/c``), or None when it is absolute
    or climbs out with ``..`` (pure: decided on the text, the file system is not asked).

    Confinement is lexical on purpose: a sub-folder of a root may be a symlink to other storage
    (``root/images -> /scratch/images``, usual on clusters), which resolving the path first would
    refuse although the user put it there; what a listed path must not do is name a place outside
    the root by itself.
    """
    text = str(relative)
    if not text or os.path.isabs(text):
        return None
    norm = posixpath.normpath(text)
    if norm == ".." or norm.startswith("../") or norm.startswith("/"):
        return None
    return norm


def confine(root: Path, relative: str | Path) -> Path:
    """``root / relative`` (resolved), refusing a ``relative`` that is absolute or escapes with
    ``..``; symlinks under ``root`` are followed wherever they point (see :func:`normalise_relative`)."""
    root = Path(root).resolve()
    if Path(relative).is_absolute():
        raise ArtifactError(f"path {relative} must be relative to {root}")
    rel = normalise_relative(relative)
    if rel is None:
        raise ArtifactError(f"path {relative} escapes {root}")
    return (root / rel).resolve()


def is_complete(marker: Path, digest: str) -> bool:
    """True when a stage's ``_done.json`` marker exists and was written for ``digest``."""
    marker = Path(marker)
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("digest") == digest
    except (OSError, json.JSONDecodeError):
        return False


def mark_complete(marker: Path, digest: str, **info: Any) -> None:
    atomic_write_json(marker, {"digest": digest, **info})
