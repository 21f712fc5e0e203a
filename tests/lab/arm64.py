"""The arm64 parts of the lab, from Debian's arm64 packages: kernel, static busybox, signed GRUB and shim.

``arm64_root()`` downloads the .debs with ``apt-get download`` (the arm64 architecture must be known to
dpkg: ``dpkg --add-architecture arm64 && apt-get update``) and unpacks them with ``dpkg-deb -x`` into
/var/cache/pypxe-homelab-tests/arm64-<hash of the package list>/, so a second run is fast.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.lab.mkinitrd import CMDLINE_MARKER, USERSPACE_MARKER, build_initrd

CACHE = Path("/var/cache/pypxe-homelab-tests")
PACKAGES = (
    "linux-image-arm64:arm64",
    "busybox-static:arm64",
    "grub-efi-arm64-signed:arm64",
    "shim-signed:arm64",
)
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
APPLETS = ("sh", "mount", "echo", "cat", "sleep", "poweroff", "uname")

ARM64_INIT = f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo
echo "{USERSPACE_MARKER}"
echo "PXH-ARCH: $(uname -m)"
echo "{CMDLINE_MARKER} $(cat /proc/cmdline)"
sleep 1
poweroff -f
while :; do sleep 3600; done
"""


@dataclass(frozen=True)
class Arm64Root:
    root: Path

    @property
    def kernel(self) -> Path:
        return max(self.root.glob("boot/vmlinuz-*-arm64"))

    @property
    def busybox(self) -> Path:
        return self.root / "bin" / "busybox"

    @property
    def grub(self) -> Path:
        return self.root / "usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"

    def initrd(self) -> bytes:
        """A busybox initrd that prints the markers and the machine architecture."""
        return build_initrd(ARM64_INIT, busybox=self.busybox, applets=APPLETS)


def arm64_skip_reason() -> str | None:
    """Why the arm64 boot cannot run here, or None."""
    if not shutil.which("qemu-system-aarch64"):
        return "qemu-system-aarch64 not found: install qemu-system-arm"
    if not (AAVMF_CODE.exists() and AAVMF_VARS.exists()):
        return f"{AAVMF_CODE} not found: install qemu-efi-aarch64"
    archs = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout
    if "arm64" not in archs.split():
        return "dpkg does not know arm64: dpkg --add-architecture arm64 && apt-get update"
    return None


def _kernel_package() -> str:
    """The versioned kernel package the meta-package linux-image-arm64 depends on."""
    out = subprocess.run(
        ["apt-cache", "depends", "linux-image-arm64:arm64"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        if line.strip().startswith("Depends: linux-image-"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError("apt-cache names no kernel for linux-image-arm64:arm64; run apt-get update")


def arm64_root() -> Arm64Root:
    """The unpacked arm64 packages (downloaded once, cached)."""
    wanted = [_kernel_package() if p == "linux-image-arm64:arm64" else p for p in PACKAGES]
    key = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:12]
    folder = CACHE / f"arm64-{key}"
    done = folder / ".complete"
    root = Arm64Root(folder / "root")
    if done.exists():
        return root
    debs = folder / "debs"
    shutil.rmtree(folder, ignore_errors=True)
    debs.mkdir(parents=True)
    res = subprocess.run(
        ["apt-get", "download", *wanted], cwd=debs, capture_output=True, text=True, timeout=900
    )
    if res.returncode != 0:
        raise RuntimeError(f"apt-get download {' '.join(wanted)} failed: {res.stderr.strip()[-500:]}")
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root.root)], check=True)
    done.write_text("ok\n")
    return root
