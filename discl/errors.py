"""Errors the user must act on. The CLI prints them in one line (no traceback) and exits 1."""

from __future__ import annotations


class DisclError(RuntimeError):
    """A problem with the user's input, files, models or disk; the message names what and where."""


class BadInputError(DisclError, ValueError):
    """An input file or row is unusable (corrupt image, missing file, unknown label, ...)."""


class ModelNotFoundError(DisclError):
    """Weights cannot be loaded (offline, missing folder); the message says how to provide them."""


def shown(value: object) -> str:
    """``value`` (a path or a name from the user's files) as a message prints it: as is, or quoted with
    its escapes (``'train/Bag\\n'``) when it holds a character that is not printable (a newline, a
    tab), which would otherwise split or hide the message's line."""
    text = str(value)
    return text if text.isprintable() else repr(text)
