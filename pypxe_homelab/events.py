"""What the services saw: one Event per thing that happened to a machine, of one of the kinds defined here.

Each kind is a member of ``Kind`` and its detail fields are one ``TypedDict`` (``DETAIL_FIELDS`` maps every
kind to the names it may carry). Producers build events with the constructors below, which mypy checks against
those TypedDicts; ``Event`` itself refuses an unknown kind or a field its kind does not define, so the event
vocabulary cannot drift between the services that emit and the state, log and web code that consume it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict


class Kind(str, enum.Enum):
    """Every kind of event, by its dotted name (the name is what is stored and shown)."""

    DHCP_OFFER = "dhcp.offer"
    DHCP_ACK = "dhcp.ack"
    DHCP_IGNORED = "dhcp.ignored"
    TFTP_RRQ = "tftp.rrq"
    TFTP_DONE = "tftp.done"
    TFTP_ERROR = "tftp.error"
    TFTP_ABORT = "tftp.abort"
    HTTP_GET = "http.get"
    HTTP_DONE = "http.done"
    HTTP_ERROR = "http.error"
    HTTP_ABORT = "http.abort"
    CLOUDINIT_FETCH = "cloudinit.fetch"
    INSTALL_EVENT = "install.event"
    INSTALL_CALLBACK = "install.callback"
    ISCSI_LOGIN = "iscsi.login"
    ISCSI_LOGOUT = "iscsi.logout"
    NODE_REINSTALL = "node.reinstall"
    DHCP_RIVAL = "dhcp.rival"
    BOOT_DIAGNOSIS = "boot.diagnosis"

    def __str__(self) -> str:
        return self.value

    @property
    def family(self) -> str:
        """``dhcp``, ``tftp``, ``http``, ``cloudinit``, ``install``, ``iscsi``, ``node`` or ``boot``."""
        return self.value.split(".", 1)[0]


DHCP_KINDS = frozenset({Kind.DHCP_OFFER, Kind.DHCP_ACK, Kind.DHCP_IGNORED})
TFTP_KINDS = frozenset({Kind.TFTP_RRQ, Kind.TFTP_DONE, Kind.TFTP_ERROR, Kind.TFTP_ABORT})
HTTP_KINDS = frozenset({Kind.HTTP_GET, Kind.HTTP_DONE, Kind.HTTP_ERROR, Kind.HTTP_ABORT})


# A ProxyDHCP answer (offer/ack) or a PXE request deliberately left unanswered. ``class`` is the firmware class
# name (bios / efi32 / efi64 / arm64 / pi / arch<N>); the functional form allows that key.
DhcpDetail = TypedDict(
    "DhcpDetail",
    {
        "arch": int | None,
        "class": str,
        "firmware": str | None,
        "ipxe": bool,
        "http": bool,
        "pi": bool,
        "file": str | None,
        "xid": int,
        "port": int,
        "vendor_class": str | None,
        "uuid": str | None,
        "nic": str | None,
        "ciaddr": str,
        "interface": str,
        "known": bool,
        "reason": str,
        "serial": str,
    },
    total=False,
)


class TftpDetail(TypedDict, total=False):
    """A TFTP read request and how it ended."""

    path: str | None
    raw: str | None
    options: dict[str, str]
    hint: dict[str, Any] | None
    reason: str
    code: int | None
    bytes: int
    duration: float
    blksize: int
    windowsize: int
    probe: bool
    block: int  # the block a transfer stopped at (tftp.abort)


class HttpDetail(TypedDict, total=False):
    """An HTTP transfer (kernel, initrd, ISO, script, file) and how it ended."""

    path: str
    what: str
    size: int
    method: str
    range: str | None
    agent: str
    status: int
    bytes: int
    duration: float
    rate: int | None
    reason: str


class CloudInitDetail(TypedDict, total=False):
    """A cloud-init seed file served to a node."""

    file: str
    path: str
    bytes: int


class InstallDetail(TypedDict, total=False):
    """A report of the installer's webhook (curtin/Subiquity reporting events)."""

    name: str
    event_type: str
    result: str
    description: str
    level: str
    origin: str
    timestamp: float
    files: list[str]
    progress: float


class CallbackDetail(TypedDict, total=False):
    """The node's own word that its install finished."""

    method: str


class IscsiDetail(TypedDict, total=False):
    """A diskless node's initiator logged in to (or out of) its iSCSI target."""

    target: str
    initiator: str
    address: str


class ReinstallDetail(TypedDict, total=False):
    """A node re-armed for install."""

    generation: int


