"""Booters for tests: the inventory-backed one over a fixed inventory, and a fake that answers from a table."""

from __future__ import annotations

from dataclasses import dataclass, field

from pypxe_homelab.boot.booter import (
    Decision,
    DhcpVerdict,
    FileAnswer,
    HttpAsk,
    HttpRefusal,
    InventoryBooter,
    StaticEnvironment,
    dhcp_decision,
)
from pypxe_homelab.config.model import Inventory
from pypxe_homelab.protocol.dhcp_codec import DhcpRequest
from pypxe_homelab.protocol.proxydhcp import DhcpAnswer, Ignore, PxeAsk, ServerView


@dataclass(frozen=True)
class _State:
    state: str = "discovered"
    generation: int = 1


@dataclass
class MemoryStates:
    """Install states and the IP → MAC table, in memory."""

    states: dict[str, _State] = field(default_factory=dict)
    macs: dict[str, str] = field(default_factory=dict)
    boot_ips: dict[str, str] = field(default_factory=dict)

    def node_state(self, device_id: str) -> _State:
        return self.states.get(device_id, _State())

    def mac_for_ip(self, ip: str) -> str | None:
        return self.macs.get(ip)

    def install_token(self, device_id: str, generation: int) -> str:
        return f"token-{device_id}-{generation}"

    def boot_address(self, device_id: str) -> str | None:
        return self.boot_ips.get(device_id)


def inventory_booter(
    inventory: Inventory, states: MemoryStates | None = None, base_url: str = "http://10.231.0.3:12345"
) -> InventoryBooter:
    env = StaticEnvironment(inventory, states or MemoryStates(), base_url, inventory.server.http_port)
    return InventoryBooter(lambda: env)


def decide(request: DhcpRequest, port: int, inventory: Inventory, server: ServerView) -> Decision | None:
    """The DHCP decision the server makes for ``request`` with ``inventory``."""
    return dhcp_decision(inventory_booter(inventory), request, port, server)


@dataclass
class FakeBooter:
    """A Booter without any inventory: DHCP answers by firmware class, files from a dict."""

    answers: dict[str, DhcpAnswer] = field(default_factory=dict)  # firmware class name → answer
    files: dict[str, bytes] = field(default_factory=dict)
    classes: tuple[str, ...] = ("PXEClient", "HTTPClient")
    asked: list[PxeAsk] = field(default_factory=list)

    def vendor_classes(self) -> tuple[str, ...]:
        return self.classes

    def dhcp(self, ask: PxeAsk, server: ServerView) -> DhcpVerdict:
        self.asked.append(ask)
        answer = self.answers.get(ask.client.name, Ignore(f"no answer for {ask.client.name}"))
        return DhcpVerdict(answer, ask.device_ids[0], ask.client.name in self.answers)

    def tftp(self, path: str, client_ip: str) -> FileAnswer | None:
        data = self.files.get(path)
        return FileAnswer(data=data) if data is not None else None

    def http(self, ask: HttpAsk) -> FileAnswer | HttpRefusal:
        data = self.files.get(ask.path)
        return FileAnswer(data=data) if data is not None else HttpRefusal(404, f"not found: /{ask.path}")
