"""Hard = out-of-fold probability of the ground-truth class below ``mining.confidence_below`` (tau)."""

from __future__ import annotations

import numpy as np

from discl.mining.base import FunctionCriterion, MiningInputs, register
from discl.mining.config import MiningConfig


def low_confidence(inputs: MiningInputs, cfg: MiningConfig) -> np.ndarray:
    return inputs.prob_gt < cfg.confidence_below


CRITERION = register(FunctionCriterion("low_confidence", needs_predictions=True, fn=low_confidence))
