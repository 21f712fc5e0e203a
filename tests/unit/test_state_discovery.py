"""Discovery: DHCP, TFTP and HTTP events become one device record per machine."""

from __future__ import annotations

import pytest

from pypxe_homelab.events import Event, Kind
from pypxe_homelab.identity import is_pi_mac, pi_model_of_uuid
from pypxe_homelab.state.discovery import file_stage, observe, starts_boot
from pypxe_homelab.state.store import StateStore

PC_MAC = "52:54:00:a0:00:01"
PC = "01-52-54-00-a0-00-01"
PC_UUID = "2e1b5c8a000000408000525400a00001"
PI_MAC = "dc:a6:32:01:36:c2"
PI_SERIAL = "7092246e"


def pc_dhcp(t: float, xid: int = 0x3B14E024) -> list[Event]:
    facts = {
        "arch": 0,
        "class": "bios",
        "pi": False,
        "ipxe": False,
        "nic": "1.2.1",
        "vendor_class": "PXEClient:Arch:00000:UNDI:002001",
        "uuid": PC_UUID,
        "file": "lpxelinux.0",
    }
    return [
        Event("dhcp.offer", "0.0.0.0:68", None, PC_MAC, {**facts, "port": 67, "xid": xid}, t),
        Event(
            "dhcp.ack",
            "10.231.0.50:68",
            None,
            PC_MAC,
            {**facts, "port": 4011, "xid": xid, "ciaddr": "10.231.0.50"},
            t + 1,
        ),
    ]


def tftp(path: str, t: float, ip: str = "10.231.0.50", kind: str = "tftp.rrq") -> Event:
    return Event(
        kind, f"{ip}:{2000 + int(t) % 1000}", None, None, {"path": path, "bytes": 1000, "duration": 0.1}, t
    )


def test_pc_boot_is_discovered_with_facts_and_config_names() -> None:
    store = StateStore(None, use_arp=False)
    for e in pc_dhcp(100.0):
        store.record(e)
    for i, path in enumerate(
        [
            "lpxelinux.0",
            "ldlinux.c32",
            "pxelinux.cfg/8a5c1b2e-0000-4000-8000-525400a00001",
            "pxelinux.cfg/01-52-54-00-a0-00-01",
            "pxelinux.cfg/0AE70032",
            "pxelinux.cfg/0AE7003",
        ]
    ):
        store.record(tftp(path, 102.0 + i))
    store.record(
        Event(
            "http.done",
            "10.231.0.50:4000",
            PC,
            PC_MAC,
            {"path": "/boot/vmlinuz", "what": "kernel", "bytes": 10, "duration": 0.1},
            110.0,
        )
    )
    [rec] = store.devices()
    assert rec.device_id == PC and rec.mac == PC_MAC
    assert (rec.arch, rec.firmware, rec.nic, rec.uuid) == (0, "bios", "1.2.1", PC_UUID)
    assert rec.vendor_class.startswith("PXEClient") and not rec.pi and not rec.ipxe
    assert rec.ip == "10.231.0.50" and rec.learned["mac"].startswith("dhcp")
    assert rec.config_names == [
        "8a5c1b2e-0000-4000-8000-525400a00001",
        "01-52-54-00-a0-00-01",
        "0AE70032",
        "0AE7003",
    ]
    assert rec.boots == 1 and rec.stage == "kernel"
    assert rec.first_seen == 100.0 and rec.last_seen == 110.0
    assert len([e for e in store.events(PC) if e.kind == "tftp.rrq"]) == 6


def test_hex_ip_config_name_is_mapped_to_the_mac_learned_on_4011() -> None:
    store = StateStore(None, use_arp=False)
    for e in pc_dhcp(100.0):
        store.record(e)
    assert store.mac_for_ip("10.231.0.50") == PC_MAC
    # A request from an address the server never saw, naming the PC by its IP in hex.
    store.record(tftp("efi64/pxelinux.cfg/0AE70032", 103.0, ip="10.231.0.99"))
    assert [e.detail["path"] for e in store.events(PC) if e.kind == "tftp.rrq"] == [
        "efi64/pxelinux.cfg/0AE70032"
    ]


def test_uuid_config_name_finds_the_device_by_its_option_97() -> None:
    store = StateStore(None, use_arp=False)
    store.record(pc_dhcp(100.0)[0])  # no 4011, so no IP is known
    store.record(tftp("pxelinux.cfg/8a5c1b2e-0000-4000-8000-525400a00001", 101.0, ip="10.231.0.77"))
    assert store.device(PC).config_names == ["8a5c1b2e-0000-4000-8000-525400a00001"]  # byte-swapped form


def test_duplicate_requests_of_one_boot_are_one_boot() -> None:
    store = StateStore(None, use_arp=False)
    t = 100.0
    for i in range(20):  # the ROM retries its DISCOVER and the 4011 request
        for e in pc_dhcp(t + i * 0.5):
            store.record(e)
    for i in range(5):  # size probe, abort, then the real read
        store.record(tftp("lpxelinux.0", 115.0 + i))
    rec = store.device(PC)
    assert rec.boots == 1
    timeline = store.timeline(PC)
    offers = [x for x in timeline if x.event.kind == "dhcp.offer"]
    assert len(offers) == 1 and offers[0].repeat == 20
    rrqs = [x for x in timeline if x.event.kind == "tftp.rrq"]
    assert len(rrqs) == 1 and rrqs[0].repeat == 5
    # After a minute of silence the next DISCOVER is a new boot.
    store.record(pc_dhcp(400.0, xid=7)[0])
    assert store.device(PC).boots == 2 and store.device(PC).stage == "dhcp"


