"""The lab's networked test initrd works on both lab NICs: DHCP from the router, HTTP GET and POST.

The kernel and initrd are handed to QEMU directly, so this checks the lab itself, independently of
the server: later end-to-end tests rely on this initrd to report back over HTTP.
"""

from __future__ import annotations

import sys

import pytest

from tests.e2e.conftest import PROJECT_ROOT, e2e_skip_reason
from tests.lab.kernel import find_kernel
from tests.lab.mkinitrd import build_net_initrd
from tests.lab.qemu import DirectBoot, VirtualMachine
from tests.lab.router import start_router

pytestmark = pytest.mark.e2e

PORT = 18081


@pytest.mark.parametrize(("firmware", "mac"), [("bios", "52:54:00:a0:01:01"), ("uefi", "52:54:00:a0:01:02")])
def test_net_initrd_gets_an_address_fetches_and_posts(test_lan, tmp_path, firmware, mac):
    reason = e2e_skip_reason()
    if reason:
        pytest.skip(reason)
    kernel = find_kernel()
    lan = test_lan(["router", "server"])
    router = start_router(lan, tmp_path / "router")
    server = lan.ip("server")
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello-from-the-lab\n")
    posts = tmp_path / "posts.log"
    lan.popen(
        "server",
        [sys.executable, "-m", "tests.lab.http_sink", server, str(PORT), str(www), str(posts)],
        cwd=PROJECT_ROOT,
    )
    lan.wait_port("server", "tcp", PORT)
    script = (
        f'echo "PXH-FETCH: $(wget -q -O - http://{server}:{PORT}/hello.txt)"\n'
        f'wget -q -O - --post-data "mac={mac}" http://{server}:{PORT}/report && echo PXH-POST-OK\n'
        "echo PXH-DONE\n"
    )
    initrd = tmp_path / "initrd-net.gz"
    initrd.write_bytes(build_net_initrd(script, kernel))

    vm = VirtualMachine(lan, firmware, mac, tmp_path / "vm")
    result = vm.boot(
        expect="PXH-DONE",
        timeout=180,
        direct=DirectBoot(kernel.vmlinuz, initrd, "console=ttyS0,115200 pxh_lab=1"),
    )

    assert result.ok, result.describe()
    assert "PXH-CMDLINE: console=ttyS0,115200 pxh_lab=1" in result.serial
    assert f"PXH-DHCP: eth0 {router.leases()[mac]}/" in result.serial
    assert "PXH-FETCH: hello-from-the-lab" in result.serial
    assert "PXH-POST-OK" in result.serial
    assert posts.read_text() == f"/report mac={mac}\n"
