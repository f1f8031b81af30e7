"""``discl sweep``: a threshold sweep on the tiny embedded task, reuse of upstream stages, reruns, bad keys."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, discl

from discl.config import load_config
from discl.configtools import ConfigError
from discl.sweep import link_file, link_tree, plan_sweep, value_dirname

KEY = "filtering.threshold"
VALUES = ("0.0", "0.7")  # the tiny run's own threshold is 0.5: neither value can reuse its filter stage
SWEEP = ["--key", KEY, "--values", *VALUES, "--methods", "discl", "--seeds", "0"]


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def swept(tiny_run: Path, tmp_path_factory) -> tuple[Path, dict[str, tuple[int, int]], str]:
    """A base run (linked copy of the session's tiny run) and a 2-value threshold sweep over it."""
    base = tmp_path_factory.mktemp("sweep") / "base"
    link_tree(tiny_run, base)
    before = _files(base)
    p = discl("sweep", "-c", "configs/fmnist-lt.yaml", "--run-dir", str(base), *TINY, *SWEEP)
    return base, before, p.stdout + p.stderr


def test_sweep_writes_one_row_per_value_method_seed(swept):
    base, _, out = swept
    d = base / "sweep" / KEY
    s = pd.read_csv(d / "summary.csv")
    assert list(s["value"]) == [0.0, 0.7] and set(s["method"]) == {"discl"} and set(s["seed"]) == {0}
    for _, row in s.iterrows():
        run = d / value_dirname(str(row["value_text"]))
        manifest = pd.read_csv(run / "filter" / "manifest.csv")
        assert row["filter_kept"] == manifest["keep"].sum() and row["filter_images"] == len(manifest)
        assert row["filter_kept_sim_text"] == pytest.approx(manifest.loc[manifest["keep"], "sim_text"].mean())
        assert (manifest.loc[manifest["keep"], "sim_text"] >= row["value"]).all()
        results = pd.read_csv(run / "results.csv")
        assert row["test.top1"] == pytest.approx(results.loc[results["method"] == "discl", "test.top1"].iloc[0])
        assert row["val_score"] == pytest.approx(results.loc[results["method"] == "discl", "best.score"].iloc[0])
        assert load_config(run / "config.yaml").filtering.threshold == row["value"]
    assert s["filter_keep_rate"].iloc[0] == 1.0 and s["filter_keep_rate"].iloc[1] < 1.0
    md = (d / "summary.md").read_text()
    assert "| 0.7 | discl | 1 |" in md and "Spearman" in md and "| n |" in md
    assert s["val_score"].notna().all() and set(s["val_select_on"]) == {"val_accuracy"}
    assert "Chosen on the validation split" in md and "- discl: `filtering.threshold = " in md
    assert (d / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 0.0 | discl | 1 | 100.0% |" in out  # the table is printed


def test_upstream_stages_are_linked_not_recomputed(swept):
    base, before, out = swept
    assert {k: v for k, v in _files(base).items() if k in before} == before  # the base run is left as it was
    for v in VALUES:
        run = base / "sweep" / KEY / v
        # mining and the spectrum (images, manifest, marker) are the base's own files
        for rel in ("mining/hard.csv", ".stages/mine.json", ".stages/generate.json", "spectrum/metadata.csv"):
            assert os.path.samefile(run / rel, base / rel), rel
        images = list((base / "spectrum").rglob("*.png"))
        assert images and all(os.path.samefile(p, run / p.relative_to(base)) for p in images)
        # the filter ran again (other threshold) on the linked score cache, which it did not have to rewrite:
        # not one image was encoded
        assert not os.path.samefile(run / ".stages" / "filter.json", base / ".stages" / "filter.json")
        assert os.path.samefile(run / "filter" / "scores.parquet", base / "filter" / "scores.parquet")
        assert not os.path.samefile(run / "filter" / "manifest.csv", base / "filter" / "manifest.csv")
        # training depends on the threshold: its own run
        assert not os.path.samefile(run / "train" / "discl-s0" / "metrics.json",
                                    base / "train" / "discl-s0" / "metrics.json")
    assert "stage generate: running" not in out and "encoding" not in out


def test_rerun_does_no_work(swept, tiny_run):
    base, _, _ = swept
    d = base / "sweep" / KEY
    keep = lambda files: {k: v for k, v in files.items()  # noqa: E731 - report files are rewritten each run
                          if "/report" not in k and not k.endswith(("results.csv", "headline.md", "config.yaml"))}
    before = keep(_files(d))
    p = discl("sweep", "-c", "configs/fmnist-lt.yaml", "--run-dir", str(base), *TINY, *SWEEP)
    assert keep(_files(d)) == before
    assert p.stderr.count("nothing to redo") == len(VALUES) and "stages run:" not in p.stderr


def test_bad_key_or_value_is_named_and_exits_2(tmp_path):
    for key, value, named in (("filtering.thresh", "0.5", "filtering.thresh"),
                              (KEY, "abc", "filtering.threshold")):
        p = discl("sweep", "-c", "configs/fmnist-lt.yaml", "--run-dir", str(tmp_path), "--key", key,
                  "--values", "0.0", value, check=False)
        assert p.returncode == 2 and named in p.stderr, p.stderr
    assert not any(tmp_path.iterdir())  # checked before any work


def test_plan_names_duplicates_and_keys_the_sweep_sets(tmp_path):
    cfg = load_config("configs/fmnist-lt.yaml")
    points = plan_sweep(cfg, "curriculum.stages", ["[0.5, 0.5]", "[0.2, 0.8]"], tmp_path)
    assert [p.cfg.curriculum.stages for p in points] == [[0.5, 0.5], [0.2, 0.8]]
    assert points[0].run_dir == tmp_path / "sweep" / "curriculum.stages" / "_0.5__0.5_"
    assert points[0].cfg.run_dir == str(points[0].run_dir)
    with pytest.raises(ConfigError, match="given twice"):
        plan_sweep(cfg, KEY, ["0.3", "0.30"], tmp_path)
    with pytest.raises(ConfigError, match="cannot be swept"):
        plan_sweep(cfg, "seeds", ["[1]"], tmp_path)


def test_links_share_the_inode_but_append_logs_are_copied(tmp_path):
    (tmp_path / "a.csv").write_text("x\n")
    (tmp_path / "p.jsonl").write_text("{}\n")
    assert link_file(tmp_path / "a.csv", tmp_path / "out" / "a.csv") == "link"
    assert link_file(tmp_path / "p.jsonl", tmp_path / "out" / "p.jsonl") == "copy"
    assert os.path.samefile(tmp_path / "a.csv", tmp_path / "out" / "a.csv")
    (tmp_path / "out" / "p.jsonl").write_text("{}\n{}\n")
    assert (tmp_path / "p.jsonl").read_text() == "{}\n"


def test_choose_on_validation_takes_the_best_mean_validation_score():
    from discl.sweep import choose_on_validation

    s = pd.DataFrame({"method": ["discl"] * 4 + ["real_only"] * 2, "value_text": ["0.0", "0.0", "0.5", "0.5", "0.0", "0.5"],
                      "val_score": [0.72, 0.80, 0.78, 0.70, 0.6, float("nan")],
                      "test.top1": [0.1, 0.1, 0.9, 0.9, 0.5, 0.5]})  # the test split plays no part
    assert choose_on_validation(s) == {"discl": ("0.0", pytest.approx(0.76)), "real_only": ("0.0", pytest.approx(0.6))}
    assert choose_on_validation(s.drop(columns="val_score")) == {}


def test_a_method_the_key_does_not_reach_gets_no_chosen_value():
    """``ce`` trains the same run at every threshold (one digest per seed): naming a "chosen"
    threshold for it would read as a finding; a method whose digest changes still gets one."""
    from discl.sweep import choose_on_validation, unaffected_methods

    s = pd.DataFrame({"method": ["ce"] * 4 + ["discl"] * 4, "seed": [0, 1, 0, 1] * 2,
                      "value_text": ["0.0", "0.0", "0.5", "0.5"] * 2,
                      "val_score": [0.70, 0.72, 0.71, 0.73, 0.60, 0.62, 0.65, 0.66],
                      "train_digest": ["a", "b", "a", "b", "c", "d", "e", "f"]})
    assert unaffected_methods(s) == ["ce"]
    assert choose_on_validation(s) == {"discl": ("0.5", pytest.approx(0.655))}
    assert unaffected_methods(s.assign(train_digest="")) == []  # older results.csv without digests
    assert unaffected_methods(s[s["value_text"] == "0.0"]) == []  # one value: nothing to compare
    from discl.sweep import validation_ties

    tie = s.assign(val_score=[0.7, 0.7, 0.7, 0.7, 0.6, 0.6, 0.6, 0.6])
    assert validation_ties(tie) == {"discl": ["0.0", "0.5"]} and validation_ties(s) == {}
