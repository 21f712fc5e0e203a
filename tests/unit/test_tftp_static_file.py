"""static_file: real files under the TFTP root, never anything outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pypxe_homelab.protocol.tftp_paths import PathRefused
from pypxe_homelab.rootfiles import static_entry, static_file
from pypxe_homelab.services.tftp import TftpFile


@pytest.fixture
def root(tmp_path: Path) -> Path:
    tree = tmp_path / "tftproot"
    (tree / "efi64").mkdir(parents=True)
    (tree / "lpxelinux.0").write_bytes(b"loader")
    (tree / "efi64" / "syslinux.efi").write_bytes(b"efi")
    (tmp_path / "secret").write_text("outside")
    (tree / "escape").symlink_to(tmp_path / "secret")
    (tree / "escape-dir").symlink_to(tmp_path)
    (tree / "inside-link").symlink_to(tree / "lpxelinux.0")
    (tree / "dangling").symlink_to(tree / "missing")
    (tree / "loop").symlink_to(tree / "loop")
    return tree


def test_plain_and_nested_files(root: Path) -> None:
    assert static_file(root, "lpxelinux.0") == (root / "lpxelinux.0").resolve()
    assert static_file(root, "efi64/syslinux.efi") == (root / "efi64" / "syslinux.efi").resolve()


def test_names_are_normalised_first(root: Path) -> None:
    assert static_file(root, "\\efi64\\\\syslinux.efi") == (root / "efi64" / "syslinux.efi").resolve()


def test_missing_files_and_directories_are_none(root: Path) -> None:
    assert static_file(root, "nope") is None
    assert static_file(root, "efi64") is None
    assert static_file(root, "lpxelinux.0/sub") is None
    assert static_file(root, "dangling") is None
    assert static_file(root, "loop") is None


def test_symlink_inside_the_root_is_served(root: Path) -> None:
    assert static_file(root, "inside-link") == (root / "lpxelinux.0").resolve()


def test_symlink_that_loops_back_inside_is_served(root: Path) -> None:
    assert static_file(root, "escape-dir/tftproot/lpxelinux.0") == (root / "lpxelinux.0").resolve()


@pytest.mark.parametrize("name", ["escape", "escape-dir/secret", "escape-dir"])
def test_symlink_escape_is_refused(root: Path, name: str) -> None:
    with pytest.raises(PathRefused):
        static_file(root, name)


@pytest.mark.parametrize("name", ["../secret", "/../secret", "a\x00b"])
def test_traversal_is_refused(root: Path, name: str) -> None:
    with pytest.raises(PathRefused):
        static_file(root, name)


def test_tftp_file_holds_exactly_one_source(tmp_path: Path) -> None:
    assert TftpFile(data=b"x").data == b"x"
    assert TftpFile(path=tmp_path).path == tmp_path
    with pytest.raises(ValueError):
        TftpFile()
    with pytest.raises(ValueError):
        TftpFile(data=b"x", path=tmp_path)


def test_static_entry_gives_the_file_and_its_stat(root: Path) -> None:
    found = static_entry(root, "inside-link")
    assert found is not None
    path, st = found
    assert path == (root / "lpxelinux.0").resolve() and st.st_size == len(b"loader")
    assert st.st_ino == (root / "lpxelinux.0").stat().st_ino
    assert static_entry(root, "efi64") is None and static_entry(root, "nope") is None
    with pytest.raises(PathRefused):
        static_entry(root, "escape")
