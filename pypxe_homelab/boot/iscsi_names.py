"""iSCSI names of a Pi node: its target (one per node) and the initiator name its initramfs logs in with.

Naming authority ``pypxe-homelab.home.arpa`` reversed (``home.arpa`` is set aside for home networks, RFC
8375)::

    target     iqn.2024-01.arpa.home.pypxe-homelab:<serial>
    initiator  iqn.2024-01.arpa.home.pypxe-homelab:<serial>:initiator
"""

from __future__ import annotations

IQN_BASE = "iqn.2024-01.arpa.home.pypxe-homelab"
ISCSI_PORT = 3260


def target_iqn(serial: str) -> str:
    """The IQN of the target that exports the disk of Pi ``serial``."""
    return f"{IQN_BASE}:{serial}"


def initiator_name(serial: str) -> str:
    """The initiator name Pi ``serial`` logs in with; the target's ACL admits this name only."""
    return f"{IQN_BASE}:{serial}:initiator"
