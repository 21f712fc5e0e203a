"""OpenSSH public key lines: validation, and the invoking user's default key."""

from __future__ import annotations

import base64
import binascii
import os
import pwd
import shlex
import struct
from pathlib import Path

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)

NOT_A_KEY = "not an OpenSSH public key line"
PRIVATE_KEY = "this is a PRIVATE key; use the .pub file"


def _blob_type(blob_b64: str) -> str | None:
    """The key type named inside the base64 blob, or None when it is not a valid blob."""
    try:
        blob = base64.b64decode(blob_b64, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
    except (binascii.Error, ValueError, struct.error):
        return None
    if length > len(blob) - 4:
        return None
    try:
        return blob[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None


def _split_options(line: str) -> list[str]:
    """Split a key line into fields, keeping a quoted options prefix (``from="a b",no-pty``) whole."""
    try:
        lexer = shlex.shlex(line, posix=False)
        lexer.whitespace_split = True
        lexer.commenters = ""
        return list(lexer)
    except ValueError:
        return line.split()


def parse_public_key(line: str) -> str:
    """Return the key line stripped of surrounding blanks, or raise ValueError saying why it is not a public key.

    Accepts ``[options] type base64 [comment]`` for the key types in KEY_TYPES; the blob must decode and
    name the same type.
    """
    if "PRIVATE KEY" in line:
        raise ValueError(PRIVATE_KEY)
    text = line.strip()
    if not text or "\n" in text:
        raise ValueError(NOT_A_KEY)
    fields = _split_options(text)
    for index, field in enumerate(fields[:2]):
        if field in KEY_TYPES:
            if index + 1 >= len(fields):
                raise ValueError(f"{NOT_A_KEY}: the base64 key after {field!r} is missing")
            if _blob_type(fields[index + 1]) != field:
                raise ValueError(f"{NOT_A_KEY}: the base64 key after {field!r} is damaged or of another type")
            return text
    raise ValueError(NOT_A_KEY)


def invoking_user_home() -> Path:
    """The home of the user who ran the command: SUDO_USER's when run through sudo, else the current user's."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user and sudo_user != "root":
        try:
            return Path(pwd.getpwnam(sudo_user).pw_dir)
        except KeyError:
            pass
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return Path.home()


def keys_in_file(path: Path) -> list[str]:
    """Every valid public key line of an authorized_keys-style file (comments, blanks and bad lines skipped)."""
    keys = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            keys.append(parse_public_key(line))
        except ValueError:
            continue
    return keys


def default_authorized_keys(home: Path | None = None) -> list[str]:
    """The first valid key of the invoking user's ~/.ssh/authorized_keys, as a one-item list ([] when none)."""
    path = (home or invoking_user_home()) / ".ssh" / "authorized_keys"
    try:
        keys = keys_in_file(path)
    except OSError:
        return []
    return keys[:1]
