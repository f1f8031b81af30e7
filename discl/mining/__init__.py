"""Hard-sample mining (phase 1a): pure criteria (one file each, registered by name) + the runner."""

from discl.mining.base import Criterion, MiningInputs, available_criteria, get_criterion, register
from discl.mining.select import HARD_COLUMNS, select_hard, stratified_folds

__all__ = ["Criterion", "MiningInputs", "HARD_COLUMNS", "available_criteria", "get_criterion", "register",
           "select_hard", "stratified_folds"]
