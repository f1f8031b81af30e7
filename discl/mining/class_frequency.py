"""Hard = every image of a class with fewer than ``mining.frequency_below`` training images."""

from __future__ import annotations

import numpy as np

from discl.mining.base import FunctionCriterion, MiningInputs, register
from discl.mining.config import MiningConfig


def class_frequency(inputs: MiningInputs, cfg: MiningConfig) -> np.ndarray:
    return inputs.class_counts[inputs.labels] < cfg.frequency_below


CRITERION = register(FunctionCriterion("class_frequency", needs_predictions=False, fn=class_frequency))
