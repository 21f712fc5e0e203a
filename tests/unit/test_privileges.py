"""Least privilege helpers: what the service user is given, what it must be able to read, the one-line
refusals."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from pypxe_homelab import privileges
from pypxe_homelab.privileges import Account

NOBODY = Account("nobody", 65534, 65534)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change owners")


@as_root
def test_the_service_user_gets_the_data_root_and_what_the_server_writes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ("state.db", "state.db-wal", "iscsiroot/7092246e.img", "tgtd/tgtd.log", "httproot/boot/linux"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    privileges.give_data_root(root, NOBODY)
    owned = {str(p.relative_to(root)) for p in [root, *root.rglob("*")] if p.stat().st_uid == NOBODY.uid}
    assert owned == {
        ".",
        "state.db",
        "state.db-wal",
        "iscsiroot",
        "iscsiroot/7092246e.img",
        "tgtd",
        "tgtd/tgtd.log",
    }


def test_readable_by_follows_every_folder_above() -> None:
    base = Path(tempfile.mkdtemp(dir="/var/tmp"))  # pytest's own temporary folders are private
    try:
        base.chmod(0o755)
        private = base / "home" / "me"
        (private / "venv").mkdir(parents=True)
        (base / "home").chmod(0o755)
        private.chmod(0o700)
        assert not privileges.readable_by(private / "venv", NOBODY)
        private.chmod(0o755)
        assert privileges.readable_by(private / "venv", NOBODY)
    finally:
        shutil.rmtree(base)


def test_program_files_name_python_and_the_package() -> None:
    places = privileges.program_files()
    assert Path(os.__file__).parent in places
    assert Path(privileges.__file__).parent in places


def test_the_command_that_creates_the_user() -> None:
    assert privileges.create_user_command("pypxe-homelab", Path("/var/lib/pypxe-homelab")) == (
        "useradd --system --user-group --home-dir /var/lib/pypxe-homelab --no-create-home "
        "--shell /usr/sbin/nologin pypxe-homelab"
    )
