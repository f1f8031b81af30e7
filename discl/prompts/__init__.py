"""Prompts of the generated images: class templates and diversified per-class descriptions."""

from discl.prompts.builder import (
    build_prompt,
    choose,
    load_descriptions,
    resolve_descriptions,
    template_prompt,
)
from discl.prompts.config import PromptConfig

__all__ = ["PromptConfig", "build_prompt", "choose", "load_descriptions", "resolve_descriptions", "template_prompt"]
