"""arm64 UEFI: QEMU virt with Debian's AAVMF network-boots an arm64 kernel to userspace through the server.

Arch 11 PXE → Debian's signed network GRUB for arm64 (installed by ``bootfiles install --arm64`` from the
:arm64 package) → the node's arm64 kernel and a busybox initrd, both from Debian's arm64 packages. The router
names the server as next-server, which this GRUB needs (see docs/how-it-boots.md, "Secure Boot").
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import PROJECT_ROOT, NetbootLab, config_head, e2e_skip_reason
from tests.lab.arm64 import arm64_root, arm64_skip_reason
from tests.lab.kernel import find_kernel
from tests.lab.mkinitrd import CMDLINE_MARKER
from tests.lab.netns import TestLan
from tests.lab.router import next_server_lines, start_router

pytestmark = pytest.mark.e2e

ARM_MAC = "52:54:00:a0:00:30"
ARM_ID = "01-" + ARM_MAC.replace(":", "-")
ARM_CMDLINE = "console=ttyAMA0 panic=-1"
ARM_BOOT_TIMEOUT = 600.0  # TCG emulation of another architecture is slow


@pytest.fixture(scope="module")
def arm_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetbootLab]:
    reason = e2e_skip_reason() or arm64_skip_reason()
    if reason:
        pytest.skip(reason)
    parts = arm64_root()
    kernel = find_kernel()
    assert kernel is not None
    workdir = tmp_path_factory.mktemp("arm64")
    with TestLan(["router", "server"]) as lan:
        router = start_router(lan, workdir / "router", extra=next_server_lines(ARM_MAC, lan.ip("server")))
        lab = NetbootLab(lan=lan, router=router, kernel=kernel, workdir=workdir)
        lab.put_http("boot/linux-arm64", parts.kernel.read_bytes())
        lab.put_http("boot/initrd-arm64.gz", parts.initrd())
        head = config_head(lab).replace("  http_port:", "  loaders: {arm64: grubaa64.efi}\n  http_port:", 1)
        lab.write_config(
            head
            + f"""\
  {ARM_ID}:
    address: {lan.prefix}.70/24
    boot: {{kernel: boot/linux-arm64, initrd: boot/initrd-arm64.gz, cmdline: "{ARM_CMDLINE}"}}
"""
        )
        # on the host, not in the namespace: it downloads the :arm64 packages with apt
        argv = [
            sys.executable,
            "-m",
            "pypxe_homelab",
            "--config",
            str(lab.config_path),
            "bootfiles",
            "install",
            "--arm64",
        ]
        res = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stdout + res.stderr
        lab.start_server()
        try:
            yield lab
        finally:
            lab.stop_server()


def test_arm64_uefi_boots_its_kernel_through_the_server(arm_lab: NetbootLab) -> None:
    assert (arm_lab.tftproot / "grubaa64.efi").read_bytes() == arm64_root().grub.read_bytes()
    result = arm_lab.boot(
        "arm64", ARM_MAC, expect=re.escape(CMDLINE_MARKER) + r" .*\n", timeout=ARM_BOOT_TIMEOUT
    )
    log = arm_lab.server_log()
    assert result.ok, result.describe() + "\n---- server log ----\n" + log[-5000:]
    assert "PXH-ARCH: aarch64" in result.serial
    assert ARM_CMDLINE in result.serial
    assert f"dhcp.ack {ARM_ID}" in log and "file=grubaa64.efi" in log and "arch=11" in log
    assert "path=grub/http/boot/linux-arm64" in log
