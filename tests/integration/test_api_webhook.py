"""The API, the installer webhook and the callback on a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from pypxe_homelab.events import Event
from tests.integration.web_harness import PC, PC_MAC, PI, WebServer, make_runtime

JSON = {"Content-Type": "application/json"}


def report(name: str, event_type: str, result: str | None = None, **extra: object) -> bytes:
    body = {
        "name": name,
        "event_type": event_type,
        "origin": "curtin",
        "level": "INFO",
        "timestamp": time.time(),
        "description": name.rsplit("/", 1)[-1],
        **extra,
    }
    if result:
        body["result"] = result
    return json.dumps(body).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def server(tmp_path: Path):
    with WebServer(make_runtime(tmp_path, tmp_path / "state.db")) as srv:
        booted_from(srv, "127.0.0.1")  # the installer's requests come from the address the node booted from
        yield srv


def booted_from(server: WebServer, ip: str) -> None:
    server.runtime.emit(Event("tftp.rrq", f"{ip}:2070", PC, PC_MAC, {"path": f"pxelinux.cfg/{PC}"}))


def token(server: WebServer) -> str:
    store = server.runtime.store
    return store.install_token(PC, store.node_state(PC).generation)


def events(server: WebServer) -> str:
    """The webhook URL the node's user-data holds."""
    return f"/{PC}/events?token={token(server)}"


def test_webhook_and_callback_drive_the_node_to_installed(server: WebServer) -> None:
    server.runtime.emit(
        Event("dhcp.offer", "0.0.0.0:68", PC, PC_MAC, {"arch": 7, "class": "efi64", "port": 67})
    )
    for name in ("subiquity/Install/install", "subiquity/Install/install/curtin_install"):
        status, body = server.request("POST", events(server), report(name, "start"), JSON)
        assert (status, body) == (200, {"ok": True})
    status, node = server.request("GET", f"/api/nodes/{PC}")
    assert status == 200 and node["state"] == "installing" and node["progress"] == 22.0
    assert node["hostname"] == "web1" and node["address"] == "10.231.0.50/24" and node["os"] == "ubuntu-24.04"
    status, body = server.request(
        "POST", events(server), report("subiquity/Install/install", "finish", "SUCCESS"), JSON
    )
    assert status == 200
    assert server.request("GET", f"/{PC}/installed")[0] == 405  # a link in any web page cannot do it
    assert server.request("POST", f"/{PC}/installed", b"")[0] == 403  # no token
    assert server.request("POST", f"/{PC}/installed", f"token={token(server)}".encode(), FORM)[0] == 200
    status, listing = server.request("GET", "/api/nodes")
    mine = {n["device_id"]: n for n in listing["nodes"]}
    assert mine[PC]["state"] == "installed" and mine[PC]["progress"] == 100.0
    assert mine[PI]["state"] == "discovered" and mine[PI]["last_seen"] is None
    status, timeline = server.request("GET", f"/api/nodes/{PC}/events?limit=50")
    kinds = [e["kind"] for e in timeline["events"] if e["kind"] != "tftp.rrq"]
    assert kinds[0] == "dhcp.offer" and kinds.count("install.event") == 3 and kinds[-1] == "install.callback"
    shown = [e for e in timeline["events"] if e["kind"] != "tftp.rrq"]
    assert shown[1]["summary"].startswith("installer start subiquity/Install/install")


def test_untrusted_webhook_input_gets_4xx_and_leaves_the_store_intact(server: WebServer) -> None:
    assert (
        server.request("POST", events(server), report("subiquity/Install/install", "start"), JSON)[0] == 200
    )
    before_state = server.runtime.store.node_state(PC)
    before_events = len(server.runtime.store.events(PC))
    cases = [
        (b"{not json", JSON, 400),
        (b"\xff\xfe\x00garbage", JSON, 400),
        (b"[1, 2, 3]", JSON, 400),
        (b'{"name": 5, "event_type": "start"}', JSON, 400),
        (b'{"event_type": "finish", "result": "SUCCESS"}', JSON, 400),
        (report("subiquity/Install/install", "finish", "SUCCESS"), {"Content-Type": "text/plain"}, 415),
        (report("subiquity/Install/install", "finish", "SUCCESS"), {}, 415),
        (b'{"name": "' + b"x" * 70_000 + b'", "event_type": "start"}', JSON, 413),
    ]
    for body, headers, expected in cases:
        status, answer = server.request("POST", events(server), body, headers)
        assert status == expected, (body[:40], status, answer)
        assert "error" in answer
    unknown = "01-de-ad-be-ef-00-01"
    assert server.request("POST", f"/{unknown}/events", report("x", "start"), JSON)[0] == 404
    assert server.request("POST", f"/{unknown}/installed", b"token=x", FORM)[0] == 404
    assert server.request("POST", "/not-an-id/events", report("x", "start"), JSON)[0] in (404, 405)
    assert server.runtime.store.node_state(PC) == before_state
    assert len(server.runtime.store.events(PC)) == before_events
    assert server.runtime.store.node_state(unknown).state == "discovered"
    # Fields beyond the report's own are dropped; long strings are cut.
    body = report(
        "subiquity/Late/run",
        "start",
        files=[{"path": "/var/log/x", "content": "QUJD" * 1000}],
        extra="ignored",
        description="d" * 5000,
    )
    assert server.request("POST", events(server), body, JSON)[0] == 200
    last = server.runtime.store.events(PC)[-1].detail
    assert "extra" not in last and last["files"] == ["/var/log/x"] and len(last["description"]) == 1000


