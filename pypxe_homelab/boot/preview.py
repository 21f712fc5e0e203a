"""What a machine receives, end to end, asked of the same Booter the services ask (for `render`)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field

from pypxe_homelab.assets.bootloaders import is_ipxe_loader
from pypxe_homelab.boot.autoinstall import TOKEN_PLACEHOLDER
from pypxe_homelab.boot.autoinstall_boot import boot_choice, installer_urls
from pypxe_homelab.boot.booter import (
    Booter,
    Decision,
    FileAnswer,
    HttpAsk,
    InventoryBooter,
    StaticEnvironment,
    dhcp_decision,
)
from pypxe_homelab.boot.ipxe_script import SCRIPT_NAME, script_url
from pypxe_homelab.boot.loader_config import kernel_boot
from pypxe_homelab.boot.pi_boot import SERVED_INITRAMFS
from pypxe_homelab.boot.pi_node import BOOT_TREES
from pypxe_homelab.boot.policy import BootChoice
from pypxe_homelab.config.model import Inventory
from pypxe_homelab.identity import mac_of_device_id, pi_machine_id
from pypxe_homelab.protocol import dhcp_codec
from pypxe_homelab.protocol.client_class import ARCH_FIRMWARE
from pypxe_homelab.protocol.dhcp_codec import DhcpRequest
from pypxe_homelab.protocol.proxydhcp import ServerView

# (label, option 93 arch, vendor class) of the firmware classes a PC can have
FIRMWARE_CLASSES = (
    ("BIOS", 0, "PXEClient:Arch:00000:UNDI:002001"),
    ("UEFI x64", 7, "PXEClient:Arch:00007:UNDI:003000"),
    ("UEFI IA32", 6, "PXEClient:Arch:00006:UNDI:003000"),
    ("UEFI arm64", 11, "PXEClient:Arch:00011:UNDI:003000"),
)
LOADER_TREES = ("bios", "efi64", "efi32")


@dataclass(frozen=True)
class DhcpAnswer:
    firmware: str
    port: int
    answer: str  # one line: what the reply says, or why there is none


@dataclass
class NodePreview:
    device_id: str
    choice: BootChoice
    dhcp: list[DhcpAnswer] = field(default_factory=list)
    loader_configs: dict[str, str] = field(default_factory=dict)
    ipxe_script: tuple[str, str] | None = None  # (URL, text) when an iPXE loader is configured
    urls: list[str] = field(default_factory=list)
    cloud_init: dict[str, str] = field(default_factory=dict)
    pi_files: list[str] = field(default_factory=list)  # the TFTP paths a Raspberry Pi is served
    pi_texts: dict[str, str] = field(default_factory=dict)  # <serial>/config.txt and cmdline.txt as served


def _request(
    mac: str,
    arch: int,
    vendor: str,
    message_type: int,
    boot_item: tuple[int, int] | None,
    ipxe: bool = False,
) -> DhcpRequest:
    raw = bytes.fromhex(mac.replace(":", "")) + bytes(10)
    return DhcpRequest(
        op=1,
        htype=1,
        hlen=6,
        hops=0,
        xid=0x1234,
        secs=0,
        flags=0,
        ciaddr="0.0.0.0",
        yiaddr="0.0.0.0",
        siaddr="0.0.0.0",
        giaddr="0.0.0.0",
        chaddr=mac,
        chaddr_raw=raw,
        message_type=message_type,
        vendor_class=vendor,
        arch=arch,
        arches=(arch,),
        nic=(1, 3, 0),
        machine_id=None,
        user_class=b"iPXE" if ipxe else None,
        has_ipxe_opts=ipxe,
        server_id=None,
        pxe={71: boot_item[0].to_bytes(2, "big") + boot_item[1].to_bytes(2, "big")} if boot_item else {},
        boot_item=boot_item,
    )


def _describe(decision: Decision | None) -> str:
    if decision is None:
        return "no answer (not a PXE request)"
    reply = decision.reply
    if reply is None:
        return f"no answer ({decision.reason})"
    parts = [f"siaddr={reply.siaddr}", f"file={reply.file or '(none)'}"]
    if reply.pxe:
        parts.append(f"option43={reply.pxe.hex(' ')}")
    return " ".join(parts)


def ipxe_loaders(inventory: Inventory) -> dict[str, str]:
    """Firmware class → loader, for the classes whose configured loader is an iPXE binary."""
    return {fw: loader for fw, loader in inventory.server.loaders.items() if is_ipxe_loader(loader)}


@dataclass(frozen=True)
class _State:
    state: str
    generation: int


@dataclass(frozen=True)
class _FixedStates:
    """The install state ``render`` was asked about, for every lookup the booter makes."""

    state: str | None
    generation: int

    def node_state(self, device_id: str) -> _State:
        return _State(self.state or "discovered", self.generation)

    def mac_for_ip(self, ip: str) -> str | None:
        return None

    def install_token(self, device_id: str, generation: int) -> str:
        return TOKEN_PLACEHOLDER  # the served user-data holds the real one

    def boot_address(self, device_id: str) -> str | None:
        return None


def dhcp_answers(booter: Booter, inventory: Inventory, mac: str, server: ServerView) -> list[DhcpAnswer]:
    """The proxy offer and the port-4011 answer each firmware class would get (and, for classes that boot
    iPXE, what iPXE itself gets when it asks next)."""
    answers = []
    ipxe_classes = ipxe_loaders(inventory)
    for label, arch, vendor in FIRMWARE_CLASSES:
        variants = [(label, False)]
        if ARCH_FIRMWARE.get(arch) in ipxe_classes:
            variants.append((f"iPXE {label.removeprefix('UEFI ')}", True))
        for name, ipxe in variants:
            offer = dhcp_decision(
                booter, _request(mac, arch, vendor, dhcp_codec.DISCOVER, None, ipxe), 67, server
            )
            answers.append(DhcpAnswer(name, 67, _describe(offer)))
            if offer is not None and offer.reply is not None and offer.reply.file.startswith("http://"):
                continue  # the script URL came in the offer: iPXE does not ask port 4011
            item = (0x8000, 0) if arch == 0 else None
            ack = dhcp_decision(
                booter, _request(mac, arch, vendor, dhcp_codec.REQUEST, item, ipxe), 4011, server
            )
            answers.append(DhcpAnswer(name, 4011, _describe(ack)))
    return answers


PI_PREVIEW_MAC = "dc:a6:32:00:00:01"  # a Raspberry Pi OUI: the device id of a Pi carries no MAC


def pi_dhcp_answer(booter: Booter, serial: str, server: ServerView) -> list[DhcpAnswer]:
    """The offer a Pi 4/5 bootloader gets (arch 0, its serial in option 97)."""
    request = dataclasses.replace(
        _request(PI_PREVIEW_MAC, 0, "PXEClient:Arch:00000:UNDI:002001", dhcp_codec.DISCOVER, None),
        machine_id=pi_machine_id(serial),
    )
    return [DhcpAnswer("Raspberry Pi", 67, _describe(dhcp_decision(booter, request, 67, server)))]


def _pi_preview(
    result: NodePreview, booter: Booter, inventory: Inventory, serial: str, base_url: str, generation: int
) -> None:
    """A Pi's TFTP tree, its rendered config.txt and cmdline.txt, and its cloud-init seed, as served."""
    node = inventory.effective(inventory.nodes[serial])
    tree = BOOT_TREES.lookup(inventory, node.os or "")
    if tree is not None:
        result.pi_files = [f"{serial}/{name}" for name in sorted(tree.files)]
        if tree.served_initramfs is not None:
            result.pi_files.append(f"{serial}/{SERVED_INITRAMFS}")
        for name in ("config.txt", "cmdline.txt"):
            answer = booter.tftp(f"{serial}/{name}", "")
            if answer is not None:
                result.pi_texts[f"{serial}/{name}"] = _text(answer)
    for name in ("user-data", "meta-data", "network-config"):
        seed = booter.http(HttpAsk(f"{serial}/cloud-init/{name}", ""))
        if isinstance(seed, FileAnswer):
            result.cloud_init[name] = _text(seed)


