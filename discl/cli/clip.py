"""``discl clip train`` / ``discl clip evaluate``: the embedded CLIP's training and zero-shot check."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="clip_command", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train the embedded CLIP on the clean Fashion-MNIST prior pool")
    from discl.filtering.embedded_clip import WEIGHTS_PATH

    t.add_argument("--out", default=str(WEIGHTS_PATH), help="weights file (.safetensors); the recipe goes next to it")
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1)")
    t.add_argument("--max-minutes", type=float, default=None, help="stop early after this much wall time")
    t.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST idx files")
    e = sub.add_parser("evaluate", help="zero-shot accuracy on the Fashion-MNIST test split (clean and fmnist-lt styled)")
    e.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    e.add_argument("--limit", type=int, default=None, help="class-stratified subset of the test split (default: all 10k)")
    e.add_argument("--out", default=None, help="write the results as JSON here")
    e.add_argument("--data-root", default=None)
    e.add_argument("--batch-size", type=int, default=512)


def _train(args) -> int:
    import dataclasses

    from discl.artifacts import atomic_write_json
    from discl.data.tasks import build_prior_pool
    from discl.filtering.clip_train import ClipTrainRecipe, recipe_dict, train_embedded_clip
    from discl.filtering.embedded_clip import save_weights

    recipe = ClipTrainRecipe()
    changes = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                                 "threads": args.threads, "max_minutes": args.max_minutes}.items() if v is not None}
    recipe = dataclasses.replace(recipe, **changes)
    pool = build_prior_pool(seed=0, folder=args.data_root)
    ids = list(pool.frame["sample_id"])
    images = pool.tensors(ids, 28, 1)
    start = time.monotonic()
    model, rows = train_embedded_clip(recipe, images, pool.frame["label"].to_numpy(), pool.classes)
    wall = time.monotonic() - start
    out = Path(args.out)
    save_weights(model, out, metadata={"recipe": json.dumps(recipe_dict(recipe))})
    import torch

    atomic_write_json(out.with_suffix(".recipe.json"), {
        "recipe": recipe_dict(recipe), "train_images": len(ids), "train_data": "fmnist prior pool (seed 0), clean",
        "wall_seconds": round(wall, 1), "steps_done": rows[-1]["step"] + 1 if rows else 0,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "torch": torch.__version__,
        "command": "discl clip train " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in changes.items()),
        "log": rows,
    })
    log.info("wrote %s (%.0f s)", out, wall)
    return 0


def _evaluate(args) -> int:
    from discl.artifacts import atomic_write_json
    from discl.filtering.zeroshot import evaluate_embedded

    results = evaluate_embedded(weights=args.weights, limit=args.limit, folder=args.data_root, batch_size=args.batch_size)
    for name, r in results["sets"].items():
        print(f"{name}: zero-shot top-1 {r['accuracy']:.4f} (ensemble of {r['templates']} templates), "
              f"single template {r['accuracy_single_template']:.4f} on {r['n']} images")
    if args.out:
        atomic_write_json(Path(args.out), results)
    return 0


def main(args) -> int:
    if args.clip_command == "train":
        return _train(args)
    return _evaluate(args)
