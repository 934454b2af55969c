"""User-facing errors. The CLI prints these as one line (no traceback) and
exits with status 2; library callers can catch them like any exception."""
from __future__ import annotations

from .spec import SpecError

__all__ = ["UserError", "SpecError", "USER_ERRORS"]


class UserError(Exception):
    """Bad input from the user: the message names the file, field and value."""


#: Exceptions the CLI reports as one line.
USER_ERRORS = (UserError, SpecError)
