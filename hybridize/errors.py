"""User mistakes: the CLI prints these as one line (no traceback) and exits non-zero."""
from __future__ import annotations

from .modeling.modeling_hybridize import UnsupportedModelError


class UserError(ValueError):
    """Bad input; the message names the problem and the fix."""


# Errors the CLI reports without a traceback. UnsupportedModelError lives in the checkpoint-side
# modeling code (which cannot import hybridize), so it is listed here rather than subclassed.
USER_ERRORS: tuple[type[Exception], ...] = (UserError, UnsupportedModelError)
