"""Readiness for systemd (``Type=notify``): one datagram to ``$NOTIFY_SOCKET``, as sd_notify(3) documents.

The protocol is a single ``send`` of ``KEY=value`` lines on an AF_UNIX datagram socket (a leading ``@`` names
an abstract socket); without ``$NOTIFY_SOCKET`` (not started by systemd) it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket


def notify(*lines: str) -> bool:
    """Send ``lines`` (e.g. ``READY=1``) to systemd; True when a notification socket took them."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto("\n".join(lines).encode(), target)
        return True
    return False
