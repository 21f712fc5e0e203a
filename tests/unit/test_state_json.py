"""The store's JSON: what the fast encoder refuses is still written, and read back without loss."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pypxe_homelab.events import Event, Kind
from pypxe_homelab.state.store import StateStore

DEVICE = "01-52-54-00-12-34-56"
MAC = "52:54:00:12:34:56"


def test_a_detail_past_64_bits_and_an_odd_value_are_kept(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db", use_arp=False)
    huge = (1 << 70) + 1  # a client can claim any size; the store must not drop the event for it
    store.record(Event(Kind.TFTP_DONE, "10.0.0.5:1000", DEVICE, MAC, {"path": "a", "bytes": huge}, 10.0))
    store.record(
        Event(Kind.TFTP_DONE, "10.0.0.5:1001", DEVICE, MAC, {"path": "b", "hint": {"p": Path("/x")}}, 11.0)
    )
    store.close()
    again = StateStore(tmp_path / "state.db", use_arp=False)
    details = {e.detail["path"]: e.detail for e in again.events(DEVICE)}
    assert details["a"]["bytes"] == str(huge)  # its digits, not a float near it
    assert details["b"]["hint"] == {"p": "/x"}  # what JSON has no type for is written as its text
    again.close()


def test_nan_written_by_the_standard_library_is_read(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db", use_arp=False)
    store.record(Event(Kind.TFTP_DONE, "10.0.0.5:1000", DEVICE, MAC, {"path": "a", "duration": 1.0}, 10.0))
    store.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute('UPDATE events SET detail = \'{"path": "a", "duration": NaN}\'')
    again = StateStore(tmp_path / "state.db", use_arp=False)
    (event,) = [e for e in again.events(DEVICE) if e.detail.get("path") == "a"]
    assert event.detail["duration"] != event.detail["duration"]  # NaN
    again.close()
