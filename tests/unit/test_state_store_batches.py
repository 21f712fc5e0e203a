"""The state store's recording path: batches written at once, memory copies equal to the database, retries
folded within and across batches, an odd event or a failed write never leaving the copies wrong."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import struct
import time
from pathlib import Path

from pypxe_homelab.boot.booter import InventoryBooter
from pypxe_homelab.config.model import Inventory
from pypxe_homelab.events import DhcpDetail, Event, Kind, dhcp_event
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.services.dhcp import InterfaceInfo, ProxyDhcpService
from pypxe_homelab.state.recorder import Recorder
from pypxe_homelab.state.store import StateStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dhcp" / "captured.json"
PACKETS = {p["name"]: bytes.fromhex(p["payload"]) for p in json.loads(FIXTURES.read_text())["packets"]}
IFACE = InterfaceInfo("eth0", "10.231.0.3")


def offer(mac: str, xid: int, at: float, port: int = 67, ciaddr: str = "0.0.0.0") -> Event:
    device_id = "01-" + mac.replace(":", "-")
    detail = DhcpDetail(arch=7, xid=xid, port=port, ciaddr=ciaddr, reason="test")
    kind = Kind.DHCP_OFFER if port == 67 else Kind.DHCP_ACK
    return Event(kind, "0.0.0.0:68", device_id, mac, detail, at)


def discover(n: int) -> bytes:
    data = bytearray(PACKETS["bios_ipxe_discover"])
    data[4:8] = struct.pack("!I", 0x5EED0000 + n)
    data[28:34] = b"\x52\x54\x02" + struct.pack("!I", n)[1:]
    return bytes(data)


def test_a_storm_of_1000_clients_is_all_answered_and_all_recorded(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    recorder = Recorder(store)
    recorder.start()
    runtime = Runtime(Inventory(), store, recorder.emit, ipaddress.IPv4Address(IFACE.address), 8080)
    service = ProxyDhcpService(InventoryBooter(lambda: runtime), [IFACE], recorder.emit)
    answered = [service.handle(discover(n), ("0.0.0.0", 68), IFACE, 67) for n in range(1000)]
    assert all(a is not None for a in answered)
    assert recorder.flush(60)
    recorder.stop()
    store.close()
    db = sqlite3.connect(tmp_path / "state.db")
    macs = {row[0] for row in db.execute("SELECT mac FROM devices")}
    assert macs == {"52:54:02:" + struct.pack("!I", n)[1:].hex(":") for n in range(1000)}
    assert db.execute("SELECT count(*) FROM events WHERE kind = 'dhcp.offer'").fetchone()[0] == 1000


def test_retries_fold_within_a_batch_and_across_batches() -> None:
    store = StateStore(None)
    now = time.time()
    mac = "52:54:00:aa:00:01"
    store.record_many([offer(mac, 7, now), offer(mac, 7, now + 1), offer(mac, 8, now + 2)])
    store.record_many([offer(mac, 7, now + 3)])
    entries = store.timeline("01-52-54-00-aa-00-01")
    assert [(e.event.detail["xid"], e.repeat) for e in entries] == [(7, 3), (8, 1)]
    assert entries[0].last_time == now + 3
    store.record_many([offer(mac, 7, now + 100)])  # past the window: a new entry
    assert [e.repeat for e in store.timeline("01-52-54-00-aa-00-01")] == [3, 1, 1]


def test_memory_copies_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path, use_arp=False)
    now = time.time()
    store.record_many(
        [offer("52:54:00:aa:00:02", 1, now), offer("52:54:00:aa:00:02", 2, now, 4011, "10.0.0.9")]
    )
    assert store.node_state("01-52-54-00-aa-00-02").state == "booting"
    assert store.mac_for_ip("10.0.0.9") == "52:54:00:aa:00:02"
    ids = [e.id for e in store.timeline("01-52-54-00-aa-00-02")]
    store.close()
    again = StateStore(path, use_arp=False)
    assert again.node_state("01-52-54-00-aa-00-02").state == "booting"
    assert again.mac_for_ip("10.0.0.9") == "52:54:00:aa:00:02"
    again.record_many([offer("52:54:00:aa:00:02", 3, now + 1)])
    later = [e.id for e in again.timeline("01-52-54-00-aa-00-02")]
    assert later[:2] == ids and later[2] > ids[1]


def test_an_odd_event_does_not_undo_the_others() -> None:
    store = StateStore(None)
    now = time.time()
    odd = Event(Kind.DHCP_OFFER, "0.0.0.0:68", "01-52-54-00-aa-00-03", "52:54:00:aa:00:03", {"xid": 1}, now)
    object.__setattr__(odd, "time", "not a time")
    good = offer("52:54:00:aa:00:04", 2, now)
    assert store.record_many([odd, good]) == [None, "01-52-54-00-aa-00-04"]
    assert store.device("01-52-54-00-aa-00-04") is not None
    assert len(store.timeline("01-52-54-00-aa-00-04")) == 1


class _FailingWrites:
    """A connection whose batch writes fail (as on a full disk); everything else is the real one."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def executemany(self, *_args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


def test_a_failed_write_leaves_the_memory_copies_equal_to_the_database() -> None:
    store = StateStore(None, use_arp=False)
    now = time.time()
    store.record_many([offer("52:54:00:aa:00:05", 1, now)])
    real = store._db
    store._db = _FailingWrites(real)  # type: ignore[assignment]
    assert store.record_many([offer("52:54:00:aa:00:06", 2, now, 4011, "10.0.0.6")]) == [None]
    store._db = real
    assert store.node_state("01-52-54-00-aa-00-06").state == "discovered"  # never written
    assert store.mac_for_ip("10.0.0.6") is None
    assert store.device("01-52-54-00-aa-00-06") is None
    assert store.node_state("01-52-54-00-aa-00-05").state == "booting"
    store.record_many([offer("52:54:00:aa:00:06", 2, now + 1, 4011, "10.0.0.6")])
    assert store.mac_for_ip("10.0.0.6") == "52:54:00:aa:00:06"


def test_dhcp_event_constructor_still_records() -> None:
    store = StateStore(None)
    detail = DhcpDetail(arch=0, xid=1, port=67, ciaddr="0.0.0.0", reason="x")
    event = dhcp_event(Kind.DHCP_OFFER, "0.0.0.0:68", "01-52-54-00-aa-00-07", "52:54:00:aa:00:07", detail)
    assert store.record(event) == "01-52-54-00-aa-00-07"