def test_discover_after_the_kernel_was_fetched_is_a_new_boot() -> None:
    store = StateStore(None, use_arp=False)
    for e in pc_dhcp(100.0):
        store.record(e)
    store.record(
        Event("http.done", "10.231.0.50:4000", PC, PC_MAC, {"path": "/x/vmlinuz", "what": "kernel"}, 105.0)
    )
    store.record(pc_dhcp(130.0, xid=8)[0])
    assert store.device(PC).boots == 2


def test_raspberry_pi_4_from_dhcp_and_its_serial_tftp_path() -> None:
    store = StateStore(None, use_arp=False)
    uuid = "52506934" + "11031000" + "320136c2" + "6e249270"  # "RPi4", board rev, low MAC, serial
    store.record(
        Event(
            "dhcp.offer",
            "0.0.0.0:68",
            None,
            PI_MAC,
            {
                "arch": 0,
                "class": "bios",
                "pi": True,
                "ipxe": False,
                "nic": "1.2.1",
                "uuid": uuid,
                "vendor_class": "PXEClient:Arch:00000:UNDI:002001",
                "port": 67,
                "xid": 5,
            },
            100.0,
        )
    )
    assert store.device("01-dc-a6-32-01-36-c2").pi
    # The Pi's TFTP address was handed out by the router: the server learns it from the kernel's ARP table
    # in production; here the IP table is seeded the way a TFTP event naming the Pi's MAC would.
    store.record(Event("tftp.rrq", "10.231.0.61:49152", None, PI_MAC, {"path": "bootcode.bin"}, 100.5))
    store.record(tftp(f"{PI_SERIAL}/start4.elf", 101.0, ip="10.231.0.61"))
    store.record(tftp(f"{PI_SERIAL}/config.txt", 101.5, ip="10.231.0.61"))
    store.record(tftp(f"{PI_SERIAL}/kernel8.img", 103.0, ip="10.231.0.61", kind="tftp.done"))
    [rec] = store.devices()
    assert rec.device_id == PI_SERIAL and rec.serial == PI_SERIAL
    assert rec.mac == PI_MAC and rec.pi and rec.pi_model == "pi4"
    assert rec.learned["serial"] == f"tftp path {PI_SERIAL}/start4.elf"
    assert rec.boots == 1 and rec.stage == "kernel" and rec.ip == "10.231.0.61"
    assert [e.kind for e in store.events(PI_SERIAL)][0] == "dhcp.offer"


def test_pi_known_only_by_its_serial_path() -> None:
    store = StateStore(None, use_arp=False)
    store.record(tftp(f"{PI_SERIAL}/start4.elf", 101.0, ip="10.231.0.62"))
    rec = store.device(PI_SERIAL)
    assert rec.pi and rec.serial == PI_SERIAL and rec.mac is None and rec.stage == "loader"


def test_events_naming_nothing_are_dropped_quietly() -> None:
    store = StateStore(None, use_arp=False)
    store.record(tftp("bootcode.bin", 100.0, ip="10.231.0.63"))
    store.record(Event(Kind.INSTALL_EVENT, "", "not an id", None, {"name": object()}, 1.0))
    assert store.devices() == []


def test_event_kinds_and_fields_are_defined_once() -> None:
    with pytest.raises(ValueError, match="is not a valid Kind"):
        Event("weird")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fields not defined for this kind: what"):
        Event(Kind.TFTP_DONE, detail={"path": "x", "what": "cloud-init"})
    assert Event("tftp.done", detail={"path": "x"}).kind is Kind.TFTP_DONE  # type: ignore[arg-type]


def test_pure_helpers() -> None:
    assert is_pi_mac("2C:CF:67:00:00:01") and not is_pi_mac(PC_MAC)
    assert pi_model_of_uuid("52506935" + "0" * 24) == "pi5" and pi_model_of_uuid(PC_UUID) is None
    assert [
        file_stage(p)
        for p in (
            "efi64/syslinux.efi",
            "pxelinux.cfg/default",
            "casper/vmlinuz",
            "casper/initrd",
            "7092246e/cmdline.txt",
        )
    ] == ["loader", "config", "kernel", "initrd", "config"]
    assert starts_boot(None, Event("tftp.rrq"))


def test_http_naming_no_machine_records_nothing_even_from_a_known_address() -> None:
    store = StateStore(None, use_arp=False)
    store.record_many(pc_dhcp(100.0))
    before = [d.device_id for d in store.devices()]
    anonymous = Event(
        "http.get", "10.231.0.50:4000", None, None, {"path": "/menu.cfg", "what": "file"}, 101.0
    )
    stranger = Event("http.get", "10.231.0.99:4000", None, None, {"path": "/favicon.ico"}, 101.0)
    assert store.record_many([anonymous, stranger]) == [None, None]
    assert [d.device_id for d in store.devices()] == before
    assert [e.kind for e in store.events(PC)] == [Kind.DHCP_OFFER, Kind.DHCP_ACK]


def test_a_discover_without_an_address_teaches_no_address() -> None:
    """A DISCOVER carries ciaddr 0.0.0.0: the machine has no address yet, so none is learned or shown."""
    event = Event(
        Kind.DHCP_OFFER, "0.0.0.0:68", "01-52-54-00-12-34-56", "52:54:00:12:34:56",
        {"arch": 0, "class": "bios", "port": 67, "xid": 1, "ciaddr": "0.0.0.0"}, 100.0,
    )  # fmt: skip
    rec = observe(None, "01-52-54-00-12-34-56", event)
    assert rec.ip is None and rec.boot_ip is None and "ip" not in rec.learned
