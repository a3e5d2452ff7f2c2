"""User mistakes: the CLI prints these as one line (no traceback) and exits non-zero."""
from __future__ import annotations

from .modeling.modeling_hybridize import UnsupportedModelError


class UserError(ValueError):
    """Bad input; the message names the problem and the fix."""


class Stopped(Exception):
    """A long run stopped on request (SIGTERM, Ctrl-C) after saving a checkpoint: not a failure of the
    input, so the CLI prints the message (how to resume) and exits with the signal's usual code."""

    def __init__(self, message: str, exit_code: int = 143):
        super().__init__(message)
        self.exit_code = exit_code


# Errors the CLI reports without a traceback. UnsupportedModelError lives in the checkpoint-side
# modeling code (which cannot import hybridize), so it is listed here rather than subclassed.
USER_ERRORS: tuple[type[Exception], ...] = (UserError, UnsupportedModelError)
