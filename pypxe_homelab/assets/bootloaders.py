"""Boot loaders in the TFTP root: SYSLINUX's lpxelinux.0 and syslinux.efi, each with its own ldlinux.

Source: the Debian/Ubuntu packages pxelinux, syslinux-efi and syslinux-common when installed, else the pinned
upstream SYSLINUX release tarball (``bootfiles/manifest.yaml``), downloaded into the cache and checked.
iPXE binaries (undionly.kpxe, snponly.efi, ipxe.efi) are optional extras, copied when the package ipxe is
installed.

The Secure Boot chain (Microsoft-signed shim, distribution-signed network GRUB) comes from the packages
shim-signed and grub-efi-amd64-signed (x86-64) or their arm64 builds; iPXE's own signed shim and iPXE come
from the pinned iPXE release archive in the manifest (``ipxe_secure_boot``), fetched only when asked for.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

from pypxe_homelab.assets.download import fetch
from pypxe_homelab.errors import UserError

# undionly.kpxe, snponly.efi, ipxe.efi, ipxe.pxe, undionly.kkpxe, ipxe-arm64.efi, snp_x86_64.efi, …
_IPXE_LOADER = re.compile(r"(?:ipxe|undionly|snponly|snp)(?:[-_][a-z0-9_-]*)?\.(?:kpxe|kkpxe|pxe|efi)")


def is_ipxe_loader(loader: str) -> bool:
    """Whether the boot file ``loader`` (a path below tftproot) is an iPXE binary, judged by its file name.

    A firmware class whose loader is iPXE boots in two rounds: the firmware's PXE gets the iPXE binary, then
    iPXE itself asks again (user class ``iPXE``) and must get a script URL instead, or it loads itself forever.
    """
    return bool(_IPXE_LOADER.fullmatch(posixpath.basename(loader.strip()).lower()))


Source = Literal["auto", "packages", "upstream"]

PACKAGES = ("pxelinux", "syslinux-efi", "syslinux-common")

# TFTP-root path → file installed by the Debian/Ubuntu packages.
PACKAGE_FILES: dict[str, Path] = {
    "lpxelinux.0": Path("/usr/lib/PXELINUX/lpxelinux.0"),
    "ldlinux.c32": Path("/usr/lib/syslinux/modules/bios/ldlinux.c32"),
    "efi64/syslinux.efi": Path("/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"),
    "efi64/ldlinux.e64": Path("/usr/lib/syslinux/modules/efi64/ldlinux.e64"),
    "efi32/syslinux.efi": Path("/usr/lib/SYSLINUX.EFI/efi32/syslinux.efi"),
    "efi32/ldlinux.e32": Path("/usr/lib/syslinux/modules/efi32/ldlinux.e32"),
}

IPXE_PACKAGE = "ipxe"

# TFTP-root path → iPXE binary installed by the Debian/Ubuntu package ipxe (optional).
IPXE_FILES: dict[str, Path] = {
    "undionly.kpxe": Path("/usr/lib/ipxe/undionly.kpxe"),
    "snponly.efi": Path("/usr/lib/ipxe/snponly.efi"),
    "ipxe.efi": Path("/usr/lib/ipxe/ipxe.efi"),
}

SIGNED_PACKAGES = ("shim-signed", "grub-efi-amd64-signed")
ARM64_SIGNED_PACKAGES = ("shim-signed:arm64", "grub-efi-arm64-signed:arm64")

# TFTP-root path → signed file of the Debian/Ubuntu packages (x86-64: shim-signed, grub-efi-amd64-signed;
# arm64: their :arm64 builds). Shim loads the GRUB named grub<arch>.efi from its own directory.
SIGNED_FILES: dict[str, Path] = {
    "shimx64.efi": Path("/usr/lib/shim/shimx64.efi.signed"),
    "grubx64.efi": Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"),
    "mmx64.efi": Path("/usr/lib/shim/mmx64.efi.signed"),
    "shimaa64.efi": Path("/usr/lib/shim/shimaa64.efi.signed"),
    "grubaa64.efi": Path("/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"),
    "mmaa64.efi": Path("/usr/lib/shim/mmaa64.efi.signed"),
}
# The same files inside the unpacked :arm64 packages (``bootfiles install --arm64`` on another architecture).
ARM64_DEB_FILES: dict[str, str] = {
    "shimaa64.efi": "usr/lib/shim/shimaa64.efi.signed",
    "grubaa64.efi": "usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed",
}

# A shim loads its second stage from its own directory: Debian's shim the GRUB of its architecture,
# iPXE's shim the file named like itself without "-shim" (snponly-shim.efi → snponly.efi).
_SHIM_COMPANION = {"shimx64.efi": "grubx64.efi", "shimaa64.efi": "grubaa64.efi"}

# Each SYSLINUX loader loads the ldlinux of its own flavour from its own directory.
_COMPANION = {"lpxelinux.0": "ldlinux.c32", "pxelinux.0": "ldlinux.c32"}
_EFI_COMPANION = {"efi64": "ldlinux.e64", "efi32": "ldlinux.e32"}


@dataclass(frozen=True)
class UpstreamRelease:
    """A pinned SYSLINUX release tarball and where each needed file sits inside it."""

    version: str
    url: str
    sha256: str
    files: Mapping[str, str]  # TFTP-root path → path below the tarball's top directory


@dataclass
class InstallReport:
    source: Literal["packages", "upstream"]
    detail: str  # package versions, or the tarball URL
    files: list[Path] = field(default_factory=list)
    ipxe: list[Path] = field(default_factory=list)  # optional iPXE binaries from the package ipxe
    signed: list[Path] = field(default_factory=list)  # shim + GRUB (Secure Boot chain)

    def summary(self) -> str:
        text = f"installed {len(self.files)} boot files from {self.source} ({self.detail})"
        if self.ipxe:
            text += f" and {len(self.ipxe)} iPXE binaries from the package {IPXE_PACKAGE}"
        if self.signed:
            names = ", ".join(sorted(p.name for p in self.signed))
            text += f"; Secure Boot chain: {names}"
        return text


def load_manifest(key: str = "syslinux") -> UpstreamRelease:
    """A pinned upstream release (``syslinux`` or ``ipxe_secure_boot``) from ``bootfiles/manifest.yaml``."""
    text = resources.files("pypxe_homelab.assets").joinpath("bootfiles-manifest.yaml").read_text("utf-8")
    item = yaml.safe_load(text)[key]
    return UpstreamRelease(
        version=str(item["version"]),
        url=item["url"],
        sha256=item["sha256"].lower(),
        files=dict(item["files"]),
    )


def packages_available() -> bool:
    return all(path.is_file() for path in PACKAGE_FILES.values())


def package_versions() -> str:
    """``pxelinux 3:6.04~git…, …`` from dpkg, or a plain note when dpkg cannot tell."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *PACKAGES],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return ", ".join(line for line in out.splitlines() if line.strip()) or "files under /usr/lib"


