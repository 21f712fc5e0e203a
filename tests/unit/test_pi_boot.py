"""The Pi's TFTP tree (pure), config.txt/cmdline.txt rendering, its cloud-init seed, and validate's Pi rules."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pypxe_homelab.assets import pi_images
from pypxe_homelab.assets.pi_images import BootTree, PiImageInfo, parse_config_txt
from pypxe_homelab.boot.autoinstall import HostNetwork
from pypxe_homelab.boot.autoinstall_boot import check_nodes, cloud_init_file
from pypxe_homelab.boot.pi_boot import SERVED_INITRAMFS, cmdline_words, pi_file, render_config_txt
from pypxe_homelab.boot.pi_cloud_init import build_network_config, build_user_data, check_user_data
from pypxe_homelab.config.loader import parse_inventory
from pypxe_homelab.config.model import Defaults, Inventory, Node
from pypxe_homelab.iscsi.naming import initiator_name, target_iqn
from tests.fixtures.autoinstall.inventories import BASE_URL, PC_ID, PI_ID, inventory, public_key

HOST = HostNetwork(ipaddress.IPv4Address("192.168.1.1"), (ipaddress.IPv4Address("192.168.1.1"),))
CONFIG = "[all]\nkernel=vmlinuz\ncmdline=cmdline.txt\ninitramfs initrd.img followkernel\n[pi4]\narm_boost=1\n"
CMDLINE = (
    "console=serial0,115200 console=tty1 root=LABEL=writable rootfstype=ext4 rootwait fixrtc quiet splash"
)
UUID = "6d1c2a50-3b7e-4c1e-9a55-0c0ffee0a001"


def make_tree(tmp_path: Path) -> BootTree:
    folder = tmp_path / "boot"
    (folder / "overlays").mkdir(parents=True)
    files = {
        "start4.elf": b"S4" * 100,
        "fixup4.dat": b"F4",
        "bootcode.bin": b"BC",
        "bcm2711-rpi-4-b.dtb": b"DTB",
        "overlays/dwc2.dtbo": b"OV",
        "vmlinuz": b"KERNEL",
        "initrd.img": b"STOCK",
        "config.txt": CONFIG.encode(),
        "cmdline.txt": CMDLINE.encode(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    served = tmp_path / "initramfs-iscsi"
    served.write_bytes(b"STOCK+ISCSI")
    info = PiImageInfo(
        name="ubuntu-24.04-raspi", image="x.img", sha256="0" * 64, size=1 << 30, arch="arm64",
        description="Ubuntu 24.04", release="24.04", boot_partition=1, root_partition=2,
        root_uuid=UUID, root_label="writable", kernel="vmlinuz", initramfs="initrd.img", source="test",
    )  # fmt: skip
    return BootTree(info, folder, frozenset(files), served, CONFIG, CMDLINE)


def pi_inventory(tmp_path: Path) -> Inventory:
    inv = inventory(tmp_path)
    return replace(inv, defaults=replace(inv.defaults, pi_os="ubuntu-24.04-raspi"))


def lookup(tree: BootTree):
    return lambda name: tree if name == tree.image.name else None


def test_pi4_sequence_maps_to_the_boot_partition_and_rendered_files(tmp_path: Path) -> None:
    tree, inv = make_tree(tmp_path), pi_inventory(tmp_path)
    for name in ("start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb", "overlays/dwc2.dtbo", "vmlinuz"):
        answer = pi_file(inv, f"{PI_ID}/{name}", BASE_URL, HOST, lookup(tree))
        assert answer is not None and answer.path == tree.folder / name
    assert (
        pi_file(inv, f"{PI_ID}/{SERVED_INITRAMFS}", BASE_URL, HOST, lookup(tree)).path
        == tree.served_initramfs
    )
    config = pi_file(inv, f"{PI_ID}/config.txt", BASE_URL, HOST, lookup(tree)).data.decode()
    cmdline = pi_file(inv, f"{PI_ID}/cmdline.txt", BASE_URL, HOST, lookup(tree)).data.decode()
    assert f"initramfs {SERVED_INITRAMFS} followkernel" in config and "arm_boost=1" in config
    assert "\ninitramfs initrd.img" not in config  # the image's own line is commented out
    assert cmdline.endswith("\n") and cmdline.count("\n") == 1
    assert pi_file(inv, f"{PI_ID}/missing.bin", BASE_URL, HOST, lookup(tree)) is None
    assert pi_file(inv, "bootcode.bin", BASE_URL, HOST, lookup(tree)).path == tree.folder / "bootcode.bin"


def test_unregistered_serial_gets_nothing(tmp_path: Path) -> None:
    tree, inv = make_tree(tmp_path), pi_inventory(tmp_path)
    for name in ("start4.elf", "config.txt", "cmdline.txt", "vmlinuz", SERVED_INITRAMFS):
        assert pi_file(inv, f"deadbeef/{name}", BASE_URL, HOST, lookup(tree)) is None
    bare = replace(inv, defaults=replace(inv.defaults, pi_os=None))
    assert pi_file(bare, "bootcode.bin", BASE_URL, HOST, lookup(tree)) is None  # no Pi node with an image
    assert pi_file(bare, f"{PI_ID}/start4.elf", BASE_URL, HOST, lookup(tree)) is None


def test_cmdline_uses_open_iscsi_interface_and_node_address(tmp_path: Path) -> None:
    tree, inv = make_tree(tmp_path), pi_inventory(tmp_path)
    node = inv.effective(inv.nodes[PI_ID])
    words = cmdline_words(inv, node, tree, BASE_URL, HOST)
    assert words[:2] == ["console=serial0,115200", "console=tty1"]
    assert "root=LABEL=writable" not in words and f"root=UUID={UUID}" in words
    assert "ip=192.168.1.60::192.168.1.1:255.255.255.0:pi01:eth0:off:192.168.1.1:9.9.9.9" in words
    assert f"ISCSI_INITIATOR={initiator_name(PI_ID)}" in words
    assert f"ISCSI_TARGET_NAME={target_iqn(PI_ID)}" in words
    assert "ISCSI_TARGET_IP=192.168.1.10" in words and "ISCSI_TARGET_PORT=3260" in words
    assert f"ds=nocloud;s={BASE_URL}/{PI_ID}/cloud-init/" in words
    assert "rootwait" in words and words.count("rootwait") == 1


def test_config_txt_names_served_kernel_and_initramfs(tmp_path: Path) -> None:
    tree, inv = make_tree(tmp_path), pi_inventory(tmp_path)
    text = render_config_txt(inv.effective(inv.nodes[PI_ID]), tree)
    assert parse_config_txt(text) == ("vmlinuz", SERVED_INITRAMFS)
    assert text.rstrip().endswith("cmdline=cmdline.txt")


def test_parse_config_txt_defaults() -> None:
    assert parse_config_txt("arm_64bit=1\n") == ("kernel8.img", None)
    assert parse_config_txt("kernel=Image # k\ninitramfs=initrd.gz\n") == ("Image", "initrd.gz")


def test_pi_user_data_is_cloud_config_with_the_pc_settings(tmp_path: Path) -> None:
    inv = pi_inventory(tmp_path)
    text = cloud_init_file(inv, inv.nodes[PI_ID], "user-data", BASE_URL, 3)
    assert text.splitlines()[0] == "#cloud-config"
    doc = yaml.safe_load(text)
    assert "autoinstall" not in doc and check_user_data(doc) == []
    assert doc["hostname"] == "pi01"
    [user] = doc["users"]
    assert user["name"] == "ubuntu" and user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert user["hashed_passwd"].startswith("$6$") and "correct horse" not in text
    assert user["ssh_authorized_keys"] == [public_key()] and doc["ssh_pwauth"] is False
    assert ["update-alternatives", "--set", "iptables", "/usr/sbin/iptables-legacy"] in doc["runcmd"]
    assert doc["phone_home"]["url"] == f"{BASE_URL}/{PI_ID}/installed?token=<install-token>"
    meta = yaml.safe_load(cloud_init_file(inv, inv.nodes[PI_ID], "meta-data", BASE_URL, 3))
    assert meta["instance-id"] == f"{PI_ID}-3"


def test_pi_network_config_keeps_the_root_link(tmp_path: Path) -> None:
    inv = pi_inventory(tmp_path)
    doc = build_network_config(inv, inv.nodes[PI_ID], HOST)
    nic = doc["ethernets"]["eth0"]
    assert doc["version"] == 2 and nic["critical"] is True and nic["addresses"] == ["192.168.1.60/24"]
    assert nic["routes"] == [{"to": "default", "via": "192.168.1.1"}]
    text = cloud_init_file(inv, inv.nodes[PI_ID], "network-config", BASE_URL, 1)
    assert yaml.safe_load(text) == build_network_config(inv, inv.nodes[PI_ID], _host_of(inv))


def _host_of(inv: Inventory) -> HostNetwork:
    return HostNetwork(inv.defaults.gateway, inv.defaults.dns)


def test_pi_seed_refuses_a_private_key(tmp_path: Path) -> None:
    inv = pi_inventory(tmp_path)
    bad = replace(inv.nodes[PI_ID], ssh_authorized_keys=("-----BEGIN OPENSSH PRIVATE KEY-----",))
    inv = replace(inv, nodes={**inv.nodes, PI_ID: bad})
    with pytest.raises(Exception, match="PRIVATE key"):
        build_user_data(inv, inv.nodes[PI_ID], BASE_URL)


def _ready_pi_image(httproot: Path, name: str) -> None:
    folder = httproot / "images" / name
    folder.mkdir(parents=True)
    (folder / "x.img").write_bytes(b"")
    info = json.loads(json.dumps(make_tree(httproot.parent / "t").image.__dict__))
    info["name"] = name
    (folder / pi_images.MARKER).write_text(json.dumps(info))


def test_validate_refuses_an_installer_on_a_pi_and_a_pi_image_on_a_pc(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    pi = replace(inv.nodes[PI_ID], os="ubuntu-24.04")
    pc = replace(inv.nodes[PC_ID], os="ubuntu-24.04-raspi")
    inv = replace(inv, nodes={PI_ID: pi, PC_ID: pc})
    problems = check_nodes(inv)
    assert any(
        p.startswith(f"node pi01 ({PI_ID}): os 'ubuntu-24.04' is an installer ISO")
        and "ubuntu-24.04-raspi" in p
        for p in problems
    ), problems
    assert any(
        p.startswith(f"node node01 ({PC_ID}): os 'ubuntu-24.04-raspi' is a Raspberry Pi image")
        for p in problems
    ), problems


def test_validate_accepts_a_ready_pi_image_and_names_a_missing_one(tmp_path: Path) -> None:
    inv = pi_inventory(tmp_path)
    inv = replace(inv, nodes={PI_ID: inv.nodes[PI_ID]}, defaults=replace(inv.defaults, os=None))
    assert check_nodes(inv) == [
        f"node pi01 ({PI_ID}): Pi image 'ubuntu-24.04-raspi' is not fetched yet; "
        "run `pypxe-homelab images fetch ubuntu-24.04-raspi`"
    ]
    _ready_pi_image(inv.paths.httproot, "ubuntu-24.04-raspi")
    assert check_nodes(inv) == []


def test_defaults_pi_os_is_read_and_applies_to_pis_only(tmp_path: Path) -> None:
    text = f"""
