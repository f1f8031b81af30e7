"""Shared test setup: offline, quiet, small thread counts, a fresh run folder per test."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# Torch threads: the machine's cores shared out between the pytest-xdist workers (one each on two
# cores), so that two workers do not oversubscribe the CPUs; two in a run without workers. The
# subprocesses the tests start (``python -m discl``) inherit it. DISCL_TEST_THREADS overrides both.
if os.environ.get("DISCL_TEST_THREADS"):
    os.environ["OMP_NUM_THREADS"] = os.environ["DISCL_TEST_THREADS"]
elif os.environ.get("PYTEST_XDIST_WORKER"):
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(max(1, _cores // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
else:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# the weights-digest cache (discl.fingerprint) goes to a throwaway folder, not the user's ~/.cache
os.environ.setdefault("DISCL_CACHE_DIR", tempfile.mkdtemp(prefix="discl-test-cache-"))

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    return d


ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "data.test_limit=200",
    "data.image_size=14",  # the classifier at half the side: a quarter of the convolution work
    "generation.levels=[0.0, 0.5]",
    "generation.seeds_per_level=2",
    "generation.steps=10",
    "generation.steps_per_level={}",  # the shipped 100-step λ 0.5 is covered by its own tests; here 5 steps suffice
    "curriculum.levels=[0.0, 0.5]",
    "curriculum.stages=[0.34, 0.33, 0.33]",
    "training.epochs=3",
    "methods=[ce, discl]",
    "seeds=[0]",
]


def discl(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONHASHSEED": "random"}
    p = subprocess.run([sys.executable, "-m", "discl", *args], cwd=ROOT, env=env, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"discl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("e2e") / "run"
    p = discl("run", "configs/fmnist-lt.yaml", "--run-dir", str(run), *TINY)
    (run / "_stdout.txt").write_text(p.stdout)
    return run


TESTS = Path(__file__).resolve().parent


def _shared_fixture_group(item: pytest.Item) -> str | None:
    """The xdist group of a test that uses a session- or module-scoped fixture of this suite: the
    session fixture's name, else the test's module. Such tests then run on one worker, so that
    each expensive shared fixture (the tiny run, a module's reference run) is built once."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    group = None
    for name in info.names_closure:
        defs = info.name2fixturedefs.get(name)
        if not defs or defs[-1].scope not in ("session", "module"):
            continue
        func = getattr(defs[-1].func, "__wrapped__", defs[-1].func)
        code = getattr(func, "__code__", None)
        if code is None or Path(code.co_filename).resolve().parent != TESTS:
            continue  # pytest's own (tmp_path_factory, ...)
        if defs[-1].scope == "session":
            return name
        group = item.module.__name__
    return group


# pytest-xdist 3.8's `--dist loadgroup` renames a grouped test's node id (`...@group`), which pytest 9.2's
# structured node ids ignore: its groups then fall apart silently. So the workers write each test's
# group to a file and the controller's scheduler reads it (pytest_xdist_make_scheduler is xdist's hook).
GROUPS_FILE = "DISCL_TEST_XDIST_GROUPS"
if not os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ[GROUPS_FILE] = str(Path(tempfile.mkdtemp(prefix="discl-test-groups-")) / "groups.json")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    groups = {}
    for item in items:
        marks = [m.args[0] if m.args else m.kwargs.get("name", "default") for m in item.iter_markers("xdist_group")]
        group = "_".join(sorted(map(str, marks))) if marks else _shared_fixture_group(item)
        if group:
            groups[item.nodeid] = group
    if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get(GROUPS_FILE):
        import json

        path = Path(os.environ[GROUPS_FILE])
        tmp = path.with_name(f"{path.name}.{os.environ['PYTEST_XDIST_WORKER']}.tmp")
        tmp.write_text(json.dumps(groups))
        os.replace(tmp, path)  # every worker collects the same tests: the same content


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: `-p no:xdist` runs without it
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    import json

    from xdist.scheduler import LoadGroupScheduling

    class SharedFixtureScheduling(LoadGroupScheduling):
        """`loadgroup` with the groups the workers wrote: one work unit per group, every other test alone."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                self.groups = json.loads(Path(os.environ[GROUPS_FILE]).read_text())
            return self.groups.get(nodeid) or super()._split_scope(nodeid)

    return SharedFixtureScheduling(config, log)