def install_bootloaders(
    tftproot: Path,
    *,
    source: Source = "auto",
    cache: Path,
    manifest: UpstreamRelease | None = None,
    progress: bool = True,
) -> InstallReport:
    """Copy the six SYSLINUX files into ``tftproot``; ``auto`` prefers the packages, else upstream.

    The iPXE binaries of the package ipxe are copied too when it is installed (``install_ipxe``).
    """
    if source not in ("auto", "packages", "upstream"):
        raise UserError(f"unknown boot-loader source {source!r}: use auto, packages or upstream")
    if source == "packages" or (source == "auto" and packages_available()):
        missing = [str(p) for p in PACKAGE_FILES.values() if not p.is_file()]
        if missing:
            raise UserError(
                f"boot loader files missing: {', '.join(missing)}; install them with "
                f"`apt install {' '.join(PACKAGES)}` or use --source upstream"
            )
        files = [_install_file(src, tftproot / rel) for rel, src in PACKAGE_FILES.items()]
        return InstallReport(
            "packages", package_versions(), files, install_ipxe(tftproot), install_signed(tftproot)
        )
    release = manifest or load_manifest()
    tarball = fetch(release.url, cache / posixpath.basename(release.url), release.sha256, progress=progress)
    files = _extract_upstream(tarball, release, tftproot)
    return InstallReport(
        "upstream",
        f"SYSLINUX {release.version}, {release.url}",
        files,
        install_ipxe(tftproot),
        install_signed(tftproot),
    )


def install_signed(tftproot: Path, sources: Mapping[str, Path] = SIGNED_FILES) -> list[Path]:
    """Copy the signed shim and GRUB files that are installed on this host into ``tftproot``."""
    return [_install_file(src, tftproot / rel) for rel, src in sources.items() if src.is_file()]


def install_arm64_signed(tftproot: Path, cache: Path) -> list[Path]:
    """Download the :arm64 builds of shim-signed and grub-efi-arm64-signed with apt and install their files.

    Needs the arm64 architecture known to dpkg/apt (``dpkg --add-architecture arm64 && apt-get update``).
    """
    folder = cache / "debs-arm64"
    folder.mkdir(parents=True, exist_ok=True)
    res = _run(["apt-get", "download", *ARM64_SIGNED_PACKAGES], cwd=folder)
    if res.returncode != 0:
        raise UserError(
            "cannot download the arm64 Secure Boot loaders with apt ("
            + (res.stderr.strip().splitlines() or ["apt-get failed"])[-1]
            + "): run `sudo dpkg --add-architecture arm64 && sudo apt-get update` first"
        )
    unpacked = folder / "root"
    for deb in sorted(folder.glob("*_arm64.deb")):
        if _run(["dpkg-deb", "-x", str(deb), str(unpacked)]).returncode != 0:
            raise UserError(f"{deb}: dpkg-deb cannot unpack it; delete it and run again")
    sources = {rel: unpacked / inner for rel, inner in ARM64_DEB_FILES.items()}
    missing = [str(p) for p in sources.values() if not p.is_file()]
    if missing:
        raise UserError(
            f"the arm64 packages lack {', '.join(missing)}; is the apt source an arm64 Debian/Ubuntu?"
        )
    return install_signed(tftproot, sources)


