"""Caption templates of the embedded CLIP (training) and its zero-shot head (evaluation).

The training captions cover the phrasings the rest of the pipeline produces: the plain class text
(``filtering.text_template``, "a photo of a {name}"), the prompt templates, and the
"a 8k real photo: ..." prefix of diversified prompts.
"""

from __future__ import annotations

TRAIN_TEMPLATES: tuple[str, ...] = (
    "a photo of a {name}",
    "a photo of a {name}.",
    "a {name}",
    "{name}",
    "a picture of a {name}",
    "a picture of a {name}, a piece of clothing",
    "an image of a {name}",
    "a grayscale photo of a {name}",
    "a black and white photo of a {name}",
    "a low contrast photo of a {name}",
    "a blurry photo of a {name}",
    "a cropped photo of a {name}",
    "a photo of the {name}",
    "a close-up photo of a {name}",
    "a product photo of a {name}",
    "a photo of a {name} on a plain background",
    "a photo of a {name} on a textured background",
    "a {name} in a catalogue",
    "a 8k real photo: a {name}",
    "a 8k real photo: a photo of a {name}",
    "a 8k real photo: a {name} lying flat on a table",
    "a 8k real photo: a {name} on a grey background",
    "a 8k real photo: a close-up of a {name} with visible texture",
    "a 8k real photo: a {name} for sale in a shop",
)

# the zero-shot head: class embedding = mean of the normalised embeddings of these captions
ZERO_SHOT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {name}",
    "a picture of a {name}",
    "a {name}",
    "a 8k real photo: a {name}",
)


def captions_for(templates: tuple[str, ...] | list[str], classes: list[str]) -> list[list[str]]:
    """[template][class] -> caption (class names as the dataset spells them, like the prompts do)."""
    return [[t.format(name=c) for c in classes] for t in templates]
