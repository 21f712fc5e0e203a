"""Passwords: well-formed SHA-512 or yescrypt hashes pass unchanged, plaintext is hashed, anything else that
looks like a crypt hash is refused in one line naming what it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from passlib.hash import sha512_crypt

from pypxe_homelab.boot.autoinstall import password_hash
from pypxe_homelab.cli import main
from pypxe_homelab.config import values as V
from pypxe_homelab.config.loader import parse_inventory
from pypxe_homelab.errors import ConfigError, UserError

SHA512 = sha512_crypt.using(salt="abcdefgh", rounds=5000).hash("ubuntu")
SHA512_ROUNDS = sha512_crypt.using(salt="abcdefghijklmnop", rounds=10000).hash("ubuntu")
YESCRYPT = "$y$j9T$PaSb9MXEtmpzb2oVAvXmF.$6iT5U.Fm/7JgWoEP9mROLoTbLK6at7RyQ4ts8.xBQtA"  # mkpasswd -m yescrypt


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (SHA512, "SHA-512 hash"),
        (SHA512_ROUNDS, "SHA-512 hash"),
        (YESCRYPT, "yescrypt hash"),
        ("correct horse", "plaintext"),
        ("$ecret", "plaintext"),
        ("a$6$b", "plaintext"),
    ],
)
def test_accepted_values_and_how_they_are_understood(value: str, kind: str) -> None:
    assert V.password(value) == value and V.password_kind(value) == kind


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$1$abcdefgh$0123456789abcdefghijkl", "an MD5 ($1$) hash is not accepted"),
        ("$2b$12$" + "a" * 53, "a bcrypt ($2b$) hash is not accepted"),
        ("$6$salt$hash", "this SHA-512 hash is malformed"),
        (SHA512[:-1], "this SHA-512 hash is malformed"),
        (SHA512[:-1] + "!", "this SHA-512 hash is malformed"),
        ("$6$" + "s" * 17 + SHA512[SHA512.rindex("$") :], "this SHA-512 hash is malformed"),
        ("$y$j9T$salt$short", "this yescrypt hash is malformed"),
    ],
)
def test_other_hashes_are_refused_in_one_line(value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_inventory(f"defaults:\n  password: '{value}'\n", None, detect_host=False)
    (line,) = info.value.errors
    assert f":2: defaults.password: {expected}" in line and line.endswith(V.PASSWORD_FIX)
    with pytest.raises(UserError, match="password: "):
        password_hash(value, "01-52-54-00-a0-00-01")


def test_a_configured_hash_is_served_unchanged_and_plaintext_is_hashed() -> None:
    assert password_hash(SHA512, "x") == SHA512 and password_hash(YESCRYPT, "x") == YESCRYPT
    assert sha512_crypt.verify("$1$looks-like", password_hash("plain $1$ inside", "x")) is False
    assert sha512_crypt.verify("plain", password_hash("plain", "x"))


def test_validate_says_how_the_password_was_understood(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"defaults:\n  password: '{YESCRYPT}'\nnodes:\n  01-52-54-00-a0-00-01:\n    password: secret\n"
    )
    result = CliRunner().invoke(main, ["--config", str(path), "validate"])
    assert "defaults.password: a yescrypt hash, used as given" in result.output
    assert "nodes.01-52-54-00-a0-00-01.password: plaintext, served only as its SHA-512 hash" in result.output
