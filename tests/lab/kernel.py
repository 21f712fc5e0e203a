"""The Linux kernel the lab boots: Debian's linux-image-amd64 installed on this machine."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

BOOT_DIR = Path("/boot")
MODULES_ROOT = Path("/lib/modules")


@dataclass(frozen=True)
class Kernel:
    """An installed kernel image and its module tree."""

    version: str
    vmlinuz: Path
    modules_dir: Path

    @property
    def config(self) -> Path:
        """The kernel's build configuration (/boot/config-<version>)."""
        return BOOT_DIR / f"config-{self.version}"


def _version_key(version: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"[.-]", version)]


def find_kernel() -> Kernel | None:
    """Newest readable /boot/vmlinuz-* whose /lib/modules/<version>/modules.dep exists, or None."""
    found = []
    for image in BOOT_DIR.glob("vmlinuz-*"):
        version = image.name[len("vmlinuz-") :]
        modules = MODULES_ROOT / version
        if (modules / "modules.dep").is_file() and image.is_file():
            found.append(Kernel(version, image, modules))
    if not found:
        return None
    return max(found, key=lambda k: _version_key(k.version))


def kernel_skip_reason() -> str | None:
    """Why no lab kernel is usable here (install linux-image-amd64), or None."""
    kernel = find_kernel()
    if kernel is None:
        return (
            "no kernel with modules found (/boot/vmlinuz-* + /lib/modules/<ver>): install linux-image-amd64"
        )
    try:
        with kernel.vmlinuz.open("rb"):
            pass
    except OSError as exc:
        return f"cannot read {kernel.vmlinuz}: {exc}"
    return None


def builtin_options(kernel: Kernel) -> dict[str, str]:
    """CONFIG_* settings of *kernel* ('y' built in, 'm' module), from /boot/config-<version>."""
    options = {}
    if kernel.config.is_file():
        for line in kernel.config.read_text().splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                key, value = line.split("=", 1)
                options[key] = value
    return options
