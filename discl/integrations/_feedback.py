"""The probability function the adaptive strategies call, made from a classifier (shared by the adapters)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def model_proba(model: torch.nn.Module, forward: Callable | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> softmax(logits)`` in eval mode on the model's device, the training mode restored after.

    ``forward(model, x)`` returns logits when the model's own call does not (e.g. an HF model that
    returns an output object); by default ``model(x)``, or its ``logits`` field.
    """

    @torch.no_grad()
    def proba(x: torch.Tensor) -> torch.Tensor:
        was = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
            out = forward(model, x.to(device)) if forward is not None else model(x.to(device))
            logits = out["logits"] if isinstance(out, dict) else getattr(out, "logits", out)
            return logits.float().softmax(-1).cpu()
        finally:
            model.train(was)

    return proba
