"""Read a raw disk image without mounting it: the MBR partition table, a FAT partition's files, an ext root.

FAT is read with pyfatfs and ext2/3/4 with dissect.extfs (docs/design.md says why). The MBR is four fixed
16-byte entries at byte 446, decoded here with ``struct``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from pyfatfs.FATDirectoryEntry import FATDirectoryEntry
from pyfatfs.PyFat import PyFat

SECTOR = 512
FAT_TYPES = frozenset({0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0xEF})
LINUX_TYPE = 0x83
EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})
EXT_MAGIC_OFFSET = 1024 + 56
MAX_SYMLINKS = 40

# NT "case" bits of a short-name directory entry (byte 12): the base name / the extension is lower case.
_NT_LOWER_BASE = 0x08
_NT_LOWER_EXT = 0x10


class DiskImageError(ValueError):
    """The image is not what it should be; the message says what, in one line."""


@dataclass(frozen=True)
class Partition:
    number: int  # 1-4, as Linux names them (mmcblk0p<number>)
    type_id: int  # MBR partition type byte
    start: int  # byte offset in the image
    size: int  # bytes
    bootable: bool

    @property
    def is_fat(self) -> bool:
        return self.type_id in FAT_TYPES

    @property
    def is_linux(self) -> bool:
        return self.type_id == LINUX_TYPE


def mbr_partitions(fh: BinaryIO) -> list[Partition]:
    """The primary partitions of an MBR disk image; DiskImageError when there is no MBR."""
    fh.seek(0)
    sector = fh.read(SECTOR)
    if len(sector) < SECTOR or sector[510:512] != b"\x55\xaa":
        raise DiskImageError("no MBR partition table (no 55 AA signature in the first sector)")
    found = []
    for index in range(4):
        entry = sector[446 + 16 * index : 446 + 16 * (index + 1)]
        status, type_id, lba, count = entry[0], entry[4], *struct.unpack_from("<II", entry, 8)
        if type_id == 0 or count == 0:
            continue
        if type_id == 0xEE:
            raise DiskImageError("the disk has a GPT partition table; a Raspberry Pi image uses MBR")
        if type_id in EXTENDED_TYPES:
            continue
        found.append(Partition(index + 1, type_id, lba * SECTOR, count * SECTOR, status == 0x80))
    return found


def is_ext(fh: BinaryIO, part: Partition) -> bool:
    """Whether ``part`` holds an ext2/3/4 file system (superblock magic 0xEF53)."""
    fh.seek(part.start + EXT_MAGIC_OFFSET)
    return fh.read(2) == b"\x53\xef"


# --- FAT ---------------------------------------------------------------------------------------------------


def _entry_name(entry: FATDirectoryEntry) -> str:
    """The file name as Linux shows it: the long name, else the 8.3 name with the NT case bits applied."""
    if entry.lfn_entry is not None:
        return entry.get_long_name()
    raw = entry.get_short_name()
    base, dot, ext = raw.partition(".")
    if entry.ntres & _NT_LOWER_BASE:
        base = base.lower()
    if entry.ntres & _NT_LOWER_EXT:
        ext = ext.lower()
    return base + dot + ext


class FatReader:
    """The files of one FAT partition of an image, read with pyfatfs."""

    def __init__(self, image: Path, part: Partition) -> None:
        self._fat = PyFat(offset=part.start)
        try:
            self._fat.open(str(image), read_only=True)
        except Exception as exc:  # pyfatfs raises PyFATException, struct and value errors for damaged input
            raise DiskImageError(
                f"partition {part.number} is not a readable FAT file system ({exc})"
            ) from None

    def close(self) -> None:
        self._fat.close()

    def __enter__(self) -> FatReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def files(self) -> Iterator[tuple[str, FATDirectoryEntry]]:
        """``(relative path, entry)`` of every regular file, depth first."""
        yield from self._walk(self._fat.root_dir, "")

    def _walk(self, directory: FATDirectoryEntry, prefix: str) -> Iterator[tuple[str, FATDirectoryEntry]]:
        dirs, files, _special = directory.get_entries()
        for entry in files:
            yield prefix + _entry_name(entry), entry
        for entry in dirs:
            yield from self._walk(entry, prefix + _entry_name(entry) + "/")

    def read(self, entry: FATDirectoryEntry) -> bytes:
        """The bytes of one file (its cluster chain, cut to its size)."""
        size = entry.filesize
        if size == 0:
            return b""
        out = bytearray()
        for cluster in self._fat.get_cluster_chain(entry.get_cluster()):
            out += self._fat.read_cluster_contents(cluster)
            if len(out) >= size:
                break
        if len(out) < size:
            raise DiskImageError(f"FAT file {_entry_name(entry)} is cut short ({len(out)} of {size} bytes)")
        return bytes(out[:size])

    def read_all(self) -> dict[str, bytes]:
        """Every file of the partition by relative path (a boot partition is a few dozen MB)."""
        return {path: self.read(entry) for path, entry in self.files()}


# --- ext ---------------------------------------------------------------------------------------------------


class RootFs:
    """An ext2/3/4 root file system inside an image, read with dissect.extfs; paths are absolute POSIX."""

    def __init__(self, image: Path, part: Partition) -> None:
        # dissect is imported here, not at the top: only reading a Pi image needs it, so `serve` and the CLI
        # start without loading it
        from dissect.extfs import ExtFS
        from dissect.extfs.exceptions import Error as ExtError
        from dissect.util.stream import RangeStream

        self._error = ExtError
        self._fh = open(image, "rb")  # noqa: SIM115 - closed by close()
        try:
            self._fs = ExtFS(RangeStream(self._fh, part.start, part.size))
        except (ExtError, EOFError, ValueError, struct.error) as exc:
            self._fh.close()
            raise DiskImageError(
                f"partition {part.number} is not a readable ext file system ({exc})"
            ) from None
        self.partition = part

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RootFs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def uuid(self) -> str:
        return str(self._fs.uuid)

    @property
    def label(self) -> str:
        return self._fs.volume_name or ""

    def resolve(self, path: str) -> str:
        """``path`` with every symlink resolved inside this file system (``/lib`` → ``/usr/lib``…).

        FileNotFoundError when a component does not exist."""
        parts = [p for p in PurePosixPath(path).parts if p != "/"]
        done: list[str] = []
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            if name == "..":
                if done:
                    done.pop()
                continue
            current = "/" + "/".join([*done, name])
            inode = self._get(current)
            if inode.filetype == 0o120000:
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise FileNotFoundError(f"{path}: too many symbolic links")
                target = inode.link
                if target.startswith("/"):
                    done = []
                parts = [p for p in PurePosixPath(target).parts if p != "/"] + parts
                continue
            done.append(name)
        return "/" + "/".join(done)

    def _get(self, path: str):
        try:
            return self._fs.get(path)
        except (self._error, KeyError) as exc:
            raise FileNotFoundError(path) from exc

    def exists(self, path: str) -> bool:
        try:
            self.resolve(path)
        except FileNotFoundError:
            return False
        return True

    def is_file(self, path: str) -> bool:
        try:
            return self._get(self.resolve(path)).filetype == 0o100000
        except FileNotFoundError:
            return False

    def mode(self, path: str) -> int:
        """Permission bits of the file at ``path`` (symlinks followed)."""
        return self._get(self.resolve(path)).inode.i_mode & 0o7777

    def read(self, path: str) -> bytes:
        """The bytes of the regular file at ``path`` (symlinks followed)."""
        real = self.resolve(path)
        inode = self._get(real)
        if inode.filetype != 0o100000:
            raise IsADirectoryError(real)
        return inode.open().read()

    def listdir(self, path: str) -> list[str]:
        """Names in the directory at ``path`` (symlinks followed), without ``.`` and ``..``."""
        inode = self._get(self.resolve(path))
        if inode.filetype != 0o040000:
            raise NotADirectoryError(path)
        return sorted(name for name in inode.listdir() if name not in (".", ".."))
