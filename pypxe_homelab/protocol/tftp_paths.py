"""TFTP file names: normalisation and refusal of unsafe names (what a name says about the machine asking is
``identity.device_hint``'s business).

Pure functions only: a requested name goes in, a clean relative path (or a refusal) comes out.
"""

from __future__ import annotations

import functools
import re

MAX_NAME_LENGTH = 255

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:(?:/|$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PathRefused(ValueError):
    """A requested name that must not be served; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@functools.lru_cache(maxsize=1024)  # asked on every TFTP and HTTP request, mostly for the same few names
def normalise(raw: str) -> str:
    """Return ``raw`` as a clean path relative to the TFTP root, or raise PathRefused.

    Backslashes become ``/``, empty and ``.`` components are dropped (so ``//`` collapses and a leading ``/``
    goes), case is kept. Refused: NUL or other control characters, ``..`` components, drive letters
    (``C:\\``), names longer than MAX_NAME_LENGTH, and names that are empty once cleaned.
    """
    if "\x00" in raw:
        raise PathRefused("NUL byte in the file name")
    if _CONTROL.search(raw):
        raise PathRefused("control character in the file name")
    if len(raw) > MAX_NAME_LENGTH:
        raise PathRefused(f"file name longer than {MAX_NAME_LENGTH} characters")
    text = raw.replace("\\", "/")
    if _DRIVE_LETTER.match(text):
        raise PathRefused("absolute path with a drive letter")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PathRefused("'..' in the file name")
    if not parts:
        raise PathRefused("empty file name")
    return "/".join(parts)
