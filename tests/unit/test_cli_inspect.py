"""`validate` and `render`: what a user checks before a machine boots."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pypxe_homelab.cli import main
from tests.fixtures.autoinstall.isobuild import build_test_iso
from tests.unit.test_config_host_checks import install_loaders

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFwL7jG3o8b1x7gOa+Nj0y8oQ1J8U4I3yXxJgkOQeH1a admin@test"
CONFIG = f"""\
server:
  address: 192.0.2.10
paths:
  root: {{root}}
defaults:
  gateway: 192.0.2.1
  dns: [192.0.2.1]
  ssh_authorized_keys: ["{KEY}"]
nodes:
  01-52-54-00-a0-00-01:
    address: 192.0.2.50/24
    boot: {{{{kernel: boot/linux, initrd: boot/initrd.gz, cmdline: console=ttyS0}}}}
  01-52-54-00-a0-00-02:
    address: 192.0.2.51/24
    hostname: node02
    os: ubuntu-24.04
"""


def _run(tmp_path: Path, *args: str, config: str = CONFIG):
    path = tmp_path / "config.yaml"
    path.write_text(config.format(root=tmp_path / "root"))
    return CliRunner().invoke(main, ["--config", str(path), *args])


def test_validate_accepts_a_good_inventory(tmp_path: Path) -> None:
    without_install = CONFIG[: CONFIG.index("  01-52-54-00-a0-00-02:")]
    install_loaders(tmp_path / "root" / "tftproot")
    result = _run(tmp_path, "validate", config=without_install)
    assert result.exit_code == 0, result.output
    assert "valid (1 node(s))" in result.output


def test_validate_says_which_image_to_fetch(tmp_path: Path) -> None:
    result = _run(tmp_path, "validate")
    assert result.exit_code == 1
    assert (
        "image 'ubuntu-24.04' is not fetched yet; run `pypxe-homelab images fetch ubuntu-24.04`"
        in result.output
    )


def test_validate_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad = CONFIG.replace(f'["{KEY}"]', '["-----BEGIN OPENSSH PRIVATE KEY-----"]').replace(
        "os: ubuntu-24.04", "os: no-such-image"
    )
    result = _run(tmp_path, "validate", config=bad)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert any("PRIVATE key" in line for line in lines), result.output


def test_render_shows_dhcp_answers_configs_and_urls(tmp_path: Path) -> None:
    result = _run(tmp_path, "render", "52:54:00:a0:00:01")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "# 01-52-54-00-a0-00-01: registered" in out
    assert "BIOS        udp/4011  siaddr=192.0.2.10 file=lpxelinux.0" in out
    assert "UEFI x64    udp/4011  siaddr=192.0.2.10 file=efi64/syslinux.efi" in out
    for tree in ("pxelinux.cfg", "efi64/pxelinux.cfg", "efi32/pxelinux.cfg"):
        assert f"## TFTP {tree}/01-52-54-00-a0-00-01" in out
    assert "http://192.0.2.10:12345/boot/linux" in out


def test_render_of_an_install_node_without_its_image_boots_locally(tmp_path: Path) -> None:
    out = _run(tmp_path, "render", "01-52-54-00-a0-00-02").output
    assert "image ubuntu-24.04 is not fetched yet; run 'pypxe-homelab images fetch ubuntu-24.04'" in out
    assert "LOCALBOOT 0" in out and "casper" not in out


def test_render_of_an_install_node_shows_cmdline_and_cloud_init(tmp_path: Path) -> None:
    iso = tmp_path / "test.iso"
    build_test_iso(iso, b"kernel" * 100, b"initrd" * 100)
    assert _run(tmp_path, "images", "add", str(iso), "--name", "ubuntu-24.04").exit_code == 0
    out = _run(tmp_path, "render", "01-52-54-00-a0-00-02").output
    assert "ds=nocloud-net;s=http://192.0.2.10:12345/01-52-54-00-a0-00-02/cloud-init/" in out
    assert "## http://192.0.2.10:12345/01-52-54-00-a0-00-02/cloud-init/user-data\n#cloud-config" in out
    assert "instance-id: 01-52-54-00-a0-00-02-1" in out


def test_render_of_an_unknown_machine_is_local_boot(tmp_path: Path) -> None:
    out = _run(tmp_path, "render", "01-52-54-00-a0-00-09").output
    assert "NOT in the inventory" in out and "LOCALBOOT 0" in out and "KERNEL" not in out


def test_render_refuses_a_bad_id_in_one_line(tmp_path: Path) -> None:
    result = _run(tmp_path, "render", "nonsense")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "is not a device id" in result.output


def test_a_node_that_cannot_install_unattended_boots_locally_and_says_why(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/authorized_keys to fall back on
    iso = tmp_path / "test.iso"
    build_test_iso(iso, b"kernel" * 100, b"initrd" * 100)
    no_keys = CONFIG.replace(f'  ssh_authorized_keys: ["{KEY}"]\n', "")
    assert _run(tmp_path, "images", "add", str(iso), "--name", "ubuntu-24.04", config=no_keys).exit_code == 0
    out = _run(tmp_path, "render", "01-52-54-00-a0-00-02", config=no_keys).output
    assert "not installed:" in out and "key" in out
    assert "LOCALBOOT 0" in out and "casper" not in out
