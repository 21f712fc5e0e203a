"""The probe table fits an 80-column terminal without cutting an id, an address or a kind."""

from __future__ import annotations

import io
import time

from rich.console import Console

from pypxe_homelab.cli.probe import devices_table

DEVICES = [
    {
        "device_id": "01-52-54-00-a0-00-21",
        "mac": "52:54:00:a0:00:21",
        "ip": "192.168.100.200",
        "firmware": "UEFI x64",
        "ipxe": True,
        "last_seen": time.time() - 700,
        "stage": "loader config",
        "boots": 12,
        "suggested": "pypxe-homelab add 01-52-54-00-a0-00-21 --node-address 192.168.100.50/24",
    },
    {
        "device_id": "7092246e",
        "mac": "dc:a6:32:01:02:03",
        "ip": "192.168.100.201",
        "pi": True,
        "pi_model": "pi4",
        "serial": "7092246e",
        "last_seen": time.time() - 7,
        "stage": "firmware",
        "boots": 1,
        "suggested": "pypxe-homelab add 7092246e --node-address 192.168.100.51/24",
    },
]


def test_nothing_is_cut_at_80_columns() -> None:
    buffer = io.StringIO()
    Console(file=buffer, width=80, force_terminal=False).print(devices_table(DEVICES))
    text = buffer.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for word in ("01-52-54-00-a0-00-21", "192.168.100.200", "192.168.100.201", "dc:a6:32:01:02:03"):
        assert word in text
    for word in ("UEFI", "x64", "iPXE", "Raspberry", "Pi 4", "Boots"):
        assert word in text
