"""Every shipped config loads and validates; the method grammar and the headline table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from discl.config import load_config
from discl.configtools import ConfigError
from discl.evaluation.results import headline_table
from discl.methods import parse_method

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_loads(path: Path):
    cfg = load_config(path)
    assert cfg.name and cfg.methods
    gen_levels = set(cfg.generation.levels)
    for lam in cfg.curriculum.levels:
        assert lam == 1.0 or lam in gen_levels, f"{path.name}: curriculum level {lam} is not generated"


def test_demo_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"fmnist-lt.yaml", "fmnist-lq.yaml"} <= names


def test_method_grammar():
    assert parse_method("cb").sampler == "class_balanced"
    assert parse_method("bs").loss == "balanced_softmax" and parse_method("bs").strategy is None
    m = parse_method("bs+discl")
    assert (m.loss, m.strategy) == ("balanced_softmax", "discl")
    m = parse_method("single@0.3")
    assert (m.strategy, m.level) == ("single", 0.3)
    assert not parse_method("ce").uses_synthetic and parse_method("mixed").uses_synthetic
    for bad in ("", "xx+discl", "single@2", "single@abc", "a b"):
        with pytest.raises(ValueError):
            parse_method(bad)
    with pytest.raises(ConfigError, match="methods\\[1\\]"):
        load_config(None, ["methods=[ce, 'zz+discl']"])


def test_headline_table_mean_and_std():
    cfg = load_config(None, ["methods=[ce, discl]", "seeds=[0, 1]"])
    res = pd.DataFrame({"method": ["ce", "ce", "discl", "discl"], "seed": [0, 1, 0, 1],
                        "test.top1": [0.5, 0.7, 0.8, 0.8], "test.few": [0.1, 0.3, 0.5, 0.7],
                        "test.many": [0.9, 0.9, 0.9, 0.9], "test.medium": [0.5, 0.5, 0.5, 0.5]})
    table = headline_table(cfg, res)
    assert "sample std, ddof=1" in table.splitlines()[0]
    assert "| ce | 2 of 2 | 60.0 ± 14.1 | 90.0 ± 0.0 | 50.0 ± 0.0 | 20.0 ± 14.1 | — |" in table  # ddof = 1
    assert "| discl | 2 of 2 | 80.0 ± 0.0 |" in table
    # a seed without a finished run of this config is named with its reason, not averaged away
    res["status"], res["reason"] = ["ok", "ok", "ok", "stale"], ["", "", "", "trained for other inputs"]
    res.loc[3, ["test.top1", "test.few", "test.many", "test.medium"]] = float("nan")
    table = headline_table(cfg, res)
    assert "| discl | 1 of 2 | 80.0 |" in table and "seed 1: stale (trained for other inputs)" in table


def test_configuration_reference_is_current():
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("config_reference", root / "scripts" / "config_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (root / "docs" / "configuration.md").read_text() == mod.render(), (
        "docs/configuration.md is stale: run .venv/bin/python scripts/config_reference.py")
