"""`add`, `remove`, `list` through the real click group on temp files."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pypxe_homelab.cli import main
from pypxe_homelab.cli import nodes as nodes_cli
from pypxe_homelab.config.loader import load_inventory

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "config"
DEV = "01-52-54-00-a0-00-09"


@pytest.fixture(autouse=True)
def lab_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """This host's facts as the lab network 10.231.7.0/24, so results do not depend on the machine."""
    monkeypatch.setattr(nodes_cli.hostnet, "default_gateway", lambda: ipaddress.IPv4Address("10.231.7.1"))
    monkeypatch.setattr(nodes_cli.hostnet, "upstream_dns", lambda: [ipaddress.IPv4Address("10.231.7.53")])
    monkeypatch.setattr(nodes_cli.hostnet, "default_route_interface", lambda: "lab0")
    monkeypatch.setattr(
        nodes_cli.hostnet,
        "interface_ipv4",
        lambda name: ipaddress.IPv4Interface("10.231.7.2/24") if name == "lab0" else None,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    shutil.copy(FIXTURES / "issue_example.yaml", path)
    return path


def run(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), *args])


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_add_with_everything(config: Path) -> None:
    result = run(
        config,
        "add",
        "52:54:00:A0:00:09",
        "--node-address",
        "192.168.1.59/24",
        "--node-gateway",
        "192.168.1.254",
        "--node-dns",
        "1.1.1.1,9.9.9.9",
        "--node-dns",
        "192.168.1.1",
        "--hostname",
        "web",
        "--os",
        "ubuntu-24.04",
    )
    assert result.exit_code == 0, result.output
    assert f"Added {DEV} in {config}:" in result.output
    assert "address: 192.168.1.59/24" in result.output
    assert "picks up the change by itself" in result.output
    node = load_inventory(config, detect_host=False).nodes[DEV]
    assert node.hostname == "web" and node.os == "ubuntu-24.04" and str(node.gateway) == "192.168.1.254"
    assert [str(d) for d in node.dns] == ["1.1.1.1", "9.9.9.9", "192.168.1.1"]


def test_add_inherits_config_defaults(config: Path) -> None:
    result = run(config, "add", DEV, "--node-address", "192.168.1.59/24")
    assert result.exit_code == 0, result.output
    assert "It uses gateway 192.168.1.1 and DNS 192.168.1.1 from defaults." in result.output
    node = load_inventory(config, detect_host=False).nodes[DEV]
    assert node.gateway is None and node.dns == ()  # inherited, not copied


def test_add_without_defaults_writes_host_facts(tmp_path: Path) -> None:
    config = tmp_path / "new" / "config.yaml"
    result = run(config, "add", DEV, "--node-address", "10.231.7.20/24")
    assert result.exit_code == 0, result.output
    assert "(new file)" in result.output
    node = load_inventory(config, detect_host=False).nodes[DEV]
    assert str(node.gateway) == "10.231.7.1" and [str(d) for d in node.dns] == ["10.231.7.53"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["zz:zz", "--node-address", "192.168.1.59/24"], "'zz:zz' is not a device id"),
        (["01-52-54-00-12-34", "--node-address", "192.168.1.59/24"], "it is missing a byte"),
        (
            [DEV, "--node-address", "192.168.1.300/24"],
            "--node-address: '192.168.1.300/24' is not an IPv4 address with prefix; write it like",
        ),
        (
            [DEV, "--node-address", "192.168.1.59"],
            "--node-address: '192.168.1.59' has no prefix length; write it like 192.168.1.59/24",
        ),
        ([DEV, "--node-address", "192.168.1.0/24"], "is the network address"),
        (
            [DEV, "--node-address", "192.168.1.59/24", "--node-gateway", "10.0.0.1"],
            "--node-gateway: gateway 10.0.0.1 is outside 192.168.1.0/24",
        ),
        (
            [DEV, "--node-address", "192.168.1.59/24", "--node-gateway", "nope"],
            "--node-gateway: 'nope' is not an IPv4 address",
        ),
        (
            [DEV, "--node-address", "10.9.9.9/24"],
            "--node-address: 10.9.9.9/24 is not in the same subnet as the default gateway 192.168.1.1",
        ),
        (
            [DEV, "--node-address", "192.168.1.59/24", "--node-dns", "1.1.1"],
            "--node-dns: '1.1.1' is not an IPv4 address",
        ),
        (
            [DEV, "--node-address", "192.168.1.59/24", "--hostname", "a_b"],
            "--hostname: 'a_b' is not a valid host name",
        ),
        (
            [DEV, "--node-address", "192.168.1.50/24"],
            "192.168.1.50 is already the address of 01-52-54-00-a0-00-01",
        ),
        ([DEV, "--node-address", "192.168.1.1/24"], "--node-address: 192.168.1.1 is the gateway's address"),
        (
            ["52-54-00-a0-00-01", "--node-address", "192.168.1.59/24"],
            ":10: 01-52-54-00-a0-00-01 is already in the inventory; use --force",
        ),
    ],
)
def test_add_errors_leave_the_file_untouched(config: Path, args: list[str], expected: str) -> None:
    before = config.read_bytes()
    line = one_line_error(run(config, "add", *args))
    assert expected in line
    assert config.read_bytes() == before