defaults:
  os: ubuntu-24.04
  pi_os: ubuntu-24.04-raspi
nodes:
  {PI_ID}:
    address: 192.168.1.60/24
  {PC_ID}:
    address: 192.168.1.51/24
"""
    inv = parse_inventory(text, None, detect_host=False)
    assert inv.defaults.pi_os == "ubuntu-24.04-raspi"
    assert inv.effective(inv.nodes[PI_ID]).os == "ubuntu-24.04-raspi"
    assert inv.effective(inv.nodes[PC_ID]).os == "ubuntu-24.04"
    own = replace(inv.nodes[PI_ID], os="my-pi")
    assert inv.effective(own).os == "my-pi"
    assert Defaults().pi_os is None and Node(PI_ID).is_pi


def test_render_of_a_pi_shows_its_offer_tree_boot_files_and_seed(tmp_path: Path, monkeypatch) -> None:
    from pypxe_homelab.boot import booter, preview

    tree = make_tree(tmp_path)

    class Trees:
        def lookup(self, inventory: Inventory, name: str) -> BootTree | None:
            return lookup(tree)(name)

    monkeypatch.setattr(booter, "BOOT_TREES", Trees())
    monkeypatch.setattr(preview, "BOOT_TREES", Trees())
    result = preview.preview(pi_inventory(tmp_path), PI_ID, None, 1, BASE_URL)
    ((answer),) = result.dhcp
    assert answer.firmware == "Raspberry Pi" and "option43=" in answer.answer
    assert f"{PI_ID}/start4.elf" in result.pi_files and f"{PI_ID}/{SERVED_INITRAMFS}" in result.pi_files
    cmdline = result.pi_texts[f"{PI_ID}/cmdline.txt"]
    assert f"ISCSI_TARGET_NAME={target_iqn(PI_ID)}" in cmdline
    assert f"ISCSI_INITIATOR={initiator_name(PI_ID)}" in cmdline
    assert f"initramfs {SERVED_INITRAMFS}" in result.pi_texts[f"{PI_ID}/config.txt"]
    assert result.cloud_init["user-data"].startswith("#cloud-config")
    assert result.loader_configs == {} and not result.urls
