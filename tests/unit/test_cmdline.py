"""The installer's kernel command line, per-loader quoting and the per-node HTTP file mapping."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pypxe_homelab.assets.images import add_image
from pypxe_homelab.boot.autoinstall_boot import check_nodes, installer_urls, node_file
from pypxe_homelab.boot.kernel_cmdline import (
    cmdline_problems,
    for_grub,
    for_ipxe,
    for_pxelinux,
    installer_tokens,
    node_http_file,
    node_installer_boot,
    split_extra,
)
from pypxe_homelab.errors import UserError
from tests.fixtures.autoinstall.inventories import BASE_URL, PC24_ID, PC_ID, inventory
from tests.fixtures.autoinstall.isobuild import build_test_iso

ISO = "ubuntu-22.04.1-live-server-amd64.iso"


def test_every_installer_token_is_present():
    tokens = installer_tokens(BASE_URL, PC_ID, ISO)
    node_url = f"{BASE_URL}/{PC_ID}"
    assert tokens == [
        "root=/dev/ram0",
        "ramdisk_size=1500000",
        "ip=dhcp",
        "cloud-config-url=/dev/null",
        f"url={node_url}/{ISO}",
        "autoinstall",
        f"ds=nocloud-net;s={node_url}/cloud-init/",
    ]


def test_extras_are_appended_and_replace_generated_keys():
    tokens = installer_tokens(BASE_URL, PC_ID, ISO, 'console=ttyS0,115200 ip=eth0:dhcp quiet foo="a b"')
    assert tokens[2] == "ip=eth0:dhcp"
    assert tokens[-3:] == ["console=ttyS0,115200", "quiet", 'foo="a b"']
    assert split_extra('  a  b="c d" ') == ["a", 'b="c d"']


def test_url_must_end_in_iso():
    with pytest.raises(UserError, match=r"\.iso"):
        installer_tokens(BASE_URL, PC_ID, "image.img")


def test_pxelinux_is_literal_and_grub_escapes_semicolon():
    tokens = installer_tokens(BASE_URL, PC_ID, ISO)
    assert f"ds=nocloud-net;s={BASE_URL}/{PC_ID}/cloud-init/" in for_pxelinux(tokens)
    grub = for_grub(tokens + ["x=$y", 'q="a b"'])
    assert f"ds=nocloud-net\\;s={BASE_URL}/{PC_ID}/cloud-init/" in grub
    assert ";s=" not in grub.replace("\\;", "")
    assert "x=\\$y" in grub
    assert "q=a\\ b" in grub  # GRUB hands the kernel "q=a b": q is `a b`, no quotes in the value


def test_ipxe_keeps_semicolons_inside_words_and_refuses_expansions():
    tokens = installer_tokens(BASE_URL, PC_ID, ISO)
    assert for_ipxe(tokens) == for_pxelinux(tokens)
    for bad in ("${net0/ip}", "#x", "||"):
        with pytest.raises(UserError):
            for_ipxe([*tokens, bad])


def test_newline_in_a_token_is_refused():
    with pytest.raises(UserError):
        for_pxelinux(["a\nDEFAULT evil"])


def test_overlong_cmdline_is_reported():
    assert cmdline_problems(["x" * 2100])
    assert cmdline_problems(installer_tokens(BASE_URL, PC_ID, ISO)) == []


def test_node_boot_uses_per_node_urls_and_the_catalogue_iso_name(tmp_path):
    inv = inventory(tmp_path)
    boot = node_installer_boot(inv, inv.nodes[PC24_ID], BASE_URL)
    assert boot.kernel == f"{BASE_URL}/{PC24_ID}/casper/vmlinuz"
    assert boot.initrd == (f"{BASE_URL}/{PC24_ID}/casper/initrd",)
    assert f"url={BASE_URL}/{PC24_ID}/ubuntu-24.04.4-live-server-amd64.iso" in boot.tokens
    assert boot.append == for_pxelinux(list(boot.tokens))
    assert boot.what == "the ubuntu-24.04 installer"


def test_node_http_file_maps_only_the_nodes_image_files(tmp_path):
    inv = inventory(tmp_path)
    httproot = inv.paths.httproot
    iso = build_test_iso(tmp_path / "custom.iso", b"kernel" * 100, b"initrd" * 100)
    node = replace(inv.nodes[PC_ID], os="custom")
    inv = replace(inv, nodes={**inv.nodes, PC_ID: node})
    assert node_http_file(inv, httproot, PC_ID, "casper/vmlinuz") is None  # not added yet
    add_image(iso, "custom", httproot)
    assert node_http_file(inv, httproot, PC_ID, "casper/vmlinuz").read_bytes() == b"kernel" * 100
    assert node_http_file(inv, httproot, PC_ID, "casper/initrd").read_bytes() == b"initrd" * 100
    assert node_http_file(inv, httproot, PC_ID, "custom.iso").read_bytes() == iso.read_bytes()
    assert node_file(inv, PC_ID, "custom.iso") == httproot / "images/custom/custom.iso"
    for other in ("image.json", "../custom/custom.iso", "casper/../image.json", "other.iso"):
        assert node_http_file(inv, httproot, PC_ID, other) is None
    assert node_http_file(inv, httproot, "01-00-00-00-00-00-01", "casper/vmlinuz") is None
    boot = node_installer_boot(inv, node, BASE_URL)
    assert f"url={BASE_URL}/{PC_ID}/custom.iso" in boot.tokens


def test_installer_urls_and_check_nodes(tmp_path):
    inv = inventory(tmp_path)
    node = inv.effective(inv.nodes[PC_ID])
    seed = f"{BASE_URL}/{PC_ID}/cloud-init/"
    assert installer_urls(inv, node, BASE_URL) == [
        f"{BASE_URL}/{PC_ID}/{ISO}",
        seed + "meta-data",
        seed + "user-data",
        seed + "vendor-data",
    ]
    problems = check_nodes(inv)
    # the two PCs; the Pi does not inherit the PCs' installer (defaults.os), only defaults.pi_os
    assert len(problems) == 2 and all("is not fetched yet" in p for p in problems)
