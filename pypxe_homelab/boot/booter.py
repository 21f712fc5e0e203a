"""The policy seam: one Booter answers every request a machine makes (DHCP on 67/4011, a TFTP path, an HTTP
path) with a typed answer, and the services only turn answers into bytes.

``Booter`` is the interface; ``InventoryBooter`` is the implementation backed by config.yaml and the install
state, and holds every rule of who gets what: the loader per firmware class, unknown machines, install once,
a node's kernel, installer or local boot, generated loader configs, iPXE scripts and cloud-init. A new boot
style is one answer variant (if the wire needs a new shape) plus one rule here; see docs/design.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from pypxe_homelab.assets.bootloaders import is_ipxe_loader
from pypxe_homelab.assets.images import image_chain
from pypxe_homelab.boot.autoinstall import SEED_FILES, detect_host_network
from pypxe_homelab.boot.autoinstall_boot import boot_choice, cloud_init_file, node_file
from pypxe_homelab.boot.grub_config import (
    grub_config_request,
    http_alias_request,
    render_grub_config,
    render_grub_entry,
)
from pypxe_homelab.boot.ipxe_script import SCRIPT_NAME, render_ipxe_script, script_url
from pypxe_homelab.boot.loader_config import render_loader_config
from pypxe_homelab.boot.pi_boot import pi_file
from pypxe_homelab.boot.pi_node import BOOT_TREES
from pypxe_homelab.boot.policy import BootChoice
from pypxe_homelab.config.model import Inventory, Node
from pypxe_homelab.identity import (
    config_name_device_id,
    device_id_of_mac,
    loader_config_request,
    mac_of_device_id,
    split_node_path,
)
from pypxe_homelab.protocol.client_class import HTTP_VENDOR_CLASS, ClientClass
from pypxe_homelab.protocol.dhcp_codec import DhcpReply, DhcpRequest
from pypxe_homelab.protocol.proxydhcp import (
    BinlOffer,
    BootFile,
    DhcpAnswer,
    DirectOffer,
    Ignore,
    Menu,
    PxeAsk,
    ServerView,
    UrlOffer,
    answer_file,
    answer_reason,
    ask_problem,
    file_field_problem,
    read_ask,
    reply_for,
)
from pypxe_homelab.rootfiles import static_entry, static_file

HTTP_BOOTFILES = "bootfiles"  # /bootfiles/<path>: a loader of tftproot, for UEFI HTTP Boot
UBUNTU_CHAIN = (
    "ubuntu-sb"  # TFTP ubuntu-sb/<image>/{shimx64,grubx64,mmx64}.efi: the chain of a node's own ISO
)
_BOOTFILES_PREFIX = HTTP_BOOTFILES + "/"
HTTP_IPXE_WINDOW = 300.0  # seconds an HTTP-booted iPXE is expected to ask for its script

# What a served file is, for the timeline and the install lifecycle.
KERNEL_NAMES = ("linux", "vmlinuz", "kernel", "bzimage")

log = logging.getLogger("pypxe_homelab.boot")


class NodeStatus(Protocol):
    """A node's install state as the booter needs it."""

    @property
    def state(self) -> str: ...

    @property
    def generation(self) -> int: ...


class NodeStates(Protocol):
    """What the booter reads of the state store: install state, and the MAC last seen behind an address."""

    def node_state(self, device_id: str) -> NodeStatus: ...

    def mac_for_ip(self, ip: str) -> str | None: ...

    def install_token(self, device_id: str, generation: int) -> str: ...

    def boot_address(self, device_id: str) -> str | None: ...


class BootEnvironment(Protocol):
    """What the booter reads at each request: the current inventory, the install state and our URLs."""

    @property
    def inventory(self) -> Inventory: ...

    @property
    def store(self) -> NodeStates: ...

    @property
    def http_port(self) -> int: ...

    def base_url_for(self, client_ip: str | None) -> str: ...


# -- answers for TFTP and HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileAnswer:
    """A file to send: generated ``data`` or a real file at ``path`` (exactly one), what it is, and for whom."""

    data: bytes | None = None
    path: Path | None = None
    what: str = "file"  # loader / config / kernel / initrd / iso / cloud-init / file
    device_id: str | None = None
    mac: str | None = None
    # what stat said of ``path`` as it was found, when known (the HTTP service then need not ask again)
    stat: os.stat_result | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.data is None) == (self.path is None):
            raise ValueError("FileAnswer needs exactly one of data or path")


