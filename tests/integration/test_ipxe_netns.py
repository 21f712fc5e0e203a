"""The real `serve` with an iPXE loader (loaders.efi64: snponly.efi): firmware gets the binary, iPXE its script."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from tests.lab.netns import TestLan, ip_netns_available
from tests.lab.serverproc import REPO, ServerLab, ServerProcess, base_config, http_request, tftp_get

SNPONLY = Path("/usr/lib/ipxe/snponly.efi")

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not ip_netns_available(), reason="needs root and `ip netns`"),
    pytest.mark.skipif(not Path("/usr/lib/PXELINUX/lpxelinux.0").exists(), reason="needs Debian's pxelinux"),
    pytest.mark.skipif(not SNPONLY.exists(), reason="needs Debian's ipxe (apt-get install ipxe)"),
]

KNOWN = "01-52-54-00-a0-00-02"
UNKNOWN = "01-52-54-00-a0-00-09"
NODES = f"""\
{KNOWN}:
  address: {{prefix}}.51/24
  boot:
    kernel: boot/linux
    initrd: boot/initrd.gz
    cmdline: console=ttyS0,115200 panic=-1
"""


def ipxe_config(lan: TestLan, root: Path, nodes: str = "") -> str:
    """The test server's config with ``server.loaders.efi64: snponly.efi``."""
    return base_config(lan, root, nodes=nodes, extra_server="loaders: {efi64: snponly.efi}")


class Lab(ServerLab):
    def script_url(self, device_id: str) -> str:
        return f"http://{self.server_ip}:12345/{device_id}/boot.ipxe"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ipxe")
    root = tmp / "root"
    with TestLan(["server", "client"]) as lan:
        config = tmp / "config.yaml"
        config.write_text(ipxe_config(lan, root, NODES.format(prefix=lan.prefix)))
        server = ServerProcess(lan, config)
        server.cli("bootfiles", "install")
        boot = root / "httproot" / "boot"
        boot.mkdir(parents=True)
        (boot / "linux").write_bytes(os.urandom(100_000))
        (boot / "initrd.gz").write_bytes(os.urandom(50_000))
        with server.running():
            yield Lab(lan, root, server)


def test_ipxe_discover_gets_the_script_url_in_the_offer(lab: Lab) -> None:
    offers = lab.pxe("discover", "--profile", "ipxe-efi", "--mac", "52:54:00:a0:00:02")
    [offer] = [r for r in offers if r["message_type"] == 2]
    assert offer["siaddr"] == lab.server_ip and offer["yiaddr"] == "0.0.0.0"
    assert offer["file"] == lab.script_url(KNOWN)
    assert "43" not in offer["options"] and offer["length"] >= 300


def test_ipxe_asking_port_4011_gets_the_script_url_too(lab: Lab) -> None:
    result = lab.pxe(
        "boot", "--profile", "ipxe-efi", "--mac", "52:54:00:a0:00:09", "--client-ip", lab.client_ip
    )
    [ack] = result["acks"]
    assert ack["message_type"] == 5 and ack["file"] == lab.script_url(UNKNOWN) and ack["sport"] == 4011


def test_firmware_pxe_gets_snponly_over_4011_and_tftp(lab: Lab) -> None:
    result = lab.pxe("boot", "--profile", "edk2", "--mac", "52:54:00:a0:00:02", "--client-ip", lab.client_ip)
    [offer] = [r for r in result["offers"] if r["message_type"] == 2]
    assert offer["file"] == "" and offer["siaddr"] == lab.server_ip
    [ack] = result["acks"]
    assert ack["file"] == "snponly.efi" and ack["sport"] == 4011 and ack["dport"] == 4011
    [loader] = tftp_get(lab.lan, "client", lab.server_ip, ["snponly.efi"], blksize=1468, tsize=True)
    assert loader["ok"] and loader["sha256"] == hashlib.sha256(SNPONLY.read_bytes()).hexdigest()


def test_known_node_script_boots_its_kernel(lab: Lab) -> None:
    start = len(lab.server.log())
    reply = http_request(lab.lan, "client", lab.script_url(KNOWN), headers={"User-Agent": "iPXE/1.0.0"})
    assert reply["status"] == 200 and reply["headers"]["Content-Type"].startswith("text/plain")
    lines = reply["text"].splitlines()
    base = f"http://{lab.server_ip}:12345"
    assert lines[0] == "#!ipxe"
    assert lines[-3:] == [
        f"kernel {base}/boot/linux initrd=initrd0 console=ttyS0,115200 panic=-1",
        f"initrd --name initrd0 {base}/boot/initrd.gz",
        "boot",
    ]
    log = lab.server.wait_log(f"http.done {KNOWN}", start=start)
    assert f"/{KNOWN}/boot.ipxe" in log[start:]


def test_unknown_machine_script_shows_the_add_line_and_exits(lab: Lab) -> None:
    reply = http_request(lab.lan, "client", lab.script_url(UNKNOWN))
    assert reply["status"] == 200
    text = reply["text"]
    assert f"echo device id: {UNKNOWN}" in text
    assert f"echo pypxe-homelab add {UNKNOWN} --node-address <address>/24" in text  # the served LAN's prefix
    assert f"echo <address>: a free address of {lab.lan.prefix}.0/24 outside your router's DHCP pool" in text
    assert text.splitlines()[-2:] == ["sleep 10", "exit"] and "kernel" not in text
    head = http_request(lab.lan, "client", lab.script_url(UNKNOWN), method="HEAD")
    assert head["status"] == 200 and head["length"] == 0


def test_missing_ipxe_binary_says_how_to_get_it(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(ipxe_config(lab.lan, tmp_path / "empty-root"))
    result = lab.lan.run(
        "client",
        [sys.executable, "-m", "pypxe_homelab", "--config", str(config), "serve"],
        cwd=REPO,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "snponly.efi" in line and "apt-get install ipxe" in line
    assert f"pypxe-homelab --config {config} bootfiles install" in line
