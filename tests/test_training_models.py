"""The model factory and the in-memory training helpers other stages use (mining)."""

import pytest
import torch

from discl.errors import ModelNotFoundError
from discl.training.config import TrainConfig
from discl.training.loop import fit_classifier, predict_proba
from discl.training.models import create_model, list_models


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", ["resnet8", "resnet10", "resnet18s"])
def test_registered_models_forward(name):
    assert name in list_models()
    m = create_model(name, num_classes=7, in_channels=1, image_size=28)
    out = m(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 7)


def test_seeded_init_is_reproducible_and_leaves_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = create_model("resnet8", 3, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    b = create_model("resnet8", 3, seed=5)
    c = create_model("resnet8", 3, seed=6)
    wa, wb, wc = (m.state_dict()["net.fc.weight"] for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_timm_and_torchvision_from_scratch():
    m = create_model("timm:resnet10t", num_classes=4, in_channels=1, image_size=28)
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 4)
    m = create_model("torchvision:resnet18", num_classes=4, in_channels=1, image_size=32)
    assert m(torch.rand(2, 1, 32, 32)).shape == (2, 4)


def test_unknown_model_and_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="unknown model 'resnet999'"):
        create_model("resnet999", 10)
    with pytest.raises(ModelNotFoundError, match="timm has no model"):
        create_model("timm:not_a_model_xyz", 10)
    with pytest.raises(ModelNotFoundError, match="cannot load pretrained weights for timm:resnet10t"):
        create_model("timm:resnet10t", 10, pretrained=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelNotFoundError, match="from scratch"):
        create_model("resnet8", 10, pretrained=True)


def _toy(n=240, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = (torch.rand(n, 1, 28, 28, generator=g) * 60).to(torch.uint8)
    for c in range(k):  # a bright band per class: learnable in a couple of epochs
        x[y == c, :, 4 + 8 * c : 10 + 8 * c, :] = 250
    return x, y


def test_fit_classifier_learns_is_deterministic_and_predicts_probabilities():
    x, y = _toy()
    cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    m1 = fit_classifier(x, y, x[:60], y[:60], cfg, num_classes=3, seed=1)
    assert torch.equal(torch.get_rng_state(), before), "fit_classifier must not move the caller's RNG"
    m2 = fit_classifier(x, y, x[:60], y[:60], cfg, num_classes=3, seed=1)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    p = predict_proba(m1, x, batch_size=50)
    assert p.shape == (len(x), 3)
    assert torch.allclose(p.sum(1), torch.ones(len(x)), atol=1e-5)
    assert (p.argmax(1) == y).float().mean() > 0.9
