"""Hints that point at the real fix: the YAML line that is wrong, `reinstall` of an unknown machine."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from click.testing import CliRunner

from pypxe_homelab.cli import main
from pypxe_homelab.config import hostnet
from pypxe_homelab.config.loader import read_yaml
from pypxe_homelab.errors import ConfigError
from pypxe_homelab.identity import add_command, address_note


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "server:\n  http_port 8080\n  unknown: menu\n",
            "c.yaml:2: 'http_port 8080' has no ':' after its key",
        ),
        (
            "nodes:\n  01-52-54-00-a0-00-01\n    address: 10.0.0.5/24\n",
            "c.yaml:2: '01-52-54-00-a0-00-01' has no ':' after its key",
        ),
        (
            "defaults:\n  dns: [1.1.1.1\n  os: x\nnodes:\n",
            "c.yaml:2:8: this bracket is not closed before line 3",
        ),
        ("defaults:\n  cmdline: a: b\n", "c.yaml:2:13: mapping values are not allowed here"),
    ],
    ids=["missing-colon", "missing-colon-node", "unclosed-bracket", "colon-in-value"],
)
def test_a_yaml_syntax_error_names_the_line_to_fix(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        read_yaml(text, "c.yaml")
    assert info.value.errors[0].startswith(expected), info.value.errors


def test_the_add_hint_uses_the_served_prefix_and_warns_about_the_pool() -> None:
    network = ipaddress.IPv4Network("10.20.0.0/22")
    assert add_command("01-52-54-00-a0-00-09", network) == (
        "pypxe-homelab add 01-52-54-00-a0-00-09 --node-address <address>/22"
    )
    note = address_note(network, "10.20.1.7")
    assert "a free address of 10.20.0.0/22 outside your router's DHCP pool" in note
    assert "reserved for this machine on the router" in note


def test_reinstall_of_an_unknown_machine_suggests_a_complete_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hostnet, "default_route_interface", lambda: "lab0")
    monkeypatch.setattr(hostnet, "interface_ipv4", lambda name: ipaddress.IPv4Interface("10.20.0.2/22"))
    path = tmp_path / "config.yaml"
    path.write_text("nodes: {}\n")
    result = CliRunner().invoke(main, ["--config", str(path), "reinstall", "52:54:00:a0:00:09"])
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert "`pypxe-homelab add 01-52-54-00-a0-00-09 --node-address <address>/22`" in line
    assert "outside your router's DHCP pool" in line
