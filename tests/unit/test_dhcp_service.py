"""ProxyDhcpService: packet handling and events, a real loopback socket round trip, bind errors."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import socket
from pathlib import Path

import pytest

from pypxe_homelab.boot.booter import InventoryBooter
from pypxe_homelab.config.model import Inventory, Node, ServerSettings
from pypxe_homelab.errors import UserError
from pypxe_homelab.events import Event
from pypxe_homelab.protocol.dhcp_codec import parse_request
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.services.dhcp import InterfaceInfo, ProxyDhcpService, open_socket

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dhcp" / "captured.json"
PACKETS = {p["name"]: bytes.fromhex(p["payload"]) for p in json.loads(FIXTURES.read_text())["packets"]}
IFACE = InterfaceInfo("eth0", "10.231.0.3")


def make(inventory: Inventory | None = None) -> tuple[ProxyDhcpService, list[Event], Runtime]:
    events: list[Event] = []
    runtime = Runtime(
        inventory=inventory or Inventory(),
        store=None,  # type: ignore[arg-type]
        emit=events.append,
        advertise=ipaddress.IPv4Address("10.231.0.3"),
        http_port=12345,
    )
    return ProxyDhcpService(InventoryBooter(lambda: runtime), [IFACE], events.append), events, runtime


def test_offer_event_and_destination() -> None:
    service, events, _ = make()
    out = service.handle(PACKETS["bios_ipxe_discover"], ("0.0.0.0", 68), IFACE, 67)
    assert out is not None
    data, dest = out
    assert dest == ("255.255.255.255", 68)
    assert parse_request(data).message_type == 2  # type: ignore[union-attr]
    (ev,) = events
    assert ev.kind == "dhcp.offer" and ev.client == "0.0.0.0:68"
    assert ev.device_id == "01-52-54-00-a0-00-01" and ev.mac == "52:54:00:a0:00:01"
    d = ev.detail
    assert d["arch"] == 0 and d["class"] == "bios" and d["ipxe"] is True and d["pi"] is False
    assert d["file"] == "lpxelinux.0" and d["xid"] == 0x3B14E024 and d["port"] == 67
    assert d["vendor_class"].startswith("PXEClient") and d["uuid"] == "8a5c1b2e-0000-4000-8000-525400a00001"
    assert d["interface"] == "eth0"
    json.dumps(dataclasses.asdict(ev))


def test_ack_event_on_4011() -> None:
    service, events, _ = make()
    out = service.handle(PACKETS["edk2_binl_4011"], ("10.231.0.136", 4011), IFACE, 4011)
    assert out is not None and out[1] == ("10.231.0.136", 4011)
    assert events[0].kind == "dhcp.ack" and events[0].detail["ciaddr"] == "10.231.0.136"
    assert events[0].detail["class"] == "efi64"


def test_silent_traffic_emits_nothing() -> None:
    service, events, _ = make()
    for name in ("edk2_request67", "syslinux_efi_discover", "edk2_router_offer"):
        assert service.handle(PACKETS[name], ("0.0.0.0", 68), IFACE, 67) is None
    assert service.handle(b"\x01garbage", ("10.0.0.1", 68), IFACE, 67) is None
    assert events == []


def test_ignored_event_and_reload() -> None:
    service, events, runtime = make(Inventory(server=ServerSettings(unknown="ignore")))
    assert service.handle(PACKETS["edk2_discover"], ("0.0.0.0", 68), IFACE, 67) is None
    assert events[-1].kind == "dhcp.ignored" and events[-1].detail["known"] is False
    node = Node(device_id="01-52-54-00-a0-00-02")
    runtime.inventory = Inventory(server=ServerSettings(unknown="ignore"), nodes={node.device_id: node})
    assert service.handle(PACKETS["edk2_discover"], ("0.0.0.0", 68), IFACE, 67) is not None
    assert events[-1].kind == "dhcp.offer" and events[-1].detail["known"] is True


def test_failing_event_sink_does_not_stop_the_reply() -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    service, _, runtime = make()
    service = ProxyDhcpService(InventoryBooter(lambda: runtime), [IFACE], broken)
    assert service.handle(PACKETS["edk2_discover"], ("0.0.0.0", 68), IFACE, 67) is not None


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_bind_to_lo() -> bool:
    try:
        open_socket("lo", 4011, 0).close()
    except UserError:
        return False
    return True


@pytest.mark.skipif(not _can_bind_to_lo(), reason="SO_BINDTODEVICE not permitted here")
def test_loopback_round_trip_on_4011_and_garbage_survival() -> None:
    async def scenario() -> tuple[bytes, list[Event]]:
        events: list[Event] = []
        runtime = Runtime(Inventory(), None, events.append, ipaddress.IPv4Address("127.0.0.1"), 12345)  # type: ignore[arg-type]
        lo = InterfaceInfo("lo", "127.0.0.1", "255.0.0.0", 65536)
        port67, port4011 = _free_udp_port(), _free_udp_port()
        service = ProxyDhcpService(
            InventoryBooter(lambda: runtime), [lo], events.append, ports={67: port67, 4011: port4011}
        )
        await service.start()
        loop = asyncio.get_running_loop()
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        client.setblocking(False)
        try:
            client.sendto(b"\xff" * 10, ("127.0.0.1", port4011))  # garbage first: must be survived
            client.sendto(PACKETS["edk2_binl_4011"], ("127.0.0.1", port4011))
            data = await asyncio.wait_for(loop.sock_recv(client, 2048), 5)
        finally:
            client.close()
            await service.stop()
        return data, events

    data, events = asyncio.run(scenario())
    reply = parse_request(data)
    assert reply is not None and reply.message_type == 5 and reply.server_id == "127.0.0.1"
    assert [e.kind for e in events] == ["dhcp.ack"]


@pytest.mark.skipif(not _can_bind_to_lo(), reason="SO_BINDTODEVICE not permitted here")
def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("0.0.0.0", 0))
        port = other.getsockname()[1]
        with pytest.raises(UserError) as err:
            open_socket("lo", 67, port)
    assert "UDP port 67 is in use on lo" in str(err.value) and "dnsmasq" in str(err.value)


def test_missing_interface_is_one_clear_line() -> None:
    with pytest.raises(UserError) as err:
        InterfaceInfo.of("nosuchif0")
    assert "nosuchif0" in str(err.value) and "\n" not in str(err.value)


def test_interface_info_of_loopback() -> None:
    lo = InterfaceInfo.of("lo")
    assert lo.address.startswith("127.") and lo.netmask == "255.0.0.0" and lo.mtu > 0


@pytest.mark.parametrize(
    "code,needle",
    [
        (98, "UDP port 67 is in use on eth0"),  # EADDRINUSE
        (13, "needs root or CAP_NET_BIND_SERVICE"),  # EACCES
        (1, "run with sudo"),  # EPERM
        (19, "does not exist"),  # ENODEV
    ],
)
def test_bind_error_messages(code: int, needle: str) -> None:
    from pypxe_homelab.services.dhcp import _bind_error

    message = str(_bind_error(OSError(code, "x"), 67, "eth0"))
    assert needle in message and "\n" not in message


def test_endpoint_survives_a_failing_handler(caplog: pytest.LogCaptureFixture) -> None:
    from pypxe_homelab.services.dhcp import _Endpoint

    def no_runtime() -> Runtime:
        raise RuntimeError("boom")

    service = ProxyDhcpService(no_runtime, [IFACE], lambda e: None)
    endpoint = _Endpoint(service, IFACE, 67)
    endpoint.datagram_received(PACKETS["edk2_discover"], ("0.0.0.0", 68))
    assert "dropped a packet" in caplog.text
