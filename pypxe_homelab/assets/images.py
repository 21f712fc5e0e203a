"""Ubuntu images: the catalogue, fetching or adding an ISO, and the layout the HTTP server serves.

Layout under httproot (``root`` below)::

    images/<name>/<isofile>.iso      the ISO, as published (sha256 checked)
    images/<name>/casper/vmlinuz     kernel and initrd extracted from that same ISO
    images/<name>/casper/initrd
    images/<name>/efi/shimx64.efi    Ubuntu's Secure Boot chain from the same ISO (``assets.ubuntu_chain``):
    images/<name>/efi/grubx64.efi    its shim, its network GRUB, its MokManager; absent when the ISO
    images/<name>/efi/mmx64.efi      carries no signed GRUB package
    images/<name>/image.json         written last: an image is ready only when it exists

Nodes never see these paths: the HTTP layer maps ``/<device-id>/…`` to them (``boot.kernel_cmdline``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from pypxe_homelab.assets import iso as iso_files
from pypxe_homelab.assets import ubuntu_chain
from pypxe_homelab.assets.download import fetch, part_path, sha256_file
from pypxe_homelab.atomicfile import write_atomic
from pypxe_homelab.errors import UserError

IMAGES_DIR = "images"
MARKER = "image.json"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    description: str
    release: str  # '22.04.1': selects the autoinstall schema
    iso: str  # file name as published: the .iso, or a Pi image's .img.xz
    sha256: str
    urls: tuple[str, ...]
    size: int | None = None
    kind: str = "installer"  # 'installer' (live-server ISO) or 'pi' (preinstalled Raspberry Pi image)
    arch: str = "amd64"

    @property
    def is_pi(self) -> bool:
        return self.kind == "pi"


@dataclass(frozen=True)
class ImageInfo:
    """What ``image.json`` records about a ready image."""

    name: str
    iso: str
    sha256: str
    kernel: str
    initrd: str
    release: str | None
    label: str
    source: str  # the URL or local path it came from
    # ubuntu_chain.UbuntuChain as a dict; {}: the ISO has none; None: prepared before chains were read
    secure_boot: dict[str, str | None] | None = None


@dataclass(frozen=True)
class ImagePaths:
    """URL paths relative to httproot (no leading slash) of one ready image."""

    name: str
    iso_file: str  # 'ubuntu-22.04.1-live-server-amd64.iso'
    iso: str  # 'images/<name>/<iso_file>'
    kernel: str  # 'images/<name>/casper/vmlinuz'
    initrd: str  # 'images/<name>/casper/initrd'


@cache
def load_catalogue() -> dict[str, CatalogueEntry]:
    """The images shipped in ``catalogue.yaml``, by name."""
    text = resources.files("pypxe_homelab.assets").joinpath("catalogue.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)["images"]
    return {
        name: CatalogueEntry(
            name=name,
            description=item["description"],
            release=str(item["release"]),
            iso=item.get("iso") or item["image"],
            sha256=item["sha256"].lower(),
            urls=tuple(item["urls"]),
            size=item.get("size"),
            kind=item.get("kind", "installer"),
            arch=item.get("arch", "amd64"),
        )
        for name, item in data.items()
    }


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise UserError(
            f"{name!r} is not a valid image name: use lower-case letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def image_dir(root: Path, name: str) -> Path:
    return root / IMAGES_DIR / check_name(name)


def read_image(root: Path, name: str) -> ImageInfo | None:
    """The marker of image ``name`` if it is ready (marker and all three files present), else None."""
    folder = root / IMAGES_DIR / name
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        info = ImageInfo(**data)
    except (OSError, ValueError, TypeError):
        return None
    if all((folder / rel).is_file() for rel in (info.iso, info.kernel, info.initrd)):
        return info
    return None


def image_paths(root: Path, name: str) -> ImagePaths | None:
    """URL paths (relative to httproot) of the ISO, kernel and initrd of ready image ``name``; None if not ready."""
    if not NAME_PATTERN.match(name):
        return None
    info = read_image(root, name)
    if info is None:
        return None
    prefix = f"{IMAGES_DIR}/{name}"
    return ImagePaths(
        name=name,
        iso_file=info.iso,
        iso=f"{prefix}/{info.iso}",
        kernel=f"{prefix}/{info.kernel}",
        initrd=f"{prefix}/{info.initrd}",
    )


def image_chain(root: Path, name: str) -> dict[str, Path] | None:
    """Ubuntu's Secure Boot chain of ready image ``name``: ``{"shimx64.efi": path, "grubx64.efi": path,
    "mmx64.efi": path}`` (MokManager only when the ISO had it), or None when the image has none."""
    if not NAME_PATTERN.match(name):
        return None
    info = read_image(root, name)
    chain = info.secure_boot if info else None
    if not chain or not chain.get("shim") or not chain.get("grub"):
        return None
    folder = root / IMAGES_DIR / name
    files = {
        ubuntu_chain.SHIM_NAME: folder / str(chain["shim"]),
        ubuntu_chain.GRUB_NAME: folder / str(chain["grub"]),
    }
    if chain.get("mok_manager"):
        files[ubuntu_chain.MOK_NAME] = folder / str(chain["mok_manager"])
    return files if all(path.is_file() for path in files.values()) else None


def image_release(root: Path, name: str) -> str | None:
    """Ubuntu release of image ``name``: from the catalogue, else from the ready image's ISO label."""
    entry = load_catalogue().get(name)
    if entry is not None:
        return entry.release
    info = read_image(root, name)
    return info.release if info else None


