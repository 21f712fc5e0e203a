"""Ubuntu's own Secure Boot chain, read out of an installer ISO when the image is prepared (pycdlib, no mount).

Ubuntu's kernels are signed by Canonical and pass only a shim that carries Canonical's key, so an Ubuntu
installer with Secure Boot on needs Ubuntu's shim and GRUB, not Debian's. Both come from the node's own ISO:

- shim: ``EFI/boot/bootx64.efi`` (Microsoft-signed) and MokManager ``EFI/boot/mmx64.efi`` beside it;
- GRUB: the ISO's ``EFI/boot/grubx64.efi`` has no network file system (over PXE it says ``disk
  `tftp,…' not found`` and stops at ``grub>``), so the network build is taken from the same ISO's package
  pool: ``grubnetx64.efi.signed`` inside ``pool/main/g/grub2-signed/grub-efi-amd64-signed_*_amd64.deb``,
  the package the installer itself installs. The .deb is read in Python (ar, then a zstd/xz/gzip tar).

Layout next to the image's kernel and initrd: ``images/<name>/efi/{shimx64.efi,grubx64.efi,mmx64.efi}``.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

from pypxe_homelab.assets import iso as iso_files
from pypxe_homelab.atomicfile import write_atomic
from pypxe_homelab.errors import UserError

CHAIN_DIR = "efi"
SHIM_NAME = "shimx64.efi"
GRUB_NAME = "grubx64.efi"
MOK_NAME = "mmx64.efi"
POOL_DIR = "pool/main/g/grub2-signed"
NET_GRUB = "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
_GRUB_DEB = re.compile(r"^grub-efi-amd64-signed_[^/]+_amd64\.deb$")
_AR_MAGIC = b"!<arch>\n"


@dataclass(frozen=True)
class UbuntuChain:
    """Paths (relative to the image folder) of the chain extracted from one ISO, and where GRUB came from."""

    shim: str
    grub: str
    mok_manager: str | None
    grub_package: str  # the .deb of the ISO's pool that held grubnetx64.efi.signed


def extract_chain(iso_path: Path, folder: Path) -> UbuntuChain | None:
    """Write the ISO's shim, MokManager and network GRUB below ``folder/efi``; None when the ISO lacks the
    shim or the signed GRUB package (the image then has no Ubuntu chain, and nothing is left behind)."""
    target = folder / CHAIN_DIR
    shutil.rmtree(target, ignore_errors=True)
    with iso_files.open_iso(iso_path) as iso:
        shim = iso_files.read_file(iso, iso_files.SHIM)
        debs = sorted(n for n in iso_files.list_names(iso, POOL_DIR) if _GRUB_DEB.match(n))
        if shim is None or not debs:
            return None
        package = debs[-1]
        deb = iso_files.read_file(iso, f"{POOL_DIR}/{package}")
        mok = iso_files.read_file(iso, iso_files.MOK_MANAGER)
    grub = deb_member(deb or b"", NET_GRUB, source=f"{iso_path}: {POOL_DIR}/{package}")
    if grub is None:
        raise UserError(f"{iso_path}: {POOL_DIR}/{package} has no {NET_GRUB}; is it an Ubuntu amd64 ISO?")
    write_atomic(target / SHIM_NAME, shim)
    write_atomic(target / GRUB_NAME, grub)
    if mok is not None:
        write_atomic(target / MOK_NAME, mok)
    return UbuntuChain(
        shim=f"{CHAIN_DIR}/{SHIM_NAME}",
        grub=f"{CHAIN_DIR}/{GRUB_NAME}",
        mok_manager=f"{CHAIN_DIR}/{MOK_NAME}" if mok is not None else None,
        grub_package=package,
    )


def deb_member(deb: bytes, member: str, *, source: str = "the package") -> bytes | None:
    """The bytes of file ``member`` (``usr/…``) of a .deb's data archive, or None when it has no such file.

    UserError names ``source`` when the bytes are no readable .deb.
    """
    try:
        for name, data in _ar_members(deb):
            if name.startswith("data.tar"):
                return _tar_member(_decompressed(name, data), member)
    except (ValueError, tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
        raise UserError(f"{source}: not a readable .deb ({exc})") from None
    raise UserError(f"{source}: not a readable .deb (no data.tar member)")


def _ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each member of a Unix ar archive, the container format of a .deb."""
    if not data.startswith(_AR_MAGIC):
        raise ValueError("no ar header")
    pos = len(_AR_MAGIC)
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip() or "0")
        start = pos + 60
        if start + size > len(data):
            raise ValueError(f"member {name} is cut short")
        yield name, data[start : start + size]
        pos = start + size + (size & 1)


def _decompressed(name: str, data: bytes) -> io.BytesIO:
    if name.endswith(".zst"):
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            return io.BytesIO(reader.read())
    return io.BytesIO(data)  # tarfile reads xz, gzip and plain tar by itself


def _tar_member(fileobj: io.BytesIO, member: str) -> bytes | None:
    with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
        for info in tar:
            if info.isfile() and info.name.removeprefix("./") == member:
                reader = tar.extractfile(info)
                return reader.read() if reader is not None else None
    return None
