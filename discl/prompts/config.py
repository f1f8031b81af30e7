from __future__ import annotations

from dataclasses import dataclass, field

from discl.configtools import check


@dataclass
class PromptConfig:
    """How each generated image's text prompt is chosen (phase 1b)."""

    templates: list[str] = field(default_factory=lambda: ["a photo of a {name}"])  # only {name} is filled in; other placeholders or unbalanced braces are errors ({{ }} for a literal brace)
    descriptions_file: str | None = None  # JSON/YAML {class name: [description, ...]}; relative: to the config file's folder; an empty list or a class listed twice is an error
    description_prefix: str = "a 8k real photo: "
    text_model: str | None = None  # local transformers text-generation model to write descriptions
    descriptions_per_class: int = 10

    def __post_init__(self):
        check(len(self.templates) > 0, "templates", "needs at least one template")
        from discl.validation import template_problem

        for i, t in enumerate(self.templates):  # a bad placeholder is an error now, not a KeyError at generation
            why = template_problem(t)
            check(why is None, f"templates[{i}]", f"{t!r}: {why}")
        check(self.descriptions_per_class >= 1, "descriptions_per_class", "must be >= 1")
