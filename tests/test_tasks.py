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


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_no_task_image_of_any_seed_is_a_prior_pool_image(prior, seed):
    """The prior, the embedded CLIP and the judge train on the prior pool; before the pool was fixed,
    seed 1's tasks took a third of their images from it. Compared by source index: every seed."""
    import numpy as np

    from discl.data import fashion_mnist as fm
    from discl.data.tasks import split_train_pool

    pool_idx = set(prior.frame["source_index"].tolist())
    assert set(build_prior_pool(seed=seed).frame["source_index"]) == pool_idx  # one pool whatever the seed
    _, labels = fm.load_split("train")
    prior_idx, task_pool = split_train_pool(labels, seed)
    assert set(prior_idx.tolist()) == pool_idx
    assert all(not pool_idx & set(v.tolist()) for v in task_pool.values())
    for name in ("fmnist-lt", "fmnist-lq"):
        ds = build_task(name, seed=seed, test_limit=20)
        used = ds.frame[ds.frame["split"].isin(["train", "val"])]
        assert not pool_idx & set(used["source_index"].tolist()), (name, seed)
        assert np.isin(used["source_index"].to_numpy(), np.concatenate(list(task_pool.values()))).all()


def test_seed_zero_tasks_are_unchanged_and_other_seeds_reorder_the_task_pool():
    """Seed 0's train/val images are those every release before the fixed pool drew (digests of
    the sample-id order computed with the code at e0781b0), so documented seed-0 runs stay valid."""
    import hashlib

    for name, digest in (("fmnist-lt", "daba72f09a94b5ca"), ("fmnist-lq", "06cb7b055b0fdab7")):
        ds = build_task(name, seed=0, test_limit=20)
        ids = ",".join(ds.frame[ds.frame["split"].isin(["train", "val"])]["sample_id"])
        assert hashlib.sha256(ids.encode()).hexdigest()[:16] == digest, name
    one = build_task("fmnist-lt", seed=1, test_limit=20)
    assert set(one.split("train")["sample_id"]) != set(build_task("fmnist-lt", seed=0, test_limit=20).split("train")["sample_id"])


def test_styled_prior_pool_shows_every_style_with_its_own_draws(prior):
    from discl.data.tasks import PRIOR_STYLES

    styled = build_prior_pool(styles=PRIOR_STYLES)
    assert len(styled.frame) == 3 * len(prior.frame) and styled.frame["sample_id"].is_unique
    by = {s: styled.frame.index[styled.frame["style"] == s] for s in PRIOR_STYLES}
    clean = styled.images[np.asarray([styled.frame.index.get_loc(i) for i in by["clean"]])]
    assert np.array_equal(clean, prior.images)
    acq = styled.images[np.asarray([styled.frame.index.get_loc(i) for i in by["acquisition"]])]
    lq = styled.images[np.asarray([styled.frame.index.get_loc(i) for i in by["low_quality"]])]
    def corner(im):
        return float(im[:, :3, :3].mean())
    assert corner(clean[:500]) < 5 and corner(acq[:500]) > 40  # the acquisition style's textured background
    assert (np.abs(lq.astype(int) - clean.astype(int)).reshape(len(lq), -1).max(1) > 0).all()  # never clean
    with pytest.raises(ValueError, match="style"):
        build_prior_pool(styles=("sepia",))


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


def test_runs_of_a_task_seed_whose_images_changed_get_new_digests():
    """Seed >= 1 tasks hold other images since the prior pool was fixed (issue 22): their data
    content is the task definition's version, so old run folders are redone; seed 0's is ""."""
    from discl.data.config import DataConfig
    from discl.data.identity import listing_digest

    assert listing_digest(DataConfig(task="fmnist-lt", seed=0)) == ""
    assert listing_digest(DataConfig(task="fmnist-lt", seed=1)) == listing_digest(DataConfig(task="fmnist-lq", seed=2)) != ""
