"""Why did it not boot: each dead end provoked against the real server; the cause is named once per attempt.

Scripted clients play the firmware in a second namespace (one MAC per dead end); a dnsmasq in a third one
plays a rival ProxyDHCP server. The server only listens for the rival, it never sends to find one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.autoinstall.isobuild import build_test_iso
from tests.lab.netns import IFACE, TestLan, ip_netns_available, stop_process
from tests.lab.serverproc import ServerLab, ServerProcess, base_config, http_request, tftp_get

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not ip_netns_available(), reason="needs root and `ip netns`"),
    pytest.mark.skipif(not Path("/usr/lib/PXELINUX/lpxelinux.0").exists(), reason="needs Debian's pxelinux"),
    pytest.mark.skipif(not Path("/usr/lib/shim/shimx64.efi.signed").exists(), reason="needs shim-signed"),
    pytest.mark.skipif(not shutil.which("dnsmasq"), reason="needs dnsmasq (the rival server)"),
]

MACS = {
    "ignored": "52:54:00:d0:00:01",  # DISCOVERs, never a 4011 request or TFTP
    "unsigned": "52:54:00:d0:00:02",  # fetches syslinux.efi, then silence (Secure Boot refused it)
    "secureboot": "52:54:00:d0:00:03",  # fetches shim + GRUB, then silence (router does not name us)
    "tftp": "52:54:00:d0:00:04",  # its loader transfer fails at the same block every try
    "installer": "52:54:00:d0:00:05",  # installer kernel + initrd, never cloud-init
    "rival": "52:54:00:d0:00:06",  # a rival ProxyDHCP answers it too
}
CAUSES = {
    "ignored": "offer-ignored",
    "unsigned": "loader-rejected",
    "secureboot": "secure-boot-router",
    "tftp": "tftp-fails",
    "installer": "installer-no-seed",
    "rival": "rival-server",
}
DIAGNOSE_AFTER = 5


def dev(mac: str) -> str:
    return "01-" + mac.replace(":", "-")


def nodes(prefix: str) -> str:
    text = ""
    for n, (name, mac) in enumerate(MACS.items()):
        extra = {"secureboot": "  secure_boot: true\n", "installer": "  os: ubuntu-24.04\n"}.get(name, "")
        boot = "" if name == "installer" else "  boot: {kernel: boot/linux}\n"
        text += f"{dev(mac)}:\n  address: {prefix}.{60 + n}/24\n{extra}{boot}"
    return text


class Lab(ServerLab):
    def pxe_boot(self, name: str, *, request: bool = True) -> None:
        mac = MACS[name]
        self.pxe("discover", "--mac", mac, "--profile", "edk2")
        if request:
            self.pxe("request", "--mac", mac, "--profile", "edk2", "--server", self.server_ip,
                     "--client-ip", self.client_ip)  # fmt: skip

    def status(self, name: str) -> dict:
        result = self.server.cli("status", dev(MACS[name]), "--json")
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("diagnosis")
    root = tmp / "root"
    with TestLan(["server", "client", "rival"]) as lan:
        config = tmp / "config.yaml"
        config.write_text(
            base_config(lan, root, nodes=nodes(lan.prefix), extra_server=f"diagnose_after: {DIAGNOSE_AFTER}")
        )
        server = ServerProcess(lan, config)
        server.cli("bootfiles", "install")
        iso = tmp / "ubuntu-24.04-test.iso"
        build_test_iso(iso, b"test kernel " * 1000, b"test initrd " * 1000)
        server.cli("images", "add", str(iso), "--name", "ubuntu-24.04")
        (root / "httproot" / "boot").mkdir(parents=True)
        (root / "httproot" / "boot" / "linux").write_bytes(b"k" * 4096)
        with server.running():
            yield Lab(lan, root, server)


def start_rival(lan: TestLan, workdir: Path) -> subprocess.Popen:
    """dnsmasq as another ProxyDHCP PXE server on the LAN."""
    conf = workdir / "rival.conf"
    conf.write_text(
        "\n".join(
            [
                f"interface={IFACE}", "bind-interfaces", "port=0", "no-resolv", "no-hosts",
                f"dhcp-range={lan.prefix}.0,proxy", 'pxe-service=x86-64_EFI,"rival",rival.efi',
                "user=root", "group=root", "",
            ]
        )
    )  # fmt: skip
    proc = lan.popen("rival", ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"])
    lan.wait_port("rival", "udp", 67, timeout=10)
    return proc


def wait_diagnosed(lab: Lab, names: list[str], timeout: float = 40.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    found: dict[str, dict] = {}
    while time.monotonic() < deadline and len(found) < len(names):
        for name in names:
            if name not in found:
                diagnosis = lab.status(name).get("diagnosis")
                if diagnosis:
                    found[name] = diagnosis
        time.sleep(1)
    return found


def test_each_dead_end_is_named_once_per_attempt(lab: Lab, tmp_path: Path) -> None:
    for _ in range(3):
        lab.pxe_boot("ignored", request=False)
    lab.pxe_boot("unsigned")
    [r] = tftp_get(lab.lan, "client", lab.server_ip, ["efi64/syslinux.efi"], blksize=1468)
    assert r["ok"], r
    lab.pxe_boot("secureboot")
    for r in tftp_get(lab.lan, "client", lab.server_ip, ["shimx64.efi", "grubx64.efi"], blksize=1468):
        assert r["ok"], r
    lab.pxe_boot("tftp")
    for _ in range(2):
        [r] = tftp_get(
            lab.lan, "client", lab.server_ip, ["efi64/syslinux.efi"], blksize=1468, fail_at_block=5
        )
        assert not r["ok"]
    lab.pxe_boot("installer")
    for rel in ("casper/vmlinuz", "casper/initrd"):
        assert (
            http_request(lab.lan, "client", f"http://{lab.server_ip}:12345/{dev(MACS['installer'])}/{rel}")[
                "status"
            ]
            == 200
        )

    names = [n for n in MACS if n != "rival"]
    found = wait_diagnosed(lab, names)
    log = lab.server.log()
    assert {n: found.get(n, {}).get("cause") for n in names} == {n: CAUSES[n] for n in names}, log[-5000:]
    assert (
        lab.server_ip in found["secureboot"]["fix"]
        and "ipxe-sb/x64/snponly-shim.efi" in found["secureboot"]["fix"]
    )
    assert "block 5" in found["tftp"]["reason"]

    rival = start_rival(lab.lan, tmp_path)
    try:
        lab.pxe_boot("rival", request=False)
        lab.pxe_boot("rival", request=False)
        found.update(wait_diagnosed(lab, ["rival"]))
    finally:
        stop_process(rival)
    assert found["rival"]["cause"] == "rival-server"
    assert lab.lan.ip("rival") in found["rival"]["reason"]
    time.sleep(DIAGNOSE_AFTER + 3)  # more quiet time: still one diagnosis per attempt
    log = lab.server.log()
    assert f"another PXE server answers on eth0: {lab.lan.ip('rival')}" in log
    for name, mac in MACS.items():
        lines = [line for line in log.splitlines() if f"boot.diagnosis {dev(mac)}" in line]
        assert len(lines) == 1, (name, lines)
        assert f"cause={CAUSES[name]}" in lines[0]
