"""A scripted Raspberry Pi 4 bootloader against the real `serve`: DHCP with the Pi's option 97, then its TFTP
sequence under <serial>/, answered from the node's Pi image (the Pi-shaped fixture built from Debian arm64
packages)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pypxe_homelab.assets.initramfs import Tree
from pypxe_homelab.iscsi.naming import initiator_name, target_iqn
from tests.lab.netns import TestLan, ip_netns_available
from tests.lab.pi_image import ROOT_UUID, PiImage, build_pi_image
from tests.lab.serverproc import ServerLab, ServerProcess, base_config, http_request, tftp_get

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not ip_netns_available(), reason="needs root and `ip netns`"),
    pytest.mark.skipif(not Path("/usr/lib/PXELINUX/lpxelinux.0").exists(), reason="needs Debian's pxelinux"),
]

SERIAL = "1e2d3c4b"  # the serial in the scripted Pi 4's option 97 (tests/lab/pxeclient.py)
PI_MAC = "dc:a6:32:01:36:c2"
OTHER_SERIAL = "0badc0de"


@pytest.fixture(scope="module")
def fixture_image() -> PiImage:
    return build_pi_image()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, fixture_image: PiImage):
    tmp = tmp_path_factory.mktemp("pi-server")
    root = tmp / "root"
    with TestLan(["server", "client"]) as lan:
        nodes = f'"{SERIAL}":\n  address: {lan.prefix}.60/24\n  hostname: pi01\n'
        config = tmp / "config.yaml"
        config.write_text(
            base_config(lan, root, nodes=nodes).replace("defaults:\n", "defaults:\n  pi_os: pi-test\n")
        )
        server = ServerProcess(lan, config)
        server.cli("bootfiles", "install")  # the PCs' loaders: serve refuses to start without them
        added = server.cli("images", "add", str(fixture_image.path), "--name", "pi-test")
        assert "iSCSI initramfs ready" in added.stdout
        listing = server.cli("images", "list").stdout
        assert any(line.split()[:4] == ["pi-test", "Pi", "image", "arm64"] for line in listing.splitlines())
        assert server.cli("validate", check=False).returncode == 0
        with server.running():
            yield ServerLab(lan, root, server)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_scripted_pi4_gets_its_boot_files_from_the_image(lab: ServerLab, fixture_image: PiImage) -> None:
    offers = lab.pxe("discover", "--profile", "pi4", "--mac", PI_MAC)
    assert any(b"Raspberry Pi Boot".hex() in o["pxe"].get("9", "") for o in offers)
    sequence = [
        "start4.elf",
        "fixup4.dat",
        "config.txt",
        "bcm2711-rpi-4-b.dtb",
        "overlays/dwc2.dtbo",
        "overlays/vc4-kms-v3d-pi4.dtbo",
        "cmdline.txt",
        "vmlinuz",
        "initrd-iscsi.img",
    ]
    results = tftp_get(
        lab.lan, "client", lab.server_ip, [f"{SERIAL}/{n}" for n in sequence], blksize=1468, tsize=True
    )
    got = dict(zip(sequence, results, strict=True))
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    for name in ("start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb", "overlays/dwc2.dtbo", "vmlinuz"):
        assert got[name]["sha256"] == _sha(fixture_image.boot_files[name]), name
        assert got[name]["oack"]["tsize"] == str(fixture_image.boot_files[name].stat().st_size)
    config = got["config.txt"]["text"]
    assert "kernel=vmlinuz" in config and "initramfs initrd-iscsi.img followkernel" in config
    assert "dtoverlay=dwc2" in config  # the image's own settings stay
    words = got["cmdline.txt"]["text"].split()
    assert (
        f"root=UUID={ROOT_UUID}" in words
        and f"ip={lab.lan.prefix}.60::{lab.lan.prefix}.1:255.255.255.0:pi01:eth0:off:{lab.lan.prefix}.1"
        in words
    )
    assert (
        f"ISCSI_INITIATOR={initiator_name(SERIAL)}" in words
        and f"ISCSI_TARGET_NAME={target_iqn(SERIAL)}" in words
    )
    assert f"ISCSI_TARGET_IP={lab.server_ip}" in words and "ISCSI_TARGET_PORT=3260" in words
    assert f"ds=nocloud;s=http://{lab.server_ip}:12345/{SERIAL}/cloud-init/" in words
    served = next(lab.root.glob("cache/pi-boot/pi-test-*/initramfs-iscsi"))
    assert got["initrd-iscsi.img"]["sha256"] == _sha(served)
    stock = fixture_image.boot_files["initrd.img"].read_bytes()
    view = Tree.of(served.read_bytes())
    assert served.read_bytes().startswith(stock) and view.get("sbin/iscsistart") is not None


def test_unregistered_pi_gets_nothing_that_boots(lab: ServerLab) -> None:
    names = ["start4.elf", "config.txt", "cmdline.txt", "vmlinuz", "initrd-iscsi.img"]
    results = tftp_get(lab.lan, "client", lab.server_ip, [f"{OTHER_SERIAL}/{n}" for n in names])
    assert not any(r["ok"] for r in results)
    assert all(r["error_code"] == 1 for r in results), results


def test_pi_cloud_init_seed_over_http(lab: ServerLab) -> None:
    user_data = http_request(lab.lan, "client", f"http://{lab.server_ip}:12345/{SERIAL}/cloud-init/user-data")
    assert user_data["status"] == 200 and user_data["text"].startswith("#cloud-config")
    assert "hashed_passwd: $6$" in user_data["text"] and "NOPASSWD:ALL" in user_data["text"]
    network = http_request(
        lab.lan, "client", f"http://{lab.server_ip}:12345/{SERIAL}/cloud-init/network-config"
    )
    assert network["status"] == 200 and f"{lab.lan.prefix}.60/24" in network["text"]
