"""ProxyDHCP decisions: which requests on UDP 67 and 4011 get an answer, and what it says.

Pure functions of (request, port, inventory, server view): no sockets, no logging. ``decide`` returns
None for traffic that is none of our business (plain DHCP clients, REQUESTs on 67, garbage) and a
``Decision`` for every PXE client; ``Decision.reply`` is None when we deliberately stay silent.
"""

from __future__ import annotations

from dataclasses import dataclass

from pypxe_homelab.config.model import DEFAULT_HTTP_PORT, Inventory, Node
from pypxe_homelab.protocol import pxe_options as pxe
from pypxe_homelab.protocol.client_class import ClientClass, classify, device_ids
from pypxe_homelab.protocol.dhcp_codec import (
    ACK,
    BOOTREQUEST,
    DISCOVER,
    INFORM,
    OFFER,
    REQUEST,
    DhcpReply,
    DhcpRequest,
)
from pypxe_homelab.protocol.ipxe import is_ipxe_loader, script_url

DHCP_PORT = 67
PXE_PORT = 4011
CLIENT_PORT = 68
BROADCAST = "255.255.255.255"
BROADCAST_FLAG = 0x8000

BOOT_SERVER_TYPE = 0x8000  # the one boot server type our menu offers
BIOS_MENU_TEXT = "Boot x86 BIOS"
PI_MENU_TEXT = "Raspberry Pi Boot"
PROMPT = (0, "PXE")  # boot the first menu item at once
MAX_FILE = 127  # the header's file field holds 128 bytes including the NUL


@dataclass(frozen=True)
class ServerView:
    """What the server knows about the interface a request arrived on."""

    address: str  # IPv4 address of that interface: option 54, siaddr, boot server
    interface: str = ""
    http_port: int = DEFAULT_HTTP_PORT


@dataclass(frozen=True)
class Decision:
    """The outcome for one PXE request. ``reply`` None means: a PXE client we chose not to answer."""

    reply: DhcpReply | None
    client: ClientClass
    boot_file: str | None
    device_id: str
    mac: str
    known: bool  # the device is listed in the inventory
    reason: str
    port: int

    @property
    def kind(self) -> str:
        """'offer', 'ack' or 'ignored'."""
        if self.reply is None:
            return "ignored"
        return "offer" if self.reply.message_type == OFFER else "ack"


def arch_zero_menu(server: str, bios: bool = True) -> bytes:
    """Option 43 for arch-0 clients (BIOS ROMs and every Raspberry Pi).

    With ``bios`` the menu offers the boot server and a Pi item (golden vector of the old setup);
    without it only the Pi item is sent, as the Raspberry Pi documentation shows.
    """
    if not bios:
        return pxe.encode(
            [
                pxe.discovery_control(pxe.NO_BROADCAST | pxe.NO_MULTICAST),
                pxe.menu_prompt(*PROMPT),
                pxe.boot_menu([pxe.MenuItem(pxe.LOCAL_BOOT, PI_MENU_TEXT)]),
            ]
        )
    return pxe.encode(
        [
            pxe.discovery_control(pxe.NO_BROADCAST | pxe.NO_MULTICAST),
            pxe.boot_servers([pxe.BootServer(BOOT_SERVER_TYPE, (server,))]),
            pxe.boot_menu(
                [pxe.MenuItem(BOOT_SERVER_TYPE, BIOS_MENU_TEXT), pxe.MenuItem(pxe.LOCAL_BOOT, PI_MENU_TEXT)]
            ),
            pxe.menu_prompt(*PROMPT),
        ]
    )


def direct_boot_options() -> bytes:
    """Option 43 for UEFI 'direct' mode: take the file in this offer, no menu or discovery."""
    return pxe.encode([pxe.discovery_control(pxe.USE_BOOT_FILE), pxe.menu_prompt(*PROMPT)])


