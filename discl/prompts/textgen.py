"""Per-class scene descriptions written by a local transformers text-generation model (optional).

The paper asked an LLM for 10 descriptions per class of at least 15 words. Here any local
``text-generation`` model folder or cached hub id can do it (``prompts.text_model``). Sampling is
seeded per (model, class) from a stable digest, inside a forked RNG so the caller's global torch RNG
is untouched: the same model gives the same descriptions. Without the model the error says how to
provide it. Each description is the first sentence of the continuation of ``PROMPT``, prefixed with
"a photo of a {name}"; a continuation that is empty or repeats an earlier one is kept (the count per
class is what the config asks for) but logged, since duplicates shrink the prompt diversity.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from discl.errors import ModelNotFoundError
from discl.seeding import derive_seed

logger = logging.getLogger(__name__)

PROMPT = ("Describe a realistic photo of a {name} in one sentence of at least 15 words, "
          "mentioning the scene, lighting and background: A photo of a {name}")


def first_sentence(name: str, continuation: str) -> str:
    """``a photo of a {name}`` + the first sentence of the model's continuation (pure).

    Control characters and U+FFFD (bytes that did not decode) are dropped: they would reach the
    diffusion model's tokenizer and the manifest's CSV.
    """
    clean = "".join(ch if ch.isprintable() and ch != "\ufffd" else " " for ch in continuation)
    text = " ".join(clean.split()).split(".")[0].strip()
    sep = " " if text and text[0] not in ",;:" else ""
    return f"a photo of a {name}{sep}{text}".strip()


def load_text_pipeline(model: str, device: str = "cpu"):
    """A transformers ``text-generation`` pipeline from a local folder or a cached hub id.

    CPU by default: sampling on another device draws other tokens from the same seed, and the
    descriptions are rebuilt by every stage that needs prompts (generate, its shards, filter
    retries), so they must not depend on which machine runs the stage.
    """
    from transformers import pipeline

    from discl.hub import unreachable_reason

    if (why := unreachable_reason(model)) is not None:  # at once, not after 30 s of hub retries
        raise ModelNotFoundError(
            f"prompts.text_model {model!r} could not be loaded ({why}); pass a local folder saved with "
            f"save_pretrained, or download it on an online machine with `huggingface-cli download {model}` "
            f"and point HF_HOME at the cache")
    try:
        # HF_HUB_OFFLINE=1 is honoured by transformers itself (passing local_files_only here as well
        # made every call fail with "multiple values for keyword argument")
        return pipeline("text-generation", model=model, device=device)
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(
            f"prompts.text_model {model!r} could not be loaded ({str(e).splitlines()[0][:200]}); pass a local "
            f"folder saved with save_pretrained, or download it on an online machine with "
            f"`huggingface-cli download {model}` and point HF_HOME at the cache"
        ) from None


def generate_descriptions(model: str, classes: Sequence[str], per_class: int, max_new_tokens: int = 40,
                          device: str = "cpu") -> dict[str, list[str]]:
    """``{class name: [per_class descriptions]}``, deterministic for a (model, class)."""
    import torch

    gen = load_text_pipeline(model, device)
    out: dict[str, list[str]] = {}
    for name in classes:
        seed = derive_seed("textgen", model, name)
        with torch.random.fork_rng(devices=[] if gen.device.type == "cpu" else [gen.device]), torch.inference_mode():
            torch.manual_seed(seed)
            res = gen(PROMPT.format(name=name), max_new_tokens=max_new_tokens, do_sample=True,
                      num_return_sequences=per_class, return_full_text=False)
        descs = [first_sentence(name, r["generated_text"]) for r in res]
        weak = sum(d == f"a photo of a {name}" for d in descs) + len(descs) - len(set(descs))
        if weak:
            logger.warning("text model %s: %d of %d descriptions of %r are empty or repeated", model, weak,
                           len(descs), name)
        out[name] = descs
    return out
