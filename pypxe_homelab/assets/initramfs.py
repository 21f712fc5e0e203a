"""Initramfs archives as the Linux kernel sees them, and the iSCSI addition appended to a Pi image's initramfs.

The kernel unpacks a sequence of cpio "newc" archives, each optionally compressed, separated by NUL padding; a
later entry replaces an earlier one of the same name and a directory entry over an existing directory or
symlink leaves it in place (``init/initramfs.c``). ``walk`` follows the same rule to read an initramfs (the
stock one, to learn its layout; the served one, to check it); ``newc_archive`` writes the addition with
libarchive.
"""

from __future__ import annotations

import bz2
import lzma
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import zstandard

NEWC_MAGICS = (b"070701", b"070702")
HEADER_SIZE = 110
TRAILER = "TRAILER!!!"
MAX_SYMLINKS = 40

# Compressed-archive magic numbers the kernel recognises (lib/decompress.c).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x1f\x9e", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x5d\x00\x00", "lzma"),
    (b"BZh", "bzip2"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x02\x21\x4c\x18", "lz4"),
    (b"\x89LZO", "lzo"),
)


class InitramfsError(ValueError):
    """The initramfs cannot be read (or the addition cannot be built); one line saying why."""


@dataclass(frozen=True)
class Member:
    name: str  # relative, no leading slash
    mode: int  # st_mode (type and permission bits)
    data: bytes = b""  # file content, or a symlink's target

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)


@dataclass(frozen=True)
class Segment:
    offset: int  # where the archive starts in the initramfs file
    compression: str  # 'none', 'gzip', 'zstd', …
    members: tuple[Member, ...]


# --- reading -----------------------------------------------------------------------------------------------


def _decompress(data: bytes, kind: str) -> tuple[bytes, int]:
    """(decompressed bytes, compressed bytes consumed) of the stream at the start of ``data``."""
    try:
        if kind == "gzip":
            dz = zlib.decompressobj(wbits=31)
            out = dz.decompress(data)
            return out, len(data) - len(dz.unused_data)
        if kind in ("xz", "lzma"):
            lz = lzma.LZMADecompressor(format=lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE)
            out = lz.decompress(data)
            return out, len(data) - len(lz.unused_data)
        if kind == "bzip2":
            bd = bz2.BZ2Decompressor()
            out = bd.decompress(data)
            return out, len(data) - len(bd.unused_data)
        if kind == "zstd":
            zd = zstandard.ZstdDecompressor().decompressobj()
            out = zd.decompress(data)
            return out, len(data) - len(zd.unused_data)
    except (zlib.error, lzma.LZMAError, OSError, zstandard.ZstdError) as exc:
        raise InitramfsError(f"{kind}-compressed archive is damaged ({exc})") from None
    raise InitramfsError(
        f"{kind}-compressed initramfs archives are not supported here; rebuild the image's initramfs with "
        "COMPRESS=zstd (or gzip/xz) in /etc/initramfs-tools/initramfs.conf"
    )


def _parse_newc(data: bytes, pos: int) -> tuple[list[Member], int]:
    """Members of the newc archive at ``data[pos:]`` up to its trailer, and the offset just after it."""
    members: list[Member] = []
    while True:
        header = data[pos : pos + HEADER_SIZE]
        if len(header) < HEADER_SIZE or header[:6] not in NEWC_MAGICS:
            raise InitramfsError(f"cpio header expected at byte {pos}")
        try:
            fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise InitramfsError(f"damaged cpio header at byte {pos}") from None
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        name_start = pos + HEADER_SIZE
        name = data[name_start : name_start + namesize - 1].decode("utf-8", "surrogateescape")
        body = (name_start + namesize + 3) & ~3
        end = (body + filesize + 3) & ~3
        if body + filesize > len(data):
            raise InitramfsError(f"cpio member {name!r} is cut short")
        if name == TRAILER:
            return members, end
        clean = name.lstrip("/")
        if clean.startswith("./"):
            clean = clean[2:]
        if clean and clean != ".":
            members.append(Member(clean, mode, bytes(data[body : body + filesize])))
        pos = end


def _archives(data: bytes, base: int, compression: str) -> Iterator[Segment]:
    """The uncompressed newc archives in ``data`` (NUL padding between them)."""
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            pos += 1
            continue
        if data[pos : pos + 6] not in NEWC_MAGICS:
            raise InitramfsError(f"unexpected bytes at {base + pos} inside a {compression} archive")
        members, end = _parse_newc(data, pos)
        yield Segment(base + pos, compression, tuple(members))
        pos = end


