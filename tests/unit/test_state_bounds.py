"""Any LAN host can invent MACs: unregistered device records are bounded and aged, registered ones never;
the device list is paged."""

from __future__ import annotations

import time

from pypxe_homelab.events import Event
from pypxe_homelab.state import store as store_module
from pypxe_homelab.state.store import MAX_UNREGISTERED, UNREGISTERED_DAYS, StateStore

REGISTERED = "01-52-54-00-a0-00-01"


def offer(mac: str, t: float) -> Event:
    return Event("dhcp.offer", "0.0.0.0:68", None, mac, {"arch": 7, "class": "efi64", "port": 67}, t)


def fake_mac(n: int) -> str:
    return "02:00:" + ":".join(f"{(n >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))


def test_unregistered_devices_are_bounded_and_the_oldest_forgotten(tmp_path) -> None:
    store = StateStore(tmp_path / "state.db", use_arp=False)
    store.set_inventory_view(lambda device_id: device_id == REGISTERED, lambda device_id: "once")
    now = time.time()
    store.record(offer("52:54:00:a0:00:01", now - 1000))  # the registered node, seen long before the flood
    flood = MAX_UNREGISTERED + 1500
    store.record_many([offer(fake_mac(n), now - flood + n) for n in range(flood)])
    count = store.device_count()
    assert MAX_UNREGISTERED < count <= MAX_UNREGISTERED + 50 + 1  # swept every 50 new machines
    assert store.device(REGISTERED) is not None
    assert store.device("01-" + fake_mac(flood - 1).replace(":", "-")) is not None  # the newest stay
    assert store.device("01-" + fake_mac(0).replace(":", "-")) is None  # the oldest are gone
    assert store.timeline("01-" + fake_mac(0).replace(":", "-")) == []  # with their timelines
    store.close()


def test_unregistered_devices_unseen_for_long_are_forgotten(tmp_path) -> None:
    store = StateStore(None, use_arp=False)
    store.set_inventory_view(lambda device_id: device_id == REGISTERED, lambda device_id: "once")
    old = time.time() - (UNREGISTERED_DAYS + 1) * 86400
    store.record(offer("52:54:00:a0:00:01", old))
    store.record(offer("06:00:00:00:00:01", old))
    store.record_many([offer(fake_mac(n), time.time()) for n in range(50)])  # new machines: a sweep runs
    ids = {r.device_id for r in store.devices()}
    assert REGISTERED in ids and "01-06-00-00-00-00-01" not in ids and len(ids) == 51


def test_devices_are_paged_most_recent_first() -> None:
    store = StateStore(None, use_arp=False)
    now = time.time()
    store.record_many([offer(fake_mac(n), now + n) for n in range(30)])
    page = store.devices(limit=10, offset=5)
    assert [r.mac for r in page] == [fake_mac(n) for n in range(24, 14, -1)]
    assert len(store.devices()) == 30 == store.device_count()


def test_old_state_files_get_the_last_seen_column(tmp_path) -> None:
    path = tmp_path / "state.db"
    first = StateStore(path, use_arp=False)
    first.record(offer("02:00:00:00:00:07", 1234.0))
    first._db.execute("DROP INDEX devices_seen")
    first._db.execute("ALTER TABLE devices DROP COLUMN last_seen")  # as written by an older version
    first._db.execute("PRAGMA user_version = 1")
    first.close()
    again = StateStore(path, use_arp=False)
    assert again._db.execute("SELECT last_seen FROM devices").fetchone()[0] == 1234.0
    again.close()
    assert store_module.MAX_UNREGISTERED == MAX_UNREGISTERED


def test_the_bound_forgets_the_least_recently_seen_in_constant_work_per_event() -> None:
    store = StateStore(None, use_arp=False)
    store.set_inventory_view(lambda device_id: device_id == REGISTERED, lambda device_id: "once")
    now = time.time()
    store.record(offer("52:54:00:a0:00:01", now - 3000))  # registered: never forgotten
    store.record(offer(fake_mac(0), now - 2900))  # seen first, and again below: kept
    for start in range(1, MAX_UNREGISTERED + 400, 100):  # batches, as the recorder hands them over
        store.record_many([offer(fake_mac(n), now - 2800 + n) for n in range(start, start + 100)])
        if start == 1001:
            store.record(offer(fake_mac(0), now - 2800 + start))
        assert store.device_count() <= MAX_UNREGISTERED + store_module.FORGET_STEP + 1
    assert store.device(REGISTERED) is not None
    assert store.device("01-" + fake_mac(0).replace(":", "-")) is not None
    assert store.device("01-" + fake_mac(1).replace(":", "-")) is None
    assert store.timeline("01-" + fake_mac(1).replace(":", "-")) == []
    executed: list[str] = []
    store._db.set_trace_callback(executed.append)
    store.record_many([offer(fake_mac(n), now - 100) for n in range(10_000, 10_100)])
    store._db.set_trace_callback(None)
    # no lookup or scan per event (the whole-table sweep runs once an hour of event time)
    assert not any(s.lstrip().upper().startswith("SELECT") for s in executed)


def test_the_diagnosis_rides_on_the_device_record_and_old_files_get_it(tmp_path) -> None:
    from pypxe_homelab.config.model import Inventory
    from pypxe_homelab.events import diagnosis_event
    from pypxe_homelab.state.views import nodes_view

    path = tmp_path / "state.db"
    first = StateStore(path, use_arp=False)
    first.record(offer("02:00:00:00:00:09", 1000.0))
    detail = {"cause": "offer-ignored", "reason": "r", "fix": "f", "attempt": 1}
    first.record(diagnosis_event("01-02-00-00-00-00-09", "02:00:00:00:00:09", detail, 1040.0))  # type: ignore[typeddict-item]
    assert first.device("01-02-00-00-00-00-09").diagnosis == detail  # type: ignore[union-attr]
    first._db.execute(
        "UPDATE devices SET data = json_remove(data, '$.diagnosis')"
    )  # as an older version wrote it
    first._db.execute("PRAGMA user_version = 2")
    first.close()
    again = StateStore(path, use_arp=False)
    assert again.device("01-02-00-00-00-00-09").diagnosis == detail  # type: ignore[union-attr]
    executed: list[str] = []
    again._db.set_trace_callback(executed.append)
    view = nodes_view(Inventory(), again)
    assert [n["diagnosis"] for n in view] == [detail]
    assert not any("FROM events" in s for s in executed)  # no timeline read per device
    again.record(offer("02:00:00:00:00:09", 5000.0))  # a new boot attempt: nothing said of it yet
    assert again.device("01-02-00-00-00-00-09").diagnosis is None  # type: ignore[union-attr]
    again.close()
