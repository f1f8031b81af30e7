from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from discl.configtools import check


@dataclass
class FilterConfig:
    """CLIP filtering of the spectrum (phase 1d)."""

    backend: Literal["embedded", "open_clip", "transformers"] = "embedded"
    model: str = "embedded"  # open_clip: "ViT-B-32/openai"; transformers: "openai/clip-vit-base-patch32" or a local folder (relative to the config file: against its folder)
    text_template: str = "a photo of a {name}"  # the plain class text
    score: Literal["text", "prompt", "image"] = "text"  # which similarity the threshold applies to
    threshold: float | None = 0.30  # global threshold on the chosen similarity; None = no threshold
    # a row's threshold is the most specific one given: per_class, else per_level, else threshold
    # lambda -> threshold; YAML may write keys as 0.5 or "0.5", they are stored as strings ("0.5")
    per_level: dict[str | float, float] = field(default_factory=dict)
    per_class: dict[str, float] = field(default_factory=dict)  # class name -> threshold
    top_q: float | None = None  # keep the best fraction per (sample, lambda)
    retries: int = 0  # regenerate dropped cells with another prompt/seed, keep the best (see filtering.retry)
    batch_size: int = 128
    device: str = "auto"

    def __post_init__(self):
        if self.threshold is not None:
            check(-1.0 <= self.threshold <= 1.0, "threshold", f"a cosine must be in [-1, 1], got {self.threshold}")
        check(self.top_q is None or 0.0 < self.top_q <= 1.0, "top_q", f"must be in (0, 1], got {self.top_q}")
        check(self.retries >= 0, "retries", f"must be >= 0, got {self.retries}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        from discl.validation import template_problem

        why = template_problem(self.text_template)
        check(why is None, "text_template", f"{self.text_template!r}: {why}")
        levels = {}
        for key, value in self.per_level.items():
            try:
                lam = float(key)
            except ValueError:
                lam = None
            check(lam is not None and 0.0 <= lam < 1.0, f"per_level.{key}", "keys are guidance levels like '0.5' in [0, 1)")
            check(-1.0 <= value <= 1.0, f"per_level.{key}", f"a cosine must be in [-1, 1], got {value}")
            check(f"{lam:g}" not in levels, f"per_level.{key}", "names a level twice")
            levels[f"{lam:g}"] = value
        self.per_level = levels
        for key, value in self.per_class.items():
            check(-1.0 <= value <= 1.0, f"per_class.{key}", f"a cosine must be in [-1, 1], got {value}")
