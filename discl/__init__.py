"""discl: DisCL, a synthetic-to-real data curriculum via image-guided diffusion.

The public API (``__all__``; docs/own-training-loop.md) lets your own training loop use a run's
spectrum and curriculum. Names are imported on first use, so ``import discl`` stays light (no
``datasets``, ``lightning`` or ``transformers``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "load_spectrum": "discl.data.spectrum",
    "Spectrum": "discl.data.spectrum",
    "load_real_split": "discl.data.real",
    "RealSplit": "discl.data.real",
    "create_curriculum": "discl.curriculum.sampler",
    "Curriculum": "discl.curriculum.sampler",
    "CurriculumSampler": "discl.curriculum.sampler",
    "CurriculumBatchSampler": "discl.curriculum.sampler",
    "CurriculumDataset": "discl.curriculum.sampler",
    "CurriculumConfig": "discl.curriculum.config",
    "load_config": "discl.config",
    "order_digest": "discl.curriculum.epochs",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'discl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
