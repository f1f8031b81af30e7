"""The classifier factory: small CIFAR-style ResNets from scratch, timm and torchvision models.

Every model returned by :func:`create_model` takes float images in [0, 1] shaped [N, C, H, W] and
returns logits [N, num_classes]; the per-channel normalisation lives inside the model
(:class:`Normalized`) as buffers, so a checkpoint carries it and callers never normalise by hand.

Names: ``resnet8`` / ``resnet10`` / ``resnet18s`` (this module's registry, see :func:`list_models`),
``timm:<name>`` (any timm architecture) and ``torchvision:<name>``. timm and torchvision are imported
only here. Pretrained weights are loaded only from what the user already has (a local cache or a
file); when they cannot be loaded the error says how to provide them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from discl.errors import ModelNotFoundError

logger = logging.getLogger(__name__)

__all__ = ["create_model", "create_classifier", "classifier_header", "list_models", "register_model", "Normalized", "CifarResNet"]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """A ResNet for small images: 3x3 stem without max-pool, one stage per width, global pooling.

    ``blocks=(1, 1, 1, 1)`` is ResNet-10 (the authors' ImageNet-LT backbone), here with narrower
    widths so it trains on a CPU at 28x28.
    """

    def __init__(self, blocks: Sequence[int], widths: Sequence[int], num_classes: int, in_channels: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, stride=2 if (i > 0 and j == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Normalized(nn.Module):
    """``net((x - mean) / std)`` with ``x`` in [0, 1]; mean/std are buffers saved with the weights."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


# name -> builder(num_classes, in_channels) ; small models trained from scratch
_REGISTRY: dict[str, tuple[Callable[[int, int], nn.Module], str]] = {}


def register_model(name: str, description: str):
    def deco(fn: Callable[[int, int], nn.Module]):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = (fn, description)
        return fn

    return deco


@register_model("resnet8", "CIFAR ResNet-8: 3 stages x 1 block, widths 16/32/64 (~78k params)")
def _resnet8(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet((1, 1, 1), (16, 32, 64), num_classes, in_channels)


@register_model("resnet10", "ResNet-10 (the authors' ImageNet-LT backbone): 4 stages x 1 block, widths 32..256")
def _resnet10(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet((1, 1, 1, 1), (32, 64, 128, 256), num_classes, in_channels)


@register_model("resnet18s", "small ResNet-18: 4 stages x 2 blocks, widths 32..256")
def _resnet18s(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet((2, 2, 2, 2), (32, 64, 128, 256), num_classes, in_channels)


def list_models() -> dict[str, str]:
    """Registered model names and one-line descriptions (plus the timm:/torchvision: prefixes)."""
    out = {name: desc for name, (_, desc) in sorted(_REGISTRY.items())}
    out["timm:<name>"] = "any timm architecture (pretrained weights from the user's cache or a file)"
    out["torchvision:<name>"] = "any torchvision classification model (pretrained weights from the torch hub cache)"
    return out


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 1,
    image_size: int = 28,
    pretrained: bool | str = False,
    seed: int | None = None,
) -> nn.Module:
    """A classifier taking [0, 1] images [N, in_channels, image_size, image_size].

    ``pretrained``: False, True (timm/torchvision weights from the local cache; never downloads if
    offline and fails with :class:`ModelNotFoundError`), or a path to a weights file (timm).
    ``seed``: random initialisation from a generator seeded by it; the caller's global RNG is
    left as it was (layer initialisers only draw from the global RNG, so it is forked).
    """
    if seed is None:
        return _create(name, num_classes, in_channels, pretrained)
    from discl.seeding import derive_seed

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("model-init", name, int(seed)))
        return _create(name, num_classes, in_channels, pretrained)


def _create(name: str, num_classes: int, in_channels: int, pretrained: bool | str) -> nn.Module:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if name.startswith("timm:"):
        return _create_timm(name[5:], num_classes, in_channels, pretrained)
    if name.startswith("torchvision:"):
        return _create_torchvision(name[12:], num_classes, in_channels, pretrained)
    if name not in _REGISTRY:
        known = ", ".join(list_models())
        raise ModelNotFoundError(f"unknown model {name!r}; known: {known}")
    if pretrained:
        raise ModelNotFoundError(f"model {name!r} is trained from scratch; it has no pretrained weights")
    net = _REGISTRY[name][0](num_classes, in_channels)
    return Normalized(net, [0.5] * in_channels, [0.25] * in_channels)


def _create_timm(arch: str, num_classes: int, in_channels: int, pretrained: bool | str) -> nn.Module:
    import timm

    if not timm.is_model(arch):
        raise ModelNotFoundError(f"timm has no model {arch!r} (see timm.list_models())")
    kwargs: dict = {"num_classes": num_classes, "in_chans": in_channels}
    if isinstance(pretrained, str):
        kwargs["pretrained_cfg_overlay"] = {"file": pretrained}
    try:
        net = timm.create_model(arch, pretrained=bool(pretrained), **kwargs)
    except Exception as e:  # noqa: BLE001 - any hub/cache/file failure becomes one clear message
        raise ModelNotFoundError(
            f"cannot load pretrained weights for timm:{arch} ({type(e).__name__}: {e}). Put them in the "
            "Hugging Face cache (HF_HOME) on a machine with access, pass a local file as "
            "training.pretrained_path, or set training.pretrained=false to train from scratch"
        ) from e
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    mean, std = cfg.get("mean", (0.5,) * 3), cfg.get("std", (0.25,) * 3)
    mean, std = _fit_channels(mean, in_channels), _fit_channels(std, in_channels)
    return Normalized(net, mean, std)


def _create_torchvision(arch: str, num_classes: int, in_channels: int, pretrained: bool | str) -> nn.Module:
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(arch)
    except ValueError:
        raise ModelNotFoundError(f"torchvision has no model {arch!r} (see torchvision.models.list_models())") from None
    if pretrained:
        try:
            weights = torchvision.models.get_model_weights(arch).DEFAULT
            net = builder(weights=weights)
        except Exception as e:  # noqa: BLE001
            raise ModelNotFoundError(
                f"cannot load pretrained weights for torchvision:{arch} ({type(e).__name__}: {e}); put them in the "
                "torch hub cache (TORCH_HOME) or set training.pretrained=false"
            ) from e
        _replace_head(net, num_classes)
    else:
        net = builder(weights=None, num_classes=num_classes)
    if in_channels != 3:
        _adapt_first_conv(net, in_channels)
    mean = _fit_channels((0.485, 0.456, 0.406), in_channels)
    std = _fit_channels((0.229, 0.224, 0.225), in_channels)
    return Normalized(net, mean, std)


def _fit_channels(values: Sequence[float], channels: int) -> list[float]:
    values = list(values)
    if len(values) == channels:
        return values
    return [sum(values) / len(values)] * channels


def _replace_head(net: nn.Module, num_classes: int) -> None:
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(net, attr, None)
        if isinstance(head, nn.Linear):
            setattr(net, attr, nn.Linear(head.in_features, num_classes))
            return
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            head[-1] = nn.Linear(head[-1].in_features, num_classes)
            return
    raise ModelNotFoundError(f"cannot find the classification head of {type(net).__name__} to resize it")


def _adapt_first_conv(net: nn.Module, in_channels: int) -> None:
    """Replace the first 3-channel conv by an ``in_channels`` one (pretrained RGB filters summed)."""
    for parent in net.modules():
        for cname, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                new = nn.Conv2d(in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                                child.dilation, child.groups, child.bias is not None)
                with torch.no_grad():
                    w = child.weight.sum(1, keepdim=True) / in_channels
                    new.weight.copy_(w.expand(-1, in_channels, -1, -1))
                    if child.bias is not None:
                        new.bias.copy_(child.bias)
                setattr(parent, cname, new)
                return
    raise ModelNotFoundError(f"cannot find the first convolution of {type(net).__name__} to adapt it to {in_channels} channels")


def create_classifier(cfg, num_classes: int, in_channels: int, image_size: int,
                      class_names: Sequence[str] | None, seed: int) -> nn.Module:
    """The classifier ``cfg`` (a TrainConfig) names: ``model: clip`` builds a CLIP classifier
    (``clip_model``, ``clip_pretrained``) whose head is the zero-shot captions of ``class_names``;
    anything else :func:`create_model`."""
    if cfg.model == "clip":
        from discl.training.clip import create_clip_classifier

        if class_names is None or len(class_names) != num_classes:
            raise ValueError("model clip needs the class names (one per class) for its captions")
        return create_clip_classifier(cfg.clip_model, cfg.clip_pretrained, list(class_names), seed=seed)
    return create_model(cfg.model, num_classes, in_channels, image_size,
                        pretrained=cfg.pretrained_path or cfg.pretrained, seed=seed)


def classifier_header(cfg, num_classes: int, in_channels: int, image_size: int,
                      class_names: Sequence[str]) -> dict:
    """What a checkpoint stores to rebuild the classifier :func:`create_classifier` makes (pure):
    next to it, so that ``model: clip`` is told apart in one module only."""
    header = {"model": cfg.model, "num_classes": num_classes, "in_channels": in_channels,
              "image_size": image_size, "class_names": list(class_names)}
    if cfg.model == "clip":
        header.update({"clip_model": cfg.clip_model, "clip_pretrained": cfg.clip_pretrained})
    return header
