"""iPXE as a boot loader: which loader files are iPXE, and the script URL an iPXE client is sent to.

A firmware class whose loader is iPXE boots in two rounds: the firmware's PXE gets the iPXE binary, then
iPXE itself asks again (user class ``iPXE``) and must get a script URL instead, or it loads itself forever.
"""

from __future__ import annotations

import posixpath
import re

SCRIPT_NAME = "boot.ipxe"

# undionly.kpxe, snponly.efi, ipxe.efi, ipxe.pxe, undionly.kkpxe, ipxe-arm64.efi, snp_x86_64.efi, …
_IPXE_LOADER = re.compile(r"(?:ipxe|undionly|snponly|snp)(?:[-_][a-z0-9_-]*)?\.(?:kpxe|kkpxe|pxe|efi)")


def is_ipxe_loader(loader: str) -> bool:
    """Whether the boot file ``loader`` (a path below tftproot) is an iPXE binary, judged by its file name."""
    return bool(_IPXE_LOADER.fullmatch(posixpath.basename(loader.strip()).lower()))


def script_url(server: str, http_port: int, device_id: str) -> str:
    """``http://<server>:<port>/<device_id>/boot.ipxe``: where an iPXE client fetches its script."""
    return f"http://{server}:{http_port}/{device_id}/{SCRIPT_NAME}"
