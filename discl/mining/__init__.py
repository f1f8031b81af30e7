"""Hard-sample mining (phase 1a): pure criteria (one file each, registered by name) + the runner.

Importing this package imports every criterion module in its folder, and each registers itself
with :func:`discl.mining.base.register` (timm's pattern): the registry never imports a criterion,
and a new criterion is one new file here. ``HELPERS`` are the package's other modules, not imported
here (``runner`` and ``oof`` load the training loop).
"""

import importlib
import pkgutil

from discl.mining.base import Criterion, MiningInputs, available_criteria, get_criterion, register
from discl.mining.select import HARD_COLUMNS, select_hard, stratified_folds

HELPERS = frozenset({"base", "config", "oof", "runner", "select"})

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in HELPERS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Criterion", "MiningInputs", "HARD_COLUMNS", "available_criteria", "get_criterion", "register",
           "select_hard", "stratified_folds"]