@dataclass(frozen=True)
class HttpRefusal:
    """No file for this HTTP request: the status to answer and why (for the client and the log)."""

    status: int
    reason: str
    device_id: str | None = None
    mac: str | None = None


@dataclass(frozen=True)
class HttpAsk:
    """An HTTP GET/HEAD: the path without its leading ``/``, the client address and PXELINUX's BOOTIF cookie."""

    path: str
    client_ip: str
    bootif: str | None = None


@dataclass(frozen=True)
class DhcpVerdict:
    """The policy's answer to one PXE ask, and the device id it took the machine for."""

    answer: DhcpAnswer
    device_id: str
    known: bool
    delay: float = 0.0  # seconds to hold the reply back (a firmware quirk setting, offers only)


class Booter(Protocol):
    """What every service asks; see the module docstring."""

    def vendor_classes(self) -> tuple[str, ...]:
        """The option-60 prefixes answered (PXEClient, HTTPClient, …)."""
        ...

    def dhcp(self, ask: PxeAsk, server: ServerView) -> DhcpVerdict: ...

    def tftp(self, path: str, client_ip: str) -> FileAnswer | None:
        """The file for a normalised TFTP path, or None (not found); PathRefused for a forbidden one."""
        ...

    def http(self, ask: HttpAsk) -> FileAnswer | HttpRefusal: ...


# -- DHCP: mechanism and policy put together -----------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The outcome for one PXE request. ``reply`` None means: a PXE client we chose not to answer."""

    ask: PxeAsk
    verdict: DhcpVerdict
    reply: DhcpReply | None
    reason: str

    @property
    def kind(self) -> str:
        """'offer', 'ack' or 'ignored'."""
        if self.reply is None:
            return "ignored"
        return "offer" if self.ask.stage == "discover" else "ack"

    @property
    def client(self) -> ClientClass:
        return self.ask.client

    @property
    def port(self) -> int:
        return self.ask.port

    @property
    def mac(self) -> str:
        return self.ask.mac

    @property
    def device_id(self) -> str:
        return self.verdict.device_id

    @property
    def known(self) -> bool:
        return self.verdict.known

    @property
    def answer(self) -> DhcpAnswer:
        return self.verdict.answer

    @property
    def boot_file(self) -> str | None:
        return answer_file(self.verdict.answer)

    @property
    def delay(self) -> float:
        """Seconds to wait before sending the reply (``dhcp_reply_delay``)."""
        return self.verdict.delay if self.reply is not None else 0.0

    def silenced(self, reason: str) -> Decision:
        """This decision, but staying silent for ``reason``."""
        return replace(self, verdict=replace(self.verdict, answer=Ignore(reason)), reply=None, reason=reason)


def dhcp_decision(booter: Booter, request: DhcpRequest, port: int, server: ServerView) -> Decision | None:
    """Read the ask, let ``booter`` answer it, and build the reply: what the DHCP service and ``render`` do.

    None for traffic that is none of our business; an ignoring Decision for a PXE client we stay silent to.
    """
    ask = read_ask(request, port, booter.vendor_classes())
    if ask is None:
        return None
    verdict = booter.dhcp(ask, server)
    if not isinstance(verdict.answer, Ignore) and (problem := ask_problem(ask)) is not None:
        verdict = replace(verdict, answer=problem)
    try:
        reply = reply_for(ask, verdict.answer, server)
    except ValueError as exc:
        verdict = replace(verdict, answer=Ignore(str(exc)))
        reply = None
    return Decision(ask, verdict, reply, answer_reason(ask, verdict.answer))


# -- the inventory-backed policy --------------------------------------------------------------------------------


