"""The step-economy bench's pure parts: a setting name -> config overrides, the noise verdict."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_steps_train import interval, setting_overrides  # noqa: E402
from plot_steps import noise_check  # noqa: E402

from discl.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_setting_overrides_load_as_config():
    cfg = load_config(ROOT / "configs" / "fmnist-lt.yaml", setting_overrides("unipc-thr-T8"))
    g = cfg.generation
    assert (g.steps, g.scheduler) == (8, "UniPCMultistepScheduler")
    assert g.scheduler_kwargs == {"thresholding": True, "sample_max_value": 1.0}
    ddim = load_config(ROOT / "configs" / "fmnist-lt.yaml", setting_overrides("ddim-T12")).generation
    assert (ddim.steps, ddim.scheduler, ddim.scheduler_kwargs) == (12, None, {})  # the prior's own DDIM


@pytest.mark.parametrize("bad", ["ddim", "nope-T8", "ddim-T"])
def test_setting_overrides_rejects_bad_names(bad):
    with pytest.raises(SystemExit, match="scheduler"):
        setting_overrides(bad)


def test_paired_interval_is_a_t_interval():
    iv = interval([0.01, 0.03, 0.02])
    assert iv["n"] == 3 and iv["low"] < 0.02 < iv["high"]
    assert iv["mean"] == pytest.approx(0.02)
    assert iv["high"] - iv["mean"] == pytest.approx(4.302653 * 0.01 / 3 ** 0.5, rel=1e-5)  # t(0.975, 2) sd/sqrt(n)


def test_noise_check_uses_the_reference_seed_spread():
    def s(ssim):
        return {"rows": {"0.3": {"ssim": sum(ssim) / 2, "by_seed": {"ssim": ssim}}}}

    fid = {"settings": {"ref": s([0.20, 0.22]), "near": s([0.21, 0.22]), "far": s([0.30, 0.31])}}
    c = noise_check(fid, "ref", ["0.3"])
    assert c["near"]["0.3"]["ssim"][2] and not c["far"]["0.3"]["ssim"][2]
    assert c["far"]["0.3"]["ssim"][0] == pytest.approx(0.095)
    assert c["ref"]["0.3"]["ssim"][1] == pytest.approx(0.02)


def test_setting_overrides_choose_levels_and_seeds():
    cfg = load_config(ROOT / "configs" / "fmnist-lt.yaml")
    trained = cfg.curriculum.levels
    small = load_config(ROOT / "configs" / "fmnist-lt.yaml", setting_overrides("ddim-T25-trained-k3", trained)).generation
    assert (small.steps, small.levels, small.seeds_per_level) == (25, [float(v) for v in trained], 3)
    six = load_config(ROOT / "configs" / "fmnist-lt.yaml", setting_overrides("unipc-thr-T8-six-k4", trained)).generation
    assert (six.steps, six.scheduler, six.levels, six.seeds_per_level) == (
        8, "UniPCMultistepScheduler", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9], 4)
    from bench_steps_train import sampler

    assert sampler("unipc-thr-T8-six-k4") == "unipc-thr-T8" == sampler("unipc-thr-T8")
    assert sampler("ddim-T25-trained-k3") == sampler("ddim-T25-six-k4") != sampler("ddim-T12-six-k4")
    adaptive = setting_overrides("ddim-T25-trained", [0.5, 0.7, 0.9, 1.0])  # 1.0 = the real images
    assert adaptive[-1] == "generation.levels=[0.5, 0.7, 0.9]"
    with pytest.raises(SystemExit, match="seed"):
        setting_overrides("ddim-T25-k0", trained)
    with pytest.raises(SystemExit, match="curriculum.levels"):
        setting_overrides("ddim-T25-trained", [])


def test_shared_variants_compares_bytes(tmp_path):
    from bench_steps_train import shared_variants

    for run, second in (("a", b"x"), ("b", b"y")):
        (tmp_path / run / "spectrum" / "images").mkdir(parents=True)
        (tmp_path / run / "spectrum" / "images" / "1.png").write_bytes(b"same")
        (tmp_path / run / "spectrum" / "images" / "2.png").write_bytes(second)
        rows = "file_name,seed,steps,denoise_steps,prompt,guidance_scale\n" + "".join(
            f"images/{i}.png,{6 + i},25,22,a,2.0\n" for i in ((1, 2, 3) if run == "a" else (1, 2)))
        (tmp_path / run / "spectrum" / "metadata.csv").write_text(rows)
    assert shared_variants(tmp_path / "a", tmp_path / "b") == {"shared": 2, "byte_identical": 1}


def test_the_prior_targets_refuse_a_grid_without_their_levels():
    from bench_prior import targets

    row = {"ssim": 0.9, "psnr": 30.0, "hf_ratio": 1.0, "mmd2": 0.1, "acc_ratio": 1.0}
    with pytest.raises(SystemExit, match="0.0, 0.9"):
        targets({"0.1": row, "0.5": row}, [0.1, 0.5])
    assert all(targets({"0.0": {**row, "mmd2": 0.3}, "0.9": row}, [0.0, 0.9]).values())
