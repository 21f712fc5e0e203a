"""config.ssh_keys: public key line validation and the invoking user's default key."""

from __future__ import annotations

import base64
import os
import pwd
import struct
from pathlib import Path

import pytest

from pypxe_homelab.config import ssh_keys
from pypxe_homelab.config.ssh_keys import default_authorized_keys, parse_public_key


def key(kind: str, payload: bytes = b"\x00" * 32, blob_kind: str | None = None) -> str:
    name = (blob_kind or kind).encode()
    blob = struct.pack(">I", len(name)) + name + struct.pack(">I", len(payload)) + payload
    return f"{kind} {base64.b64encode(blob).decode()}"


@pytest.mark.parametrize("kind", sorted(ssh_keys.KEY_TYPES))
def test_every_key_type_is_accepted(kind: str) -> None:
    line = key(kind) + " me@laptop"
    assert parse_public_key(f"  {line}\n") == line


def test_options_prefix_and_no_comment() -> None:
    line = 'from="10.0.0.0/8,192.168.1.1",no-pty ' + key("ssh-ed25519")
    assert parse_public_key(line) == line
    assert parse_public_key(key("ssh-rsa")) == key("ssh-rsa")


def test_private_key_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^this is a PRIVATE key; use the \.pub file$"):
        parse_public_key(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
        )


@pytest.mark.parametrize(
    "line",
    [
        "",
        "hello",
        "ssh-ed25519",
        "ssh-ed25519 !!!notbase64",
        key("ssh-ed25519", blob_kind="ssh-rsa"),
        "ssh-dss AAAAB3NzaC1kc3M=",
    ],
)
def test_garbage_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="not an OpenSSH public key line"):
        parse_public_key(line)


def test_default_key_is_the_first_valid_one(tmp_path: Path) -> None:
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "authorized_keys").write_text(
        f"# laptop\n\ngarbage line\n{key('ssh-ed25519')} a\n{key('ssh-rsa')} b\n"
    )
    assert default_authorized_keys(tmp_path) == [f"{key('ssh-ed25519')} a"]
    assert default_authorized_keys(tmp_path / "nobody") == []


def test_sudo_user_home_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    other = next(u for u in pwd.getpwall() if u.pw_uid != 0)
    monkeypatch.setenv("SUDO_USER", other.pw_name)
    assert ssh_keys.invoking_user_home() == Path(other.pw_dir)
    monkeypatch.delenv("SUDO_USER")
    assert ssh_keys.invoking_user_home() == Path(pwd.getpwuid(os.getuid()).pw_dir)
