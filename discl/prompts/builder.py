"""Prompt choice (phase 1b): pure functions of (config, class name, sample id, k).

Template prompts name the class ("a photo of a {name}"). Diversified prompts pick one of several
per-class scene descriptions, prefixed as the paper does ("a 8k real photo: "). Which template or
description a generated image gets is a stable digest of (sample id, k), never ``random`` or
``hash()``, so a rerun, another shard or another machine picks the same prompt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from discl.errors import BadInputError
from discl.prompts.config import PromptConfig
from discl.seeding import derive_seed

logger = logging.getLogger(__name__)


def template_prompt(template: str, class_name: str) -> str:
    return template.format(name=class_name)


def choose(options: Sequence[str], sample_id: str, k: int, salt: str = "prompt") -> str:
    """The option a (sample, k) job uses: a stable digest modulo the number of options."""
    if not options:
        raise ValueError("no options to choose from")
    return options[derive_seed(salt, str(sample_id), int(k)) % len(options)]


def build_prompt(cfg: PromptConfig, class_name: str, sample_id: str, k: int,
                 descriptions: Mapping[str, Sequence[str]] | None = None) -> str:
    """The prompt of job (sample_id, k): a description of the class when there are any, else a template."""
    descs = (descriptions or {}).get(class_name)
    if descs:
        return cfg.description_prefix + choose(list(descs), sample_id, k, "description")
    return template_prompt(choose(cfg.templates, sample_id, k, "template"), class_name)


def prompt_options(cfg: PromptConfig, class_name: str,
                   descriptions: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Every prompt :func:`build_prompt` can give an image of ``class_name``, in order, without repeats."""
    descs = (descriptions or {}).get(class_name)
    if descs:
        return list(dict.fromkeys(cfg.description_prefix + d for d in descs))
    return list(dict.fromkeys(template_prompt(t, class_name) for t in cfg.templates))


def retry_prompt(cfg: PromptConfig, class_name: str, sample_id: str, k: int, attempt: int, original: str,
                 descriptions: Mapping[str, Sequence[str]] | None = None) -> str:
    """The prompt of retry ``attempt`` (1, 2, ...) of a dropped image: another prompt than ``original``
    whenever the class has more than one, successive attempts going round the others from a stable
    start (so up to ``len(options) - 1`` attempts try different prompts)."""
    others = [o for o in prompt_options(cfg, class_name, descriptions) if o != original]
    if not others:
        return original
    start = derive_seed("retry-prompt", str(sample_id), int(k)) % len(others)
    return others[(start + int(attempt) - 1) % len(others)]


def load_descriptions(path: str | Path) -> dict[str, list[str]]:
    """``{class name: [description, ...]}`` from a JSON or YAML file; errors name the file and key."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"prompt descriptions file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise BadInputError(f"{path}: cannot parse descriptions: {e}") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: must map class names to lists of descriptions")
    out = {}
    for name, descs in data.items():
        if isinstance(descs, str):
            descs = [descs]
        if not isinstance(descs, list) or not all(isinstance(d, str) and d.strip() for d in descs):
            raise BadInputError(f"{path}: descriptions of {name!r} must be a list of non-empty strings")
        out[str(name)] = [d.strip() for d in descs]
    return out


def resolve_descriptions(cfg: PromptConfig, classes: Sequence[str]) -> dict[str, list[str]]:
    """Descriptions from the configured file, or from the configured local text model, or none."""
    if cfg.descriptions_file:
        descs = load_descriptions(cfg.descriptions_file)
        unknown = sorted(set(descs) - set(classes))
        if unknown:
            logger.warning("descriptions for unknown classes ignored: %s", unknown)
        return {c: descs[c] for c in classes if c in descs}
    if cfg.text_model:
        from discl.prompts.textgen import generate_descriptions

        return generate_descriptions(cfg.text_model, classes, cfg.descriptions_per_class)
    return {}
