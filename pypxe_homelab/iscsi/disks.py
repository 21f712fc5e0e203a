"""Node disks: ``<root>/iscsiroot/<serial>.img``, a copy of the node's Pi image made on first use.

The copy is coreutils ``cp --reflink=auto --sparse=always``: a reflink (instant, shares blocks) on
btrfs/XFS, else a sparse copy that skips the image's holes and zero runs. It goes to a temporary file
next to the disk and is moved into place only when complete, so a failed or interrupted copy leaves no
half-made disk. An existing disk is never replaced, except by :func:`recreate_disk` (``reinstall``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

from pypxe_homelab.errors import UserError

PART_MARK = ".part-"


class DiskError(UserError):
    """A node disk could not be made; nothing half-made was left behind."""


def ensure_disk(image: Path, disk: Path) -> bool:
    """Create ``disk`` from ``image`` unless it exists; True when it was created now."""
    if disk.exists():
        return False
    _copy_into_place(image, disk, replace=False)
    return True


def recreate_disk(image: Path, disk: Path) -> None:
    """Replace ``disk`` by a fresh copy of ``image``; the old disk stays whole if the copy fails."""
    _copy_into_place(image, disk, replace=True)


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete temporary copies an interrupted run left in ``folder``; returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if path.name.startswith(".") and PART_MARK in path.name:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def _copy_into_place(image: Path, disk: Path, *, replace: bool) -> None:
    what = f"the disk of {disk.stem} ({disk})"
    if not image.is_file():
        raise DiskError(f"cannot create {what}: its image {image} is missing; register the image again")
    cp = shutil.which("cp")
    if cp is None:
        raise DiskError(f"cannot create {what}: `cp` (coreutils) is not installed")
    try:
        disk.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DiskError(
            f"cannot create {disk.parent}: {exc.strerror}; run with sudo or set paths.root"
        ) from None
    tmp = disk.with_name(f".{disk.name}{PART_MARK}{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        result = subprocess.run(
            [cp, "--reflink=auto", "--sparse=always", "--", str(image), str(tmp)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DiskError(_copy_failure(what, image, disk, result.stderr))
        _fsync(tmp)
        _owner_of_folder(tmp)
        if replace:
            os.replace(tmp, disk)
        else:
            try:
                os.link(tmp, disk)  # fails if the disk appeared meanwhile: never overwrite one
            except FileExistsError:
                return
        _fsync(disk.parent)
    except OSError as exc:
        raise DiskError(f"cannot create {what}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _owner_of_folder(path: Path) -> None:
    """Give ``path`` the owner of its folder when running as root (e.g. `reinstall` run with sudo): the
    server, running as its service user, must be able to write the node's disk."""
    if os.geteuid() != 0:
        return
    folder = path.parent.stat()
    os.chown(path, folder.st_uid, folder.st_gid)


def _copy_failure(what: str, image: Path, disk: Path, stderr: str) -> str:
    if os.strerror(errno.ENOSPC) in stderr:
        need = _gib(image.stat().st_size)
        free = _gib(shutil.disk_usage(disk.parent).free)
        return (
            f"cannot create {what}: no space left on the disk holding {disk.parent} (the image is {need} "
            f"GiB, {free} GiB free); free space there or set paths.root to a larger disk — nothing was changed"
        )
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else "cp failed"
    return f"cannot create {what}: {detail}"


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
