"""Checkpoints as safetensors + JSON (never pickle).

- *weights* (``best.safetensors``): the model's state dict, with a JSON header under the
  ``discl`` metadata key that says how to rebuild the model (name, classes, channels, size) and
  its validation metrics;
- *training state* (``checkpoint.safetensors``): model + optimizer tensors + the global torch RNG,
  and a JSON header with everything else (epoch, step, optimizer param groups, strategy/planner
  state, best score). One file written atomically, so a kill leaves the previous epoch's state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from discl.artifacts import ArtifactError, atomic_write_bytes

__all__ = ["save_weights", "load_weights", "save_training_state", "load_training_state", "read_header"]

_META_KEY = "discl"


def _tensors(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (tied weights)
    return {f"{prefix}{k}": v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def _write(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> None:
    data = st_save(tensors, metadata={_META_KEY: json.dumps(header, sort_keys=True)})
    atomic_write_bytes(Path(path), data)


def read_header(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing checkpoint {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(f"{path} is not a readable safetensors file: {e}") from e
    return json.loads(meta.get(_META_KEY, "{}"))


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    header = read_header(path)
    return st_load(Path(path).read_bytes()), header


def save_weights(path: Path, model: nn.Module, header: dict[str, Any]) -> None:
    _write(path, _tensors(model.state_dict(), ""), header)


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, header) of a weights file or a training-state file."""
    tensors, header = _read(path)
    if any(k.startswith("model/") for k in tensors):
        tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    return tensors, header


def _split_optimizer(opt_sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {"param_groups": opt_sd["param_groups"], "state": {}}
    for idx, st in opt_sd["state"].items():
        plain["state"][str(idx)] = {}
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim/{idx}/{key}"] = val.detach().to("cpu").contiguous().clone()
            else:
                plain["state"][str(idx)][key] = val
    return tensors, plain


def _join_optimizer(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {int(i): dict(v) for i, v in plain["state"].items()}
    for name, val in tensors.items():
        if name.startswith("optim/"):
            _, idx, key = name.split("/", 2)
            state.setdefault(int(idx), {})[key] = val
    return {"state": state, "param_groups": plain["param_groups"]}


def save_training_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, header: dict[str, Any]) -> None:
    tensors = _tensors(model.state_dict(), "model/")
    opt_tensors, opt_plain = _split_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    _write(path, tensors, {**header, "optimizer": opt_plain})


def load_training_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and the global torch RNG in place; returns the JSON header."""
    tensors, header = _read(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    optimizer.load_state_dict(_join_optimizer(tensors, header.pop("optimizer")))
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
    return header