class InventoryBooter:
    """Every boot rule, read against the current inventory and install state at each request."""

    def __init__(self, environment: Callable[[], BootEnvironment]) -> None:
        self._env = environment
        # MAC → when it was sent an iPXE binary through UEFI HTTP Boot: that iPXE then gets its script
        self._http_ipxe: dict[str, float] = {}

    # -- DHCP -------------------------------------------------------------------------------------------

    def vendor_classes(self) -> tuple[str, ...]:
        return self._env().inventory.server.pxe_vendor_classes

    def dhcp(self, ask: PxeAsk, server: ServerView) -> DhcpVerdict:
        env = self._env()
        inventory = env.inventory
        node = next((inventory.nodes[i] for i in ask.device_ids if i in inventory.nodes), None)
        device_id = node.device_id if node else ask.device_ids[0]

        def verdict(answer: DhcpAnswer) -> DhcpVerdict:
            delay = inventory.reply_delay(node) if ask.stage == "discover" else 0.0
            return DhcpVerdict(answer, device_id, node is not None, delay)

        if node is None and inventory.server.unknown == "ignore":
            return verdict(Ignore("unknown device (server.unknown is 'ignore')"))
        if ask.client.http:
            return verdict(self._http_boot(ask, inventory, server, env.http_port, node))
        if ask.client.uefi and not ask.client.ipxe and _uefi_mode(inventory, node) == "http":
            return verdict(Ignore("uefi_mode http: this machine boots through UEFI HTTP Boot, not PXE"))
        script = self._ipxe_script(ask, inventory, server, env.http_port, device_id, node)
        if script is not None:
            return verdict(script)
        if ask.stage == "discover":
            return verdict(self._offer(ask, inventory, node))
        loader, why = _loader(inventory, ask.firmware, node)
        if loader is None:
            return verdict(Ignore(why if ask.stage == "boot-server" else f"arch {ask.client.arch}: {why}"))
        return verdict(BootFile(loader))

    def _offer(self, ask: PxeAsk, inventory: Inventory, node: Node | None) -> DhcpAnswer:
        client = ask.client
        if client.firmware == "bios":
            bios_loader, why = _loader(inventory, "bios", node)
            if bios_loader is None and not client.pi:
                return Ignore(why)
            return Menu(bios_server=bios_loader is not None, boot_file=None if client.pi else bios_loader)
        loader, why = _loader(inventory, client.firmware, node)
        if loader is None:
            return Ignore(f"arch {client.arch}: {why}")
        if _uefi_mode(inventory, node) == "direct":
            return DirectOffer(loader)
        return BinlOffer(loader)

    def _http_boot(
        self, ask: PxeAsk, inventory: Inventory, server: ServerView, http_port: int, node: Node | None
    ) -> DhcpAnswer:
        """UEFI HTTP Boot (vendor class HTTPClient): an absolute URL to the class's HTTP Boot loader.

        The loader is iPXE, which then asks for the machine's own script (boot, install, local disk or the
        unknown-machine screen), so an unknown machine is never installed. A Secure Boot machine is only sent
        a signed iPXE chain (Debian's signed GRUB has no HTTP client).
        """
        if ask.stage != "discover":
            return Ignore("UEFI HTTP Boot asks on port 67 only")
        firmware = ask.firmware
        if firmware is None:
            return Ignore(f"arch {ask.client.arch}: client architecture is not served")
        if inventory.secure_boot(node):
            loader = inventory.server.secure_boot_loaders.get(firmware, "")
            if not is_ipxe_loader(loader):
                return Ignore(
                    f"HTTP Boot with Secure Boot needs iPXE's signed chain in server.secure_boot_loaders.{firmware}"
                )
        else:
            loader = inventory.server.http_boot_loaders.get(firmware, "")
        if not loader:
            return Ignore(f"no HTTP Boot loader configured for {firmware} (server.http_boot_loaders)")
        url = f"http://{server.address}:{http_port}/{HTTP_BOOTFILES}/{loader}"
        if problem := file_field_problem(url):
            return Ignore(problem)
        if is_ipxe_loader(loader):
            self._http_ipxe[ask.mac] = time.monotonic()
        return UrlOffer(url, HTTP_VENDOR_CLASS)

    def _http_booted_ipxe(self, mac: str) -> bool:
        """Whether this MAC got an iPXE binary through HTTP Boot in the last few minutes."""
        sent = self._http_ipxe.get(mac)
        if sent is None:
            return False
        if time.monotonic() - sent > HTTP_IPXE_WINDOW:
            del self._http_ipxe[mac]
            return False
        return True

    def _ipxe_script(
        self,
        ask: PxeAsk,
        inventory: Inventory,
        server: ServerView,
        http_port: int,
        device_id: str,
        node: Node | None,
    ) -> DhcpAnswer | None:
        """iPXE asking for a firmware class whose loader is iPXE: its script URL (no chain-load loop)."""
        client = ask.client
        firmware = ask.firmware
        if not client.ipxe or client.pi or firmware is None:
            return None
        if not is_ipxe_loader(inventory.loader(firmware, node)) and not self._http_booted_ipxe(ask.mac):
            return None
        url = script_url(server.address, http_port, device_id)
        if file_field_problem(url):
            return Ignore(f"iPXE script URL {url} is longer than 127 bytes")
        return UrlOffer(url) if ask.stage == "discover" else BootFile(url)

    # -- TFTP -------------------------------------------------------------------------------------------

    def tftp(self, path: str, client_ip: str) -> FileAnswer | None:
        env = self._env()
        request = loader_config_request(path)
        if request is not None:
            tree, name = request
            serve, device_id = _config_device_id(name, client_ip, env.store)
            if not serve:
                return None
            state = env.store.node_state(device_id).state if device_id else None
            choice = boot_choice(env.inventory, device_id, state)
            if choice.action == "install" and not config_name_device_id(name):
                # `default` names no machine: the one it maps to is only known by its address, which another
                # machine can take over, so it never gets an installer (PXELINUX asks 01-<mac> first anyway)
                choice = BootChoice(
                    "local",
                    device_id,
                    choice.node,
                    "an installer is only served for pxelinux.cfg/01-<mac>, the name that says which machine asks",
                )
            text = render_loader_config(
                choice,
                tree=tree,
                base_url=env.base_url_for(client_ip),
                inventory=env.inventory,
                config_name=name,
                client_ip=client_ip,
            )
            return FileAnswer(data=text.encode(), what="config", device_id=device_id)
        inventory = env.inventory
        pi = pi_file(
            inventory,
            path,
            env.base_url_for(client_ip),
            detect_host_network(),
            lambda name: BOOT_TREES.lookup(inventory, name),
        )
        if pi is not None:
            return FileAnswer(data=pi.data, path=pi.path, what=pi.what, device_id=pi.device_id)
        grub = self._grub_file(path, client_ip, env)
        if grub is not None:
            return grub
        chain = _ubuntu_chain_file(inventory, path)
        if chain is not None:
            return FileAnswer(path=chain, what="loader")
        found = static_file(env.inventory.paths.tftproot, path)
        return FileAnswer(path=found, what=file_kind(path, "loader")) if found is not None else None

    @staticmethod
    def _grub_file(path: str, client_ip: str, env: BootEnvironment) -> FileAnswer | None:
        """Signed GRUB's files (Secure Boot chain): its config, the machine's config by MAC, and kernels and
        initrds over TFTP (``grub/http/<path>`` is what ``GET /<path>`` serves; GRUB has no HTTP)."""
        request = grub_config_request(path)
        if request == "entry":
            return FileAnswer(data=render_grub_entry().encode(), what="config")
        if request is not None:
            choice = boot_choice(env.inventory, request, env.store.node_state(request).state)
            text = render_grub_config(
                choice, base_url=env.base_url_for(client_ip), inventory=env.inventory, client_ip=client_ip
            )
            return FileAnswer(
                data=text.encode(), what="config", device_id=request, mac=mac_of_device_id(request)
            )
        alias = http_alias_request(path)
        if alias is None:
            return None
        scoped = split_node_path(alias)
        found = None
        if scoped is not None and env.inventory.node(scoped[0]) is not None:
            found = node_file(env.inventory, scoped[0], scoped[1])
        found = found or static_file(env.inventory.paths.httproot, alias)
        return FileAnswer(path=found, what=file_kind(alias)) if found is not None else None

    # -- HTTP -------------------------------------------------------------------------------------------

    def http(self, ask: HttpAsk) -> FileAnswer | HttpRefusal:
        env = self._env()
        inventory = env.inventory
        if ask.path.startswith(_BOOTFILES_PREFIX):  # UEFI HTTP Boot: loaders from tftproot
            rel = ask.path.removeprefix(_BOOTFILES_PREFIX)
            mac = env.store.mac_for_ip(ask.client_ip) if ask.client_ip else None
            who = device_id_of_mac(mac) if mac else None
            try:
                entry = static_entry(inventory.paths.tftproot, rel)
            except ValueError:
                entry = None
            if entry is None:
                return HttpRefusal(404, f"not found: /{ask.path}", who, mac)
            return FileAnswer(path=entry[0], what="loader", device_id=who, mac=mac, stat=entry[1])
        scoped = split_node_path(ask.path)
        if scoped is not None:
            device_id, rest = scoped
            mac = mac_of_device_id(device_id)
            node = inventory.node(device_id)
            if rest.startswith("cloud-init/") and rest.removeprefix("cloud-init/") in SEED_FILES:
                if node is None:
                    return HttpRefusal(404, f"{device_id} is not in the inventory", device_id, mac)
                booted = env.store.boot_address(device_id)
                if ask.client_ip and ask.client_ip != booted:
                    # the seed holds the install token and the node's settings: only for the machine that
                    # network-booted as this node in its current boot (not tied to it: no record changes)
                    log.warning(
                        "%s: refused /%s to %s: only the address that network-booted as this node gets it (%s)",
                        device_id,
                        ask.path,
                        ask.client_ip,
                        booted or "none in its current boot",
                    )
                    return HttpRefusal(
                        403,
                        f"only the address that network-booted as {device_id} in its current boot gets its seed",
                        None,
                        None,
                    )
                generation = env.store.node_state(device_id).generation
                body = cloud_init_file(
                    inventory,
                    node,
                    rest.removeprefix("cloud-init/"),
                    env.base_url_for(ask.client_ip),
                    generation,
                    env.store.install_token(device_id, generation),
                )
                return FileAnswer(data=body.encode(), what="cloud-init", device_id=device_id, mac=mac)
            if rest == SCRIPT_NAME:
                state = env.store.node_state(device_id).state
                choice = boot_choice(inventory, device_id, state)
                body = render_ipxe_script(
                    choice,
                    base_url=env.base_url_for(ask.client_ip),
                    inventory=inventory,
                    client_ip=ask.client_ip,
                )
                return FileAnswer(data=body.encode(), what="config", device_id=device_id, mac=mac)
            if node is not None and (found := node_file(inventory, device_id, rest)) is not None:
                return FileAnswer(path=found, what=file_kind(rest), device_id=device_id, mac=mac)
        registered = scoped if scoped is not None and inventory.node(scoped[0]) is not None else None
        requester, requester_mac = self._requester(ask, registered, env.store)
        try:
            entry = static_entry(inventory.paths.httproot, ask.path)
        except ValueError:  # PathRefused: an unsafe name is simply not there
            entry = None
        if entry is None:
            # a 404 outside a node's own paths is anybody's browser (/favicon.ico, /robots.txt): tied to no
            # machine, it creates no device record and moves no node
            if scoped is None:
                return HttpRefusal(404, f"not found: /{ask.path}", None, None)
            return HttpRefusal(404, f"not found: /{ask.path}", requester, requester_mac)
        return FileAnswer(
            path=entry[0], what=file_kind(ask.path), device_id=requester, mac=requester_mac, stat=entry[1]
        )

    @staticmethod
    def _requester(
        ask: HttpAsk, scoped: tuple[str, str] | None, store: NodeStates
    ) -> tuple[str | None, str | None]:
        """Device id and MAC of the requester: from the URL of a registered node, PXELINUX's BOOTIF cookie,
        or its IP."""
        if scoped is not None:
            return scoped[0], mac_of_device_id(scoped[0])
        bootif = config_name_device_id(ask.bootif or "")
        if bootif:
            return bootif, mac_of_device_id(bootif)
        mac = store.mac_for_ip(ask.client_ip) if ask.client_ip else None
        return (device_id_of_mac(mac), mac) if mac else (None, None)