def is_pxe_client(request: DhcpRequest, vendor_prefixes: tuple[str, ...]) -> bool:
    """An Ethernet BOOTREQUEST whose vendor class starts with one of the PXE prefixes."""
    return (
        request.op == BOOTREQUEST
        and request.htype == 1
        and request.hlen == 6
        and request.vendor_class is not None
        and any(request.vendor_class.startswith(p) for p in vendor_prefixes if p)
    )


def destination(request: DhcpRequest, port: int, src_ip: str, src_port: int) -> tuple[str, int]:
    """Where the reply goes: relay agent, else broadcast on 67, else back to the sender on 4011."""
    if request.giaddr != "0.0.0.0":
        return request.giaddr, DHCP_PORT
    if port == DHCP_PORT:
        return BROADCAST, CLIENT_PORT
    return (BROADCAST if src_ip == "0.0.0.0" else src_ip), src_port


@dataclass(frozen=True)
class _Context:
    request: DhcpRequest
    port: int
    client: ClientClass
    device_id: str
    node: Node | None

    def decision(self, reply: DhcpReply | None, reason: str, boot_file: str | None = None) -> Decision:
        return Decision(
            reply=reply,
            client=self.client,
            boot_file=boot_file,
            device_id=self.device_id,
            mac=self.request.chaddr,
            known=self.node is not None,
            reason=reason,
            port=self.port,
        )

    def ignore(self, reason: str) -> Decision:
        return self.decision(None, reason)


def _context(request: DhcpRequest, port: int, inventory: Inventory) -> _Context:
    client = classify(request)
    ids = device_ids(request, client)
    node = next((inventory.nodes[i] for i in ids if i in inventory.nodes), None)
    return _Context(request, port, client, node.device_id if node else ids[0], node)


def _base_reply(request: DhcpRequest, server: ServerView, message_type: int, **fields) -> DhcpReply:
    mid = request.machine_id
    return DhcpReply(
        message_type=message_type,
        xid=request.xid,
        chaddr_raw=request.chaddr_raw,
        server_id=server.address,
        htype=request.htype,
        hlen=request.hlen,
        giaddr=request.giaddr,
        machine_id=mid if mid is not None and len(mid) == 17 else None,
        **fields,
    )


def _loader(inventory: Inventory, firmware: str | None) -> tuple[str | None, str]:
    """The boot file for a firmware class, or None and why not."""
    if firmware is None:
        return None, "client architecture is not served"
    loader = inventory.server.loaders.get(firmware, "")
    if not loader:
        return None, f"no boot loader configured for {firmware}"
    if len(loader.encode("utf-8")) > MAX_FILE or not loader.isascii():
        return None, f"boot loader name for {firmware} is not ASCII of at most {MAX_FILE} bytes"
    return loader, ""


def _ipxe_script(
    ctx: _Context, inventory: Inventory, server: ServerView, firmware: str | None
) -> tuple[str | None, str]:
    """Class C: the script URL for an iPXE client whose firmware class boots an iPXE binary.

    ``(None, "")`` when the rule does not apply (not iPXE, or the loader is not iPXE); ``(None, why)`` when
    the URL cannot be sent.
    """
    if not ctx.client.ipxe or ctx.client.pi or firmware is None:
        return None, ""
    if not is_ipxe_loader(inventory.server.loaders.get(firmware, "")):
        return None, ""
    url = script_url(server.address, server.http_port, ctx.device_id)
    if len(url.encode("ascii", "replace")) > MAX_FILE:
        return None, f"iPXE script URL {url} is longer than {MAX_FILE} bytes"
    return url, ""


def _uefi_mode(inventory: Inventory, node: Node | None) -> str:
    if node is not None:
        return inventory.effective(node).uefi_mode or inventory.server.uefi_mode
    return inventory.defaults.uefi_mode or inventory.server.uefi_mode


