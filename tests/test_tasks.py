"""The embedded Fashion-MNIST tasks: sizes, class profile, determinism, disjointness, the gap."""

from __future__ import annotations

import numpy as np
import pytest

from discl.data.tasks import (
    LQ_ID_FAMILIES,
    LQ_OOD_FAMILIES,
    acquisition_style,
    acquisition_style_batch,
    build_prior_pool,
    build_task,
    class_profile,
)

LIMIT = 200  # class-stratified test subset: keeps the tests fast; the splits' logic is the same


@pytest.fixture(scope="module")
def lt():
    return build_task("fmnist-lt", seed=0, test_limit=LIMIT)


@pytest.fixture(scope="module")
def lq():
    return build_task("fmnist-lq", seed=0, test_limit=LIMIT)


@pytest.fixture(scope="module")
def prior():
    return build_prior_pool(seed=0)


def test_class_profile_is_exponential_500_to_5():
    p = class_profile(500, 5)
    assert p == [500, 300, 180, 108, 65, 39, 23, 14, 8, 5]
    assert p[0] / p[-1] == 100


def test_lt_sizes_and_profile(lt):
    assert sorted(lt.class_counts("train"), reverse=True) == class_profile(500, 5)
    assert len(lt.split("train")) == 1242
    assert (lt.class_counts("val") == 20).all()
    assert len(lt.split("test")) == LIMIT and (lt.class_counts("test") == LIMIT // 10).all()
    assert set(lt.splits) == {"train", "val", "test"}
    assert lt.images.shape == (1242 + 200 + LIMIT, 28, 28) and lt.images.dtype == np.uint8


def test_lq_sizes_profile_and_corruption_families(lq):
    assert sorted(lq.class_counts("train"), reverse=True) == class_profile(400, 80)
    assert set(lq.splits) == {"train", "val", "test", "test_ood"}
    train_fams = set(lq.split("train")["corruption"])
    assert train_fams == {"clean", *LQ_ID_FAMILIES}
    assert set(lq.split("test")["corruption"]) <= {"clean", *LQ_ID_FAMILIES}
    assert set(lq.split("test_ood")["corruption"]) == set(LQ_OOD_FAMILIES)
    assert not set(LQ_OOD_FAMILIES) & train_fams
    # the OOD test is the same test images as the ID test, corrupted differently
    assert sorted(lq.split("test")["source_index"]) == sorted(lq.split("test_ood")["source_index"])


def test_prior_pool_is_balanced_and_disjoint_from_task_splits(prior, lt, lq):
    assert len(prior.frame) == 20_000 and (prior.class_counts("prior") == 2000).all()
    prior_ids = set(prior.frame["sample_id"])
    for ds in (lt, lq):
        ids = {s: set(ds.split(s)["sample_id"]) for s in ds.splits}
        assert not prior_ids & (ids["train"] | ids["val"])
        assert not ids["train"] & ids["val"]
        assert all(sid.startswith("fmnist-train-") for sid in ids["train"] | ids["val"])
        assert all(sid.startswith("fmnist-test") for s in ds.splits if s.startswith("test") for sid in ids[s])


def test_same_seed_same_task_other_seed_other_task(lt):
    again = build_task("fmnist-lt", seed=0, test_limit=LIMIT)
    assert again.frame.equals(lt.frame) and np.array_equal(again.images, lt.images)
    other = build_task("fmnist-lt", seed=1, test_limit=LIMIT)
    assert set(other.split("train")["sample_id"]) != set(lt.split("train")["sample_id"])
    assert not np.array_equal(other.class_counts("train"), lt.class_counts("train"))  # class order moves


def test_style_batched_equals_per_image_and_opens_a_gap(prior, lt):
    src = prior.images[:16]
    batch = acquisition_style_batch(src, 0, "train", list(range(16)))
    single = np.stack([acquisition_style(src[i], 0, "train", i) for i in range(16)])
    assert np.array_equal(batch, single)
    # the prior pool has black backgrounds; task images sit on a textured, brighter background
    corner = lambda a: np.concatenate([a[:, :3, :3].ravel(), a[:, -3:, -3:].ravel()]).mean()  # noqa: E731
    assert corner(prior.images[:500]) < 5 and corner(lt.images[:500]) > 40
