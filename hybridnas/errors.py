"""User-facing errors. The CLI prints these as one line (no traceback) and
exits with status 2; library callers can catch them like any exception."""
from __future__ import annotations

from .spec import SpecError, clip_message

__all__ = ["UserError", "SpecError", "USER_ERRORS"]


class UserError(Exception):
    """Bad input from the user: the message names the file, field and value
    (a value longer than a line is cut, see ``spec.clip_message``)."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(clip_message(message), *args)


#: Exceptions the CLI reports as one line.
USER_ERRORS = (UserError, SpecError)