def loaders_in_use(inventory: Inventory, *, optional: bool = True) -> dict[str, str]:
    """Every boot file the inventory can offer: ``server.loaders`` and, when a machine (or the default)
    enforces Secure Boot, ``server.secure_boot_loaders`` (keys ``<class>``, ``secure_boot/<class>``,
    ``http_boot/<class>``).

    ``optional=False`` leaves out what the server can start without (the arm64 class and the UEFI HTTP Boot
    loaders): machines of those kinds are then not served, and the server says so at start.
    """
    found = dict(inventory.server.loaders)
    if inventory.defaults.secure_boot or any(n.secure_boot for n in inventory.nodes.values()):
        found.update({f"secure_boot/{k}": v for k, v in inventory.server.secure_boot_loaders.items()})
    if optional:
        return {**found, **{f"http_boot/{k}": v for k, v in inventory.server.http_boot_loaders.items()}}
    return {k: v for k, v in found.items() if k.rsplit("/", 1)[-1] != "arm64"}


def file_kind(path: str, default: str = "file") -> str:
    """What a served path fetches, for the timeline: iso, initrd, kernel, or ``default``."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(".iso"):
        return "iso"
    if "initrd" in name or "initramfs" in name or name.endswith((".cpio", ".cpio.gz")):
        return "initrd"
    if name in KERNEL_NAMES or name.startswith(("vmlinuz", "linux")):
        return "kernel"
    return default


def ubuntu_chain_loader(inventory: Inventory, firmware: str | None, node: Node | None) -> str | None:
    """``ubuntu-sb/<image>/shimx64.efi`` for an x64 Secure Boot node that installs an Ubuntu image whose ISO
    carried Ubuntu's own shim and signed GRUB; None for every other machine (they keep
    ``server.secure_boot_loaders``: Debian's chain, which does not boot Canonical-signed kernels)."""
    if firmware != "efi64" or node is None or node.is_pi or node.boot is not None:
        return None
    if not inventory.secure_boot(node):
        return None
    image = inventory.effective(node).os
    if not image or image_chain(inventory.paths.httproot, image) is None:
        return None
    return f"{UBUNTU_CHAIN}/{image}/shimx64.efi"


