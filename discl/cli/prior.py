"""``discl prior train | sample | evaluate``: the embedded diffusion prior's project commands."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="prior_command", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train the prior on the prior pool (CPU, one thread; see recipe.yaml)")
    t.add_argument("--recipe", default=None, help="recipe YAML (default: the shipped discl/assets/prior/recipe.yaml)")
    t.add_argument("--out", required=True, help="folder for prior.safetensors + prior_config.json")
    t.add_argument("--steps", type=int, default=None, help="override the recipe's training steps")
    t.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST idx files")
    t.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint (written every checkpoint_every steps): a long run in pieces")
    s = sub.add_parser("sample", help="write a sheet of class-conditional samples per guidance scale")
    s.add_argument("--prior", default=None, help="prior folder (default: shipped)")
    _add_condition_style(s)
    s.add_argument("--out", required=True, help="PNG path")
    s.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    s.add_argument("--steps", type=int, default=50)
    sp = sub.add_parser("spectrum", help="a sheet: one fmnist-lt training image per class across the lambda grid")
    sp.add_argument("--prior", default=None, help="prior folder (default: shipped)")
    _add_condition_style(sp)
    sp.add_argument("--out", required=True, help="PNG path")
    sp.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9])
    sp.add_argument("--guidance", type=float, default=2.0)
    sp.add_argument("--steps", type=int, default=50)
    sp.add_argument("--steps-per-level", default=None,
                    help="schedule lengths at some levels as YAML, e.g. '{0.5: 100, 0.9: 75}' (generation.steps_per_level)")
    sp.add_argument("--task", default="fmnist-lt")
    e = sub.add_parser("evaluate", help="classifier accuracy on the prior's samples vs on real test images")
    e.add_argument("--prior", default=None, help="prior folder (default: shipped)")
    e.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    e.add_argument("--per-class", type=int, default=100, help="samples per class and guidance scale")
    e.add_argument("--steps", type=int, default=50)
    e.add_argument("--classifier-epochs", type=int, default=3)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--out", default=None, help="JSON file for the figures")
    e.add_argument("--data-root", default=None)
    e.add_argument("--stock-ddim-step", action="store_true",
                   help="ablation: diffusers' default DDIM step (epsilon not recomputed from the clipped x0)")


def _add_condition_style(p: argparse.ArgumentParser) -> None:
    p.add_argument("--condition-style", default=None,
                   help="condition on this style (clean, acquisition, low_quality, any) instead of the prior's own")


def main(args: argparse.Namespace) -> int:
    if args.prior_command == "train":
        return _train(args)
    if args.prior_command == "sample":
        return _sample(args)
    if args.prior_command == "spectrum":
        return _spectrum(args)
    return _evaluate(args)


def _train(args) -> int:
    from discl.data.tasks import build_prior_pool
    from discl.generation.prior import load_recipe, train_prior

    overrides = {"steps": args.steps} if args.steps else {}
    recipe = load_recipe(args.recipe, overrides)
    torch.set_num_threads(recipe.threads)
    pool = build_prior_pool(recipe.data_seed, args.data_root, styles=tuple(recipe.styles))
    ids = list(pool.frame["sample_id"])
    images = pool.tensors(ids, 28, 1)
    labels = torch.as_tensor(pool.frame["label"].to_numpy().copy())
    style_index = torch.as_tensor(pool.frame["style"].map({s: i for i, s in enumerate(recipe.styles)}).to_numpy().copy())
    try:
        train_prior(recipe, images, labels, out_dir=Path(args.out), style_index=style_index, resume=args.resume)
    except ValueError as e:  # an incompatible checkpoint: one line, not a traceback
        raise SystemExit(f"discl prior train: {e}") from None
    print(f"wrote {Path(args.out) / 'prior.safetensors'}")
    return 0


def _sample(args) -> int:
    from discl.generation.prior import class_samples, from_model_space, load_prior
    from discl.generation.sheets import save_grid

    prior = load_prior(args.prior, args.condition_style)
    rows = []
    labels = torch.arange(prior.num_classes).repeat_interleave(8)
    for g in args.guidance:
        x = from_model_space(class_samples(prior, labels, seed=0, steps=args.steps, guidance_scale=g), (28, 28))
        rows.append(x)
    save_grid(torch.cat(rows), nrow=8 * prior.num_classes // 2, path=Path(args.out))
    print(f"wrote {args.out} (rows: guidance {args.guidance}, 2 rows each, 8 samples per class)")
    return 0


def _spectrum(args) -> int:
    """Columns: text-to-image, then img2img at each lambda, then the real image; one row per class."""
    from discl.configtools import ConfigError, from_dict, parse_override
    from discl.data.tasks import build_task
    from discl.generation.base import GenerationBatch, create_generator
    from discl.generation.config import GenerationConfig
    from discl.generation.planning import job_seed, strength_for
    from discl.generation.sheets import save_grid

    try:  # checked as the config key is: λ as numbers, each one of --levels
        per_level = parse_override(f"steps_per_level={args.steps_per_level}")[1] if args.steps_per_level else {}
        g = from_dict(GenerationConfig, {"backend": "embedded", "model": args.prior or "embedded", "steps": args.steps,
                                         "guidance_scale": args.guidance, "levels": sorted({0.0, *args.levels}),
                                         "steps_per_level": per_level})
    except ConfigError as e:
        raise SystemExit(f"--steps-per-level: {e}") from None
    if g.unused_steps_levels():
        raise SystemExit(f"--steps-per-level: λ {', '.join(f'{v:g}' for v in g.unused_steps_levels())} is not one of "
                         f"--levels {args.levels}")
    gen = create_generator(g)
    if args.condition_style:
        try:
            gen.prior = gen.prior.with_condition(args.condition_style)
        except ValueError as e:
            raise SystemExit(f"--condition-style: {e}") from None
    ds = build_task(args.task, seed=0, test_limit=10)
    ids = list(ds.split("train").groupby("label").head(1).sort_values("label")["sample_id"])
    labels = [int(ds.frame.at[s, "label"]) for s in ids]
    sources = [ds.image(s) for s in ids]
    columns = []

    def run(lam, t2i=False):
        return gen.generate(GenerationBatch(sources=sources, source_keys=ids, labels=labels, prompts=[""] * len(ids),
                                            seeds=[job_seed(0, s, lam, 0) for s in ids], strength=strength_for(lam),
                                            steps=g.steps_at(lam), guidance_scale=args.guidance, text_to_image=t2i))

    columns.append(run(0.0, t2i=True))
    columns += [run(lam) for lam in args.levels]
    columns.append(sources)
    grid = [columns[c][r] for r in range(len(ids)) for c in range(len(columns))]
    save_grid(grid, nrow=len(columns), path=Path(args.out), scale=3)
    print(f"wrote {args.out}: rows = classes 0-9; columns = text-to-image, lambda {args.levels}, real image")
    return 0


def _evaluate(args) -> int:
    import json

    from discl.generation.prior_eval import evaluate_prior

    torch.set_num_threads(args.threads)
    res = evaluate_prior(args.prior, args.guidance, per_class=args.per_class, steps=args.steps,
                         classifier_epochs=args.classifier_epochs, data_root=args.data_root,
                         clipped_eps=not args.stock_ddim_step)
    print(json.dumps(res, indent=2))
    if args.out:
        from discl.artifacts import atomic_write_json

        atomic_write_json(Path(args.out), res)
    return 0