def install_ipxe_secure_boot(
    tftproot: Path, cache: Path, *, release: UpstreamRelease | None = None, progress: bool = True
) -> list[Path]:
    """Fetch iPXE's release archive (pinned URL and sha256) and install its signed shims and iPXE binaries."""
    release = release or load_manifest("ipxe_secure_boot")
    tarball = fetch(release.url, cache / posixpath.basename(release.url), release.sha256, progress=progress)
    return _extract_upstream(tarball, release, tftproot)


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


def install_ipxe(tftproot: Path, sources: Mapping[str, Path] = IPXE_FILES) -> list[Path]:
    """Copy the iPXE binaries that are installed (``sources``: TFTP-root path → file) into ``tftproot``."""
    return [_install_file(src, tftproot / rel) for rel, src in sources.items() if src.is_file()]


def _extract_upstream(tarball: Path, release: UpstreamRelease, tftproot: Path) -> list[Path]:
    try:
        with tarfile.open(tarball) as tar:
            members = {_below_top(m.name): m for m in tar.getmembers() if m.isfile() or m.issym()}
            missing = [inner for inner in release.files.values() if inner not in members]
            if missing:
                raise UserError(f"{tarball}: lacks {', '.join(missing)}; is bootfiles/manifest.yaml right?")
            written = []
            for rel, inner in release.files.items():
                member = members[inner]
                if member.issym():  # e.g. iPXE's snponly-shim.efi -> shimx64.efi: install the target
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(inner), member.linkname))
                    member = members[target]
                reader = tar.extractfile(member)
                assert reader is not None  # regular files always have a reader
                with reader:
                    written.append(_write_atomic_from(reader, tftproot / rel))
            return written
    except tarfile.TarError as exc:
        raise UserError(f"{tarball}: not a readable tar archive ({exc}); delete it and run again") from None


def _below_top(name: str) -> str:
    parts = posixpath.normpath(name).split("/")
    return "/".join(parts[1:])


def _install_file(src: Path, dest: Path) -> Path:
    with src.open("rb") as reader:
        return _write_atomic_from(reader, dest)


def _write_atomic_from(reader, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(reader, out)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def required_files(loaders: Mapping[str, str]) -> list[str]:
    """TFTP-root paths the configured loaders need: each loader and, for SYSLINUX ones, its ldlinux."""
    needed: list[str] = []
    for loader in loaders.values():
        if not loader or loader.startswith(("http://", "https://")):
            continue
        needed.append(loader)
        folder, name = posixpath.split(loader)
        companion = _COMPANION.get(name) or _SHIM_COMPANION.get(name)
        if name == "syslinux.efi":
            companion = _EFI_COMPANION.get(posixpath.basename(folder))
        elif "-shim" in name and is_ipxe_loader(name):
            companion = name.replace("-shim", "", 1)
        if companion:
            needed.append(posixpath.join(folder, companion))
    return list(dict.fromkeys(needed))


def missing_bootloaders(tftproot: Path, loaders: Mapping[str, str]) -> list[str]:
    """The files of ``required_files(loaders)`` absent from ``tftproot`` (empty: all present)."""
    return [rel for rel in required_files(loaders) if not (tftproot / rel).is_file()]


def _with_flag(command: str, flag: str) -> str:
    """``command`` (maybe in backticks) with ``flag`` added inside the quotes."""
    return f"{command[:-1]} {flag}`" if command.endswith("`") else f"{command} {flag}"


def install_advice(missing: list[str], bootfiles_install: str) -> str:
    """How to get the ``missing`` files: ``bootfiles_install`` (the command), after `apt-get install ipxe`
    when an iPXE binary is among them."""
    if any(rel.startswith("ipxe-sb/") for rel in missing):
        return _with_flag(bootfiles_install, "--ipxe-secure-boot")
    if any(rel in ARM64_DEB_FILES for rel in missing):
        return _with_flag(bootfiles_install, "--arm64")
    if any(rel in SIGNED_FILES for rel in missing):
        return f"`sudo apt-get install {' '.join(SIGNED_PACKAGES)}`, then {bootfiles_install}"
    if any(is_ipxe_loader(rel) for rel in missing):
        return f"`sudo apt-get install {IPXE_PACKAGE}`, then {bootfiles_install}"
    return bootfiles_install
