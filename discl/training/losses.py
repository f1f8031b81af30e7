"""Classification losses: cross-entropy and balanced softmax (Ren et al., 2020).

Balanced softmax adds the log class prior of the data being trained on to the logits during
training only, which undoes the label-frequency bias of the softmax. The prior is the label
distribution of what the model actually sees (an epoch's curriculum mix differs from the raw
training set), so the trainer recomputes it every epoch. FLYP lives in :mod:`discl.training.clip`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["log_prior", "balanced_softmax_loss", "classification_loss"]


def log_prior(counts, eps: float = 1.0) -> torch.Tensor:
    """log p(y) from class counts; ``eps`` pseudo-counts keep empty classes finite."""
    c = torch.as_tensor(np.asarray(counts, dtype=np.float64), dtype=torch.float64) + eps
    return (c / c.sum()).log().float()


def balanced_softmax_loss(logits: torch.Tensor, target: torch.Tensor, prior_log: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits + prior_log.to(logits.device, logits.dtype), target)


def classification_loss(name: str, logits: torch.Tensor, target: torch.Tensor, prior_log: torch.Tensor | None = None):
    if name == "ce":
        return F.cross_entropy(logits, target)
    if name == "balanced_softmax":
        if prior_log is None:
            raise ValueError("balanced_softmax needs the log class prior")
        return balanced_softmax_loss(logits, target, prior_log)
    raise ValueError(f"unknown loss {name!r} (ce, balanced_softmax, flyp)")
