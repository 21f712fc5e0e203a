"""Why did it not boot: one diagnosis per boot attempt from the server's own observations."""

from __future__ import annotations

import pytest

from pypxe_homelab.events import Event
from pypxe_homelab.protocol.dhcp_codec import BOOTREPLY, OFFER
from pypxe_homelab.protocol.rival import rival_offer
from pypxe_homelab.state.diagnosis import Machine, diagnose
from pypxe_homelab.state.timeline import TimelineEntry

ID = "01-52-54-00-a0-00-10"
MACHINE = Machine(ID, registered=True, server="10.0.0.3")


def entries(*events: tuple[str, dict] | tuple[str, dict, int]) -> list[TimelineEntry]:
    out = []
    for n, item in enumerate(events):
        kind, detail, repeat = (*item, 1) if len(item) == 2 else item  # type: ignore[misc]
        out.append(TimelineEntry(n, Event(kind, "10.0.0.50:1000", ID, None, detail, 1000.0 + n), 1, repeat))
    return out


def offer(file: str | None = None) -> tuple[str, dict]:
    return ("dhcp.offer", {"port": 67, "file": file, "class": "efi64"})


def ack(file: str) -> tuple[str, dict]:
    return ("dhcp.ack", {"port": 4011, "file": file})


def done(path: str) -> tuple[str, dict]:
    return ("tftp.done", {"path": path, "bytes": 1})


def test_offers_ignored() -> None:
    d = diagnose(entries((*offer("shimx64.efi"), 4)), MACHINE)
    assert d is not None and d.cause == "offer-ignored"
    assert "4 DISCOVERs" in d.reason and "dhcp_reply_delay" in d.fix and "uefi_mode: direct" in d.fix


def test_rival_named() -> None:
    d = diagnose(entries(offer(), ("dhcp.rival", {"server": "10.0.0.9", "kind": "ProxyDHCP"})), MACHINE)
    assert d is not None and d.cause == "rival-server" and "10.0.0.9" in d.reason


def test_secure_boot_stops_after_grub_when_the_router_does_not_name_us() -> None:
    d = diagnose(
        entries(offer(), ack("shimx64.efi"), done("shimx64.efi"), ("tftp.error", {"path": "revocations_sku.efi"}),
                done("grubx64.efi")),
        Machine(ID, secure_boot=True, server="10.0.0.3"),
    )  # fmt: skip
    assert d is not None and d.cause == "secure-boot-router"
    assert "next-server" in d.fix and "10.0.0.3" in d.fix and "ipxe-sb/x64/snponly-shim.efi" in d.fix


def test_unsigned_loader_then_silence() -> None:
    d = diagnose(entries(offer(), ack("efi64/syslinux.efi"), done("efi64/syslinux.efi")), MACHINE)
    assert d is not None and d.cause == "loader-rejected"
    assert "Secure Boot" in d.reason and f"nodes.{ID}.secure_boot: true" in d.fix


def test_tftp_failing_at_the_same_point() -> None:
    d = diagnose(
        entries(offer(), ack("lpxelinux.0"), ("tftp.abort", {"path": "lpxelinux.0", "reason": "timeout", "block": 7}, 3)),
        MACHINE,
    )  # fmt: skip
    assert d is not None and d.cause == "tftp-fails" and "lpxelinux.0" in d.reason and "block 7" in d.reason


def test_missing_loader_file() -> None:
    d = diagnose(
        entries(offer(), ack("x.efi"), ("tftp.error", {"path": "x.efi", "reason": "File not found"}, 2)),
        MACHINE,
    )
    assert d is not None and d.cause == "tftp-fails" and "bootfiles install" in d.fix


def test_installer_without_cloud_init() -> None:
    d = diagnose(
        entries(offer(), ack("lpxelinux.0"), done("lpxelinux.0"),
                ("http.done", {"path": f"/{ID}/casper/vmlinuz", "what": "kernel"}),
                ("http.done", {"path": f"/{ID}/casper/initrd", "what": "initrd"})),
        MACHINE,
    )  # fmt: skip
    assert (
        d is not None and d.cause == "installer-no-seed" and "url=" in d.fix and "neither the ISO" in d.reason
    )


