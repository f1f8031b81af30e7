"""Denoising schedulers by name (``generation.scheduler``), shared by both backends.

Wraps, does not fork: a scheduler is any diffusers ``SchedulerMixin`` class, built with
``from_config`` from the model's own scheduler config (the pipeline's, or the embedded prior's) plus
``generation.scheduler_kwargs``. Image-to-image keeps diffusers' semantics, in one function both
backends use (:func:`img2img_timesteps`): ``set_timesteps(T)``, then the last ``n`` steps of the
scheduler's own timesteps (times its ``order``), with ``set_begin_index`` so ``add_noise`` and
``step`` start where the truncated schedule starts. ``n`` follows the pipeline family's step rule
(:func:`discl.generation.planning.img2img_steps`): ``int(T * strength)`` for SD/SDXL and the
embedded backend, ``T - int(T - T * strength)`` for SD3 and Flux.

A scheduler that cannot do img2img (no ``add_noise``; flow-matching ``scale_noise`` on the diffusers backend), an unknown name and keyword arguments the
class does not take are errors naming the key, raised when the config is validated.
"""

from __future__ import annotations

import inspect
from typing import Any

from discl.configtools import ConfigError
from discl.generation.planning import DEFAULT_STEP_RULE, img2img_steps

# how a scheduler noises a source to the first img2img timestep: DDPM-style ``add_noise``, or flow
# matching's ``scale_noise`` (SD3/Flux pipelines). The embedded prior (an epsilon model) needs the first.
NOISERS = ("add_noise", "scale_noise")


def scheduler_class(name: str, key: str = "generation.scheduler", noisers: tuple[str, ...] = NOISERS):
    """The diffusers scheduler class called ``name``; a :class:`ConfigError` naming ``key`` otherwise."""
    import diffusers
    from diffusers import SchedulerMixin

    def usable(n):
        c = getattr(diffusers, n, None)
        return isinstance(c, type) and issubclass(c, SchedulerMixin) and any(callable(getattr(c, m, None)) for m in noisers)

    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        known = sorted(n for n in dir(diffusers) if n.endswith("Scheduler") and usable(n))
        raise ConfigError(f"{key}: diffusers has no scheduler class {name!r} (img2img-capable ones: {', '.join(known)})")
    if not usable(name):
        raise ConfigError(f"{key}: {name} cannot do image-to-image here (it has no {' or '.join(noisers)}, so a "
                          "source image cannot be noised to the starting timestep); choose another scheduler")
    return cls


def check_scheduler(name: str, kwargs: dict[str, Any], steps: int, noisers: tuple[str, ...] = NOISERS) -> None:
    """Validate ``generation.scheduler`` / ``scheduler_kwargs`` / ``steps`` without a model.

    Builds the class with its default config plus ``kwargs`` and sets ``steps`` timesteps, so that
    e.g. ``LCMScheduler`` with more steps than its ``original_inference_steps`` fails here, not after
    the model has loaded.
    """
    cls = scheduler_class(name, noisers=noisers)
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    for k in kwargs:
        if k not in params:
            raise ConfigError(f"generation.scheduler_kwargs.{k}: {name} takes no argument {k!r} "
                              f"(it takes: {', '.join(sorted(params))})")
    try:
        sched = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"generation.scheduler_kwargs: {name} rejects {kwargs}: {e}") from None
    try:
        set_timesteps(sched, steps)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"generation.steps: {name} cannot run {steps} steps: {e}") from None


def build_scheduler(name: str | None, base_config: dict[str, Any], kwargs: dict[str, Any] | None = None,
                    default: str | None = None, noisers: tuple[str, ...] = NOISERS):
    """``name`` (or ``default`` when None) built with ``from_config(base_config, **kwargs)``."""
    cls = scheduler_class(name or default, noisers=noisers)
    return cls.from_config(dict(base_config), **dict(kwargs or {}))


def set_timesteps(scheduler, steps: int) -> None:
    """``scheduler.set_timesteps(steps)``, with a ``mu`` where the scheduler shifts its schedule by the
    image's size (flow matching with ``use_dynamic_shifting``: Flux's scheduler refuses to run
    without it). The pipelines compute ``mu`` from the image's token count; here it is the shift at
    the scheduler's ``base_image_seq_len`` (its ``base_shift``): the shift moves the timesteps, never
    their number, so step counts and evaluations are those of any image size."""
    if scheduler.config.get("use_dynamic_shifting") and "mu" in inspect.signature(
            scheduler.set_timesteps).parameters:
        scheduler.set_timesteps(steps, mu=float(scheduler.config.get("base_shift", 0.5)))
    else:
        scheduler.set_timesteps(steps)


def img2img_timesteps(scheduler, steps: int, strength: float, rule: str = DEFAULT_STEP_RULE):
    """The timesteps an img2img pipeline of step rule ``rule`` runs at ``strength``: diffusers'
    ``get_timesteps`` exactly.

    ``n = img2img_steps(steps, strength, rule)`` (:func:`discl.generation.planning.img2img_steps`: under
    ``truncate_steps`` ``min(int(steps * strength), steps)``, truncated as diffusers does with the strength
    it is given); the schedule starts at ``(steps - n) * scheduler.order``.
    """
    set_timesteps(scheduler, steps)
    t_start = steps - img2img_steps(steps, strength, rule)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    return scheduler.timesteps[t_start * scheduler.order:]


def evaluations_per_image(scheduler, steps: int, strength: float, rule: str = DEFAULT_STEP_RULE) -> int:
    """Denoiser evaluations one image needs at ``strength`` (per CFG branch): the timesteps it runs."""
    return len(img2img_timesteps(scheduler, steps, strength, rule))


def step_kwargs(scheduler, generators=None, **wanted: Any) -> dict[str, Any]:
    """The subset of ``wanted`` (plus ``generator``) that this scheduler's ``step`` accepts.

    Stochastic steps (LCM's noise injection, SDE solvers) draw from the per-image generators, as the
    diffusers pipelines pass them, so an image does not depend on its batch.
    """
    params = set(inspect.signature(scheduler.step).parameters)
    out = {k: v for k, v in wanted.items() if k in params}
    if generators is not None and "generator" in params:
        out["generator"] = generators
    return out
