import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from discl.evaluation import fidelity as fd


def _images(n=4, h=28, w=28, c=None, seed=0):
    rng = np.random.default_rng(seed)
    # smooth blobs + texture, like a real image, not white noise
    base = ndimage.gaussian_filter(rng.random((n, h, w)), sigma=(0, 2, 2))
    base = (base - base.min()) / (base.max() - base.min())
    img = np.clip(base + 0.1 * rng.standard_normal((n, h, w)), 0, 1)
    if c:
        img = np.stack([np.roll(img, k, axis=2) for k in range(c)], axis=-1)
    return (img * 255).round().astype(np.uint8)


def _ssim_scipy(a, b, data_range=255.0):
    """skimage's algorithm (gaussian_weights=True, sigma=1.5, population stats), rebuilt on scipy."""
    a, b = a.astype(np.float64), b.astype(np.float64)

    def f(v):
        return ndimage.gaussian_filter(v, sigma=1.5, truncate=3.5, mode="reflect")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ma, mb = f(a), f(b)
    va, vb, cab = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return s[5:-5, 5:-5].mean()


def _ssim_loop(a, b, data_range=255.0):
    """Per-window definition, one window at a time."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    w1 = fd.gaussian_window()
    w = np.outer(w1, w1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cab = (w * (pa - ma) * (pb - mb)).sum()
            vals.append(((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_identical_is_one_and_shapes():
    x = _images()
    assert fd.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert fd.ssim(_images(c=3), _images(c=3)) == pytest.approx(1.0, abs=1e-12)
    assert fd.ssim_per_image(x, x).shape == (4,)
    with pytest.raises(ValueError):
        fd.ssim(x, x[:2])
    with pytest.raises(ValueError):
        fd.ssim(x[:, :8, :8], x[:, :8, :8])


def test_ssim_constant_images_closed_form():
    # two flat images: variance terms vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a = np.full((1, 16, 16), 100, np.uint8)
    b = np.full((1, 16, 16), 150, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert fd.ssim(a, b) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1), rel=1e-12)


def test_ssim_matches_reference_algorithms():
    x, y = _images(seed=1), _images(seed=2)
    got = fd.ssim_per_image(x, y)
    for i in range(len(x)):
        assert got[i] == pytest.approx(_ssim_scipy(x[i], y[i]), abs=1e-10)
        assert got[i] == pytest.approx(_ssim_loop(x[i], y[i]), abs=1e-10)
    # RGB = mean over channels; torch input, float on 0..1, gives the same number as uint8
    xc, yc = _images(c=3, seed=3), _images(c=3, seed=4)
    per_channel = np.mean([_ssim_scipy(xc[0, ..., k], yc[0, ..., k]) for k in range(3)])
    assert fd.ssim(xc[:1], yc[:1]) == pytest.approx(per_channel, abs=1e-10)
    assert fd.ssim(torch.from_numpy(x / 255.0), torch.from_numpy(y / 255.0)) == pytest.approx(fd.ssim(x, y), abs=1e-10)


def test_ssim_orders_degradations():
    x = _images(seed=5)
    blur = ndimage.gaussian_filter(x.astype(float), sigma=(0, 1, 1)).round().astype(np.uint8)
    heavy = ndimage.gaussian_filter(x.astype(float), sigma=(0, 2.5, 2.5)).round().astype(np.uint8)
    assert 1.0 > fd.ssim(x, blur) > fd.ssim(x, heavy)


def test_psnr_known_values():
    a = np.zeros((2, 8, 8), np.uint8)
    b = a.copy()
    b[0] += 1  # MSE 1 -> 20 log10(255)
    assert fd.psnr_per_image(a, b)[0] == pytest.approx(20 * math.log10(255), rel=1e-12)
    assert math.isinf(fd.psnr_per_image(a, b)[1])
    c = np.full((1, 8, 8), 0.5)
    assert fd.psnr(c * 0, c) == pytest.approx(10 * math.log10(1 / 0.25), rel=1e-12)


def test_hf_energy_definition_and_blur():
    # checkerboard: Laplacian = +-4 * amplitude everywhere inside
    cb = (np.indices((10, 10)).sum(0) % 2).astype(np.float64)[None]
    assert fd.hf_energy(cb, data_range=1.0) == pytest.approx(16.0)
    assert fd.hf_energy(np.full((1, 10, 10), 77, np.uint8)) == pytest.approx(0.0, abs=1e-20)
    # a linear ramp has zero Laplacian
    ramp = np.tile(np.linspace(0, 1, 12), (12, 1))[None]
    assert fd.hf_energy(ramp) == pytest.approx(0.0, abs=1e-20)
    x = _images(seed=6)
    blur = ndimage.gaussian_filter(x.astype(float), sigma=(0, 1, 1)).round().astype(np.uint8)
    assert fd.hf_energy(blur) < 0.5 * fd.hf_energy(x)


def test_mmd2_same_vs_shifted_and_bandwidth():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((80, 5)), rng.standard_normal((80, 5))
    far = rng.standard_normal((80, 5)) + 1.5
    s = fd.median_bandwidth(x)
    same, shifted = fd.mmd2_rbf(x, y, s), fd.mmd2_rbf(x, far, s)
    assert abs(same) < 0.05 < shifted
    assert fd.mmd2_rbf(x, x[::-1].copy(), s) == pytest.approx(
        fd.mmd2_rbf(x, x, s))  # order-free
    # median heuristic: for 2 points at distance d, s^2 = d^2 / 2
    assert fd.median_bandwidth(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(math.sqrt(12.5))
    # unbiased estimate against the formula written out
    k = lambda a, b: math.exp(-np.sum((a - b) ** 2) / (2 * s * s))  # noqa: E731
    xs, ys = x[:5], far[:4]
    kxx = sum(k(xs[i], xs[j]) for i in range(5) for j in range(5) if i != j) / 20
    kyy = sum(k(ys[i], ys[j]) for i in range(4) for j in range(4) if i != j) / 12
    kxy = sum(k(a, b) for a in xs for b in ys) / 20
    assert fd.mmd2_rbf(xs, ys, s) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-10)


def test_mmd2_interval_and_permutation():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 4)), rng.standard_normal((40, 4))
    far = y + 1.0
    same = fd.mmd2_interval(x, y, n_boot=100, n_perm=100, seed=0)
    diff = fd.mmd2_interval(x, far, n_boot=100, n_perm=100, seed=0)
    assert diff["low"] <= diff["mmd2"] <= diff["high"]
    assert diff["low"] > 0 and diff["p_value"] < 0.05
    assert same["p_value"] > 0.05 and same["low"] < 0.05
    assert fd.mmd2_interval(x, far, n_boot=50, seed=3) == fd.mmd2_interval(x, far, n_boot=50, seed=3)
    assert fd.flatten_pixels(np.full((2, 3, 3), 255, np.uint8)).max() == 1.0


def test_mmd2_groups_compare_several_variants_per_source_like_for_like():
    """Four exact copies of each source (λ → 1 with four seeds): pooled, the copies count as each
    other's neighbours and MMD² about doubles; grouped by source it is the sources' own MMD², and the
    cluster bootstrap's interval brackets it."""
    rng = np.random.default_rng(4)
    src, real = rng.standard_normal((27, 6)) + 0.3, rng.standard_normal((200, 6))
    s = fd.median_bandwidth(real)
    own = fd.mmd2_rbf(src, real, s)
    copies, groups = np.repeat(src, 4, axis=0), np.repeat(np.arange(27), 4)
    assert fd.mmd2_rbf(copies, real, s) > 1.5 * own > 0
    assert fd.mmd2_rbf(copies, real, s, groups_x=groups) == pytest.approx(own, rel=1e-10)
    iv = fd.mmd2_interval(copies, real, s, n_boot=60, seed=0, groups_x=groups)
    assert iv["mmd2"] == pytest.approx(own, rel=1e-10) and iv["low"] <= own <= iv["high"]
    # singleton groups are the ungrouped estimator and bootstrap, draw for draw
    plain, single = (fd.mmd2_interval(src, real, s, n_boot=30, seed=1, groups_x=g) for g in (None, np.arange(27)))
    assert plain == single
    with pytest.raises(ValueError, match="permutation"):
        fd.mmd2_interval(copies, real, s, n_boot=0, n_perm=10, groups_x=groups)
    with pytest.raises(ValueError, match="without a group label"):
        fd.mmd2_rbf(copies, real, s, groups_x=np.where(groups == 3, np.nan, groups).astype(object))
    few = fd.mmd2_interval(copies[:8], real, s, n_boot=40, seed=0, groups_x=groups[:8])  # 2 sources
    assert 0 < few["n_boot_used"] < 40 and few["low"] <= few["high"]
    with pytest.raises(ValueError, match="one group"):
        fd.mmd2_rbf(copies[:4], real, s, groups_x=groups[:4])
    with pytest.raises(ValueError, match="one label per row"):
        fd.mmd2_rbf(copies, real, s, groups_x=groups[:5])


def test_mmd2_difference_interval_is_paired_over_sources():
    """Two levels of variants of the same sources: the difference of their grouped MMD² to a
    reference, with a paired cluster bootstrap; a level shifted away from the reference is
    detectably further, two noisy copies of one level are not."""
    rng = np.random.default_rng(7)
    src, real = rng.standard_normal((30, 6)), rng.standard_normal((300, 6))
    s = fd.median_bandwidth(real)
    groups = np.repeat([f"s{i}" for i in range(30)], 3)
    near = np.repeat(src, 3, axis=0) + 0.1 * rng.standard_normal((90, 6))
    near2 = np.repeat(src, 3, axis=0) + 0.1 * rng.standard_normal((90, 6))
    far = near + 0.8
    d = fd.mmd2_difference_interval(far, near, real, groups, groups, s, n_boot=100)
    assert d["diff"] == pytest.approx(fd.mmd2_rbf(far, real, s, groups_x=groups) - fd.mmd2_rbf(near, real, s, groups_x=groups))
    assert d["low"] > 0
    same = fd.mmd2_difference_interval(near2, near, real, groups, groups, s, n_boot=100)
    assert same["low"] < 0 < same["high"] and same["high"] - same["low"] < d["diff"]
