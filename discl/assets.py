"""Where the shipped (embedded) models live, and the name that picks them.

The embedded prior and CLIP ship as files under ``discl/assets/``. Their adapters load them
(:mod:`discl.generation.prior`, :mod:`discl.filtering.embedded_clip`) and :mod:`discl.fingerprint`
digests them; the locations live here, below all three, so that the fingerprint, which every stage
digest uses, does not import the generation and filtering adapters to find two file names.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

EMBEDDED = "embedded"  # the config value (clip_model, generation.backend, filtering.backend) for the shipped models

PRIOR_DIR = Path(__file__).resolve().parent / "assets" / "prior"
PRIOR_WEIGHTS_NAME = "prior.safetensors"
PRIOR_CONFIG_NAME = "prior_config.json"
PRIOR_RECIPE_NAME = "recipe.yaml"

CLIP_DIR = Path(str(resources.files("discl") / "assets" / "clip"))
CLIP_MODEL_NAME = "discl-fmnist-clip"
CLIP_CONFIG_PATH = CLIP_DIR / f"{CLIP_MODEL_NAME}.json"
CLIP_WEIGHTS_PATH = CLIP_DIR / f"{CLIP_MODEL_NAME}.safetensors"


def stored_condition_style(prior_config: dict) -> str:
    """The style a prior samples with when ``generation.condition_style`` is unset: the
    ``condition_style`` its ``prior_config.json`` stores, else its first style (a prior saved before
    styles existed knows only ``clean``). Pure; here, below the prior and the fingerprint, because
    both need it (the fingerprint records it without importing the prior's adapter)."""
    styles = prior_config.get("styles") or ("clean",)
    return str(prior_config.get("condition_style") or styles[0])
