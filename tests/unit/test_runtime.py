"""The address clients are told to use: one per served LAN, unless server.address pins it."""

from __future__ import annotations

import ipaddress

from pypxe_homelab.config.model import Inventory, ServerSettings
from pypxe_homelab.runtime import Runtime

LANS = (ipaddress.IPv4Interface("192.168.1.2/24"), ipaddress.IPv4Interface("10.20.0.2/16"))


def _runtime(address: str | None = None) -> Runtime:
    settings = ServerSettings(address=ipaddress.IPv4Address(address) if address else None)
    advertise = settings.address or LANS[0].ip
    return Runtime(Inventory(server=settings), None, lambda event: None, advertise, 12345, LANS)  # type: ignore[arg-type]


def test_each_lan_gets_the_address_of_its_own_interface() -> None:
    runtime = _runtime()
    assert runtime.base_url_for("192.168.1.77") == "http://192.168.1.2:12345"
    assert runtime.base_url_for("10.20.3.4") == "http://10.20.0.2:12345"


def test_clients_elsewhere_and_unknown_clients_get_the_first_address() -> None:
    runtime = _runtime()
    assert runtime.base_url_for("172.16.0.9") == "http://192.168.1.2:12345"  # behind a relay
    assert runtime.base_url_for(None) == runtime.base_url_for("garbage") == "http://192.168.1.2:12345"


def test_server_address_pins_every_url() -> None:
    runtime = _runtime("192.168.1.10")
    assert runtime.base_url_for("10.20.3.4") == "http://192.168.1.10:12345"
