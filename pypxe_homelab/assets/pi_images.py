"""Raspberry Pi images: Ubuntu Server preinstalled ``.img.xz`` from the catalogue or a local file, recognised
without mounting, and the boot tree each one serves.

Layout (``httproot`` is where ISOs live too; nothing here is served over HTTP)::

    images/<name>/<file>.img          the raw disk image (decompressed from .img.xz)
    images/<name>/pi-image.json       written last: the image is ready only when it exists

    <data root>/cache/pi-boot/<name>-<sha>/           extracted once per image, renamed into place whole
        boot/…                        every file of the FAT boot partition, byte for byte
        initramfs-iscsi               the image's initramfs + the iSCSI archive (``iscsi_initramfs``)
        tree.json                     what the boot tree needs to know (config.txt names, root UUID, …)

A node's disk under ``iscsiroot/`` is made from ``<file>.img``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from pypxe_homelab.assets import images as installer_images
from pypxe_homelab.assets.disk_image import (
    DiskImageError,
    FatReader,
    Partition,
    RootFs,
    is_ext,
    mbr_partitions,
)
from pypxe_homelab.assets.download import CHUNK, fetch, part_path, sha256_file
from pypxe_homelab.assets.initramfs import InitramfsError
from pypxe_homelab.assets.iscsi_initramfs import build_addon, elf_arch, served_initramfs
from pypxe_homelab.atomicfile import write_atomic
from pypxe_homelab.errors import UserError

MARKER = "pi-image.json"
BOOT_MARKERS = ("start4.elf", "config.txt", "cmdline.txt")
CACHE_DIR = "pi-boot"
SERVED_INITRAMFS = "initramfs-iscsi"
TREE_FILE = "tree.json"
DEFAULT_KERNEL = "kernel8.img"
XZ_MAGIC = b"\xfd7zXZ\x00"


@dataclass(frozen=True)
class PiImageInfo:
    """What ``pi-image.json`` records about a ready Pi image."""

    name: str
    image: str  # file name of the raw image in the image's folder
    sha256: str  # of the file as fetched or added (.img.xz or .img)
    size: int  # bytes of the raw image (the size of every node disk made from it)
    arch: str  # 'arm64'
    description: str  # PRETTY_NAME of the image's /etc/os-release
    release: str | None  # VERSION_ID
    boot_partition: int
    root_partition: int
    root_uuid: str
    root_label: str
    kernel: str  # as named in config.txt
    initramfs: str | None
    source: str
    kind: str = "pi"


@dataclass(frozen=True)
class BootTree:
    """The extracted boot partition of one image, as the TFTP rule needs it."""

    image: PiImageInfo
    folder: Path  # …/boot
    files: frozenset[str]  # relative paths in the boot partition
    served_initramfs: Path | None
    config_txt: str
    cmdline_txt: str

    def path(self, name: str) -> Path | None:
        return self.folder / name if name in self.files else None


# --- recognising -------------------------------------------------------------------------------------------


def parse_config_txt(text: str) -> tuple[str, str | None]:
    """(kernel, initramfs) named in a Pi ``config.txt`` (last setting wins; defaults: kernel8.img, none)."""
    kernel, initramfs = DEFAULT_KERNEL, None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("kernel="):
            kernel = line.removeprefix("kernel=").strip() or kernel
        elif line.startswith("initramfs ") or line.startswith("initramfs="):
            words = re.split(r"[\s=]+", line, maxsplit=2)
            if len(words) > 1 and words[1]:
                initramfs = words[1]
    return kernel, initramfs


def _os_release(root: RootFs) -> dict[str, str]:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        if root.is_file(path):
            pairs = {}
            for line in root.read(path).decode("utf-8", "replace").splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    pairs[key.strip()] = value.strip().strip('"')
            return pairs
    return {}


@dataclass(frozen=True)
class Recognised:
    boot: Partition
    root: Partition
    boot_files: dict[str, bytes]
    root_uuid: str
    root_label: str
    arch: str
    os_release: dict[str, str]


def recognise(path: Path) -> Recognised:
    """Check that ``path`` is a Raspberry Pi disk image; DiskImageError naming what is missing."""
    try:
        with open(path, "rb") as fh:
            parts = mbr_partitions(fh)
            roots = [p for p in parts if p.is_linux and is_ext(fh, p)]
    except OSError as exc:
        raise DiskImageError(f"cannot read it ({exc.strerror})") from None
    boot, boot_files = None, {}
    for part in (p for p in parts if p.is_fat):
        with FatReader(path, part) as fat:
            names = {name.lower(): name for name, _entry in fat.files()}
            if all(marker in names for marker in BOOT_MARKERS):
                boot, boot_files = part, fat.read_all()
                break
    if boot is None:
        raise DiskImageError(
            "no Raspberry Pi boot partition (a FAT partition holding start4.elf, config.txt and cmdline.txt)"
        )
    if not roots:
        raise DiskImageError("no ext2/3/4 root partition")
    root_part = roots[0]
    with RootFs(path, root_part) as root:
        try:
            shell = root.read("/bin/sh")
        except (FileNotFoundError, IsADirectoryError):
            raise DiskImageError(
                f"partition {root_part.number} has no /bin/sh: not an installed root"
            ) from None
        arch = elf_arch(shell) or "unknown"
        return Recognised(boot, root_part, boot_files, root.uuid, root.label, arch, _os_release(root))


def is_pi_image_file(path: Path) -> bool:
    """Whether a path names a raw or xz-compressed disk image (as opposed to an ISO)."""
    name = path.name.lower()
    return name.endswith(".img") or name.endswith(".img.xz")


# --- the catalogue -----------------------------------------------------------------------------------------


def raw_name(file_name: str) -> str:
    return file_name.removesuffix(".xz")


def decompress_xz(source: Path, dest: Path) -> None:
    """Stream ``source`` (.xz) to ``dest`` through ``dest.part``; a damaged archive leaves nothing behind."""
    tmp = part_path(dest)
    try:
        with open(source, "rb") as src, open(tmp, "wb") as out:
            if src.read(len(XZ_MAGIC)) != XZ_MAGIC:
                raise UserError(f"{source}: not an xz file; pass the .img or a .img.xz")
            src.seek(0)
            decomp = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            while chunk := src.read(CHUNK):
                out.write(decomp.decompress(chunk))
                while decomp.unused_data and decomp.eof:  # concatenated .xz streams
                    rest = decomp.unused_data
                    decomp = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
                    out.write(decomp.decompress(rest))
            if not decomp.eof:
                raise UserError(
                    f"{source}: the xz data ends early (truncated download?); fetch or copy it again"
                )
        os.replace(tmp, dest)
    except lzma.LZMAError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{source}: damaged xz data ({exc}); fetch or copy it again") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_pi_image(root: Path, name: str) -> PiImageInfo | None:
    """The marker of Pi image ``name`` if it is ready, else None (``root`` is the httproot)."""
    folder = root / installer_images.IMAGES_DIR / name
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        info = PiImageInfo(**data)
    except (OSError, ValueError, TypeError):
        return None
    return info if (folder / info.image).is_file() else None


def pi_image_file(root: Path, name: str) -> Path | None:
    """The raw ``.img`` of ready Pi image ``name`` (what node disks are made from), or None."""
    info = read_pi_image(root, name)
    return root / installer_images.IMAGES_DIR / name / info.image if info else None


def list_pi_images(root: Path) -> list[PiImageInfo]:
    base = root / installer_images.IMAGES_DIR
    if not base.is_dir():
        return []
    found = (read_pi_image(root, child.name) for child in sorted(base.iterdir()) if child.is_dir())
    return [info for info in found if info is not None]


def fetch_pi_image(
    entry: installer_images.CatalogueEntry, root: Path, *, progress: bool = True
) -> PiImageInfo:
    """Download catalogue Pi image ``entry`` (.img.xz, resumable, sha256-checked), decompress and recognise it."""
    ready = read_pi_image(root, entry.name)
    if ready is not None and ready.sha256 == entry.sha256:
        return ready
    folder = installer_images.image_dir(root, entry.name)
    (folder / MARKER).unlink(missing_ok=True)
    compressed = folder / entry.iso
    try:
        fetch(list(entry.urls), compressed, entry.sha256, progress=progress)
    except UserError:
        with contextlib.suppress(OSError):
            folder.rmdir()
        raise
    raw = folder / raw_name(entry.iso)
    decompress_xz(compressed, raw)
    compressed.unlink()  # the raw image is what is kept; the checksum is recorded in the marker
    return _install(folder, entry.name, raw, entry.sha256, source=entry.urls[0])


def add_pi_image(path: Path, name: str, root: Path) -> PiImageInfo:
    """Install a local ``.img`` or ``.img.xz`` as Pi image ``name`` (hard-linked, copied or decompressed)."""
    installer_images.check_name(name)
    source = Path(path).expanduser().resolve()
    if not source.is_file():
        raise UserError(f"{path}: no such file")
    folder = installer_images.image_dir(root, name)
    existed = folder.is_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).unlink(missing_ok=True)
    dest = folder / raw_name(source.name)
    try:
        if source.name.lower().endswith(".xz"):
            decompress_xz(source, dest)
        elif dest.resolve() != source:
            installer_images.link_or_copy(source, dest)
        info = _install(folder, name, dest, sha256_file(source), source=str(source))
    except (UserError, DiskImageError) as exc:
        if dest.resolve() != source:
            dest.unlink(missing_ok=True)
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, DiskImageError):
            raise UserError(f"{path}: not a Raspberry Pi image: {exc}") from None
        raise
    for stale in folder.glob("*.img"):
        if stale.name != dest.name:
            stale.unlink()
    return info


def _install(folder: Path, name: str, raw: Path, sha256: str, *, source: str) -> PiImageInfo:
    found = recognise(raw)
    kernel, initramfs = parse_config_txt(_text(found.boot_files, "config.txt"))
    info = PiImageInfo(
        name=name,
        image=raw.name,
        sha256=sha256,
        size=raw.stat().st_size,
        arch=found.arch,
        description=found.os_release.get("PRETTY_NAME", "Raspberry Pi image"),
        release=found.os_release.get("VERSION_ID"),
        boot_partition=found.boot.number,
        root_partition=found.root.number,
        root_uuid=found.root_uuid,
        root_label=found.root_label,
        kernel=kernel,
        initramfs=initramfs,
        source=source,
    )
    write_atomic(folder / MARKER, json.dumps(asdict(info), indent=2) + "\n")
    return info


def _text(files: dict[str, bytes], name: str) -> str:
    lowered = {k.lower(): v for k, v in files.items()}
    return lowered.get(name, b"").decode("utf-8", "replace")


# --- the boot tree cache -----------------------------------------------------------------------------------


def _cache_key(info: PiImageInfo) -> str:
    digest = hashlib.sha256(json.dumps(asdict(info), sort_keys=True).encode()).hexdigest()
    return f"{info.name}-{digest[:16]}"


def boot_tree(httproot: Path, cache: Path, name: str) -> BootTree:
    """The boot tree of ready Pi image ``name``, extracted into ``cache`` the first time (atomically).

    UserError when the image is not ready or its initramfs cannot be given the iSCSI login."""
    info = read_pi_image(httproot, name)
    if info is None:
        raise UserError(
            f"Pi image {name!r} is not ready; run `pypxe-homelab images fetch {name}` or `images add`"
        )
    final = cache / CACHE_DIR / _cache_key(info)
    if not (final / TREE_FILE).is_file():
        _extract(httproot / installer_images.IMAGES_DIR / name / info.image, info, final)
    meta = json.loads((final / TREE_FILE).read_text(encoding="utf-8"))
    served = final / SERVED_INITRAMFS
    return BootTree(
        image=info,
        folder=final / "boot",
        files=frozenset(meta["files"]),
        served_initramfs=served if served.is_file() else None,
        config_txt=meta["config_txt"],
        cmdline_txt=meta["cmdline_txt"],
    )


def _extract(raw: Path, info: PiImageInfo, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        work.chmod(0o755)
        found = recognise(raw)
        boot = work / "boot"
        for rel, data in found.boot_files.items():
            dest = boot / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        if info.initramfs:
            stock = _lookup(found.boot_files, info.initramfs)
            kernel = _lookup(found.boot_files, info.kernel)
            if stock is None:
                raise UserError(
                    f"Pi image {info.name}: config.txt names initramfs {info.initramfs}, not in the boot partition"
                )
            with RootFs(raw, found.root) as root:
                addon = build_addon(root, stock, kernel)
            (work / SERVED_INITRAMFS).write_bytes(served_initramfs(stock, addon))
        meta = {
            "files": sorted(found.boot_files),
            "config_txt": _text(found.boot_files, "config.txt"),
            "cmdline_txt": _text(found.boot_files, "cmdline.txt"),
        }
        (work / TREE_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        if final.exists():  # another process finished first: keep its copy
            shutil.rmtree(work)
        else:
            os.replace(work, final)
    except (DiskImageError, InitramfsError) as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise UserError(f"Pi image {info.name}: {exc}") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _lookup(files: dict[str, bytes], name: str) -> bytes | None:
    lowered = {k.lower(): v for k, v in files.items()}
    return lowered.get(name.lower())
