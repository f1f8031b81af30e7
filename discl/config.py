"""The run config: one typed section per stage, loaded from YAML plus ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from discl.configtools import (
    ConfigError,
    apply_overrides,
    check,
    from_dict,
    load_yaml,
    several,
    to_dict,
    unknown_keys,
)
from discl.curriculum.config import CurriculumConfig
from discl.data.config import DataConfig
from discl.filtering.config import FilterConfig
from discl.generation.config import GenerationConfig
from discl.mining.config import MiningConfig
from discl.prompts.config import PromptConfig
from discl.training.config import TrainConfig

__all__ = ["RunConfig", "ConfigError", "load_config", "save_config", "section_digest"]


@dataclass
class RunConfig:
    """One run: its name and folder, the methods it compares, and one section per stage."""

    name: str = "run"
    run_dir: str = "runs/{name}"  # every artifact of the run lives below this folder
    seed: int = 0  # run seed: the adaptive strategies' held-out images; stage seeds have their own keys
    data: DataConfig = field(default_factory=DataConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    filtering: FilterConfig = field(default_factory=FilterConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    # what the run trains and compares (see discl.methods): ce, bs, cb (class-balanced resampling),
    # discl (the curriculum configured below), bs+discl, or a strategy name (mixed, text_only, ...)
    methods: list[str] = field(default_factory=lambda: ["ce", "discl"])  # ce, bs, cb, flyp, la, crt, ce_long, discl, bs+discl, <strategy> (real_only, mixed, ...), single@0.5
    seeds: list[int] = field(default_factory=lambda: [0])  # training seeds for mean/std in the report

    def __post_init__(self):
        check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        check(bool(self.name) and "/" not in self.name, "name", f"must be a non-empty name without '/': {self.name!r}")
        check(len(self.methods) > 0, "methods", "needs at least one method")
        from discl.methods import parse_method

        for i, m in enumerate(self.methods):
            try:
                parse_method(m)
            except ValueError as e:
                raise ConfigError(f"methods[{i}]: {e}") from None
        check(len(self.seeds) > 0 and all(s >= 0 for s in self.seeds), "seeds", "needs one or more seeds >= 0")

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir.format(name=self.name))

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


# paths a config file names relative to itself (data next to the config, not the working directory)
RELATIVE_TO_CONFIG = (("data", "root"), ("data", "class_map"), ("data", "split_files"), ("prompts", "descriptions_file"),
                      ("training", "pretrained_path"))
# keys that hold a path or a name (an open_clip tag such as "openai", a baseline such as "ce"): resolved
# like the keys above only when the value looks like a path (:func:`looks_like_path`)
PATH_OR_NAME = (("training", "clip_pretrained"), ("training", "init_from"))
# a local model folder or a hub id ("stabilityai/stable-diffusion-xl-refiner-1.0" has a "/" too): resolved
# only when the path exists there, as diffusers / transformers take a local folder before the hub
FOLDER_OR_HUB_ID = (("generation", "model"), ("filtering", "model"))
WEIGHTS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def looks_like_path(value: str) -> bool:
    """Whether a path-or-name value is a path (pure): it has a ``/``, starts with ``~`` or ``.``, or
    ends with a weights suffix. Tags and baseline names have none of these."""
    return "/" in value or value.startswith(("~", ".")) or value.lower().endswith(WEIGHTS_SUFFIXES)


def _absolute(value: Any, base: Path | None, path_only: bool | str = False) -> Any:
    """A path (or a {name: path} mapping's paths) made absolute against ``base`` (None: the working
    directory), ``~`` expanded; other values as they are. ``path_only``: a string that does not look
    like a path (:func:`looks_like_path`) is a name and stays as it is; ``"existing"``: only a path
    that exists there is resolved, anything else (a hub id) stays as it is."""
    if isinstance(value, dict):
        return {k: _absolute(v, base, path_only) for k, v in value.items()}
    if isinstance(value, str) and value and (not path_only or looks_like_path(value)):
        p = Path(value).expanduser()
        full = p if p.is_absolute() else ((base / p) if base is not None else p).resolve()
        if path_only == "existing" and not full.exists():
            return value
        return str(full)
    return value


def _path_keys():
    return ([(s, k, False) for s, k in RELATIVE_TO_CONFIG] + [(s, k, True) for s, k in PATH_OR_NAME]
            + [(s, k, "existing") for s, k in FOLDER_OR_HUB_ID])


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """The config in ``path`` (YAML) with ``key=value`` overrides applied.

    Relative ``data.root``, ``data.class_map``, ``data.split_files``, ``prompts.descriptions_file``,
    ``training.pretrained_path`` and, when they are paths (not a tag or a baseline name),
    ``training.clip_pretrained`` and ``training.init_from``, and ``generation.model`` /
    ``filtering.model`` when such a local folder exists (else they are hub ids), in the file resolve
    against the file's folder, ``~`` expanded (and are stored absolute, so the run folder's copy reads the same data from anywhere);
    in an override they resolve against the working directory. An error names the override it
    comes from, else the file.
    """
    data = load_yaml(path) if path else {}
    if path:
        data = resolve_relative_paths(data, Path(path).parent)
    data = apply_overrides(data, overrides or [])
    for section, key, path_only in _path_keys():  # overrides: relative to the working directory
        if isinstance(data.get(section), dict) and key in data[section]:
            data[section][key] = _absolute(data[section][key], None, path_only)
    unknown = unknown_keys(RunConfig, data)
    if len(unknown) > 1:  # one error for every typo, not one run per typo
        raise ConfigError("unknown config keys: " + "; ".join(
            f"{blame(key, path, overrides or [])}{key} (known keys{' in ' + key.rsplit('.', 1)[0] if '.' in key else ''}: "
            f"{', '.join(known)})" for key, known in unknown))
    try:
        return from_dict(RunConfig, data)
    except ConfigError as e:  # each problem blamed on the override or file it comes from
        raise several([f"{blame(m, path, overrides or [])}{m}" for m in e.problems]) from None


def resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """``data`` with the relative paths of :data:`RELATIVE_TO_CONFIG` made absolute against ``base``."""
    out = dict(data)
    for section, key, path_only in _path_keys():
        sec = out.get(section)
        if isinstance(sec, dict) and key in sec:
            out[section] = {**sec, key: _absolute(sec[key], base, path_only)}
    return out


def blame(message: str, path: str | Path | None, overrides: list[str]) -> str:
    """``"override 'k=v': "`` when the error's key was set by an override, else ``"FILE: "`` (pure)."""
    import re

    m = re.match(r"(?:unknown config key )?([A-Za-z_][\w.\[\]]*)", message)
    key = re.sub(r"\[\d+\]", "", m.group(1)) if m else ""
    for text in reversed(overrides):
        okey = text.split("=", 1)[0].strip()
        if key and (key == okey or key.startswith(okey + ".") or okey.startswith(key + ".")):
            return f"override {text!r}: "
    if not path:  # no file: a check across keys of one section (data.task needs data.root) comes from an override
        for text in reversed(overrides):
            if key and text.split("=", 1)[0].strip().split(".")[0] == key.split(".")[0]:
                return f"override {text!r}: "
    return f"{path}: " if path else ""


def save_config(cfg: RunConfig, path: str | Path) -> None:
    from discl.artifacts import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def section_digest(cfg: RunConfig, *sections: str) -> str:
    """A stable digest of the named config sections: stages record it to know when to redo work."""
    import hashlib
    import json

    payload = {s: to_dict(getattr(cfg, s)) for s in sections}
    return hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=8).hexdigest()


def replace(cfg: RunConfig, **sections: Any) -> RunConfig:
    return dataclasses.replace(cfg, **sections)
