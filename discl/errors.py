"""Errors the user must act on. The CLI prints them in one line (no traceback) and exits 1."""

from __future__ import annotations


class DisclError(RuntimeError):
    """A problem with the user's input, files, models or disk; the message names what and where."""


class BadInputError(DisclError, ValueError):
    """An input file or row is unusable (corrupt image, missing file, unknown label, ...)."""


class ModelNotFoundError(DisclError):
    """Weights cannot be loaded (offline, missing folder); the message says how to provide them."""
