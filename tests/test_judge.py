"""The independent judge (discl.evaluation.judge) and bench_analog's target checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_analog import TARGET_NAMES, check_targets  # noqa: E402

from discl.data.tasks import PRIOR_STYLES, build_prior_pool, build_task  # noqa: E402
from discl.evaluation.judge import JudgeRecipe, create_judge, judge_digest  # noqa: E402

RECIPE = JudgeRecipe(per_class=30, epochs=3)  # 900 images: seconds, not minutes


@pytest.fixture(scope="module")
def pool():
    return build_prior_pool(styles=PRIOR_STYLES)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("judge-cache")


@pytest.fixture(scope="module")
def judge(pool, cache):
    return create_judge(RECIPE, cache_dir=cache, pool=pool)


def test_judge_trains_on_prior_pool_images_only(judge, pool):
    ids = set(judge.sample_ids)
    assert len(judge.sample_ids) == len(ids) == 30 * 10 * len(PRIOR_STYLES)
    assert ids <= set(pool.frame["sample_id"])
    frame = pool.frame.set_index("sample_id").loc[judge.sample_ids]
    assert (frame.groupby(["style", "label"]).size() == 30).all()
    # no task of any seed holds an image made from the same Fashion-MNIST training image
    for name in ("fmnist-lt", "fmnist-lq"):
        for seed in (0, 1):
            ds = build_task(name, seed=seed, test_limit=10)
            task = ds.frame[ds.frame["split"].isin(["train", "val"])]
            assert not ids & set(ds.frame["sample_id"])
            assert not set(judge.source_indices) & set(task["source_index"]), (name, seed)


def test_judge_is_deterministic_and_cached(judge, pool, cache):
    files = list(cache.glob("judge-*.safetensors"))
    assert [f.name for f in files] == [f"judge-{judge.digest}.safetensors"]
    again = create_judge(RECIPE, cache_dir=cache, use_cache=False, pool=pool)  # trained a second time
    loaded = create_judge(RECIPE, cache_dir=cache, pool=pool)  # read from the cache
    for other in (again, loaded):
        assert other.digest == judge.digest
        a, b = judge.model.state_dict(), other.model.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert judge_digest(JudgeRecipe(per_class=30, epochs=3, seed=1), x, torch.zeros(4)) != judge_digest(RECIPE, x, torch.zeros(4))


def test_judge_recognises_real_images(judge):
    from discl.data import fashion_mnist as fm

    x, y = fm.load_split("test")
    acc = judge.accuracy(x[:1000], y[:1000])  # numpy [N, 28, 28] is accepted
    assert 0.4 < acc <= 1.0  # 900 images, 3 epochs (measured 0.53); chance is 0.1


def test_judge_recipe_rejects_unknown_styles():
    with pytest.raises(ValueError, match="styles"):
        JudgeRecipe(styles=("clean", "sepia"))


# -- bench_analog's pure target checks ---------------------------------------------------------

REF = {"judge_real_acc": 0.8, "hf_clean_pool": 0.10, "hf_sources": 0.02, "mmd2_sources": 0.01}


def rows(change=None):
    """A spectrum that meets every target; ``change`` = {λ: {measure: value}} breaks one."""
    out = {}
    for i, lam in enumerate([0.0, 0.1, 0.3, 0.5, 0.7, 0.9]):
        out[lam] = {"judge_acc": 0.78, "hf": 0.05, "mmd2": 0.2 - 0.03 * i, "ssim": 0.3 + 0.12 * i}
    for lam, values in (change or {}).items():
        out[lam].update(values)
    return out


def verdict(r, ref=REF):
    return {k: v["pass"] for k, v in check_targets(r, ref).items()}


def test_targets_all_pass_on_a_good_spectrum():
    tg = check_targets(rows(), REF)
    assert all(v["pass"] for v in tg.values())
    assert tg["judge"]["values"]["0.1"] == pytest.approx(0.78 / 0.8)
    assert tg["hf_clean"]["values"]["0.5"] == pytest.approx(0.5)
    assert tg["hf_sources"]["values"]["0.5"] == pytest.approx(2.5)
    assert tg["mmd2_zero"]["values"]["0.0"] == pytest.approx(20.0)
    assert "0.0" not in tg["judge"]["values"]  # λ = 0 is the synthetic end: not held to the judge target


@pytest.mark.parametrize("change, ref, failing", [
    ({0.5: {"judge_acc": 0.63}}, {}, "judge"),  # 0.79 of real
    ({0.3: {"hf": 0.111}}, {}, "hf_clean"),  # 1.11 x the clean pool
    ({0.9: {"hf": 0.0159}}, {}, "hf_sources"),  # 0.795 x the sources
    ({0.7: {"mmd2": 0.12}}, {}, "mmd2_falls"),  # rises from λ 0.5 (0.11) to 0.7
    ({0.3: {"mmd2": 0.17}}, {}, "mmd2_falls"),  # equal to λ 0.1's: not falling
    ({lam: {"mmd2": 0.11 - 0.01 * i} for i, lam in enumerate([0.0, 0.1, 0.3, 0.5, 0.7, 0.9])},
     {"mmd2_sources": 0.05}, "mmd2_zero"),  # falls to the sources, but λ = 0 is only 2.2 x theirs
    ({}, {"mmd2_sources": 0.06}, "mmd2_falls"),  # λ = 0.9 (0.05) closer to the test images than the real sources
    ({0.9: {"ssim": 0.849}}, {}, "ssim_top"),
])
def test_each_target_can_fail_alone(change, ref, failing):
    expected = {k: k != failing for k in TARGET_NAMES}
    assert verdict(rows(change), {**REF, **ref}) == expected


def test_levels_at_zero_are_not_held_to_the_judge_and_hf_targets():
    assert all(verdict(rows({0.0: {"judge_acc": 0.0, "hf": 1.0}})).values())


def test_both_ends_are_needed_and_sources_at_zero_mmd():
    r = rows()
    del r[0.9]
    with pytest.raises(ValueError, match="0.9"):
        check_targets(r, REF)
    # real sources indistinguishable from the test images (MMD² <= 0): any positive λ = 0 MMD² is far
    assert check_targets(rows(), {**REF, "mmd2_sources": -0.001})["mmd2_zero"]["pass"]
