"""Names a Pi node uses on iSCSI: its target IQN, its initiator name, and the portal it logs into.

Naming authority: ``pypxe-homelab.home.arpa`` reversed. ``home.arpa`` is the special-use domain set
aside for home networks (RFC 8375), so the names cannot clash with a real organisation's IQNs::

    target     iqn.2024-01.arpa.home.pypxe-homelab:<serial>
    initiator  iqn.2024-01.arpa.home.pypxe-homelab:<serial>:initiator

Both derive from the serial alone, so they stay the same across reloads, restarts and reinstalls.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IQN_BASE = "iqn.2024-01.arpa.home.pypxe-homelab"
ISCSI_PORT = 3260


def target_iqn(serial: str) -> str:
    """The IQN of the target that exports the disk of Pi ``serial`` (8 lower-case hex digits)."""
    return f"{IQN_BASE}:{serial}"


def serial_of_target(iqn: str) -> str | None:
    """The serial in a target IQN made by :func:`target_iqn`, else None."""
    prefix = f"{IQN_BASE}:"
    rest = iqn[len(prefix) :] if iqn.startswith(prefix) else ""
    return rest if len(rest) == 8 and all(c in "0123456789abcdef" for c in rest) else None


def initiator_name(serial: str) -> str:
    """The initiator name Pi ``serial`` logs in with; the target's ACL admits this name only."""
    return f"{IQN_BASE}:{serial}:initiator"


def portal_address(
    served: Sequence[ipaddress.IPv4Interface], node_ip: ipaddress.IPv4Address | None
) -> ipaddress.IPv4Address | None:
    """The address a node logs into: the served interface address on the node's subnet, else the first
    served address (None when nothing is served). tgtd listens on these addresses only."""
    if node_ip is not None:
        for iface in served:
            if node_ip in iface.network:
                return iface.ip
    return served[0].ip if served else None
