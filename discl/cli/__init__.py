"""The ``discl`` command line: a thin layer over the library.

Each subcommand is a module of this package (``discl/cli/<command>.py``) that exposes
``add_arguments(parser)`` and ``main(args)`` over the library's plain functions; nothing in the
library imports this package. Modules are imported only when their command runs, so
``discl --help`` stays fast. Config-driven
commands take ``CONFIG`` (or ``--config FILE``) plus ``key.sub=value`` overrides; a config is
required (or, for a command on a finished run, that run's ``config.yaml``) and is validated before
any stage folder is created.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from discl.configtools import ConfigError
from discl.errors import DisclError

# command -> (module, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("discl.cli.run", "run every stage (mine, prompts, generate, filter, train, evaluate, report)"),
    "data": ("discl.cli.data", "inspect or fetch the embedded Fashion-MNIST data; preview a task"),
    "baseline": ("discl.cli.baseline", "train classifiers on the real data only (CE, BS, class-balanced)"),
    "mine": ("discl.cli.mine", "select the hard training images"),
    "prompts": ("discl.cli.prompts", "build the prompt of every (hard image, k)"),
    "generate": ("discl.cli.generate", "generate the synthetic-to-real spectrum"),
    "prior": ("discl.cli.prior", "train / sample / evaluate the embedded diffusion prior"),
    "filter": ("discl.cli.filter", "score the spectrum with CLIP and apply the keep rules"),
    "clip": ("discl.cli.clip", "train / evaluate the embedded CLIP"),
    "train": ("discl.cli.train", "train a classifier with a curriculum over the guidance level"),
    "curricula": ("discl.cli.curricula", "list the registered curriculum strategies"),
    "evaluate": ("discl.cli.evaluate", "evaluate a checkpoint on the test split(s)"),
    "report": ("discl.cli.report", "write the HTML + Markdown report of a run"),
    "leakage": ("discl.cli.leakage", "find kept synthetic images that nearly copy a validation/test image"),
    "sweep": ("discl.cli.sweep", "run one config key over several values and relate it to the results"),
}


NO_CONFIG = ("no config given. Start from a shipped one: `discl run configs/fmnist-lt.yaml` (the demo), or copy it, "
             "set data.task: folder|csv and data.root for your own data (docs/configuration.md lists every key) and "
             "run `discl run my.yaml`; commands that work on a finished run read RUN/config.yaml with --run-dir RUN")


def add_config_arguments(p: argparse.ArgumentParser, required: bool = False) -> None:
    """``CONFIG`` (positional or ``--config FILE``) and trailing ``key.sub=value`` overrides, shared
    by config-driven commands."""
    p.add_argument("config_file", nargs="?", metavar="CONFIG", help="YAML run config (configs/fmnist-lt.yaml)")
    p.add_argument("--config", "-c", default=None, help="same as the positional CONFIG")
    if "--run-dir" not in p._option_string_actions:
        p.add_argument("--run-dir", default=None, help="run folder (default: the config's run_dir)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. training.epochs=5")


def config_source(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """(config path or None, overrides): a ``key=value`` in the CONFIG position is an override."""
    overrides = list(getattr(args, "overrides", None) or [])
    path = getattr(args, "config", None)
    positional = getattr(args, "config_file", None)
    if positional and "=" in positional and not Path(positional).exists():
        overrides.insert(0, positional)
    elif positional:
        if path and path != positional:
            raise ConfigError(f"two configs given: {positional} and --config {path}")
        path = positional
    return path, overrides


def config_from_args(args: argparse.Namespace, run_config: str | Path | None = None, *, data: bool = True,
                     weights: bool = True, validate: bool = True, defaults_ok: bool = False, command: str | None = None):
    """The run config of a command, validated (:func:`discl.validation.validate_run_config`).

    ``CONFIG``/``--config`` if given; else the run's own ``config.yaml`` (``--run-dir RUN``, or
    ``run_config``: a command's run-specific file, such as the training folder of ``--checkpoint``);
    else an error saying how to start. Built-in defaults are never used silently; only the
    inspection commands (``discl data info``, ``discl curricula --preview``) pass ``defaults_ok``
    and ``validate=False``: they read one section and run no stage. ``command`` (default: the CLI's
    command) selects what a stage's own command checks (:data:`discl.validation.SKIP_BY_COMMAND`).
    """
    from discl.config import load_config
    from discl.validation import SKIP_BY_COMMAND, validate_run_config

    path, overrides = config_source(args)
    run_dir = getattr(args, "run_dir", None)
    if path is None:
        candidates = [Path(run_config)] if run_config else []
        if run_dir:
            candidates.append(Path(run_dir) / "config.yaml")
        found = next((c for c in candidates if c.is_file()), None)
        if found is None and not defaults_ok:
            where = f" ({' nor '.join(str(c) for c in candidates)} does not exist)" if candidates else ""
            raise ConfigError(NO_CONFIG + where)
        if found is not None:
            logging.getLogger("discl").info("config: %s (the run's own)", found)
        path = found
    if run_dir:
        overrides.append(f"run_dir={run_dir}")
    cfg = load_config(path, overrides)
    if validate:
        try:
            validate_run_config(cfg, data=data, weights=weights,
                                skip=SKIP_BY_COMMAND.get(command or getattr(args, "command", None) or "", frozenset()))
        except ConfigError as e:  # name the override a problem comes from
            from discl.config import blame

            lines = str(e).split("\n  - ")
            def who(line: str) -> str:  # only an override whose key is the problem's key, no section guess
                b = blame(line, "-", overrides)
                return "" if b == "-: " else b

            lines = [ln if ln.endswith(":") and i == 0 and len(lines) > 1 else who(ln) + ln
                     for i, ln in enumerate(lines)]
            blamed = ConfigError("\n  - ".join(lines))
            for note in getattr(e, "__notes__", ()):  # the warnings validation held until the errors
                blamed.add_note(note)
            raise blamed from None
    return cfg


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
    if isinstance(getattr(args, "shard", None), str):  # a usage error, not a traceback
        from discl.generation.planning import parse_shard

        try:
            parse_shard(args.shard)
        except ValueError as e:
            parser.error(f"{e} (shards are numbered 0 to n-1: --shard 0/2 and --shard 1/2)")
    module = importlib.import_module(args._module)
    try:
        return int(module.main(args) or 0)
    except ConfigError as e:
        _print_error(args.command, "config error", e)
        return 2
    except KeyboardInterrupt:
        print(f"discl {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (DisclError, FileNotFoundError) as e:
        _print_error(args.command, "error", e)
        return 1


def _print_error(command: str, kind: str, e: BaseException) -> None:
    """The error, then its notes (the warnings :func:`discl.validation.validate_run_config` held
    until the config's errors were known), each on its own line."""
    print(f"discl {command}: {kind}: {e}", file=sys.stderr)
    for note in getattr(e, "__notes__", ()):
        print(f"discl {command}: {note}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