class RivalDetail(TypedDict, total=False):
    """Another server's PXE answer to this machine, heard on the LAN (never sent to find it)."""

    server: str
    kind: str  # ProxyDHCP / DHCP
    vendor_class: str | None
    file: str | None
    siaddr: str
    xid: int
    interface: str


class DiagnosisDetail(TypedDict, total=False):
    """Why a boot attempt stopped, as the server tells it (once per attempt)."""

    cause: str
    reason: str
    fix: str
    attempt: int


def _names(detail_type: Any) -> frozenset[str]:
    return frozenset(detail_type.__annotations__)


DETAIL_FIELDS: Mapping[Kind, frozenset[str]] = {
    **{k: _names(DhcpDetail) for k in DHCP_KINDS},
    **{k: _names(TftpDetail) for k in TFTP_KINDS},
    **{k: _names(HttpDetail) for k in HTTP_KINDS},
    Kind.CLOUDINIT_FETCH: _names(CloudInitDetail),
    Kind.INSTALL_EVENT: _names(InstallDetail),
    Kind.INSTALL_CALLBACK: _names(CallbackDetail),
    Kind.ISCSI_LOGIN: _names(IscsiDetail),
    Kind.ISCSI_LOGOUT: _names(IscsiDetail),
    Kind.NODE_REINSTALL: _names(ReinstallDetail),
    Kind.DHCP_RIVAL: _names(RivalDetail),
    Kind.BOOT_DIAGNOSIS: _names(DiagnosisDetail),
}
# Added when an event is read back from the store: how often a folded retry happened.
STORED_FIELDS = frozenset({"repeat"})
_ALLOWED: Mapping[Kind, frozenset[str]] = {k: names | STORED_FIELDS for k, names in DETAIL_FIELDS.items()}


@dataclass(frozen=True)
class Event:
    """One observation, e.g. a proxy offer sent, a TFTP file served, an installer progress report.

    ``device_id`` is the inventory id (``01-<mac>`` or a Pi serial) when known; ``mac`` is
    ``aa:bb:cc:dd:ee:ff``; ``detail`` holds the kind's own fields (``DETAIL_FIELDS``), JSON-serialisable.
    """

    kind: Kind
    client: str = ""
    device_id: str | None = None
    mac: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        kind = self.kind
        if type(kind) is not Kind:  # a name read back: ValueError for a kind that is not defined
            kind = Kind(kind)
            object.__setattr__(self, "kind", kind)
        allowed = _ALLOWED[kind]
        if not allowed.issuperset(self.detail):
            unknown = self.detail.keys() - allowed
            raise ValueError(f"event {kind}: fields not defined for this kind: {', '.join(sorted(unknown))}")


EventSink = Callable[[Event], None]


# -- constructors: one per family, checked by mypy against the family's fields ---------------------------


def dhcp_event(kind: Kind, client: str, device_id: str, mac: str, detail: DhcpDetail) -> Event:
    return Event(kind, client, device_id, mac, detail)


def tftp_event(kind: Kind, client: str, device_id: str | None, mac: str | None, detail: TftpDetail) -> Event:
    return Event(kind, client, device_id, mac, detail)


def http_event(kind: Kind, client: str, device_id: str | None, mac: str | None, detail: HttpDetail) -> Event:
    return Event(kind, client, device_id, mac, detail)


def cloud_init_event(client: str, device_id: str, mac: str | None, detail: CloudInitDetail) -> Event:
    return Event(Kind.CLOUDINIT_FETCH, client, device_id, mac, detail)


def install_event(client: str, device_id: str, mac: str | None, detail: InstallDetail) -> Event:
    return Event(Kind.INSTALL_EVENT, client, device_id, mac, detail)


def callback_event(client: str, device_id: str, mac: str | None, detail: CallbackDetail) -> Event:
    return Event(Kind.INSTALL_CALLBACK, client, device_id, mac, detail)


def iscsi_event(kind: Kind, client: str, device_id: str, detail: IscsiDetail) -> Event:
    return Event(kind, client, device_id, None, detail)


def reinstall_event(device_id: str, mac: str | None, generation: int, at: float) -> Event:
    return Event(Kind.NODE_REINSTALL, "", device_id, mac, ReinstallDetail(generation=generation), at)


def rival_event(client: str, device_id: str, mac: str, detail: RivalDetail) -> Event:
    return Event(Kind.DHCP_RIVAL, client, device_id, mac, detail)


def diagnosis_event(device_id: str, mac: str | None, detail: DiagnosisDetail, at: float) -> Event:
    return Event(Kind.BOOT_DIAGNOSIS, "", device_id, mac, detail, at)
