"""Curriculum strategies over the guidance level λ: one file each, registered by name.

Importing this package imports every strategy module in its folder, and each registers itself with
:func:`discl.curriculum.base.register_strategy` (timm's pattern). The registry module never imports
a strategy, so there is no import circle, and a new strategy is one new file in this folder: no
list to extend. The modules named in ``HELPERS`` (and any whose name starts with ``_``) are the
package's helpers, not strategies: they are not imported here (``epochs``, ``sampler`` and
``stage_data`` plan the epochs and load pandas, ``testing`` builds test data).
"""

import importlib
import pkgutil

HELPERS = frozenset({"base", "config", "epochs", "progress", "sampler", "stage_data", "testing"})

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in HELPERS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
