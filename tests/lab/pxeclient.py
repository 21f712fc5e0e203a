"""A scripted PXE client (scapy, raw L2) that mimics real firmware, for tests inside a network namespace.

Profiles follow captured firmware behaviour:

- ``bios-ipxe``: iPXE BIOS ROM. DISCOVER with user class iPXE; 4011 boot-server request from port 68,
  xid 0, vendor class just ``PXEClient`` and option 43.71 = type 0x8000 layer 0.
- ``edk2``: UEFI native PXE (OVMF). DISCOVER with the broadcast flag and arch 7; 4011 request sent
  **from port 4011** with a new xid and the DISCOVER's options.
- ``ipxe-efi``: iPXE EFI. 4011 "ProxyDHCP REQUEST" from port 68 with the DISCOVER's xid and option 54.
- ``pi4``: Raspberry Pi 4 EEPROM: arch 0, option 97 in the ``RPi4`` form; never talks to 4011.
- ``plain``: an ordinary DHCP client (no PXE options), which a proxy must ignore.

Library use: ``discover(iface, mac, profile, timeout)`` and ``request_4011(iface, server_ip, mac,
profile, xid, client_ip)`` return the replies seen as JSON-ready dicts. CLI (prints JSON)::

    python -m tests.lab.pxeclient discover --iface eth0 --profile edk2
    python -m tests.lab.pxeclient request --iface eth0 --server 10.231.9.3 --client-ip 10.231.9.10 --profile edk2
    python -m tests.lab.pxeclient boot --iface eth0 --profile bios-ipxe --client-ip 10.231.9.10
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import struct
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

PROFILES = ("bios-ipxe", "edk2", "ipxe-efi", "pi4", "plain")

IPXE_PARAMS = bytes(
    [1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, *range(128, 136), 175, 203]
)  # parameter request list of iPXE
EDK2_PARAMS = bytes(
    [1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60, 66, 67, 97]
    + list(range(128, 136))
)
PI_PARAMS = bytes([1, 3, 43, 60, 66, 67, *range(128, 136)])
IPXE_FEATURES = bytes.fromhex("b105018086100eeb03010000170101240101130101110101270101290101150101120101")
PI4_BOARD_REVISION = 0x00C03111
PI4_SERIAL = 0x1E2D3C4B


def machine_id(mac: str) -> bytes:
    """A type-0 option 97 derived from the MAC (little-endian first fields, as SMBIOS UUIDs go on the wire)."""
    return b"\x00" + uuid.UUID("8a5c1b2e-0000-4000-8000-" + mac.replace(":", "")).bytes_le


def pi4_machine_id(mac: str, serial: int = PI4_SERIAL) -> bytes:
    """Option 97 as a Pi 4 EEPROM sends it: 'RPi4', board revision, low MAC bytes, serial (LE words)."""
    low_mac = bytes.fromhex(mac.replace(":", ""))[2:]
    return (
        b"\x00RPi4"
        + struct.pack("<I", PI4_BOARD_REVISION)
        + struct.pack("<I", int.from_bytes(low_mac, "big"))
        + struct.pack("<I", serial)
    )


def _tlv(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def _header(xid: int, mac: str, *, flags: int = 0, ciaddr: str = "0.0.0.0", secs: int = 0) -> bytes:
    chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0")
    return (
        struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, secs, flags)
        + ipaddress.IPv4Address(ciaddr).packed
        + bytes(12)  # yiaddr, siaddr, giaddr
        + chaddr
        + bytes(64 + 128)
        + b"\x63\x82\x53\x63"
    )


def _ipxe_options(mac: str, arch: int, nic: bytes, vendor: bytes) -> list[bytes]:
    return [
        _tlv(57, struct.pack("!H", 1472)),
        _tlv(93, struct.pack("!H", arch)),
        _tlv(94, nic),
        _tlv(60, vendor),
        _tlv(77, b"iPXE"),
        _tlv(55, IPXE_PARAMS),
        _tlv(175, IPXE_FEATURES),
        _tlv(61, b"\x01" + bytes.fromhex(mac.replace(":", ""))),
        _tlv(97, machine_id(mac)),
    ]


def _edk2_options(mac: str) -> list[bytes]:
    return [
        _tlv(57, struct.pack("!H", 1472)),
        _tlv(55, EDK2_PARAMS),
        _tlv(97, machine_id(mac)),
        _tlv(94, b"\x01\x03\x00"),
        _tlv(93, struct.pack("!H", 7)),
        _tlv(60, b"PXEClient:Arch:00007:UNDI:003000"),
    ]


def _packet(header: bytes, message_type: int, options: list[bytes]) -> bytes:
    data = header + _tlv(53, bytes([message_type])) + b"".join(options) + b"\xff"
    return data.ljust(300, b"\0")


def build_discover(profile: str, mac: str, xid: int) -> bytes:
    """The UDP payload of the profile's DHCPDISCOVER."""
    if profile == "bios-ipxe":
        opts = _ipxe_options(mac, 0, b"\x01\x02\x01", b"PXEClient:Arch:00000:UNDI:002001")
        return _packet(_header(xid, mac, secs=4), 1, opts)
    if profile == "ipxe-efi":
        opts = _ipxe_options(mac, 7, b"\x01\x03\x0a", b"PXEClient:Arch:00007:UNDI:003010")
        return _packet(_header(xid, mac, flags=0x8000), 1, opts)
    if profile == "edk2":
        return _packet(_header(xid, mac, flags=0x8000), 1, _edk2_options(mac))
    if profile == "pi4":
        opts = [
            _tlv(55, PI_PARAMS),
            _tlv(93, b"\x00\x00"),
            _tlv(94, b"\x01\x02\x01"),
            _tlv(97, pi4_machine_id(mac)),
            _tlv(60, b"PXEClient:Arch:00000:UNDI:002001"),
        ]
        return _packet(_header(xid, mac), 1, opts)
    if profile == "plain":
        return _packet(_header(xid, mac, flags=0x8000), 1, [_tlv(57, b"\xff\x00"), _tlv(55, b"\x01\x03\x06")])
    raise ValueError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")


