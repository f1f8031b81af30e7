from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from discl.assets import EMBEDDED  # training.clip_model: the CLIP shipped with discl
from discl.configtools import check


def embedded_weights(pretrained: str | None) -> str | None:
    """Pure: the weights file of ``clip_model: embedded`` (None = the shipped file), or ValueError.

    ``clip_pretrained`` is unset or ``embedded`` (the shipped weights) or a ``.safetensors`` file
    written by ``discl clip train`` (as ``filtering.model`` accepts); an open_clip tag is a contradiction.
    """
    if pretrained in (None, "", EMBEDDED):
        return None
    if str(pretrained).lower().endswith(".safetensors"):
        return str(pretrained)
    raise ValueError(f"{pretrained!r} is not a weights choice of clip_model: embedded (leave it unset or "
                     "'embedded' for the shipped weights, or give a .safetensors file from `discl clip train`)")


@dataclass
class TrainConfig:
    """The classifier and its optimisation (baseline and curriculum training share it)."""

    model: str = "resnet8"  # discl small ResNets (resnet8/resnet10/resnet18s), "timm:<name>", "torchvision:<name>", "clip"
    pretrained: bool = False  # timm/torchvision: load the user's cached weights
    pretrained_path: str | None = None  # timm: a local weights file (implies pretrained); relative in a config file: to its folder, ~ expanded
    clip_model: str = "ViT-B-16"  # model "clip": open_clip architecture name, or "embedded" (the CLIP shipped with discl, for the 28x28 grayscale tasks)
    clip_pretrained: str | None = None  # model "clip": open_clip pretrained tag or a local checkpoint file; with clip_model embedded: unset or "embedded" (the shipped weights) or a .safetensors file from `discl clip train`; a relative file path in a config file: to its folder (on the command line: the working directory), ~ expanded
    loss: Literal["ce", "balanced_softmax", "bs", "flyp"] = "ce"  # bs = balanced_softmax (as in methods and --loss)
    sampler: Literal["none", "class_balanced"] = "none"  # class_balanced: resample classes uniformly
    epochs: int = 30
    batch_size: int = 128
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9  # sgd only
    grad_clip: float | None = None  # max gradient norm; None = no clipping
    warmup_steps: int = 0
    schedule: Literal["cosine", "constant"] = "cosine"  # per step
    augment: bool = True  # augment training images (which augmentation: training.augmentation)
    augmentation: Literal["auto", "pad_crop", "random_resized_crop", "clip"] = "auto"  # auto: pad_crop in memory, random_resized_crop (clip for model clip) when streamed
    init_from: str | None = None  # a checkpoint (safetensors) to fine-tune from; ce/bs/cb/flyp: the same seed's baseline of this run; baseline: the one of each run's own loss (DisCL from CE as the authors do; BS + DisCL from BS)
    seed: int = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    num_workers: int = 0  # DataLoader worker processes decoding images on the streamed path (0: in the main process)
    select_on: Literal["val_accuracy", "val_macro_f1", "last"] = "val_accuracy"
    eval_every: int = 1
    log_with: list[str] | None = None  # accelerate trackers: tensorboard, wandb
    checkpoint_every: int = 1  # epochs between resumable checkpoints

    def __post_init__(self):
        if self.loss == "bs":  # one spelling everywhere: methods and `discl train --loss` say bs
            self.loss = "balanced_softmax"
        check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        check(self.num_workers >= 0, "num_workers", f"must be >= 0, got {self.num_workers}")
        check(self.eval_every >= 1, "eval_every", "must be >= 1")
        check(self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1")
        check(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be > 0 or null")
        check(0.0 <= self.momentum < 1.0, "momentum", "must be in [0, 1)")
        check(self.loss != "flyp" or self.model == "clip", "loss", "flyp needs training.model: clip")
        if self.model == "clip":
            if self.clip_model == EMBEDDED:
                if self.clip_pretrained in ("", EMBEDDED):  # one spelling of the shipped weights (one digest)
                    self.clip_pretrained = None
                try:
                    embedded_weights(self.clip_pretrained)
                except ValueError as e:
                    check(False, "clip_pretrained", str(e))
            check(self.clip_model == EMBEDDED or self.clip_pretrained != EMBEDDED, "clip_pretrained",
                  f"'embedded' (the shipped embedded CLIP's weights) goes with clip_model: embedded, not "
                  f"{self.clip_model!r}")
