"""OVMF through UEFI HTTP Boot: its PXE is left unanswered (uefi_mode: http), so its boot manager moves on to
"UEFI HTTP" and fetches iPXE over HTTP from the URL in our HTTPClient offer; iPXE then boots the node's kernel."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import NODE_CMDLINE, NetbootLab, default_config
from tests.lab.mkinitrd import CMDLINE_MARKER

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/usr/lib/ipxe/snponly.efi").exists(), reason="needs Debian's ipxe"),
]

HTTP_MAC = "52:54:00:a0:00:20"
HTTP_ID = "01-" + HTTP_MAC.replace(":", "-")
HTTP_BOOT_FAIL = (
    r'Kernel panic|Shell> |BdsDxe: No bootable option|"UiApp"'  # PXE errors come first, on purpose
)
HTTP_BOOT_TIMEOUT = 420.0  # PXEv4 and PXEv6 time out first, then iPXE waits for IPv6 router adverts


@pytest.fixture(scope="module")
def http_lab(netboot_lab: NetbootLab) -> Iterator[NetbootLab]:
    text = default_config(netboot_lab)
    node = f"""\
  {HTTP_ID}:
    address: {netboot_lab.lan.prefix}.52/24
    uefi_mode: http
    boot: {{kernel: boot/linux, initrd: boot/initrd.gz, cmdline: "{NODE_CMDLINE}"}}
"""
    try:
        netboot_lab.write_config(text + node)
        netboot_lab.restart_server()
        yield netboot_lab
    finally:
        netboot_lab.write_config(text)
        netboot_lab.restart_server()


def test_ovmf_http_boot_reaches_userspace_through_the_server(http_lab: NetbootLab) -> None:
    result = http_lab.boot(
        "uefi",
        HTTP_MAC,
        expect=re.escape(CMDLINE_MARKER) + r" .*\n",
        fail=HTTP_BOOT_FAIL,
        timeout=HTTP_BOOT_TIMEOUT,
    )
    log = http_lab.server_log()
    assert result.ok, result.describe() + "\n---- server log ----\n" + log[-5000:]
    assert "HTTP Boot" in result.serial or "UEFI HTTP" in result.serial
    url = f"http://{http_lab.server_ip}:{http_lab.http_port}/bootfiles/snponly.efi"
    assert f"dhcp.offer {HTTP_ID}" in log and f"file={url}" in log
    assert "path=/bootfiles/snponly.efi" in log
    assert f"path=/{HTTP_ID}/boot.ipxe" in log and "path=/boot/linux" in log
    assert "uefi_mode http" in log  # its PXE DISCOVERs were left unanswered on purpose