@pytest.mark.parametrize(
    "events",
    [
        [offer(), ack("lpxelinux.0"), done("lpxelinux.0"), ("http.done", {"path": "/boot/linux", "what": "kernel"})],
        [offer(), ack("lpxelinux.0"), done("lpxelinux.0"), ("http.done", {"path": f"/{ID}/casper/vmlinuz", "what": "kernel"}),
         ("cloudinit.fetch", {"file": "user-data"})],
        [offer()],  # one DISCOVER: too little to tell
    ],
)  # fmt: skip
def test_no_diagnosis_when_it_booted_or_too_little_was_seen(events) -> None:
    assert diagnose(entries(*events), MACHINE) is None


def test_an_attempt_is_diagnosed_from_its_own_entries_only() -> None:
    es = entries((*offer(), 3), ("boot.diagnosis", {"cause": "offer-ignored"}))
    assert diagnose(es, MACHINE) is not None  # the earlier diagnosis entry itself is no evidence


def _reply(
    server: str, *, siaddr: str = "0.0.0.0", file: bytes = b"", vendor: bytes | None = b"PXEClient"
) -> bytes:
    header = bytearray(236)
    header[0], header[1], header[2] = BOOTREPLY, 1, 6
    header[20:24] = bytes(int(x) for x in siaddr.split("."))
    header[28:34] = bytes.fromhex("525400a00010")
    header[108 : 108 + len(file)] = file
    opts = bytes([53, 1, OFFER, 54, 4, *(int(x) for x in server.split("."))])
    if vendor:
        opts += bytes([60, len(vendor)]) + vendor
    return bytes(header) + b"\x63\x82\x53\x63" + opts + b"\xff"


def test_rival_offers_are_told_from_ours_and_from_plain_routers() -> None:
    own = {"10.0.0.3"}
    rival = rival_offer(_reply("10.0.0.9", file=b"pxelinux.0"), "10.0.0.9", own)
    assert (
        rival is not None and rival.server == "10.0.0.9" and rival.boot_file == "pxelinux.0" and rival.proxy
    )
    assert rival_offer(_reply("10.0.0.3"), "10.0.0.3", own) is None  # our own
    assert rival_offer(_reply("10.0.0.1", vendor=None), "10.0.0.1", own) is None  # a plain router
    assert rival_offer(_reply("10.0.0.1", siaddr="10.0.0.3", file=b"x"), "10.0.0.1", own) is None  # names us


def test_pxe_left_unanswered_on_purpose_is_no_dead_end() -> None:
    ignored = (
        "dhcp.ignored",
        {"port": 67, "reason": "uefi_mode http: this machine boots through UEFI HTTP Boot"},
        4,
    )
    assert diagnose(entries(ignored), MACHINE) is None
    assert (
        diagnose(entries(("dhcp.ignored", {"port": 67, "reason": "arch 11: no boot loader"}, 3)), MACHINE)
        is not None
    )


def test_an_attempt_quiet_halfway_through_a_transfer_is_diagnosed_when_it_really_stops() -> None:
    from pypxe_homelab.config.model import Defaults, Inventory, ServerSettings
    from pypxe_homelab.services.watch import Diagnoser
    from pypxe_homelab.state.store import StateStore

    store = StateStore(None, use_arp=False)
    inventory = Inventory(server=ServerSettings(diagnose_after=5.0), defaults=Defaults(secure_boot=True))
    sent: list[Event] = []
    diagnoser = Diagnoser(lambda: inventory, store, sent.append, "10.0.0.3")
    mac = "52:54:00:a0:00:10"

    def record(kind: str, detail: dict, at: float) -> None:
        store.record(Event(kind, "10.0.0.50:1000", None, mac, detail, at))

    record("dhcp.offer", {"port": 67, "file": "shimx64.efi", "class": "efi64", "xid": 1}, 1000.0)
    record("dhcp.ack", {"port": 4011, "file": "shimx64.efi", "xid": 1}, 1001.0)
    record("tftp.rrq", {"path": "shimx64.efi"}, 1002.0)
    record("tftp.done", {"path": "shimx64.efi", "bytes": 1}, 1003.0)
    record("tftp.rrq", {"path": "grubx64.efi"}, 1004.0)  # a slow transfer: no event for 8 s
    assert diagnoser.check(now=1011.0) == []  # quiet, but too little to tell yet
    record("tftp.done", {"path": "grubx64.efi", "bytes": 1}, 1012.0)
    assert diagnoser.check(now=1013.0) == []  # heard from again: not quiet yet
    found = diagnoser.check(now=1020.0)
    assert [e.detail["cause"] for e in found] == ["secure-boot-router"]
    for event in found:
        store.record(event)
    assert diagnoser.check(now=1040.0) == []  # once per attempt
