"""Errors a user can meet: each carries one line that says what is wrong and how to fix it."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; printed as one line, without a traceback."""


class ConfigError(UserError):
    """config.yaml (or a value given on the command line) is invalid.

    ``errors`` holds every problem found, each already a full one-line message
    (``file:line: key: what is wrong; how to fix it``).
    """

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))
