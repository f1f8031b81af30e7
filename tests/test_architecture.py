"""The shape of the package (docs/architecture.md): registries extend by one file, imports read downward."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import discl

PACKAGE = Path(discl.__file__).parent

STRATEGY = '''
from discl.curriculum.base import NonAdaptive, Stage, register_strategy


@register_strategy("{name}", "a strategy added by one file (tests/test_architecture.py)")
class Added(NonAdaptive):
    def stage(self, epoch: int) -> Stage:
        return Stage()
'''


def test_a_new_strategy_is_one_new_file():
    """A module dropped into discl/curriculum/ is listed, with no other file edited: the package
    discovers its strategy modules. Run in a fresh interpreter, since this one has imported the package."""
    name = f"zz_added_{uuid.uuid4().hex[:8]}"
    module = PACKAGE / "curriculum" / f"{name}.py"
    module.write_text(STRATEGY.format(name=name))
    try:
        code = ("from discl.curriculum.base import create_strategy, list_strategies\n"
                "from discl.curriculum.config import CurriculumConfig\n"
                f"print({name!r} in list_strategies(), create_strategy({name!r}, CurriculumConfig(), 3, 0).stage(0))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["True", "real"]
    finally:
        module.unlink()
        for cached in (module.parent / "__pycache__").glob(f"{name}.*"):
            cached.unlink()