def iso_file_name(root: Path, name: str) -> str | None:
    """The ISO file name of ``name`` (ready image first, else the catalogue's), for URLs ending in ``.iso``."""
    paths = image_paths(root, name)
    if paths is not None:
        return paths.iso_file
    entry = load_catalogue().get(name)
    return entry.iso if entry and not entry.is_pi else None


def list_images(root: Path) -> list[ImageInfo]:
    """Every ready image under ``root/images``, sorted by name."""
    base = root / IMAGES_DIR
    if not base.is_dir():
        return []
    found = (read_image(root, child.name) for child in sorted(base.iterdir()) if child.is_dir())
    return [info for info in found if info is not None]


def fetch_image(name: str, root: Path, *, progress: bool = True) -> ImageInfo:
    """Download catalogue image ``name`` (resuming a partial download), verify it and extract kernel and initrd."""
    catalogue = load_catalogue()
    entry = catalogue.get(name)
    if entry is None:
        raise UserError(
            f"no image {name!r} in the catalogue (known: {', '.join(sorted(catalogue))}); "
            "for a local ISO use `images add PATH --name NAME`"
        )
    ready = read_image(root, name)
    if ready is not None and ready.sha256 == entry.sha256 and ready.secure_boot is not None:
        return ready
    folder = image_dir(root, name)
    _unmark(folder)
    iso_path = folder / entry.iso
    try:
        offline = (
            f"download {entry.iso} on a machine with internet ({entry.urls[0]}), then add it with "
            f"`pypxe-homelab images add PATH/{entry.iso} --name {name}`"
        )
        fetch(list(entry.urls), iso_path, entry.sha256, progress=progress, offline_hint=offline)
    except UserError:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty: a resumable .part file stays
        raise
    return _install(folder, name, iso_path, entry.sha256, source=entry.urls[0])


def add_image(iso_path: Path, name: str, root: Path) -> ImageInfo:
    """Install a local ISO as image ``name``: hard-linked (or copied) into place, then kernel/initrd extracted."""
    check_name(name)
    source = Path(iso_path).expanduser().resolve()
    if not source.is_file():
        raise UserError(f"{iso_path}: no such file")
    if source.suffix.lower() != ".iso":
        raise UserError(f"{iso_path}: the file name must end in .iso (the installer only accepts such URLs)")
    iso_files.iso_info(source)  # refuses a file that is not an ISO before anything is written
    folder = image_dir(root, name)
    folder.mkdir(parents=True, exist_ok=True)
    _unmark(folder)
    dest = folder / source.name
    if dest.resolve() != source:
        link_or_copy(source, dest)
    for stale in folder.glob("*.iso"):
        if stale.name != dest.name:
            stale.unlink()
    return _install(folder, name, dest, sha256_file(dest), source=str(source))


def _unmark(folder: Path) -> None:
    (folder / MARKER).unlink(missing_ok=True)


def link_or_copy(source: Path, dest: Path) -> None:
    """Put ``source`` at ``dest`` whole: a hard link where the filesystem allows, else a copy, renamed into place."""
    tmp = part_path(dest)
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)


def _install(folder: Path, name: str, iso_path: Path, sha256: str, *, source: str) -> ImageInfo:
    kernel, initrd = iso_files.KERNEL, iso_files.INITRD
    iso_files.extract(iso_path, {kernel: folder / kernel, initrd: folder / initrd})
    chain = ubuntu_chain.extract_chain(iso_path, folder)
    meta = iso_files.iso_info(iso_path)
    info = ImageInfo(
        name=name,
        iso=iso_path.name,
        sha256=sha256,
        kernel=kernel,
        initrd=initrd,
        release=meta.release,
        label=meta.label,
        source=source,
        secure_boot=asdict(chain) if chain else {},
    )
    write_atomic(folder / MARKER, json.dumps(asdict(info), indent=2) + "\n")
    return info
