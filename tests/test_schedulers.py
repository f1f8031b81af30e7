"""``generation.scheduler``: the contract every listed scheduler meets on every backend (issue 13).

Tiny real SD / SDXL-refiner img2img pipelines and a tiny trained prior; denoiser evaluations are
counted with a forward hook, per lambda, against the manifest's ``denoise_steps``.
"""

import numpy as np
import pytest
from generation_fixtures import (
    ForwardCounter,
    build_tiny_sd,
    build_tiny_sdxl_refiner,
    gray_image,
    train_tiny_prior,
)

from discl.configtools import ConfigError, from_dict
from discl.generation.base import GenerationBatch, create_generator
from discl.generation.config import GenerationConfig
from discl.generation.planning import denoise_steps, strength_for

SCHEDULERS = ["DDIMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "EulerDiscreteScheduler",
              "LCMScheduler"]
LEVELS = [0.0, 0.3, 0.75, 0.9]
STEPS = 8


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"sd": build_tiny_sd(root / "sd"), "sdxl-refiner": build_tiny_sdxl_refiner(root / "xl"),
            "embedded": train_tiny_prior(root / "prior")}


def _cfg(kind, model, scheduler, **kw):
    g = dict(backend="embedded" if kind == "embedded" else "diffusers", model=str(model), steps=STEPS,
             guidance_scale=3.0, scheduler=scheduler)
    if kind != "embedded":
        g["resolution"] = 32
    return GenerationConfig(**(g | kw))


def _run(gen, lam, seeds=(3, 4)):
    n = len(seeds)
    return gen.generate(GenerationBatch(
        sources=[gray_image(28, 1)] * n, source_keys=["src"] * n, labels=[1] * n, prompts=["a photo of a coat"] * n,
        seeds=list(seeds), strength=strength_for(lam), steps=STEPS, guidance_scale=3.0))


@pytest.mark.parametrize("kind", ["sd", "sdxl-refiner", "embedded"])
@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_contract(models, kind, name):
    gen = create_generator(_cfg(kind, models[kind], name))
    used = gen.pipe.scheduler if kind != "embedded" else gen.scheduler()
    assert type(used).__name__ == name
    counter = ForwardCounter(gen.denoiser)
    first = {}
    for lam in LEVELS:
        counter.calls = counter.rows = 0
        first[lam] = [im.tobytes() for im in _run(gen, lam)]
        # the manifest's step count is what runs: one batched call per timestep, both CFG branches
        assert counter.calls == denoise_steps(STEPS, lam) == gen.evaluations_per_image(STEPS, strength_for(lam))
        assert counter.rows == 2 * 2 * denoise_steps(STEPS, lam)
    counter.close()
    # deterministic bytes for a fixed config, from a freshly built generator
    again = create_generator(_cfg(kind, models[kind], name))
    for lam in LEVELS:
        assert [im.tobytes() for im in _run(again, lam)] == first[lam]
    assert first[0.3][0] != first[0.3][1]  # two seeds, two images
    if name != "DDIMScheduler":  # the scheduler is the one that ran
        ddim = create_generator(_cfg(kind, models[kind], "DDIMScheduler"))
        assert [im.tobytes() for im in _run(ddim, 0.3)] != first[0.3]


def test_scheduler_kwargs_reach_the_scheduler(models):
    gen = create_generator(_cfg("sd", models["sd"], "DPMSolverMultistepScheduler",
                                scheduler_kwargs={"algorithm_type": "dpmsolver++", "solver_order": 1}))
    assert gen.pipe.scheduler.config.solver_order == 1
    # built from the model's own config: its beta schedule is kept
    assert gen.pipe.scheduler.config.beta_schedule == "scaled_linear"


@pytest.mark.parametrize("gen,match", [
    ({"scheduler": "NoSuchScheduler"}, "generation.scheduler: diffusers has no scheduler class 'NoSuchScheduler'"),
    ({"scheduler": "AutoencoderKL"}, "generation.scheduler: diffusers has no scheduler class"),
    ({"scheduler": "DDIMScheduler", "scheduler_kwargs": {"no_such_arg": 1}}, "generation.scheduler_kwargs.no_such_arg"),
    ({"scheduler": "LCMScheduler", "steps": 60}, "generation.steps: LCMScheduler cannot run 60 steps"),
])
def test_bad_scheduler_config_is_an_error_naming_the_key(gen, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(GenerationConfig, gen, prefix="generation")


def test_scheduler_without_add_noise_cannot_do_img2img():
    import diffusers

    no_noise = [n for n in dir(diffusers) if n.endswith("Scheduler") and isinstance(getattr(diffusers, n), type)
                and issubclass(getattr(diffusers, n), diffusers.SchedulerMixin)
                and not callable(getattr(getattr(diffusers, n), "add_noise", None))]
    assert no_noise, "diffusers has no scheduler without add_noise any more: drop this test"
    with pytest.raises(ConfigError, match="cannot do image-to-image"):
        GenerationConfig(scheduler=no_noise[0])


def test_embedded_default_scheduler_matches_the_prior_sdedit(models):
    """The generator's sampling loop and the prior's own ``sdedit`` agree for DDIM (default)."""
    import torch

    from discl.generation.prior import sdedit

    gen = create_generator(_cfg("embedded", models["embedded"], None))
    r = gen.prior.resolution
    src = gen._to_model_space(gray_image(28, 1))[None]
    assert tuple(src.shape[-2:]) == (r, r)
    noise = torch.randn((1, r, r), generator=torch.Generator().manual_seed(5))[None]
    ref = sdedit(gen.prior, src, torch.tensor([1]), noise, STEPS, 0.5, 3.0)
    from discl.generation.embedded import sample

    ours = sample(gen.prior, gen.scheduler(), src, torch.tensor([1]), [5], STEPS, 0.5, 3.0)
    assert np.array_equal(ref.numpy(), ours.numpy())
