"""Read files out of an ISO 9660 image with pycdlib: no mount, no root, no loop device."""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from pypxe_homelab.errors import UserError

KERNEL = "casper/vmlinuz"
INITRD = "casper/initrd"
DISK_INFO = ".disk/info"
SHIM = "EFI/boot/bootx64.efi"  # Ubuntu's Microsoft-signed shim (Canonical's key built in)
MOK_MANAGER = "EFI/boot/mmx64.efi"

_RELEASE = re.compile(r"\b(\d{2}\.\d{2}(?:\.\d+)?)\b")


@dataclass(frozen=True)
class IsoInfo:
    label: str  # first line of .disk/info: 'Ubuntu-Server 22.04.1 LTS "Jammy Jellyfish" - Release amd64 …'
    release: str | None  # '22.04.1', read from the label


@contextlib.contextmanager
def open_iso(path: Path) -> Iterator[pycdlib.PyCdlib]:
    """An open pycdlib handle on ``path``; UserError if it is not a readable ISO 9660 image."""
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(path))
    except (PyCdlibException, OSError) as exc:
        raise UserError(f"{path}: not a readable ISO image ({exc})") from None
    try:
        yield iso
    finally:
        iso.close()


def _lookup_kwargs(iso: pycdlib.PyCdlib, rel_path: str) -> dict[str, str]:
    """The pycdlib keyword that names ``rel_path`` in the richest directory tree the image has."""
    path = "/" + rel_path.lstrip("/")
    if iso.has_rock_ridge():
        return {"rr_path": path}
    if iso.has_joliet():
        return {"joliet_path": path}
    parts = path.upper().split("/")
    parts[-1] = parts[-1] + ("" if "." in parts[-1] else ".") + ";1"
    return {"iso_path": "/".join(parts)}


def read_file(iso: pycdlib.PyCdlib, rel_path: str) -> bytes | None:
    """The bytes of ``rel_path`` inside the image, or None when it has no such file."""
    buf = io.BytesIO()
    try:
        iso.get_file_from_iso_fp(buf, **_lookup_kwargs(iso, rel_path))
    except PyCdlibException:
        return None
    return buf.getvalue()


def list_names(iso: pycdlib.PyCdlib, rel_dir: str) -> list[str]:
    """The names of the files in directory ``rel_dir`` of the image (empty when it has no such directory)."""
    path = "/" + rel_dir.strip("/")
    if iso.has_rock_ridge():
        kwargs = {"rr_path": path}
    elif iso.has_joliet():
        kwargs = {"joliet_path": path}
    else:  # plain ISO 9660: a directory has no ';1' version suffix
        kwargs = {"iso_path": path.upper()}
    try:
        children = list(iso.list_children(**kwargs))
    except PyCdlibException:
        return []
    names = []
    for child in children:
        if child is None or child.is_dot() or child.is_dotdot() or child.is_dir():
            continue
        if "rr_path" in kwargs and child.rock_ridge is not None:
            names.append(child.rock_ridge.name().decode("utf-8", "replace"))
        elif "joliet_path" in kwargs:
            names.append(child.file_identifier().decode("utf-16_be", "replace"))
        else:
            names.append(child.file_identifier().decode("ascii", "replace").split(";", 1)[0].lower())
    return names


def iso_info(path: Path) -> IsoInfo:
    """Label and release of an Ubuntu ISO (from ``.disk/info``)."""
    with open_iso(path) as iso:
        raw = read_file(iso, DISK_INFO) or b""
    label = raw.decode("utf-8", "replace").strip().splitlines()[0] if raw.strip() else ""
    match = _RELEASE.search(label)
    return IsoInfo(label=label, release=match.group(1) if match else None)


def extract(path: Path, files: Mapping[str, Path]) -> None:
    """Copy each ``{path inside the ISO: destination}``; each destination is written atomically.

    UserError names the first file the image lacks (nothing is written then).
    """
    with open_iso(path) as iso:
        for rel_path in files:
            try:
                iso.get_record(**_lookup_kwargs(iso, rel_path))
            except PyCdlibException:
                raise UserError(f"{path}: has no {rel_path}; is it an Ubuntu live-server ISO?") from None
        for rel_path, dest in files.items():
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    iso.get_file_from_iso_fp(out, **_lookup_kwargs(iso, rel_path))
                os.chmod(tmp, 0o644)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
