"""`status`, `probe` and `reinstall` against a real server on 127.0.0.1, and without one."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pypxe_homelab.cli import main
from pypxe_homelab.events import Event
from pypxe_homelab.state.store import StateStore
from tests.integration.web_harness import PC, PC_MAC, WebServer, make_runtime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"server:\n  http_port: {port}\n  address: 127.0.0.1\npaths:\n  root: {tmp_path}\n"
        f"nodes:\n  {PC}:\n    hostname: web1\n"
    )
    return path


def _cli(config: Path, *args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(
        main, ["--config", str(config), *args], catch_exceptions=False
    )


@pytest.fixture
def running(tmp_path: Path):
    runtime = make_runtime(tmp_path, tmp_path / "state.db")
    with WebServer(runtime) as server:
        port = int(server.url.rsplit(":", 1)[1])
        yield server, _config(tmp_path, port)


def test_status_probe_and_reinstall_through_the_api(running) -> None:
    server, config = running
    server.runtime.emit(
        Event("dhcp.offer", "0.0.0.0:68", PC, PC_MAC, {"arch": 7, "class": "efi64", "port": 67})
    )
    server.runtime.emit(Event("dhcp.offer", "0.0.0.0:68", None, "aa:bb:cc:00:00:09", {"arch": 0, "port": 67}))
    result = _cli(config, "status", "--json")
    assert result.exit_code == 0, result.output
    states = {n["device_id"]: n["state"] for n in json.loads(result.output)}
    assert states[PC] == "booting" and states["01-aa-bb-cc-00-00-09"] == "unregistered"
    result = _cli(config, "status", "--once")
    assert result.exit_code == 0 and "booting" in result.output
    result = _cli(config, "status", PC, "--once")
    assert result.exit_code == 0 and "proxy offer" in result.output
    result = _cli(config, "probe", "--json")
    assert [d["device_id"] for d in json.loads(result.output)] == ["01-aa-bb-cc-00-00-09"]
    result = _cli(config, "probe", "--once")
    assert "pypxe-homelab add 01-aa-bb-cc-00-00-09" in result.output
    result = _cli(config, "reinstall", PC)
    assert result.exit_code == 0 and "generation 2" in result.output
    assert server.runtime.store.node_state(PC).generation == 2


def test_without_a_server(tmp_path: Path) -> None:
    config = _config(tmp_path, _free_port())
    result = CliRunner().invoke(main, ["--config", str(config), "probe", "--once"])
    assert (
        result.exit_code == 1 and "start one with" in result.output and len(result.output.splitlines()) == 1
    )
    # reinstall works directly on the state db; status then reads it.
    result = _cli(config, "reinstall", PC)
    assert result.exit_code == 0 and "generation 2" in result.output
    store = StateStore(tmp_path / "state.db", use_arp=False)
    assert store.node_state(PC).generation == 2
    store.close()
    result = CliRunner().invoke(main, ["--config", str(config), "status", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["generation"] == 2
    result = CliRunner().invoke(main, ["--config", str(config), "reinstall", "01-de-ad-be-ef-00-01"])
    assert result.exit_code == 1 and "not in" in result.output


@pytest.mark.parametrize(
    "args", [["status"], ["status", PC], ["probe"]], ids=["status", "status-id", "probe"]
)
def test_a_pipe_gets_one_picture_and_the_command_ends(running, args: list[str]) -> None:
    server, config = running
    server.runtime.emit(Event("dhcp.offer", "0.0.0.0:68", None, "aa:bb:cc:00:00:09", {"arch": 0, "port": 67}))
    result = subprocess.run(
        [sys.executable, "-m", "pypxe_homelab", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=30,  # live mode would never end
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_status_limit_without_a_server(tmp_path: Path) -> None:
    config = _config(tmp_path, _free_port())
    store = StateStore(tmp_path / "state.db", use_arp=False)
    for n in range(8):
        store.record(Event("tftp.done", f"10.0.0.5:{2000 + n}", PC, PC_MAC, {"path": f"file{n}", "bytes": 1}))
    store.close()
    result = _cli(config, "status", PC, "--limit", "3")
    assert result.exit_code == 0, result.output
    shown = [line for line in result.output.splitlines() if "TFTP sent file" in line]
    assert len(shown) == 3, result.output


def test_status_of_a_registered_node_without_server_or_state(tmp_path: Path) -> None:
    config = _config(tmp_path, _free_port())
    result = _cli(config, "status", PC)
    assert result.exit_code == 0, result.output
    assert "registered" in result.output and "Missing" in result.output
