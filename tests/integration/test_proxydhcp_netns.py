"""ProxyDHCP over a real LAN: the service in one namespace, a scripted PXE client (raw L2) in another."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.lab.netns import TestLan

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
PI_MAC = "dc:a6:32:01:36:c2"


def start_proxy(lan: TestLan, *args: str) -> subprocess.Popen:
    proc = lan.popen(
        "server",
        [sys.executable, "-m", "tests.lab.proxydhcp_runner", "--iface", "eth0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = proc.stdout.readline()  # type: ignore[union-attr]
    if not first:
        raise AssertionError(f"proxy did not start: {proc.stderr.read()}")  # type: ignore[union-attr]
    assert json.loads(first)["ready"] is True
    return proc


def stop_proxy(proc: subprocess.Popen) -> list[dict]:
    """Stop the proxy and return the events it printed."""
    proc.terminate()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def client(lan: TestLan, *args: str) -> Any:
    res = lan.run("client", [sys.executable, "-m", "tests.lab.pxeclient", *args, "--iface", "eth0"], cwd=REPO)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def boot(lan: TestLan, profile: str, *extra: str) -> dict[str, list[dict]]:
    return client(lan, "boot", "--profile", profile, "--client-ip", lan.ip("client"), *extra)


def test_discover_and_4011_in_all_three_styles(test_lan) -> None:
    lan = test_lan(["server", "client"])
    server, me = lan.ip("server"), lan.ip("client")
    proxy = start_proxy(lan)
    try:
        # iPXE BIOS ROM: arch-0 menu, then boot-server request from :68 with xid 0 and 43.71
        bios = boot(lan, "bios-ipxe")
        (offer,) = bios["offers"]
        assert offer["src"] == server and offer["sport"] == 67
        assert (offer["dst"], offer["dport"]) == ("255.255.255.255", 68)
        assert offer["message_type"] == 2 and offer["flags"] == 0x8000 and offer["yiaddr"] == "0.0.0.0"
        assert offer["server_id"] == server and offer["vendor_class"] == "PXEClient"
        assert offer["option_order"] == [53, 54, 60, 97, 43] and offer["length"] >= 300
        pxe = offer["pxe"]
        assert pxe["6"] == "03" and pxe["10"] == "00505845"
        assert pxe["8"].endswith(bytes(map(int, server.split("."))).hex())
        assert b"Raspberry Pi Boot".hex() in pxe["9"]
        (ack,) = bios["acks"]
        assert ack["message_type"] == 5 and ack["xid"] == 0
        assert (ack["sport"], ack["dst"], ack["dport"]) == (4011, me, 68)
        assert ack["yiaddr"] == me and ack["siaddr"] == server and ack["file"] == "lpxelinux.0"
        assert ack["pxe"] == {"71": "80000000"}

        # EDK2: offer without 43 and file, then BINL request from port 4011 with a new xid
        edk2 = boot(lan, "edk2")
        (offer,) = edk2["offers"]
        assert offer["siaddr"] == server and offer["file"] == "" and offer["pxe"] is None
        assert offer["option_order"] == [53, 54, 60, 97]
        (ack,) = edk2["acks"]
        assert (ack["sport"], ack["dst"], ack["dport"]) == (4011, me, 4011)
        assert ack["file"] == "efi64/syslinux.efi" and ack["file_nul_terminated"]
        assert ack["sname"] == server and ack["ciaddr"] == me and ack["yiaddr"] == "0.0.0.0"

        # iPXE EFI: ProxyDHCP REQUEST from :68 with the DISCOVER's xid and option 54
        ipxe = boot(lan, "ipxe-efi")
        (offer,) = ipxe["offers"]
        (ack,) = ipxe["acks"]
        assert ack["xid"] == offer["xid"] and (ack["sport"], ack["dport"]) == (4011, 68)
        assert ack["file"] == "efi64/syslinux.efi" and ack["siaddr"] == server

        # Raspberry Pi 4: the menu with the Pi item
        (pi,) = client(lan, "discover", "--profile", "pi4", "--mac", PI_MAC)
        assert pi["chaddr"] == PI_MAC and b"Raspberry Pi Boot".hex() in pi["pxe"]["9"]

        # an ordinary DHCP client gets nothing
        assert client(lan, "discover", "--profile", "plain", "--timeout", "2") == []
    finally:
        events = stop_proxy(proxy)
    kinds = [e["kind"] for e in events]
    assert kinds.count("dhcp.offer") == 4 and kinds.count("dhcp.ack") == 3
    assert "dhcp.ignored" not in kinds
    pi_event = next(e for e in events if e["mac"] == PI_MAC)
    assert pi_event["device_id"] == "1e2d3c4b" and pi_event["detail"]["pi"] is True
    bios_ack = next(e for e in events if e["kind"] == "dhcp.ack" and e["detail"]["arch"] == 0)
    assert bios_ack["client"] == f"{me}:68" and bios_ack["detail"]["file"] == "lpxelinux.0"


def test_unknown_ignored_and_direct_mode(test_lan) -> None:
    lan = test_lan(["server", "client"])
    mac = lan.run("client", ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    known = "01-" + mac.replace(":", "-")
    proxy = start_proxy(lan, "--unknown", "ignore", "--node", f"{known}=direct")
    try:
        direct = client(lan, "discover", "--profile", "edk2")
        (offer,) = direct
        assert offer["file"] == "efi64/syslinux.efi" and offer["siaddr"] == lan.ip("server")
        assert offer["pxe"] == {"6": "08", "10": "00505845"}
        assert (
            client(lan, "discover", "--profile", "edk2", "--mac", "52:54:00:99:99:99", "--timeout", "2") == []
        )
    finally:
        events = stop_proxy(proxy)
    assert [(e["kind"], e["device_id"]) for e in events] == [
        ("dhcp.offer", known),
        ("dhcp.ignored", "01-52-54-00-99-99-99"),
    ]


RELAY = """
import socket, sys
from tests.lab.pxeclient import build_discover
server, giaddr, xid = sys.argv[1], sys.argv[2], int(sys.argv[3])
packet = bytearray(build_discover("edk2", "52:54:00:77:00:01", xid))
packet[3] = 1  # hops
packet[24:28] = socket.inet_aton(giaddr)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.bind(("0.0.0.0", 67))  # a relay agent hears the server's answers on 67
    sock.settimeout(1.5)
    sock.sendto(bytes(packet), (server, 67))
    try:
        data, addr = sock.recvfrom(2048)
    except socket.timeout:
        print("none")
    else:
        print(addr[0], data[4:8].hex(), socket.inet_ntoa(data[24:28]))