def _ubuntu_chain_file(inventory: Inventory, path: str) -> Path | None:
    """The file of TFTP path ``ubuntu-sb/<image>/<name>``: that image's shim, GRUB or MokManager."""
    parts = path.split("/")
    if len(parts) != 3 or parts[0] != UBUNTU_CHAIN:
        return None
    chain = image_chain(inventory.paths.httproot, parts[1])
    return chain.get(parts[2]) if chain else None


def _loader(inventory: Inventory, firmware: str | None, node: Node | None) -> tuple[str | None, str]:
    """The boot file for a firmware class (the signed one for a Secure Boot machine; an Ubuntu node's own
    chain, see ``ubuntu_chain_loader``), or None and why not."""
    if firmware is None:
        return None, "client architecture is not served"
    loader = ubuntu_chain_loader(inventory, firmware, node) or inventory.loader(firmware, node)
    if not loader:
        if firmware != "bios" and inventory.secure_boot(node):
            return None, f"no signed boot loader configured for {firmware} (server.secure_boot_loaders)"
        return None, f"no boot loader configured for {firmware}"
    if problem := file_field_problem(loader):
        return None, f"boot loader name for {firmware}: {problem}"
    return loader, ""


def _uefi_mode(inventory: Inventory, node: Node | None) -> str:
    if node is not None:
        return inventory.effective(node).uefi_mode or inventory.server.uefi_mode
    return inventory.defaults.uefi_mode or inventory.server.uefi_mode


def _config_device_id(name: str, client_ip: str, store: NodeStates) -> tuple[bool, str | None]:
    """(serve it?, device id) for ``pxelinux.cfg/<name>``.

    ``01-<mac>`` is always answered, so PXELINUX never needs its later candidates; UUID and hex-IP names
    get "not found" (PXELINUX moves on to ``01-<mac>``); ``default`` is answered for the machine its IP
    maps to, for loaders that skip the MAC name.
    """
    stated = config_name_device_id(name)
    if stated:
        return True, stated
    if name.lower() == "default":
        mac = store.mac_for_ip(client_ip)
        return True, device_id_of_mac(mac) if mac else None
    return False, None


@dataclass
class StaticEnvironment:
    """A BootEnvironment over a fixed inventory and state (for ``render``, ``validate`` and tests)."""

    inventory: Inventory
    store: NodeStates
    base_url: str
    http_port: int

    def base_url_for(self, client_ip: str | None) -> str:
        return self.base_url