def test_add_refuses_the_servers_own_address(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    line = one_line_error(run(config, "add", DEV, "--node-address", "10.231.7.2/24"))
    assert "10.231.7.2 is this server's own address" in line
    assert not config.exists()
    config.write_text("server:\n  address: 10.231.7.3\n")
    assert "10.231.7.3 is this server's own address" in one_line_error(
        run(config, "add", DEV, "--node-address", "10.231.7.3/24")
    )


def test_add_force_replaces(config: Path) -> None:
    result = run(
        config,
        "add",
        "01-52-54-00-a0-00-01",
        "--node-address",
        "192.168.1.50/24",
        "--hostname",
        "x",
        "--force",
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Replaced 01-52-54-00-a0-00-01")
    node = load_inventory(config, detect_host=False).nodes["01-52-54-00-a0-00-01"]
    assert node.hostname == "x" and node.boot is None


def test_broken_config_is_reported_and_not_touched(config: Path) -> None:
    config.write_text("server:\n  http_port: 0\n")
    result = run(config, "add", DEV, "--node-address", "192.168.1.59/24")
    assert result.exit_code == 1
    assert f"error: {config}:2: server.http_port: 0 is not a port number" in result.output
    assert config.read_text() == "server:\n  http_port: 0\n"


def test_remove(config: Path) -> None:
    before = config.read_bytes()
    assert run(config, "add", DEV, "--node-address", "192.168.1.59/24").exit_code == 0
    result = run(config, "remove", "52:54:00:a0:00:09")
    assert result.exit_code == 0, result.output
    assert f"Removed {DEV} from {config}." in result.output
    assert config.read_bytes() == before
    assert "is not in the inventory" in one_line_error(run(config, "remove", DEV))
    assert "is not a device id" in one_line_error(run(config, "remove", "bogus"))


def test_list_table_and_json(config: Path) -> None:
    assert (
        run(
            config,
            "add",
            DEV,
            "--node-address",
            "192.168.1.59/24",
            "--hostname",
            "web",
            "--os",
            "ubuntu-24.04",
        ).exit_code
        == 0
    )
    table = run(config, "list")
    assert table.exit_code == 0, table.output
    for text in (
        "01-52-54-00-a0-00-01",
        DEV,
        "web",
        "192.168.1.59/24",
        "192.168.1.1",
        "ubuntu-24.04",
        "boot/linux",
    ):
        assert text in table.output
    data = json.loads(run(config, "list", "--json").output)
    assert [d["device_id"] for d in data] == ["01-52-54-00-a0-00-01", DEV]
    assert data[0]["boot"] == {
        "kernel": "boot/linux",
        "initrd": ["boot/initrd.gz"],
        "cmdline": "console=ttyS0",
    }
    assert (
        data[1]["gateway"] == "192.168.1.1"
        and data[1]["dns"] == ["192.168.1.1"]
        and data[1]["os"] == "ubuntu-24.04"
    )


def test_list_without_file(tmp_path: Path) -> None:
    result = run(tmp_path / "none.yaml", "list")
    assert result.exit_code == 0 and "does not exist yet" in result.output
    assert json.loads(run(tmp_path / "none.yaml", "list", "--json").output) == []
