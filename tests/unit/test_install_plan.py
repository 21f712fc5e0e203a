"""`add` means "install this machine": it, `render` and `status <id>` say what the node gets and every missing
piece with the command that provides it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pypxe_homelab.boot import autoinstall, host_checks
from pypxe_homelab.boot.install_plan import install_plan
from pypxe_homelab.cli import main
from pypxe_homelab.config import ssh_keys
from pypxe_homelab.config.loader import load_inventory
from tests.unit.test_config_host_checks import install_loaders

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJV6B/UuYsmsv144ilPovh0j0frYPP7euuj/OjAtXuFk me@laptop"
DEV = "01-52-54-00-a0-00-09"


@pytest.fixture(autouse=True)
def lab_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setattr(ssh_keys, "invoking_user_home", lambda: home)
    monkeypatch.setattr(autoinstall, "invoking_user_home", lambda: home)
    monkeypatch.setattr(host_checks.hostnet, "default_gateway", lambda: None)
    return home


def run(path: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(path), *args])


def fresh(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "config.yaml"
    path.parent.mkdir()
    path.write_text(
        f"paths:\n  root: {tmp_path / 'root'}\ndefaults:\n  os: ubuntu-24.04\n  gateway: 10.0.0.1\nnodes:\n"
    )
    return path


def test_add_says_the_disk_is_erased_and_lists_every_missing_piece(tmp_path: Path, lab_host: Path) -> None:
    path = fresh(tmp_path)
    result = run(path, "add", DEV, "--node-address", "10.0.0.9/24")
    assert result.exit_code == 0, result.output
    out = result.output
    assert (
        "Its next network boot erases its disk (storage layout direct) and installs ubuntu-24.04; "
        "later boots start from its disk."
    ) in out
    assert "Missing (3):" in out
    assert (
        "  - image 'ubuntu-24.04' is not fetched yet; run `pypxe-homelab images fetch ubuntu-24.04` "
        "(without internet: `pypxe-homelab images add PATH.iso --name ubuntu-24.04`)"
    ) in out
    assert (
        f"  - no SSH public key to install (looked in {lab_host}/.ssh/authorized_keys); "
        "set defaults.ssh_authorized_keys in config.yaml"
    ) in out
    assert "server.loaders: lpxelinux.0" in out and "`sudo pypxe-homelab bootfiles install`" in out


def test_render_and_status_list_every_missing_piece(tmp_path: Path) -> None:
    path = fresh(tmp_path)
    assert run(path, "add", DEV, "--node-address", "10.0.0.9/24").exit_code == 0
    rendered = run(path, "render", DEV).output
    status = run(path, "status", DEV).output
    for out in (rendered, status):
        assert "Its next network boot erases its disk" in out and "Missing (3):" in out, out
        assert (
            "images fetch ubuntu-24.04" in out and "no SSH public key" in out and "bootfiles install" in out
        )


def test_nothing_missing_once_key_and_loaders_are_there(tmp_path: Path, lab_host: Path) -> None:
    path = fresh(tmp_path)
    (lab_host / ".ssh" / "authorized_keys").write_text(KEY + "\n")
    install_loaders(tmp_path / "root" / "tftproot")
    run(path, "add", DEV, "--node-address", "10.0.0.9/24")
    inventory = load_inventory(path)
    plan = install_plan(inventory, inventory.nodes[DEV])
    assert plan.missing == (
        "image 'ubuntu-24.04' is not fetched yet; run `pypxe-homelab images fetch ubuntu-24.04` "
        "(without internet: `pypxe-homelab images add PATH.iso --name ubuntu-24.04`)",
    )
    installed = install_plan(inventory, inventory.nodes[DEV], "installed")
    assert installed.what.startswith("ubuntu-24.04 is installed; it boots from its disk.")


def test_a_node_without_an_image_says_so(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"paths:\n  root: {tmp_path / 'root'}\ndefaults:\n  gateway: 10.0.0.1\nnodes:\n")
    out = run(path, "add", DEV, "--node-address", "10.0.0.9/24").output
    assert "Nothing to install: no os is set, so it boots from its disk." in out
    assert "  - no image named; set defaults.os (e.g. ubuntu-24.04)" in out