def build_4011(profile: str, mac: str, xid: int, client_ip: str, server_ip: str) -> tuple[bytes, int]:
    """The profile's request to the boot server on 4011 and the source port it is sent from."""
    if profile == "bios-ipxe":
        opts = _ipxe_options(mac, 0, b"\x01\x02\x01", b"PXEClient")
        opts.append(_tlv(43, b"\x47\x04\x80\x00\x00\x00\xff"))
        return _packet(_header(0, mac, flags=0x8000, ciaddr=client_ip, secs=4), 3, opts), 68
    if profile == "ipxe-efi":
        opts = _ipxe_options(mac, 7, b"\x01\x03\x0a", b"PXEClient:Arch:00007:UNDI:003010")
        opts.append(_tlv(54, ipaddress.IPv4Address(server_ip).packed))
        return _packet(_header(xid, mac, flags=0x8000, ciaddr=client_ip), 3, opts), 68
    if profile == "edk2":
        opts = _edk2_options(mac)
        opts = [opts[1], opts[0], opts[5], opts[4], opts[3], opts[2]]  # 55,57,60,93,94,97 as EDK2 orders them
        return _packet(_header(xid, mac, ciaddr=client_ip), 3, opts), 4011
    raise ValueError(f"profile {profile!r} does not talk to port 4011")


