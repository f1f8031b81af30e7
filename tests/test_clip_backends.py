"""One contract test over every registered CLIP backend (tiny real models, offline), plus load errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from discl.errors import ModelNotFoundError
from discl.filtering import testing
from discl.filtering.scorer import ClipScorer, create_scorer, list_backends, register_backend


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    """backend -> model spec of a real, small model that loads offline."""
    tmp = tmp_path_factory.mktemp("backends")
    torch.manual_seed(0)
    return {
        "embedded": "embedded",
        "open_clip": f"{testing.register_tiny_open_clip(tmp / 'oc')}/none",
        "transformers": str(testing.save_tiny_transformers_clip(tmp / "hf")),
    }


def _images(n=5):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(n)] + [
        Image.new("RGB", (40, 20), (200, 10, 10))  # other size and mode
    ]


def test_registry_lists_the_backends():
    assert {"embedded", "open_clip", "transformers"} <= set(list_backends())
    with pytest.raises(ValueError, match="registered"):
        create_scorer("nope", "x")


@pytest.mark.parametrize("backend", ["embedded", "open_clip", "transformers"])
def test_backend_contract(backend, specs):
    scorer = create_scorer(backend, specs[backend], device="cpu", batch_size=4)
    assert isinstance(scorer, ClipScorer)
    assert isinstance(scorer.id, str) and scorer.id.startswith(f"{backend}:")
    imgs = _images()
    emb = scorer.encode_images(imgs)
    txt = scorer.encode_texts(["a photo of a Bag", "a 8k real photo: a Sandal on a grey background", "x"])
    assert emb.dtype == torch.float32 and txt.dtype == torch.float32
    assert emb.shape[0] == len(imgs) and txt.shape[0] == 3 and emb.shape[1] == txt.shape[1]
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(imgs)))
    torch.testing.assert_close(txt.norm(dim=1), torch.ones(3))
    # batching (batch_size 4 over 6 images) gives the same rows as one at a time
    single = torch.cat([scorer.encode_images([im]) for im in imgs])
    torch.testing.assert_close(emb, single, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(emb[0], emb[1])  # different images, different embeddings
    assert scorer.encode_images([]).shape == (0, emb.shape[1])
    # no autograd graph, eval mode
    assert not emb.requires_grad
    assert not scorer.model.training


def test_register_backend_with_a_factory(specs):
    calls = []

    def factory(model, device="auto", batch_size=128):
        calls.append(model)
        return create_scorer("open_clip", specs["open_clip"], device=device, batch_size=batch_size)

    register_backend("my-clip", factory)
    assert "my-clip" in list_backends()
    assert create_scorer("my-clip", "whatever").id.startswith("open_clip:")
    assert calls == ["whatever"]


def test_open_clip_missing_weights_name_the_model_and_the_fix(specs, tmp_path):
    arch = specs["open_clip"].split("/")[0]
    with pytest.raises(ModelNotFoundError, match=f"{arch}.*local checkpoint"):
        create_scorer("open_clip", f"{arch}/{tmp_path}/absent.safetensors", device="cpu")
    with pytest.raises(ModelNotFoundError, match="no-such-arch"):
        create_scorer("open_clip", "no-such-arch/openai", device="cpu")
    with pytest.raises(ModelNotFoundError, match="ARCH/PRETRAINED"):
        create_scorer("open_clip", "ViT-B-32", device="cpu")


def test_transformers_missing_model_names_it_and_the_fix(tmp_path):
    with pytest.raises(ModelNotFoundError, match="absent-clip.*local folder"):
        create_scorer("transformers", str(tmp_path / "absent-clip"), device="cpu")


def test_embedded_missing_weights_say_how_to_train(tmp_path):
    with pytest.raises(ModelNotFoundError, match="discl clip train"):
        create_scorer("embedded", str(tmp_path / "absent.safetensors"), device="cpu")
