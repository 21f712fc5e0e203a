"""Ubuntu 24.04's signed boot chain for the lab: shim, GRUB and a Canonical-signed kernel, from the Ubuntu archive.

The .debs are pinned by release-pocket file name and sha256 (the release pocket never changes), downloaded
once into ``/var/cache/pypxe-homelab-tests/ubuntu-sb/`` and unpacked in Python. When the archive cannot be
reached and nothing is cached, the tests that need them are skipped with the URL.
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import pytest

from pypxe_homelab.assets.ubuntu_chain import NET_GRUB, deb_member

ARCHIVE = "http://archive.ubuntu.com/ubuntu/pool/main/"
CACHE = Path("/var/cache/pypxe-homelab-tests/ubuntu-sb")
SHIM_DEB = (
    "s/shim-signed/shim-signed_1.58+15.8-0ubuntu1_amd64.deb",
    "ba9b5d80e5d886c30664f2bebfb5c2fcce3b9b40f16fc46cba49c19a91c8059c",
)
GRUB_DEB = (
    "g/grub2-signed/grub-efi-amd64-signed_1.202+2.12-1ubuntu7_amd64.deb",
    "996cd4abdfb922594341a3ed82d73afb15bd7a6decca445108027821a9d25bda",
)
KERNEL_DEB = (
    "l/linux-signed/linux-image-6.8.0-31-generic_6.8.0-31.31_amd64.deb",
    "fd2ed023c84163e62c73d3b7b613a9b004bd31e335641c23d42bd249e489fbe6",
)
SHIM_FILE = "usr/lib/shim/shimx64.efi.signed.latest"
ISO_GRUB_FILE = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
KERNEL_FILE = "boot/vmlinuz-6.8.0-31-generic"


def ubuntu_deb(pinned: tuple[str, str]) -> Path:
    """The cached .deb of ``(pool path, sha256)``, downloaded first if needed; skips when it cannot be had."""
    rel, sha256 = pinned
    path = CACHE / Path(rel).name
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
        return path
    url = ARCHIVE + rel
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as exc:
        pytest.skip(f"cannot download {url} ({exc}) and it is not cached in {CACHE}")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise AssertionError(f"{url}: sha256 is not the pinned {sha256}")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def member(pinned: tuple[str, str], name: str) -> bytes:
    """File ``name`` of a pinned .deb."""
    data = deb_member(ubuntu_deb(pinned).read_bytes(), name, source=pinned[0])
    assert data is not None, f"{pinned[0]} has no {name}"
    return data


def noble_net_grub() -> bytes:
    return member(GRUB_DEB, NET_GRUB)
