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


def test_a_new_strategy_is_one_new_file(tmp_path):
    """A strategy module placed in the curriculum package's folder is listed and built, with no
    other file edited: the package discovers its strategy modules. The new file lies in a temporary
    folder added to the package's search path (the source tree stays untouched, so parallel test
    processes never see it), in a fresh interpreter, since this one has imported the package."""
    name = f"zz_added_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(STRATEGY.format(name=name))
    code = f"""
import importlib.util, sys
spec = importlib.util.find_spec("discl.curriculum")
spec.submodule_search_locations.append({str(tmp_path)!r})  # as if the file were in discl/curriculum/
package = importlib.util.module_from_spec(spec)
sys.modules["discl.curriculum"] = package
spec.loader.exec_module(package)
from discl.curriculum.base import create_strategy, list_strategies
from discl.curriculum.config import CurriculumConfig
print({name!r} in list_strategies(), create_strategy({name!r}, CurriculumConfig(), 3, 0).stage(0))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "real"]


# -- imports read downward (docs/architecture.md) -----------------------------------------------

TOP = ("discl.cli", "discl.pipeline", "discl.sweep", "discl.__main__")  # the app: nothing below imports it
# the stage packages in data-flow order; a package may import those before it, not those after
STAGES = ["data", "mining", "prompts", "generation", "filtering", "curriculum", "training", "evaluation"]
# known upward imports, each with why it is still there; the test fails on any other
KNOWN_UPWARD = {
    # model-based mining fits classifiers out of fold with the training loop
    ("discl.mining.oof", "discl.training.loop"): "fit_classifier / predict_proba for out-of-fold predictions",
    ("discl.mining.runner", "discl.training.loop"): "fit_classifier for out-of-fold predictions",
    # the trainer measures with the pure metrics of evaluation (per epoch, on validation)
    ("discl.training.loop", "discl.evaluation.metrics"): "validation metrics per epoch",
    ("discl.training.posthoc", "discl.evaluation.metrics"): "validation metrics of la / crt",
    ("discl.training.recipe", "discl.evaluation.metrics"): "test metrics of a finished run",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the discl modules it imports, from the source (function-level imports included:
    they are dependencies too, only deferred). ``from discl.x import name`` counts as an import of
    ``discl.x.name`` when that is a module, else of ``discl.x``."""
    import ast

    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}

    def known(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {known(a.name) for a in node.names if a.name.split(".")[0] == "discl"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "discl":
                targets |= {known(f"{node.module}.{a.name}") for a in node.names}
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def in_top(name: str) -> bool:
    return any(name == t or name.startswith(t + ".") for t in TOP)


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_nothing_below_imports_the_cli_or_the_orchestrator():
    bad = sorted((a, b) for a, targets in import_graph().items() if not in_top(a) for b in targets if in_top(b))
    assert bad == []


def test_stage_packages_import_only_earlier_stages():
    def stage(name: str) -> int | None:
        parts = name.split(".")
        return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else None

    upward = {(a, b) for a, targets in import_graph().items() for b in targets
              if stage(a) is not None and stage(b) is not None and stage(b) > stage(a)}
    assert sorted(upward - set(KNOWN_UPWARD)) == [], "a new upward import: move what it borrows down"
    assert sorted(set(KNOWN_UPWARD) - upward) == [], "an exception that no longer happens: delete it here"


def test_the_checks_see_a_circle_and_an_upward_import():
    """The checks themselves: a made-up graph with a circle and an import of the CLI."""
    graph = {"discl.a": {"discl.b"}, "discl.b": {"discl.a"}, "discl.data.x": {"discl.cli"}}
    assert cycles(graph) == [["discl.a", "discl.b"]]
    assert [(a, b) for a, t in graph.items() if not in_top(a) for b in t if in_top(b)] == [("discl.data.x", "discl.cli")]