def segments(data: bytes) -> list[Segment]:
    """Every archive of an initramfs in order, following the kernel's rules for concatenated archives."""
    found: list[Segment] = []
    pos = 0
    while pos < len(data):
        byte = data[pos]
        if byte == 0:
            pos += 1
            continue
        if data[pos : pos + 6] in NEWC_MAGICS:
            if pos & 3:
                raise InitramfsError(f"uncompressed cpio archive at byte {pos} is not 4-byte aligned")
            members, end = _parse_newc(data, pos)
            found.append(Segment(pos, "none", tuple(members)))
            pos = end
            continue
        kind = next((name for magic, name in _MAGIC if data.startswith(magic, pos)), None)
        if kind is None:
            raise InitramfsError(f"byte {pos} starts neither a cpio archive nor a compressed one")
        out, used = _decompress(data[pos:], kind)
        found.extend(_archives(out, pos, kind))
        pos += max(used, 1)
    return found


@dataclass
class Tree:
    """The file tree the kernel builds from a sequence of members (``/`` not included)."""

    nodes: dict[str, Member] = field(default_factory=dict)

    @classmethod
    def of(cls, data: bytes) -> Tree:
        tree = cls()
        for segment in segments(data):
            tree.apply(segment.members)
        return tree

    def apply(self, members: Iterable[Member]) -> None:
        for member in members:
            parent, _, leaf = member.name.rpartition("/")
            where = self.resolve(parent) if parent else ""
            path = f"{where}/{leaf}" if where else leaf
            existing = self.nodes.get(path)
            if member.is_dir and existing is not None and (existing.is_dir or existing.is_symlink):
                continue  # mkdir over a directory or a symlink to one: EEXIST, kept
            if member.is_dir or existing is None or not existing.is_dir:
                self.nodes[path] = Member(path, member.mode, member.data)

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """``path`` with symlinks in the tree followed; components that do not exist are kept as they are."""
        pending = [p for p in PurePosixPath(path).parts if p not in ("/", ".")]
        done: list[str] = []
        hops = 0
        while pending:
            name = pending.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            candidate = "/".join([*done, name])
            node = self.nodes.get(candidate)
            if node is not None and node.is_symlink and (pending or follow_last):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise InitramfsError(f"{path}: too many symbolic links")
                target = node.data.decode("utf-8", "surrogateescape")
                if target.startswith("/"):
                    done = []
                pending = [p for p in PurePosixPath(target).parts if p not in ("/", ".")] + pending
                continue
            done.append(name)
        return "/".join(done)

    def get(self, path: str) -> Member | None:
        """The member at ``path`` (symlinks followed), or None."""
        return self.nodes.get(self.resolve(path.lstrip("/")))

    def listdir(self, path: str) -> list[str]:
        base = self.resolve(path.lstrip("/"))
        prefix = base + "/" if base else ""
        return sorted(
            {
                name[len(prefix) :].split("/")[0]
                for name in self.nodes
                if name.startswith(prefix) and name != base
            }
        )


# --- writing -----------------------------------------------------------------------------------------------


def newc_archive(members: Iterable[Member]) -> bytes:
    """An uncompressed newc archive of ``members`` (files and directories; owner root, mtime 0), written with
    libarchive."""
    try:  # on use: the C library is only needed by servers with Raspberry Pi nodes
        import libarchive
        from libarchive.entry import FileType
    except (ImportError, OSError, AttributeError) as exc:
        raise InitramfsError(
            f"libarchive is not usable ({exc}); install it: sudo apt-get install libarchive13"
        ) from None
    chunks: list[bytes] = []

    def sink(block: bytes) -> int:
        chunks.append(bytes(block))
        return len(block)

    with libarchive.custom_writer(sink, "cpio_newc", block_size=512) as archive:
        for m in members:
            if not (m.is_dir or m.is_file):
                raise InitramfsError(f"{m.name}: only files and directories are written")
            archive.add_file_from_memory(
                m.name,
                len(m.data) if m.is_file else 0,
                m.data,
                filetype=FileType(stat.S_IFMT(m.mode)),
                permission=stat.S_IMODE(m.mode),
                uid=0,
                gid=0,
                mtime=0,
            )
    return b"".join(chunks)


def append_archive(initramfs: bytes, archive: bytes) -> bytes:
    """``initramfs`` NUL-padded to a 4-byte boundary (the kernel wants an uncompressed archive aligned), then
    ``archive``."""
    pad = (-len(initramfs)) % 4
    return initramfs + b"\x00" * pad + archive