def _text(answer: object) -> str:
    assert isinstance(answer, FileAnswer) and answer.data is not None
    return answer.data.decode()


def preview(
    inventory: Inventory, device_id: str, install_state: str | None, generation: int, base_url: str
) -> NodePreview:
    """Everything ``device_id`` gets from this server right now, as the booter answers it."""
    choice = boot_choice(inventory, device_id, install_state)
    result = NodePreview(device_id, choice)
    host = re.sub(r"^https?://", "", base_url).split(":")[0].split("/")[0]
    server = ServerView(address=str(ipaddress.IPv4Address(host)))
    environment = StaticEnvironment(
        inventory, _FixedStates(install_state, generation), base_url, inventory.server.http_port
    )
    booter = InventoryBooter(lambda: environment)
    mac = mac_of_device_id(device_id)
    if mac:
        result.dhcp = dhcp_answers(booter, inventory, mac, server)
    node = inventory.node(device_id)
    if node is not None and node.is_pi:
        result.dhcp = pi_dhcp_answer(booter, device_id, server)
        _pi_preview(result, booter, inventory, device_id, base_url, generation)
        return result
    for tree in LOADER_TREES:
        prefix = "" if tree == "bios" else f"{tree}/"
        answer = booter.tftp(f"{prefix}pxelinux.cfg/{device_id}", "")
        if answer is not None:  # PXELINUX names its config by MAC: not for a Raspberry Pi
            result.loader_configs[tree] = _text(answer)
    if ipxe_loaders(inventory):
        url = script_url(server.address, inventory.server.http_port, device_id)
        result.ipxe_script = (url, _text(booter.http(HttpAsk(f"{device_id}/{SCRIPT_NAME}", ""))))
    if choice.action in ("boot", "install"):
        kb = kernel_boot(choice, base_url, inventory)
        result.urls = [kb.kernel, *kb.initrd]
    if choice.action == "install" and choice.node is not None:
        result.urls += installer_urls(inventory, choice.node, base_url)
        for name in ("user-data", "meta-data"):
            result.cloud_init[name] = _text(booter.http(HttpAsk(f"{device_id}/cloud-init/{name}", "")))
    return result