def _options(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        length = data[i + 1]
        out.append((data[i], data[i + 2 : i + 2 + length]))
        i += 2 + length
    return out


def _suboptions(value: bytes) -> dict[str, str]:
    out, i = {}, 0
    while i + 1 < len(value) and value[i] != 255:
        length = value[i + 1]
        out[str(value[i])] = value[i + 2 : i + 2 + length].hex()
        i += 2 + length
    return out


def describe(payload: bytes, src: str, sport: int, dst: str, dport: int) -> dict[str, Any]:
    """A reply as a JSON-ready dict (header fields, options by code as hex, option 43 sub-options)."""
    op, htype, hlen, hops, xid, secs, flags = struct.unpack("!BBBBIHH", payload[:12])

    def ip(off: int) -> str:
        return str(ipaddress.IPv4Address(payload[off : off + 4]))

    opts = _options(payload)
    by_code = {code: value for code, value in opts}
    return {
        "src": src,
        "sport": sport,
        "dst": dst,
        "dport": dport,
        "length": len(payload),
        "op": op,
        "htype": htype,
        "hlen": hlen,
        "hops": hops,
        "xid": xid,
        "secs": secs,
        "flags": flags,
        "ciaddr": ip(12),
        "yiaddr": ip(16),
        "siaddr": ip(20),
        "giaddr": ip(24),
        "chaddr": ":".join(f"{b:02x}" for b in payload[28:34]),
        "sname": payload[44:108].split(b"\0", 1)[0].decode("latin-1"),
        "file": payload[108:236].split(b"\0", 1)[0].decode("latin-1"),
        "file_nul_terminated": b"\0" in payload[108:236],
        "message_type": by_code.get(53, b"\0")[0],
        "server_id": str(ipaddress.IPv4Address(by_code[54])) if len(by_code.get(54, b"")) == 4 else None,
        "vendor_class": by_code[60].decode("latin-1") if 60 in by_code else None,
        "option_order": [code for code, _ in opts],
        "options": {str(code): value.hex() for code, value in opts},
        "pxe": _suboptions(by_code[43]) if 43 in by_code else None,
    }


def _exchange(iface: str, frame: Any, xid: int, mac: str, timeout: float, settle: float) -> list[dict]:
    """Send one frame and collect BOOTREPLYs for ``xid``/``mac`` until ``timeout`` (or ``settle`` after the first)."""
    from scapy.layers.inet import IP, UDP
    from scapy.sendrecv import AsyncSniffer, sendp

    chaddr = bytes.fromhex(mac.replace(":", ""))
    found: list[dict] = []
    first: list[float] = []

    def match(pkt: Any) -> bool:
        if UDP not in pkt or IP not in pkt or pkt[UDP].dport not in (68, 4011, 67):
            return False
        data = bytes(pkt[UDP].payload)
        if len(data) < 240 or data[0] != 2 or struct.unpack("!I", data[4:8])[0] != xid:
            return False
        if data[28:34] != chaddr:
            return False
        found.append(describe(data, pkt[IP].src, pkt[UDP].sport, pkt[IP].dst, pkt[UDP].dport))
        first.append(time.monotonic())
        return False

    started = threading.Event()
    sniffer = AsyncSniffer(iface=iface, store=False, lfilter=match, started_callback=started.set)
    sniffer.start()
    started.wait(5)
    time.sleep(0.1)
    sendp(frame, iface=iface, verbose=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (first and time.monotonic() > first[0] + settle):
        time.sleep(0.05)
    sniffer.stop()
    return found


def iface_mac(iface: str) -> str:
    return Path(f"/sys/class/net/{iface}/address").read_text().strip()


def discover(
    iface: str,
    mac: str | None = None,
    profile: str = "edk2",
    timeout: float = 3.0,
    xid: int | None = None,
    settle: float = 0.5,
) -> list[dict]:
    """Broadcast the profile's DISCOVER from 0.0.0.0:68 and return the replies seen (each a dict)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    mac = mac or iface_mac(iface)
    xid = random.getrandbits(32) if xid is None else xid
    payload = build_discover(profile, mac, xid)
    frame = (
        Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / Raw(payload)
    )
    return _exchange(iface, frame, xid, mac, timeout, settle)


def request_4011(
    iface: str,
    server_ip: str,
    mac: str | None = None,
    profile: str = "edk2",
    xid: int | None = None,
    client_ip: str = "0.0.0.0",
    timeout: float = 3.0,
    settle: float = 0.5,
) -> list[dict]:
    """Send the profile's 4011 request (its own style of ports and xid) and return the replies seen."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether, getmacbyip
    from scapy.packet import Raw

    mac = mac or iface_mac(iface)
    xid = random.getrandbits(32) if xid is None else xid
    payload, sport = build_4011(profile, mac, xid, client_ip, server_ip)
    sent_xid = struct.unpack("!I", payload[4:8])[0]
    server_mac = getmacbyip(server_ip) or "ff:ff:ff:ff:ff:ff"
    frame = (
        Ether(src=iface_mac(iface), dst=server_mac)
        / IP(src=client_ip, dst=server_ip)
        / UDP(sport=sport, dport=4011)
        / Raw(payload)
    )
    return _exchange(iface, frame, sent_xid, mac, timeout, settle)


def boot(
    iface: str, profile: str, client_ip: str, mac: str | None = None, timeout: float = 3.0
) -> dict[str, list[dict]]:
    """DISCOVER, then (if an offer came and the profile uses it) the 4011 request to the offering server."""
    xid = random.getrandbits(32)
    offers = discover(iface, mac, profile, timeout, xid)
    acks: list[dict] = []
    if offers and profile in ("bios-ipxe", "edk2", "ipxe-efi"):
        offer = offers[0]
        server = offer["server_id"] if profile == "bios-ipxe" else offer["siaddr"]
        step_xid = xid if profile == "ipxe-efi" else random.getrandbits(32)
        acks = request_4011(iface, server, mac, profile, step_xid, client_ip, timeout)
    return {"offers": offers, "acks": acks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pxeclient", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("discover", "request", "boot"):
        p = sub.add_parser(name)
        p.add_argument("--iface", default="eth0")
        p.add_argument("--profile", choices=PROFILES, default="edk2")
        p.add_argument("--mac")
        p.add_argument("--timeout", type=float, default=3.0)
        p.add_argument("--xid", type=lambda s: int(s, 0))
        if name in ("request", "boot"):
            p.add_argument("--client-ip", required=True)
        if name == "request":
            p.add_argument("--server", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "discover":
        result: Any = discover(args.iface, args.mac, args.profile, args.timeout, args.xid)
    elif args.cmd == "request":
        result = request_4011(
            args.iface, args.server, args.mac, args.profile, args.xid, args.client_ip, args.timeout
        )
    else:
        result = boot(args.iface, args.profile, args.client_ip, args.mac, args.timeout)
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
