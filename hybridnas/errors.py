"""User-facing errors. The CLI prints these as one line (no traceback) and
exits with status 2; library callers can catch them like any exception."""
from __future__ import annotations

__all__ = ["UserError", "SpecError", "USER_ERRORS", "clip_message"]


#: Longest message of a user error: they echo values from untrusted files.
MAX_MESSAGE_CHARS = 1000


def clip_message(message: object) -> object:
    """``message`` cut to ``MAX_MESSAGE_CHARS`` (keeping its start and end,
    where the file and the reason are); non-strings pass through."""
    if not isinstance(message, str) or len(message) <= MAX_MESSAGE_CHARS:
        return message
    keep = MAX_MESSAGE_CHARS // 2 - 20
    return f"{message[:keep]} ...[{len(message) - 2 * keep} characters cut]... {message[-keep:]}"


class SpecError(ValueError):
    """A spec is malformed. The message names the field and the value, e.g.
    ``stages[2].heads=5 does not divide width=192``."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(clip_message(message), *args)


class UserError(Exception):
    """Bad input from the user: the message names the file, field and value
    (a value longer than a line is cut, see ``clip_message``)."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(clip_message(message), *args)


#: Exceptions the CLI reports as one line.
USER_ERRORS = (UserError, SpecError)
