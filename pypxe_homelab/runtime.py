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

    @property
    def base_url(self) -> str:
        """``http://<server>:<port>`` as clients must use it (an IP literal: firmware has no DNS)."""
        return f"http://{self.advertise}:{self.http_port}"
