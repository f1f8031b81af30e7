"""``discl data``: inspect or fetch the embedded Fashion-MNIST data, preview a task (:mod:`discl.data.runner`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from discl.data.runner import fetch, info_text, save_preview


def add_arguments(p: argparse.ArgumentParser) -> None:
    from discl.cli import add_config_arguments

    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="data location, split sizes and class profiles")
    add_config_arguments(info)
    fetch_p = sub.add_parser("fetch", help="download Fashion-MNIST with torchvision (needs network)")
    fetch_p.add_argument("--dest", type=Path, default=None, help="download folder (default: ~/.cache/discl)")
    prev = sub.add_parser("preview", help="PNG grid of prior-pool vs task images per class")
    prev.add_argument("--task", choices=["fmnist-lt", "fmnist-lq"], default="fmnist-lt")
    prev.add_argument("--out", type=Path, required=True, help="PNG file to write")
    prev.add_argument("--seed", type=int, default=0, help="task seed (data.seed)")
    prev.add_argument("--per-group", type=int, default=3, help="images per class in each column group")
    prev.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST idx files")


def main(args: argparse.Namespace) -> int:
    if args.action == "info":
        from discl.cli import config_from_args

        print(info_text(config_from_args(args, validate=False, defaults_ok=True).data))
    elif args.action == "fetch":
        fetch(args.dest)
    elif args.action == "preview":
        path = save_preview(args.task, args.out, seed=args.seed, per_group=args.per_group, folder=args.data_root)
        print(f"wrote {path}")
    return 0
