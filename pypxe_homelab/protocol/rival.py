"""Another PXE server's answer, heard on the LAN: which DHCP OFFERs/ACKs come from a rival boot server.

Pure: reply bytes and this server's own addresses in, a ``RivalOffer`` (or None) out.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from pypxe_homelab.protocol.dhcp_codec import ACK, BOOTREPLY, OFFER, parse_request

_FILE = slice(108, 236)  # the BOOTP header's boot file name field


@dataclass(frozen=True)
class RivalOffer:
    """A boot answer from another server: ``server`` is its server identifier (or source address)."""

    server: str
    mac: str
    xid: int
    proxy: bool  # a ProxyDHCP answer (no address offered)
    vendor_class: str | None
    boot_file: str
    siaddr: str


def rival_offer(payload: bytes, source: str, own: Collection[str]) -> RivalOffer | None:
    """The rival boot answer in ``payload`` (from ``source``), or None: not an OFFER/ACK, ours, or no boot
    information in it (a plain router's offer with neither option 60 PXEClient nor a boot file)."""
    if source in own or not payload or payload[0] != BOOTREPLY:
        return None  # our own broadcast heard back, or no reply at all: no parse
    reply = parse_request(payload)
    if reply is None or reply.op != BOOTREPLY or reply.message_type not in (OFFER, ACK):
        return None
    server = reply.server_id or source
    if server in own or source in own or reply.siaddr in own:  # ours, or a router naming us
        return None
    boot_file = bytes(payload[_FILE]).split(b"\0", 1)[0].decode("latin-1")
    pxe = bool(reply.vendor_class and reply.vendor_class.startswith(("PXEClient", "HTTPClient")))
    if not pxe and not boot_file:
        return None
    return RivalOffer(
        server=server,
        mac=reply.chaddr,
        xid=reply.xid,
        proxy=reply.yiaddr == "0.0.0.0",
        vendor_class=reply.vendor_class,
        boot_file=boot_file,
        siaddr=reply.siaddr,
    )
