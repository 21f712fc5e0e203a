"""State database versions: a newer release opens the state.db an older one wrote (schema stamped in
PRAGMA user_version); a state.db from a newer release is refused in one line."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from pypxe_homelab.errors import UserError
from pypxe_homelab.events import Event
from pypxe_homelab.state import store as store_module
from pypxe_homelab.state.store import SCHEMA_VERSION, StateStore

PC = "01-52-54-00-a0-00-01"
MAC = "52:54:00:a0:00:01"


def _layout(db: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return set(conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))


def _version(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _first_release_db(path: Path) -> None:
    """A state.db as the first release wrote it (its tables, no schema stamp), with a node's history."""
    store = StateStore(path, use_arp=False)
    store.record(Event("dhcp.offer", "10.0.0.50:68", PC, MAC, {"class": "bios", "arch": 0}, time.time()))
    store.record(Event("tftp.done", "10.0.0.50:2070", PC, MAC, {"path": "lpxelinux.0", "bytes": 42}))
    store.close()
    with sqlite3.connect(path) as conn:  # back to the first release's layout
        conn.executescript(
            "DROP INDEX events_dedupe; DROP INDEX devices_seen; DROP TABLE meta;"
            " ALTER TABLE devices DROP COLUMN last_seen; PRAGMA user_version = 0;"
        )
    reference = path.with_name("reference.db")
    with sqlite3.connect(reference) as conn:
        conn.executescript(store_module._SCHEMA)
    assert _layout(path) == _layout(reference)


def test_an_older_state_db_is_migrated_and_keeps_its_history(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _first_release_db(db)
    assert _version(db) == 0
    store = StateStore(db, use_arp=False)
    assert [e.kind for e in store.events(PC)] == ["dhcp.offer", "tftp.done"]
    assert store.record(Event("http.get", "10.0.0.50:40000", PC, MAC, {"path": "/boot/linux"})) == PC
    store.close()
    assert _version(db) == SCHEMA_VERSION >= 1
    assert {("index", "events_dedupe"), ("index", "devices_seen"), ("table", "meta")} <= _layout(db)
    store = StateStore(db, use_arp=False)  # opening a current database again changes nothing
    assert len(store.events(PC)) == 3
    store.close()
    assert _version(db) == SCHEMA_VERSION


def test_a_new_state_db_starts_at_the_current_version(tmp_path: Path) -> None:
    StateStore(tmp_path / "state.db", use_arp=False).close()
    assert _version(tmp_path / "state.db") == SCHEMA_VERSION


def test_a_state_db_of_a_newer_release_is_refused_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    StateStore(db, use_arp=False).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(UserError) as caught:
        StateStore(db, use_arp=False)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{db} was written by a newer pypxe-homelab (schema {SCHEMA_VERSION + 1}" in message
    assert "upgrade pypxe-homelab" in message


def test_an_address_learned_from_a_discover_is_dropped_on_upgrade(tmp_path: Path) -> None:
    """Records written before step 4 took a DISCOVER's ciaddr 0.0.0.0 as the machine's address."""
    db = tmp_path / "state.db"
    store = StateStore(db, use_arp=False)
    store.record(Event("dhcp.offer", "0.0.0.0:68", PC, MAC, {"class": "bios", "arch": 0, "port": 67}, 10.0))
    other = "01-52-54-00-a0-00-02"
    store.record(Event("dhcp.ack", "10.0.0.51:68", other, "52:54:00:a0:00:02", {"port": 4011, "ciaddr": "10.0.0.51"}, 11.0))  # fmt: skip
    store.close()
    with sqlite3.connect(db) as conn:  # as step 3 left it: the DISCOVER's address learned
        conn.execute(
            "UPDATE devices SET data = json_set(data, '$.ip', '0.0.0.0', '$.learned.ip', 'dhcp ciaddr (4011)')"
            " WHERE device_id = ?",
            (PC,),
        )
        conn.execute("PRAGMA user_version = 3")
    store = StateStore(db, use_arp=False)
    pc, kept = store.device(PC), store.device(other)
    assert pc is not None and pc.ip is None and "ip" not in pc.learned and pc.mac == MAC
    assert kept is not None and kept.ip == "10.0.0.51" and kept.learned["ip"] == "dhcp ciaddr (4011)"
    store.close()
    assert _version(db) == SCHEMA_VERSION == 4
