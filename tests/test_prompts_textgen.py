"""The local text-model prompt writer, with a tiny real GPT-2 built in code (no download)."""

from __future__ import annotations

import json

import pytest
import torch
from generation_fixtures import _bytes_to_unicode

from discl.errors import ModelNotFoundError
from discl.prompts.builder import build_prompt, resolve_descriptions
from discl.prompts.config import PromptConfig
from discl.prompts.textgen import first_sentence, generate_descriptions


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    vocab = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = GPT2TokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=512, n_embd=16, n_layer=2, n_head=2,
                                       bos_token_id=len(vocab) - 1, eos_token_id=len(vocab) - 1))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_descriptions_are_deterministic_per_class_and_leave_the_global_rng_alone(tiny_gpt2):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = generate_descriptions(tiny_gpt2, ["shirt", "bag"], per_class=3, max_new_tokens=12)
    assert torch.equal(torch.rand(1), expected_next)  # the caller's RNG stream is untouched
    b = generate_descriptions(tiny_gpt2, ["bag"], per_class=3, max_new_tokens=12)  # another order, alone
    assert a["bag"] == b["bag"]
    assert set(a) == {"shirt", "bag"} and all(len(v) == 3 for v in a.values())
    assert all(d.startswith(f"a photo of a {name}") for name, v in a.items() for d in v)
    assert a["shirt"] != [d.replace("bag", "shirt") for d in a["bag"]]  # each class has its own seed


def test_config_routes_text_model_into_prompts(tiny_gpt2):
    cfg = PromptConfig(text_model=tiny_gpt2, descriptions_per_class=2)
    descs = resolve_descriptions(cfg, ["coat"])
    assert len(descs["coat"]) == 2
    prompt = build_prompt(cfg, "coat", "s001", 0, descs)
    assert prompt == cfg.description_prefix + descs["coat"][0] or prompt == cfg.description_prefix + descs["coat"][1]
    assert all(ch.isprintable() for d in descs["coat"] for ch in d)


def test_first_sentence():
    assert first_sentence("bag", " on a table. Then more") == "a photo of a bag on a table"
    assert first_sentence("bag", ", in rain.") == "a photo of a bag, in rain"
    assert first_sentence("bag", "") == "a photo of a bag"
    assert first_sentence("bag", " on\x05 a\ufffd mat") == "a photo of a bag on a mat"


def test_missing_text_model_names_it(tmp_path):
    with pytest.raises(ModelNotFoundError, match="prompts.text_model.*nope"):
        generate_descriptions(str(tmp_path / "nope"), ["bag"], per_class=1)
