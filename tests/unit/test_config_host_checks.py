"""`validate`, a live reload and `add` refuse the same things: an unknown interface, a node on the server's or
the gateway's address, a boot loader that is not installed; `add` on a full disk is one line, the file intact."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from pypxe_homelab.assets.bootloaders import required_files
from pypxe_homelab.boot import host_checks
from pypxe_homelab.cli import main
from pypxe_homelab.config import editor
from pypxe_homelab.config.loader import load_inventory
from pypxe_homelab.config.model import DEFAULT_LOADERS
from pypxe_homelab.server import ConfigWatcher

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJV6B/UuYsmsv144ilPovh0j0frYPP7euuj/OjAtXuFk me@laptop"


@pytest.fixture(autouse=True)
def lab_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """This host as the lab network: interface lab0 with 10.231.7.2/24, gateway 10.231.7.1."""
    monkeypatch.setattr(host_checks.hostnet, "default_route_interface", lambda: "lab0")
    monkeypatch.setattr(host_checks.hostnet, "interface_exists", lambda name: name == "lab0")
    monkeypatch.setattr(
        host_checks.hostnet,
        "interface_ipv4",
        lambda name: ipaddress.IPv4Interface("10.231.7.2/24") if name == "lab0" else None,
    )


def install_loaders(tftproot: Path) -> None:
    for rel in required_files(DEFAULT_LOADERS):
        (tftproot / rel).parent.mkdir(parents=True, exist_ok=True)
        (tftproot / rel).write_bytes(b"loader")


def config(tmp_path: Path, node_address: str = "10.231.7.50/24", server: str = "") -> Path:
    root = tmp_path / "root"
    install_loaders(root / "tftproot")
    path = tmp_path / "config.yaml"
    path.write_text(
        f"server:\n{server or '  unknown: menu'}\npaths:\n  root: {root}\n"
        f'defaults:\n  gateway: 10.231.7.1\n  dns: [10.231.7.1]\n  ssh_authorized_keys: ["{KEY}"]\n'
        f"nodes:\n  01-52-54-00-a0-00-01:\n    address: {node_address}\n"
        "    boot: {kernel: boot/linux}\n"
    )
    return path


def validate(path: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["--config", str(path), "validate"])
    assert "Traceback" not in result.output
    return result.exit_code, [
        line for line in result.output.splitlines() if line and ".password: " not in line
    ]


def test_a_good_config_is_valid(tmp_path: Path) -> None:
    assert validate(config(tmp_path)) == (0, [f"{tmp_path / 'config.yaml'}: valid (1 node(s))"])


@pytest.mark.parametrize(
    ("node_address", "server", "expected"),
    [
        (
            "10.231.7.2/24",
            "",
            ":10: nodes.01-52-54-00-a0-00-01: address 10.231.7.2 is this server's own address",
        ),
        ("10.231.7.1/24", "", ":10: nodes.01-52-54-00-a0-00-01: address 10.231.7.1 is the gateway's address"),
        (
            "10.231.7.50/24",
            "  interfaces: [nosuch0]",
            "server.interfaces: 'nosuch0' is not a network interface",
        ),
        ("10.231.7.50/24", "  loaders: {bios: nosuch.0}", "server.loaders: nosuch.0 not found in"),
    ],
    ids=["server-address", "gateway", "interface", "loader"],
)
def test_validate_and_reload_refuse_what_add_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, node_address: str, server: str, expected: str
) -> None:
    good = config(tmp_path)
    runtime = SimpleNamespace(inventory=load_inventory(good, detect_host=False))
    watcher = ConfigWatcher(good, runtime, load=lambda p: load_inventory(p, detect_host=False))  # type: ignore[arg-type]
    bad = config(tmp_path, node_address, server)
    code, lines = validate(bad)
    assert code == 1 and len(lines) == 1 and expected in lines[0], lines
    with caplog.at_level(logging.ERROR, "pypxe_homelab.server"):
        assert not asyncio.run(watcher.check())
    assert expected in caplog.text and "still serving the last good config" in caplog.text
    assert runtime.inventory.nodes["01-52-54-00-a0-00-01"].address == ipaddress.IPv4Interface(
        "10.231.7.50/24"
    )


@pytest.mark.parametrize(
    ("where", "code", "text"),
    [("mkstemp", errno.EROFS, "Read-only file system"), ("fsync", errno.ENOSPC, "No space left on device")],
)
def test_add_on_a_full_disk_or_read_only_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, code: int, text: str
) -> None:
    path = config(tmp_path)
    before = path.read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, text)

    monkeypatch.setattr(editor.tempfile if where == "mkstemp" else editor.os, where, fail)
    result = CliRunner().invoke(
        main, ["--config", str(path), "add", "52:54:00:a0:00:09", "--node-address", "10.231.7.59/24"]
    )
    lines = [line for line in result.output.splitlines() if line]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert lines == [
        f"error: {path}: cannot write it: {text}; the file was left as it was (free some space or check the folder's permissions)"
    ]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert os.access(path, os.R_OK)
