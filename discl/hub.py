"""Is a hub model reachable? Answered at once, before any stage spends time.

``from_pretrained`` on an uncached id without network retries each HEAD request with backoff (about
30 s per id, measured: `stabilityai/sd-turbo` offline took 32 s before the error) and prints each
retry warning. Here one question is asked instead:

1. a local file or folder: reachable;
2. a snapshot in the local Hugging Face cache: reachable, and loaders get ``local_files_only=True``
   so that loading it never touches the network;
3. ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE``/``DIFFUSERS_OFFLINE``) and not cached: unreachable;
4. otherwise one metadata request with a short timeout and no retries decides.

The answer is cached per process, so a warning or an error about an id is produced once.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 4.0
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE")


def offline() -> bool:
    """True when the user asked the Hugging Face libraries to stay offline."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARS)


def is_local(ref: str) -> bool:
    return Path(ref).expanduser().exists()


@functools.lru_cache(maxsize=64)
def cached_snapshot(repo_id: str) -> str | None:
    """The folder of ``repo_id``'s snapshot in the local hub cache, or None (never uses the network)."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - not cached, invalid id, no huggingface_hub
        log.debug("hub: %s is not cached (%s)", repo_id, e)
        return None


@functools.lru_cache(maxsize=64)
def unreachable_reason(repo_id: str) -> str | None:
    """None when ``repo_id`` can be loaded (local, cached, or the hub answers); else why not."""
    if is_local(repo_id):
        return None
    if repo_id.startswith((".", "/", "~")):
        return f"local path {Path(repo_id).expanduser().resolve()} does not exist"
    if cached_snapshot(repo_id) is not None:
        return None
    if offline():
        return "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(repo_id, timeout=PROBE_TIMEOUT_S)
        return None
    except Exception as e:  # noqa: BLE001 - connection errors, 401/404 alike: the hub cannot serve it
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        return f"it is not in the local Hugging Face cache and the hub cannot be reached ({type(e).__name__}: {first})"


def load_kwargs(repo_id: str) -> dict[str, bool]:
    """Extra ``from_pretrained`` arguments: ``local_files_only`` when the weights are local or cached
    (no network round trip at all) or when the user asked to stay offline."""
    if offline() or is_local(repo_id) or cached_snapshot(repo_id) is not None:
        return {"local_files_only": True}
    return {}