"""


def test_relayed_requests_are_answered_only_to_a_routable_relay(test_lan) -> None:
    lan = test_lan(["server", "client"])
    server, relay = lan.ip("server"), lan.ip("client")
    proxy = start_proxy(lan)
    try:

        def send(giaddr: str, xid: int) -> str:
            res = lan.run("client", [sys.executable, "-c", RELAY, server, giaddr, str(xid)], cwd=REPO)
            assert res.returncode == 0, res.stderr
            return res.stdout.strip()

        assert send(relay, 0x11) == f"{server} 00000011 {relay}"  # a relay on the LAN gets the offer
        assert send("127.0.0.1", 0x12) == "none"  # never reflected to loopback
        assert send(server, 0x13) == "none"  # nor to ourselves
        assert send("198.51.100.7", 0x14) == "none"  # nor where no route of the interface leads
    finally:
        events = stop_proxy(proxy)
    reasons = {e["detail"]["xid"]: e["detail"]["reason"] for e in events}
    assert events[0]["kind"] == "dhcp.offer" and reasons[0x11].startswith("UEFI binl")
    assert "loopback" in reasons[0x12] and "our own address" in reasons[0x13]
    assert "not reached through eth0" in reasons[0x14]
    assert [e["kind"] for e in events[1:]] == ["dhcp.ignored"] * 3
