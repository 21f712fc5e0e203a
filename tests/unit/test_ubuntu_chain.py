"""Ubuntu's Secure Boot chain read out of the node's own ISO, and the booter choosing it per node."""

from __future__ import annotations

import io
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import zstandard

from pypxe_homelab.assets import images, ubuntu_chain
from pypxe_homelab.config.model import BootSpec, Defaults, Inventory, Node, Paths
from pypxe_homelab.errors import UserError
from pypxe_homelab.protocol.proxydhcp import ServerView
from tests.booters import decide, inventory_booter
from tests.fixtures.autoinstall.isobuild import build_test_iso
from tests.unit.test_ipxe import req

SERVER = ServerView(address="10.231.0.3", interface="eth0")
NODE = "01-52-54-00-a0-00-02"  # the MAC of the edk2 request fixtures
DEB = "grub-efi-amd64-signed_1.202+2.12-1ubuntu7_amd64.deb"
SHIM, GRUB_NET, GRUB_CD, MOK = b"MZ ubuntu shim", b"MZ grubnet", b"MZ grub cd", b"MZ mokmanager"


def deb(files: dict[str, bytes], compression: str = "zst") -> bytes:
    """A .deb (ar archive) whose data.tar.<compression> holds ``files``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = raw.getvalue()
    if compression == "zst":
        data = zstandard.ZstdCompressor().compress(data)
    elif compression == "xz":
        import lzma

        data = lzma.compress(data)
    out = b"!<arch>\n"
    for name, body in ((b"debian-binary", b"2.0\n"), (f"data.tar.{compression}".encode(), data)):
        out += name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"100644".ljust(8)
        out += str(len(body)).encode().ljust(10) + b"`\n" + body + (b"\n" if len(body) % 2 else b"")
    return out


def ubuntu_iso(path: Path, *, pool: bool = True, compression: str = "zst") -> Path:
    extra = {"EFI/boot/bootx64.efi": SHIM, "EFI/boot/grubx64.efi": GRUB_CD, "EFI/boot/mmx64.efi": MOK}
    if pool:
        extra[f"{ubuntu_chain.POOL_DIR}/{DEB}"] = deb({ubuntu_chain.NET_GRUB: GRUB_NET}, compression)
    return build_test_iso(path, b"kernel", b"initrd", extra=extra)


@pytest.mark.parametrize("compression", ["zst", "xz"])
def test_the_chain_is_extracted_once_when_the_image_is_added(tmp_path: Path, compression: str) -> None:
    root = tmp_path / "root"
    info = images.add_image(ubuntu_iso(tmp_path / "u.iso", compression=compression), "noble", root)
    assert info.secure_boot == {
        "shim": "efi/shimx64.efi",
        "grub": "efi/grubx64.efi",
        "mok_manager": "efi/mmx64.efi",
        "grub_package": DEB,
    }
    chain = images.image_chain(root, "noble")
    assert chain is not None
    # the network GRUB from the ISO's pool, not the ISO's own grubx64.efi (which has no TFTP or HTTP)
    assert {name: p.read_bytes() for name, p in chain.items()} == {
        "shimx64.efi": SHIM,
        "grubx64.efi": GRUB_NET,
        "mmx64.efi": MOK,
    }


def test_an_iso_without_the_signed_grub_package_has_no_chain(tmp_path: Path) -> None:
    root = tmp_path / "root"
    images.add_image(ubuntu_iso(tmp_path / "u.iso"), "img", root)
    info = images.add_image(ubuntu_iso(tmp_path / "v.iso", pool=False), "img", root)
    assert info.secure_boot == {}
    assert images.image_chain(root, "img") is None
    assert not (root / "images" / "img" / "efi").exists()  # the old chain does not linger


def test_a_broken_deb_is_named(tmp_path: Path) -> None:
    extra = {"EFI/boot/bootx64.efi": SHIM, f"{ubuntu_chain.POOL_DIR}/{DEB}": b"not a deb"}
    iso = build_test_iso(tmp_path / "b.iso", b"k", b"i", extra=extra)
    with pytest.raises(
        UserError, match=rf"b\.iso: {ubuntu_chain.POOL_DIR}/{DEB.replace('+', '.')}: not a readable"
    ):
        images.add_image(iso, "b", tmp_path / "root")


def chain_inventory(tmp_path: Path, **node) -> Inventory:
    root = tmp_path / "root"
    images.add_image(ubuntu_iso(tmp_path / "u.iso"), "noble", root / "httproot")
    settings = {"os": "noble", "secure_boot": True, **node}
    return Inventory(paths=Paths(root), nodes={NODE: Node(NODE, **settings)}, defaults=Defaults())


def test_an_ubuntu_secure_boot_node_gets_the_shim_of_its_own_iso(tmp_path: Path) -> None:
    inv = chain_inventory(tmp_path)
    offer = decide(req("edk2_discover"), 67, inv, SERVER)
    ack = decide(req("edk2_binl_4011"), 4011, inv, SERVER)
    assert offer is not None and offer.boot_file == "ubuntu-sb/noble/shimx64.efi"
    assert ack is not None and ack.reply is not None and ack.reply.file == "ubuntu-sb/noble/shimx64.efi"
    booter = inventory_booter(inv)
    for name, data in (("shimx64.efi", SHIM), ("grubx64.efi", GRUB_NET), ("mmx64.efi", MOK)):
        found = booter.tftp(f"ubuntu-sb/noble/{name}", "10.231.0.51")
        assert found is not None and found.path is not None and found.path.read_bytes() == data
        assert found.what == "loader"
    assert booter.tftp("ubuntu-sb/noble/revocations.efi", "10.231.0.51") is None
    assert booter.tftp("ubuntu-sb/other/shimx64.efi", "10.231.0.51") is None


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"secure_boot": False}, "efi64/syslinux.efi"),  # no Secure Boot: the usual loader
        ({"os": None, "boot": BootSpec("boot/linux")}, "shimx64.efi"),  # not Ubuntu: Debian's chain
        ({"os": "jammy"}, "shimx64.efi"),  # its image is not there: nothing of its own to serve
    ],
)
def test_other_machines_keep_their_loader(tmp_path: Path, node: dict, expected: str) -> None:
    inv = chain_inventory(tmp_path, **node)
    ack = decide(req("edk2_binl_4011"), 4011, inv, SERVER)
    assert ack is not None and ack.boot_file == expected


def test_a_secure_boot_node_whose_image_has_no_chain_is_told_why_it_does_not_install(tmp_path: Path) -> None:
    from pypxe_homelab.boot.autoinstall import secure_boot_chain_missing

    inv = chain_inventory(tmp_path)
    node = inv.nodes[NODE]
    assert not secure_boot_chain_missing(inv, node, "noble")
    root = tmp_path / "root" / "httproot"
    images.add_image(ubuntu_iso(tmp_path / "v.iso", pool=False), "noble", root)  # an ISO without the package
    assert secure_boot_chain_missing(inv, node, "noble")
    ipxe = replace(inv.server, secure_boot_loaders={"efi64": "ipxe-sb/x64/snponly-shim.efi"})
    assert not secure_boot_chain_missing(replace(inv, server=ipxe), node, "noble")  # iPXE's shim command can
    assert not secure_boot_chain_missing(inv, replace(node, secure_boot=False), "noble")
