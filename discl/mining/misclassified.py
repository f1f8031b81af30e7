"""Hard = the out-of-fold model predicts another class (the model never trained on the image)."""

from __future__ import annotations

import numpy as np

from discl.mining.base import FunctionCriterion, MiningInputs, register
from discl.mining.config import MiningConfig


def misclassified(inputs: MiningInputs, cfg: MiningConfig) -> np.ndarray:
    return inputs.pred != inputs.labels


CRITERION = register(FunctionCriterion("misclassified", needs_predictions=True, fn=misclassified))