def _offer(ctx: _Context, inventory: Inventory, server: ServerView) -> Decision:
    request, client = ctx.request, ctx.client
    script, why = _ipxe_script(ctx, inventory, server, client.firmware)
    if why:
        return ctx.ignore(why)
    if script is not None:
        reply = _base_reply(request, server, OFFER, flags=BROADCAST_FLAG, siaddr=server.address, file=script)
        return ctx.decision(reply, "iPXE: script URL in the offer", script)
    if client.firmware == "bios":
        bios_loader, why = _loader(inventory, "bios")
        if bios_loader is None and not client.pi:
            return ctx.ignore(why)
        menu = arch_zero_menu(server.address, bios=bios_loader is not None)
        reply = _base_reply(request, server, OFFER, flags=BROADCAST_FLAG, pxe=menu)
        return ctx.decision(reply, "arch-0 boot menu", None if client.pi else bios_loader)
    loader, why = _loader(inventory, client.firmware)
    if loader is None:
        return ctx.ignore(f"arch {client.arch}: {why}")
    if _uefi_mode(inventory, ctx.node) == "direct":
        reply = _base_reply(
            request,
            server,
            OFFER,
            flags=BROADCAST_FLAG,
            siaddr=server.address,
            file=loader,
            pxe=direct_boot_options(),
        )
        return ctx.decision(reply, "UEFI direct: boot file in the offer", loader)
    reply = _base_reply(request, server, OFFER, flags=BROADCAST_FLAG, siaddr=server.address)
    return ctx.decision(reply, "UEFI binl: boot file on 4011", loader)


def _ack(ctx: _Context, inventory: Inventory, server: ServerView) -> Decision:
    request, client = ctx.request, ctx.client
    if pxe.BOOT_ITEM in request.pxe:
        if request.boot_item is None:
            return ctx.ignore("malformed boot item (option 43.71)")
        item_type, layer = request.boot_item
        if layer & pxe.BIS_LAYER_BIT:
            return ctx.ignore("PXE BIS (credentials) is not supported")
        if item_type != BOOT_SERVER_TYPE:
            return ctx.ignore(f"boot item type {item_type:#06x} is not offered")
        firmware = client.firmware if client.arch is not None else "bios"
        script, why = _ipxe_script(ctx, inventory, server, firmware)
        loader, why = (script, why) if script is not None or why else _loader(inventory, firmware)
        if loader is None:
            return ctx.ignore(why)
        reply = _base_reply(
            request,
            server,
            ACK,
            flags=request.flags,
            yiaddr=request.ciaddr,
            siaddr=server.address,
            file=loader,
            pxe=pxe.encode([pxe.boot_item(item_type, layer)]),
        )
        return ctx.decision(reply, "boot server ACK" + (": iPXE script URL" if script else ""), loader)
    if client.arch is None:
        return ctx.ignore("no client architecture (option 93)")
    script, why = _ipxe_script(ctx, inventory, server, client.firmware)
    if why:
        return ctx.ignore(why)
    loader, why = (script, "") if script is not None else _loader(inventory, client.firmware)
    if loader is None:
        return ctx.ignore(f"arch {client.arch}: {why}")
    reply = _base_reply(
        request,
        server,
        ACK,
        flags=request.flags,
        ciaddr=request.ciaddr,
        siaddr=server.address,
        sname=server.address,
        file=loader,
    )
    return ctx.decision(reply, "BINL ACK" + (": iPXE script URL" if script else ""), loader)


def decide(request: DhcpRequest, port: int, inventory: Inventory, server: ServerView) -> Decision | None:
    """What to answer to ``request`` received on ``port`` (67 or 4011) of the interface ``server``."""
    if not is_pxe_client(request, inventory.server.pxe_vendor_classes):
        return None
    if port == DHCP_PORT:
        if request.message_type != DISCOVER or request.arch is None:
            return None
    elif port == PXE_PORT:
        if request.message_type not in (REQUEST, INFORM):
            return None
    else:
        return None
    ctx = _context(request, port, inventory)
    if ctx.node is None and inventory.server.unknown == "ignore":
        return ctx.ignore("unknown device (server.unknown is 'ignore')")
    return _offer(ctx, inventory, server) if port == DHCP_PORT else _ack(ctx, inventory, server)
