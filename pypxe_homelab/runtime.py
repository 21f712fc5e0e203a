"""What the running services share: the current inventory (swapped whole on reload), the state store,
the event sink and the address clients are told to use."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pypxe_homelab.config.model import Inventory
from pypxe_homelab.events import EventSink

if TYPE_CHECKING:
    from pypxe_homelab.state.store import StateStore


@dataclass
class Runtime:
    inventory: Inventory
    store: StateStore
    emit: EventSink
    advertise: ipaddress.IPv4Address
    http_port: int

    served: tuple[ipaddress.IPv4Interface, ...] = ()  # the served interfaces' addresses

    def base_url_for(self, client_ip: str | None) -> str:
        """The base URL for one client: ``server.address`` when set, else the address of the served
        interface on the client's subnet (so a multi-homed server hands each LAN its own address)."""
        if self.advertise_fixed or not client_ip:
            return self.base_url
        try:
            ip = ipaddress.IPv4Address(client_ip)
        except ValueError:
            return self.base_url
        for iface in self.served:
            if ip in iface.network:
                return f"http://{iface.ip}:{self.http_port}"
        return self.base_url

    @property
    def advertise_fixed(self) -> bool:
        return self.inventory.server.address is not None

    @property
    def base_url(self) -> str:
        """``http://<server>:<port>`` as clients must use it (an IP literal: firmware has no DNS)."""
        return f"http://{self.advertise}:{self.http_port}"
