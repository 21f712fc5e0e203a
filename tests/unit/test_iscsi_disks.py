"""Node disks: a sparse copy of the image made once, atomically; a full disk leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypxe_homelab.iscsi.disks import DiskError, ensure_disk, recreate_disk, remove_leftovers

MIB = 2**20


def make_image(path: Path, size: int = 64 * MIB, pattern: bytes = b"PIIMAGE!") -> Path:
    """A sparse image with data in its first and last MiB only."""
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(pattern * (MIB // len(pattern)))
        f.seek(size - MIB)
        f.write(pattern[::-1] * (MIB // len(pattern)))
    return path


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_first_use_makes_a_sparse_copy_and_never_overwrites(tmp_path: Path) -> None:
    image = make_image(tmp_path / "pi.img")
    disk = tmp_path / "iscsiroot" / "7092246e.img"
    assert ensure_disk(image, disk) is True
    assert disk.read_bytes() == image.read_bytes()
    assert allocated(disk) < 8 * MIB  # holes stay holes
    with open(disk, "r+b") as f:
        f.write(b"node wrote this")
    assert ensure_disk(image, disk) is False
    assert disk.read_bytes().startswith(b"node wrote this")
    assert sorted(p.name for p in disk.parent.iterdir()) == ["7092246e.img"]


def test_recreate_replaces_the_disk_with_a_fresh_copy(tmp_path: Path) -> None:
    image = make_image(tmp_path / "pi.img")
    disk = tmp_path / "iscsiroot" / "7092246e.img"
    ensure_disk(image, disk)
    disk.write_bytes(b"changed")
    recreate_disk(image, disk)
    assert disk.read_bytes() == image.read_bytes()


def test_missing_image_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DiskError, match=r"its image .*missing\.img is missing; register the image again"):
        ensure_disk(tmp_path / "missing.img", tmp_path / "iscsiroot" / "7092246e.img")
    assert not (tmp_path / "iscsiroot" / "7092246e.img").exists()


def test_leftovers_of_an_interrupted_copy_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".7092246e.img.part-1234").write_bytes(b"half")
    (tmp_path / "0000beef.img").write_bytes(b"a disk")
    assert remove_leftovers(tmp_path) == [tmp_path / ".7092246e.img.part-1234"]
    assert [p.name for p in tmp_path.iterdir()] == ["0000beef.img"]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk_says_so_in_one_line_and_leaves_nothing(tmp_path: Path, small_fs: Path) -> None:
    image = make_image(tmp_path / "pi.img", pattern=b"\x01" * 8)
    with open(image, "r+b") as f:  # 8 MiB of data: more than the 4 MiB tmpfs holds
        f.write(b"\x02" * (8 * MIB))
    disk = small_fs / "iscsiroot" / "7092246e.img"
    with pytest.raises(DiskError) as info:
        ensure_disk(image, disk)
    message = str(info.value)
    assert "\n" not in message
    assert "no space left" in message and "set paths.root to a larger disk" in message
    assert list(disk.parent.iterdir()) == []
    # a reinstall that runs out of space keeps the old disk whole
    disk.write_bytes(b"old disk")
    with pytest.raises(DiskError, match="no space left"):
        recreate_disk(image, disk)
    assert disk.read_bytes() == b"old disk"
    assert [p.name for p in disk.parent.iterdir()] == ["7092246e.img"]
