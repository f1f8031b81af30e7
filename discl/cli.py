"""The ``discl`` command line: a thin layer over the library.

Each subcommand lives in a stage module that exposes ``add_arguments(parser)`` and ``main(args)``;
modules are imported only when their command runs, so ``discl --help`` stays fast. Config-driven
commands take ``--config FILE`` plus ``key.sub=value`` overrides.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from discl.configtools import ConfigError
from discl.errors import DisclError

# command -> (module, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("discl.pipeline", "run every stage (mine, prompts, generate, filter, train, evaluate, report)"),
    "data": ("discl.data.runner", "inspect or fetch the embedded Fashion-MNIST data; preview a task"),
    "baseline": ("discl.training.baseline", "train classifiers on the real data only (CE, BS, class-balanced)"),
    "mine": ("discl.mining.runner", "select the hard training images"),
    "prompts": ("discl.prompts.runner", "build the prompt of every (hard image, k)"),
    "generate": ("discl.generation.runner", "generate the synthetic-to-real spectrum"),
    "prior": ("discl.generation.prior_cli", "train / sample / evaluate the embedded diffusion prior"),
    "filter": ("discl.filtering.runner", "score the spectrum with CLIP and apply the keep rules"),
    "clip": ("discl.filtering.clip_cli", "train / evaluate the embedded CLIP"),
    "train": ("discl.training.runner", "train a classifier with a curriculum over the guidance level"),
    "curricula": ("discl.curriculum.cli", "list the registered curriculum strategies"),
    "evaluate": ("discl.evaluation.runner", "evaluate a checkpoint on the test split(s)"),
    "report": ("discl.evaluation.report", "write the HTML + Markdown report of a run"),
    "leakage": ("discl.evaluation.leakage", "find kept synthetic images that nearly copy a validation/test image"),
    "sweep": ("discl.sweep", "run one config key over several values and relate it to the results"),
}


def add_config_arguments(p: argparse.ArgumentParser, required: bool = False) -> None:
    """``--config FILE`` and trailing ``key.sub=value`` overrides, shared by config-driven commands."""
    p.add_argument("--config", "-c", required=required, help="YAML run config (configs/*.yaml)")
    if "--run-dir" not in p._option_string_actions:
        p.add_argument("--run-dir", default=None, help="run folder (default: the config's run_dir)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. training.epochs=5")


def config_from_args(args: argparse.Namespace):
    from discl.config import load_config

    overrides = list(getattr(args, "overrides", None) or [])
    if getattr(args, "run_dir", None):
        overrides.append(f"run_dir={args.run_dir}")
    return load_config(getattr(args, "config", None), overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="discl", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text, conflict_handler="resolve")
        sp.set_defaults(_module=module)
        if name in _wanted(sys.argv):
            importlib.import_module(module).add_arguments(sp)
    return parser


def _wanted(argv: list[str]) -> set[str]:
    """The chosen command (the first non-option word): only its module is imported to build its arguments."""
    first = next((a for a in argv[1:] if not a.startswith("-")), None)
    return {first} if first in COMMANDS else set()


def configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("PIL", "matplotlib", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args, extra = parser.parse_known_args(sys.argv[1:])
    # overrides may come before or after options: argparse leaves the later ones in `extra`
    bad = [e for e in extra if e.startswith("-") or "=" not in e]
    if bad or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:
        args.overrides = list(args.overrides or []) + extra
    if not args.command:
        parser.print_help()
        return 2
    configure_logging(args.verbose, args.quiet)
    module = importlib.import_module(args._module)
    try:
        return int(module.main(args) or 0)
    except ConfigError as e:
        print(f"discl {args.command}: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"discl {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (DisclError, FileNotFoundError) as e:
        print(f"discl {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
