"""Per-class scene descriptions written by a local transformers text-generation model (optional).

The paper asked an LLM for 10 descriptions per class of at least 15 words. Here any local
``text-generation`` model folder or cached hub id can do it; sampling is seeded per class so the
same model gives the same descriptions. Without the model the error says how to provide it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from discl.errors import ModelNotFoundError
from discl.seeding import derive_seed

logger = logging.getLogger(__name__)

PROMPT = ("Describe a realistic photo of a {name} in one sentence of at least 15 words, "
          "mentioning the scene, lighting and background: A photo of a {name}")


def generate_descriptions(model: str, classes: Sequence[str], per_class: int,
                          max_new_tokens: int = 40) -> dict[str, list[str]]:
    import torch
    from transformers import pipeline, set_seed

    try:
        gen = pipeline("text-generation", model=model, device="cpu",
                       model_kwargs={"local_files_only": bool(os.environ.get("HF_HUB_OFFLINE"))})
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(
            f"text model {model!r} could not be loaded ({e}); pass a local folder, or download it on an online "
            f"machine with `huggingface-cli download {model}` and point HF_HOME at the cache"
        ) from None
    out: dict[str, list[str]] = {}
    for name in classes:
        set_seed(derive_seed("textgen", model, name) % (2**32))
        prompt = PROMPT.format(name=name)
        with torch.inference_mode():
            res = gen(prompt, max_new_tokens=max_new_tokens, do_sample=True, num_return_sequences=per_class,
                      return_full_text=False)
        descs = []
        for r in res:
            text = " ".join(r["generated_text"].split()).split(".")[0].strip()
            descs.append(f"a photo of a {name}{' ' if text and text[0] not in ',;' else ''}{text}".strip())
        out[name] = descs
    return out
