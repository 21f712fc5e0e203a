"""What the services saw: one Event per thing that happened to a machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One observation, e.g. a proxy offer sent, a TFTP file served, an installer progress report.

    kind is a dotted name: ``dhcp.offer``, ``dhcp.ack``, ``tftp.rrq``, ``tftp.done``, ``tftp.error``,
    ``http.get``, ``http.done``, ``cloudinit.fetch``, ``install.event``, ``install.callback``.
    device_id is the inventory id (``01-<mac>`` or a Pi serial) when known; mac is ``aa:bb:cc:dd:ee:ff``.
    detail holds the kind's own facts (path, size, arch, firmware class, …); it must be JSON-serialisable.
    """

    kind: str
    client: str = ""
    device_id: str | None = None
    mac: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


EventSink = Callable[[Event], None]


def discard(event: Event) -> None:
    """An EventSink that drops everything (for tests and one-shot commands)."""