def test_read_only_api_refuses_writes(server: WebServer) -> None:
    assert server.request("DELETE", f"/api/nodes/{PC}")[0] == 405
    assert server.request("PUT", "/api/nodes", b"{}", JSON)[0] == 405
    assert server.request("POST", "/api/devices", b"{}", JSON)[0] == 405
    assert server.request("GET", "/api/nodes/01-aa-bb-cc-dd-ee-ff")[0] == 404
    assert server.request("GET", f"/api/nodes/{PC}/events?limit=x")[0] == 400


def test_reinstall_endpoint_is_local_only_and_needs_its_header(server: WebServer) -> None:
    assert server.request("POST", f"/api/nodes/{PC}/reinstall")[0] == 403
    status, body = server.request("POST", f"/api/nodes/{PC}/reinstall", b"", {"X-Pypxe-Homelab": "1"})
    assert status == 200 and body == {"device_id": PC, "generation": 2, "state": "discovered"}
    assert server.runtime.store.node_state(PC).generation == 2
    status, _ = server.request(
        "POST", "/api/nodes/01-de-ad-be-ef-00-01/reinstall", b"", {"X-Pypxe-Homelab": "1"}
    )
    assert status == 404


def test_devices_lists_unregistered_machines_with_the_add_command(server: WebServer) -> None:
    stranger = "aa:bb:cc:00:00:07"
    server.runtime.emit(
        Event("dhcp.offer", "0.0.0.0:68", None, stranger, {"arch": 0, "class": "bios", "port": 67, "xid": 1})
    )
    server.runtime.emit(
        Event("dhcp.ack", "10.231.0.70:68", None, stranger, {"port": 4011, "xid": 1, "ciaddr": "10.231.0.70"})
    )
    status, body = server.request("GET", "/api/devices")
    [dev] = body["devices"]
    assert dev["device_id"] == "01-aa-bb-cc-00-00-07" and dev["firmware"] == "bios"
    assert dev["suggested"] == "pypxe-homelab add 01-aa-bb-cc-00-00-07 --node-address <address>/<prefix>"
    assert (
        "outside your router's DHCP pool (10.231.0.70, which it has now, comes from that pool)"
        in (dev["address_note"])
    )
    status, listing = server.request("GET", "/api/nodes")
    flagged = [n for n in listing["nodes"] if not n["registered"]]
    assert [n["device_id"] for n in flagged] == ["01-aa-bb-cc-00-00-07"] and flagged[0][
        "state"
    ] == "unregistered"


def test_stream_sends_a_message_per_recorded_event(server: WebServer) -> None:
    lines: list[str] = []
    got = threading.Event()

    def listen() -> None:
        with urllib.request.urlopen(server.url + "/api/stream", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            for raw in resp:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    lines.append(line[6:])
                    got.set()
                    return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    deadline = time.time() + 10
    while not got.is_set() and time.time() < deadline:
        server.request("POST", events(server), report("subiquity/Install/install", "start"), JSON)
        got.wait(0.5)
    assert got.is_set()
    message = json.loads(lines[0])
    assert message["device_id"] == PC and message["event"]["kind"] == "install.event"
    assert message["node"]["state"] == "installing"


def test_page_and_static_files_are_served(server: WebServer) -> None:
    status, page = server.request("GET", "/")
    assert status == 200 and "/static/app.js" in page and "http" not in page.replace("http-equiv", "")
    for name in ("app.js", "app.css"):
        status, text = server.request("GET", f"/static/{name}")
        assert status == 200 and "//cdn" not in text and "https://" not in text
    assert server.request("GET", "/static/../api.py")[0] == 404


def test_devices_are_paged(server: WebServer) -> None:
    for n in range(12):
        server.runtime.emit(
            Event("dhcp.offer", "0.0.0.0:68", None, f"aa:bb:cc:00:01:{n:02x}", {"arch": 0, "port": 67})
        )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and server.runtime.store.device_count() < 12:
        time.sleep(0.05)
    status, page = server.request("GET", "/api/devices?limit=5&offset=5")
    assert status == 200 and len(page["devices"]) == 5 and page["next_offset"] == 10
    status, body = server.request("GET", "/api/devices?limit=x")
    assert status == 400


def test_state_changes_need_the_token_and_the_booted_address(server: WebServer) -> None:
    """A plain GET, a POST without the token or with another install's, and any report from an address that
    did not network-boot as the node are refused with 403 and change nothing."""
    before = server.runtime.store.node_state(PC)
    start = report("subiquity/Install/install", "start")
    assert server.request("POST", f"/{PC}/events", start, JSON)[0] == 403
    assert server.request("POST", f"/{PC}/events?token=0123456789abcdef", start, JSON)[0] == 403
    assert server.request("POST", f"/{PC}/installed", b"token=0123456789abcdef", FORM)[0] == 403
    good = token(server)
    booted_from(server, "10.231.0.50")  # the node now boots from another address: 127.0.0.1 is not it
    assert server.request("POST", f"/{PC}/events?token={good}", start, JSON)[0] == 403
    assert server.request("POST", f"/{PC}/installed", f"token={good}".encode(), FORM)[0] == 403
    assert server.runtime.store.node_state(PC).state == before.state
    # a new install generation has a new token
    server.runtime.store.reinstall(PC)
    assert token(server) != good
