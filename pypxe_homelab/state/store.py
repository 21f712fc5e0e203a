"""The persisted state: discovered devices, node lifecycles, the event timeline and the IP → MAC table.

One sqlite3 connection (WAL) guarded by a lock: the recorder thread writes, the services and the web read.
Which device ids are registered, and their install policy, come from the inventory through
``set_inventory_view``; until it is set every device counts as registered with policy 'once'.

What the services read on a request path (a node's install state, the MAC behind an address) and what recording
reads per event (device records, which Pi serial owns a MAC) is kept in memory and written through, so a request
never waits for a batch being recorded and its cost does not grow with the size of the store. The database stays
the record: the memory copies are filled from it at start and re-read from it when a transaction rolls back.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from pypxe_homelab.errors import UserError
from pypxe_homelab.events import DHCP_KINDS, HTTP_KINDS, TFTP_KINDS, Event, Kind, reinstall_event
from pypxe_homelab.identity import (
    device_hint,
    device_id_of_mac,
    is_pi_mac,
    is_pi_serial,
    mac_of_device_id,
    normalise_device_id,
    uuid_forms,
)
from pypxe_homelab.protocol.tftp_paths import PathRefused, normalise
from pypxe_homelab.state.discovery import (
    DeviceRecord,
    client_ip,
    event_path,
    merge,
    observe,
    starts_boot,
)
from pypxe_homelab.state.lifecycle import NodeState, installer_progress, transition
from pypxe_homelab.state.timeline import DEDUPE_WINDOW_SECONDS, TimelineEntry, dedupe_key

__all__ = ["DeviceRecord", "NodeState", "Notification", "StateStore", "TimelineEntry"]

log = logging.getLogger("pypxe_homelab.state")

MAX_EVENTS_PER_DEVICE = 5000
_PRUNE_EVERY = 500
_ARP_TABLE = Path("/proc/net/arp")
_ARP_TTL_SECONDS = 2.0  # how long an ARP table answer (or its absence) is reused
DEVICE_CACHE = 20_000  # device records kept in memory (least recently recorded dropped first)
_PLAIN = frozenset({str, int, float, bool, type(None)})
_std_json = json.JSONEncoder(default=str).encode  # json.dumps(…, default=str), without a new encoder per call


def _to_json(value: object) -> str:
    """``value`` as JSON text (anything JSON has no type for as its ``str``). orjson writes the records and
    events of every request several times faster than the standard library; what it refuses (an integer past
    64 bits, a key that is not a string) goes through the standard encoder, with such an integer written as
    its digits in a string, so that reading it back never turns it into an inexact float."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return _std_json(_big_ints_as_text(value))


def _big_ints_as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _big_ints_as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_big_ints_as_text(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(1 << 63) <= value < (1 << 64):
        return str(value)
    return value


def _from_json(text: str | bytes) -> Any:
    """The value of JSON ``text``; what orjson refuses (NaN, as older releases wrote it) is read by the
    standard library."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (device_id TEXT PRIMARY KEY, mac TEXT, uuid TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS devices_mac ON devices (mac);
CREATE TABLE IF NOT EXISTS nodes (
    device_id TEXT PRIMARY KEY, state TEXT NOT NULL, generation INTEGER NOT NULL,
    updated REAL NOT NULL, progress REAL, last_event TEXT);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, generation INTEGER NOT NULL,
    kind TEXT NOT NULL, client TEXT, mac TEXT, detail TEXT NOT NULL, time REAL NOT NULL,
    dedupe TEXT, repeat INTEGER NOT NULL DEFAULT 1, last_time REAL);
CREATE INDEX IF NOT EXISTS events_device ON events (device_id, id);
CREATE TABLE IF NOT EXISTS ip_mac (ip TEXT PRIMARY KEY, mac TEXT NOT NULL, time REAL NOT NULL);
"""
# The schema version is kept in PRAGMA user_version. _SCHEMA is version 0 (as first released, unstamped);
# step N takes a database from version N-1 to N. A released step is never edited; a change is a new step.
_MIGRATIONS: tuple[str, ...] = (
    # 1: the repeat lookup made for every recorded event seeks an index instead of scanning the device's events
    "CREATE INDEX IF NOT EXISTS events_dedupe ON events (device_id, dedupe, id);",
    # 2: unregistered devices are bounded and aged by when they were last seen; the per-install token secret
    "ALTER TABLE devices ADD COLUMN last_seen REAL NOT NULL DEFAULT 0;"
    " UPDATE devices SET last_seen = COALESCE(json_extract(data, '$.last_seen'), 0);"
    " CREATE INDEX IF NOT EXISTS devices_seen ON devices (last_seen);"
    " CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    # 3: a device record carries the diagnosis of its current boot attempt (status reads no timelines)
    "UPDATE devices SET data = json_set(data, '$.diagnosis', (SELECT json(e.detail) FROM events e"
    " WHERE e.device_id = devices.device_id AND e.kind = 'boot.diagnosis'"
    " AND e.time >= COALESCE(json_extract(devices.data, '$.boot_started'), 1e18) ORDER BY e.id DESC LIMIT 1));",
    # 4: a DISCOVER's ciaddr 0.0.0.0 was once learned as the machine's address: it is none
    "UPDATE devices SET data = json_remove(json_set(data, '$.ip', json('null')), '$.learned.ip')"
    " WHERE json_extract(data, '$.ip') = '0.0.0.0';",
)
SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(db: sqlite3.Connection, name: str) -> int:
    """Bring ``db`` to SCHEMA_VERSION, one step per transaction; returns the version it had. A database
    written by a newer release is refused in one line (an older program must not guess at its tables)."""
    found = int(db.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise UserError(
            f"{name} was written by a newer pypxe-homelab (schema {found}, this one reads up to "
            f"{SCHEMA_VERSION}): upgrade pypxe-homelab, or move the file away to start a new state"
        )
    db.executescript(_SCHEMA)
    for version in range(found + 1, SCHEMA_VERSION + 1):
        db.executescript(f"BEGIN; {_MIGRATIONS[version - 1]} PRAGMA user_version = {version}; COMMIT;")
    return found


# Machines that network-boot without being registered are remembered for `probe`, within bounds: any LAN host
# can invent MACs, so the oldest are forgotten beyond MAX_UNREGISTERED and after UNREGISTERED_DAYS unseen.
MAX_UNREGISTERED = 2000
UNREGISTERED_DAYS = 14
# The oldest are dropped in steps of this many (one statement each), and once an hour (of event time) the
# whole table is checked too (devices a reload unregistered, which the in-memory age order no longer tracks).
FORGET_STEP = 50
FULL_SWEEP_SECONDS = 3600.0


@dataclass(frozen=True)
class Notification:
    """What subscribers get after each recorded event: the entry, the device and its node state (if registered)."""

    entry: TimelineEntry
    device: DeviceRecord
    node: NodeState | None

    def to_json(self) -> dict:
        return {
            "device_id": self.device.device_id,
            "event": self.entry.to_json(),
            "node": self.node.to_json() if self.node else None,
            "stage": self.device.stage,
        }


def _arp_mac(ip: str) -> str | None:
    """The kernel's ARP entry for ``ip`` (what it learned from the client's own packets), or None."""
    try:
        lines = _ARP_TABLE.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        cols = line.split()
        if len(cols) >= 4 and cols[0] == ip and cols[2] != "0x0" and cols[3] != "00:00:00:00:00:00":
            return cols[3].lower()
    return None


@dataclass(eq=False)
class _Row:
    """A timeline entry staged for writing (``new``) or an existing one a retry was folded into."""

    id: int
    device_id: str
    generation: int
    kind: str
    client: str
    mac: str | None
    detail: str
    time: float
    dedupe: str | None
    repeat: int = 1
    last_time: float | None = None
    new: bool = True


@dataclass(eq=False)
class _Pending:
    """What a batch changes, written by ``StateStore._flush`` in one transaction."""

    devices: dict[str, DeviceRecord] = field(default_factory=dict)
    nodes: dict[str, NodeState] = field(default_factory=dict)
    ips: dict[str, tuple[str, float]] = field(default_factory=dict)
    rows: list[_Row] = field(default_factory=list)
    updates: dict[int, _Row] = field(default_factory=dict)
    folds: dict[tuple[str, str], _Row] = field(default_factory=dict)
    prune: set[str] = field(default_factory=set)
    forget: set[str] = field(default_factory=set)  # unregistered devices dropped, with their timelines
    touched: set[tuple[str, str]] = field(default_factory=set)  # (table, key) for the memory copies

    @property
    def empty(self) -> bool:
        return not (
            self.devices or self.nodes or self.ips or self.rows or self.updates or self.prune or self.forget
        )


def _node(device_id: str, row: tuple) -> NodeState:
    return NodeState(device_id, row[0], int(row[1]), float(row[2]), row[3], row[4])


def _is_plain(detail: object) -> bool:
    """Whether ``detail`` comes back from JSON unchanged (a flat mapping of strings, numbers, booleans, None)."""
    # the keys are the kind's field names (``Event`` admits no others)
    return type(detail) is dict and _PLAIN.issuperset(map(type, detail.values()))


class StateStore:
    """Devices, node lifecycles and timelines, persisted in sqlite under the data root (or in memory)."""

    def __init__(self, path: Path | None, *, use_arp: bool = True) -> None:
        """Open (creating it and its folder if needed) the database at ``path``; None keeps everything in memory.

        ``use_arp``: let ``mac_for_ip`` fall back to the kernel's ARP table.
        """
        self.path = path
        self._use_arp = use_arp
        self._lock = threading.RLock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(path) if path else ":memory:", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA busy_timeout = 5000")
        if path is not None:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        try:
            migrate(self._db, str(path) if path else ":memory:")
        except BaseException:
            self._db.close()
            raise
        self._subscribers: list[Callable[[Notification], None]] = []
        self._is_registered: Callable[[str], bool] = lambda _id: True
        self._policy: Callable[[str], str] = lambda _id: "once"
        self._inserts: dict[str, int] = {}  # events stored per device since start, for pruning
        self._swept = 0.0  # event time of the last whole-table sweep
        self._closed = False
        # Memory copies (see the module docstring). Reads of these need no lock: one dict lookup.
        self._nodes: dict[str, NodeState] = {}
        self._ip_mac: dict[str, str] = {}
        self._pi_by_mac: dict[str, str] = {}  # MAC → the Pi serial id its record is kept under
        self._devices: dict[str, DeviceRecord] = {}  # bounded cache, most recently recorded last
        # Unregistered device ids → last seen, least recently recorded first: what the bound forgets first
        self._by_age: dict[str, float] = {}
        self._known: set[str] = set()  # every device id in the database: a new machine costs no lookup
        self._latest = 0.0  # the time of the newest event recorded: "now" for the age bound
        self._arp: dict[str, tuple[float, str | None]] = {}
        self._pending = _Pending()  # what record_many worked out and has not written yet
        self._load_memory()
        self._next_id = self._first_free_id()

    def _load_memory(self) -> None:
        rows = self._db.execute(
            "SELECT device_id, state, generation, updated, progress, last_event FROM nodes"
        ).fetchall()
        self._nodes = {r[0]: _node(r[0], r[1:]) for r in rows}
        self._ip_mac = dict(self._db.execute("SELECT ip, mac FROM ip_mac").fetchall())
        self._pi_by_mac = {
            mac: device_id
            for device_id, mac in self._db.execute(
                "SELECT device_id, mac FROM devices WHERE mac IS NOT NULL AND length(device_id) = 8 "
                "ORDER BY rowid DESC"
            )
        }
        self._devices.clear()
        # Registered ones are among them until the inventory view is set; the bound skips (and drops) them.
        self._by_age = dict(self._db.execute("SELECT device_id, last_seen FROM devices ORDER BY last_seen"))
        self._known = set(self._by_age)

    def _reread(self, touched: set[tuple[str, str]]) -> None:
        """After a rollback: make the memory copies of what the transaction wrote equal the database again."""
        for table, key in touched:
            if table == "node":
                row = self._db.execute(
                    "SELECT state, generation, updated, progress, last_event FROM nodes WHERE device_id = ?",
                    (key,),
                ).fetchone()
                if row is None:
                    self._nodes.pop(key, None)
                else:
                    self._nodes[key] = _node(key, row)
            elif table == "ip":
                row = self._db.execute("SELECT mac FROM ip_mac WHERE ip = ?", (key,)).fetchone()
                if row is None:
                    self._ip_mac.pop(key, None)
                else:
                    self._ip_mac[key] = row[0]
            else:
                self._devices.pop(key, None)
                for mac, owner in list(self._pi_by_mac.items()):
                    if owner == key:
                        del self._pi_by_mac[mac]
                row = self._db.execute("SELECT mac FROM devices WHERE device_id = ?", (key,)).fetchone()
                if row is None:
                    self._known.discard(key)
                else:
                    self._known.add(key)
                if row is not None and row[0] and is_pi_serial(key):
                    self._pi_by_mac[row[0]] = key

    # -- wiring ---------------------------------------------------------------------------------

    def set_inventory_view(
        self, is_registered: Callable[[str], bool], install_policy: Callable[[str], str]
    ) -> None:
        """Tell the store which device ids are registered and their effective install policy."""
        self._is_registered = is_registered
        self._policy = install_policy

    def subscribe(self, callback: Callable[[Notification], None]) -> Callable[[], None]:
        """Call ``callback`` (from the recording thread) after every recorded event; returns the unsubscriber."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    # -- recording ------------------------------------------------------------------------------

    def record(self, event: Event) -> str | None:
        """Attach ``event`` to its device, update the device record, the node state and the timeline.

        Returns the device id the event was attached to (None when no device could be told).
        """
        return self.record_many([event])[0]

    def record_many(self, events: list[Event]) -> list[str | None]:
        """``record`` for a batch, written in one transaction; subscribers hear of each after the commit.

        Each event is worked out in memory first and only then staged for writing, so one odd event is
        skipped (and logged) without undoing the others."""
        notes: list[Notification | None] = []
        with self._lock:
            if self._closed:
                return [None] * len(events)
            for event in events:
                try:
                    notes.append(self._record(event))
                except Exception as exc:  # an odd event must never take a service down
                    log.warning(
                        "state: could not record %s from %s: %s", event.kind, event.client or "?", exc
                    )
                    notes.append(None)
            self._forget_oldest(self._latest - UNREGISTERED_DAYS * 86400)
            try:
                self._flush()
            except Exception as exc:
                log.warning("state: could not record %d event(s): %s", len(events), exc)
                return [None] * len(events)
            subscribers = list(self._subscribers)
        for note in notes:
            if note is None:
                continue
            for callback in subscribers:
                try:
                    callback(note)
                except Exception as exc:
                    log.warning("state: a subscriber failed: %s", exc)
        return [note.device.device_id if note is not None else None for note in notes]

    def _record(self, event: Event) -> Notification | None:
        if event.kind in HTTP_KINDS and not event.device_id and not event.mac:
            # neither the request nor the address it came from named a machine: nothing to record (at best
            # the address is known, which records nothing for HTTP, below), so no work per such request
            return None
        ip = client_ip(event.client)
        device_id, mac, strong = self._resolve(event, ip)
        if device_id is None:
            log.debug("state: %s from %s names no device yet", event.kind, event.client or "?")
            return None
        if not strong and event.kind in HTTP_KINDS:
            # tied to a machine only by its address: any LAN host can send it, so it neither creates a
            # device record nor changes a node (only firmware and installer traffic naming the node does)
            log.debug("state: %s from %s names no machine; not recorded", event.kind, event.client or "?")
            return None
        if is_pi_serial(device_id) and not mac and ip:
            mac = self._pi_mac_behind(ip)
        event = event.evolve(device_id=device_id, mac=event.mac or mac or None)
        if is_pi_serial(device_id) and event.mac:
            self._adopt_pi_mac_record(device_id, event.mac)
        previous = self._device(device_id)
        new_boot = starts_boot(previous, event)
        device = observe(previous, device_id, event, ip)
        addresses = self._learned_ips(event, ip, device, strong)
        node: NodeState | None = None
        if self._is_registered(device_id):
            node = transition(self.node_state(device_id), event, self._policy(device_id), new_boot)
        generation = node.generation if node else 1
        if event.kind is Kind.INSTALL_EVENT:
            pct = installer_progress(event.detail)
            if pct is not None:
                event = event.evolve(detail={**event.detail, "progress": pct})
        detail = _to_json(event.detail)
        # Everything above may fail on an odd event; what follows only stages what it worked out.
        self._put_device(device)
        self._latest = max(self._latest, event.time)
        if not self._is_registered(device_id):
            self._by_age.pop(device_id, None)
            self._by_age[device_id] = device.last_seen
            if previous is None and event.time - self._swept >= FULL_SWEEP_SECONDS:
                self._swept = event.time
                self._forget_unregistered(event.time)
        for address in addresses:
            self._put_ip(address, event.mac or device.mac or "", event.time)
        if node is not None:
            self._put_node(node)
        # Only a device heard from within the dedupe window can have an entry to fold this event into.
        recent = previous is not None and event.time - previous.last_seen <= DEDUPE_WINDOW_SECONDS
        entry = self._append(event, generation, detail, recent)
        return Notification(entry, device, node)

    def _resolve(self, event: Event, ip: str | None) -> tuple[str | None, str | None, bool]:
        """(device id, MAC, strong): strong when the event itself names the machine, not only its IP."""
        d = event.detail
        mac = event.mac.lower() if event.mac else None
        serial = str(d.get("serial") or "").lower()
        if is_pi_serial(serial):
            return serial, mac, True
        if event.device_id:
            try:
                device_id = normalise_device_id(event.device_id)
            except ValueError:
                device_id = None
            if device_id:
                mac = mac or mac_of_device_id(device_id)
                return (self._id_for_mac(mac) if mac else device_id), mac, True
        if mac:
            return self._id_for_mac(mac), mac, True
        path = event_path(event) if event.kind in TFTP_KINDS else ""
        if path:
            found = self._resolve_path(path)
            if found:
                return found[0], found[1], True
        if ip:
            known = self.mac_for_ip(ip)
            if known:
                return self._id_for_mac(known), known, False
        return None, None, False

    def _resolve_path(self, raw: str) -> tuple[str, str | None] | None:
        try:
            hint = device_hint(normalise(raw))
        except PathRefused:
            return None
        if hint is None:
            return None
        if hint.mac:
            return self._id_for_mac(hint.mac), hint.mac
        if hint.device_id:
            return hint.device_id, None
        if hint.uuid:
            wanted = uuid_forms(hint.uuid)
            self._flush()  # staged devices are searched too
            for device_id, mac, uuid in self._db.execute("SELECT device_id, mac, uuid FROM devices"):
                if uuid_forms(uuid) & wanted:
                    return device_id, mac
            return None
        if hint.ipv4:
            mac = self.mac_for_ip(hint.ipv4)
            return (self._id_for_mac(mac), mac) if mac else None
        return None

    def _pi_mac_behind(self, ip: str) -> str | None:
        """The MAC behind a Pi's address, when what is known there is a Raspberry Pi."""
        mac = self.mac_for_ip(ip)
        if not mac:
            return None
        known = self._device(device_id_of_mac(mac))
        return mac if is_pi_mac(mac) or (known is not None and known.pi) else None

    def _id_for_mac(self, mac: str) -> str:
        """A Pi already known by its serial keeps that id; anything else is ``01-<mac>``."""
        return self._pi_by_mac.get(mac) or device_id_of_mac(mac)

    def _adopt_pi_mac_record(self, serial: str, mac: str) -> None:
        """Fold the record a Pi got under its MAC (before its serial was seen) into its serial record."""
        mac_id = device_id_of_mac(mac)
        other = self._device(mac_id)
        if other is None or not other.pi:
            return
        mine = self._device(serial)
        merged = merge(mine, other) if mine else replace(other, device_id=serial)
        self._put_device(merged)
        self._flush()  # the staged entries of the MAC record move with it
        touched = {("device", mac_id), ("device", serial), ("node", mac_id)}
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM devices WHERE device_id = ?", (mac_id,))
            self._db.execute("UPDATE events SET device_id = ? WHERE device_id = ?", (serial, mac_id))
            if not self._is_registered(mac_id):
                self._db.execute("DELETE FROM nodes WHERE device_id = ?", (mac_id,))
            self._db.execute("COMMIT")
        except Exception:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        finally:
            self._reread(touched)

    def _learned_ips(self, event: Event, ip: str | None, device: DeviceRecord, strong: bool) -> list[str]:
        """The addresses ``event`` ties to the device's MAC: a 4011 ciaddr, or the client address of a
        TFTP/HTTP request that named the machine itself."""
        dhcp = event.kind in DHCP_KINDS
        if not (event.mac or device.mac):
            return []
        ciaddr = event.detail.get("ciaddr") if dhcp else None
        return [
            address
            for address in (ciaddr, ip if strong and not dhcp else None)
            if address and address not in ("0.0.0.0", "127.0.0.1", "::1")
        ]

    def _append(self, event: Event, generation: int, detail: str, recent: bool = True) -> TimelineEntry:
        """Stage ``event`` (``detail``: its detail as JSON) as a timeline entry, or fold it into the same
        request's entry of the last 30 s, looked up only when ``recent`` (the device was heard from within
        that window)."""
        assert event.device_id is not None
        pending = self._pending
        key = dedupe_key(event)
        if key is not None and recent:
            row = pending.folds.get((event.device_id, key))
            if row is None:
                found = self._db.execute(
                    "SELECT id, repeat, time, last_time, detail FROM events WHERE device_id = ? AND dedupe = ? "
                    "ORDER BY id DESC LIMIT 1",
                    (event.device_id, key),
                ).fetchone()
                if found is not None:
                    row = _Row(found[0], event.device_id, generation, event.kind.value, event.client,
                               event.mac, found[4], found[2], key, found[1], found[3], new=False)  # fmt: skip
            if row is not None and event.time - (row.last_time or row.time) <= DEDUPE_WINDOW_SECONDS:
                row.repeat += 1
                row.last_time = event.time
                pending.folds[(event.device_id, key)] = row
                if not row.new:
                    pending.updates[row.id] = row
                first = event.evolve(time=row.time, detail=_from_json(row.detail))
                return TimelineEntry(row.id, first, generation, row.repeat, event.time)
        row = _Row(self._next_id, event.device_id, generation, event.kind.value, event.client, event.mac,
                   detail, event.time, key)  # fmt: skip
        self._next_id += 1
        pending.rows.append(row)
        if key is not None:
            pending.folds[(event.device_id, key)] = row
        count = self._inserts.get(event.device_id, 0) + 1
        self._inserts[event.device_id] = count
        if count % _PRUNE_EVERY == 0:
            pending.prune.add(event.device_id)
        if not _is_plain(event.detail):
            event = event.evolve(detail=_from_json(detail))  # as it reads back from the database
        return TimelineEntry(row.id, event, generation)

    def _flush(self) -> None:
        """Write what is staged in one transaction; on failure roll back, make the memory copies equal the
        database again, and raise."""
        pending, self._pending = self._pending, _Pending()
        if pending.empty:
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO devices (device_id, mac, uuid, data, last_seen) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(device_id) DO UPDATE SET mac = excluded.mac, uuid = excluded.uuid, "
                "data = excluded.data, last_seen = excluded.last_seen",
                [
                    (r.device_id, r.mac, r.uuid, _to_json(r.to_json()), r.last_seen)
                    for r in pending.devices.values()
                ],
            )
            db.executemany(
                "INSERT INTO nodes (device_id, state, generation, updated, progress, last_event) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET state = excluded.state, "
                "generation = excluded.generation, updated = excluded.updated, progress = excluded.progress, "
                "last_event = excluded.last_event",
                [
                    (n.device_id, n.state, n.generation, n.updated, n.progress, n.last_event)
                    for n in pending.nodes.values()
                ],  # fmt: skip
            )
            db.executemany(
                "INSERT INTO ip_mac (ip, mac, time) VALUES (?, ?, ?) "
                "ON CONFLICT(ip) DO UPDATE SET mac = excluded.mac, time = excluded.time",
                [(ip, mac, t) for ip, (mac, t) in pending.ips.items()],
            )
            db.executemany(
                "INSERT INTO events (id, device_id, generation, kind, client, mac, detail, time, dedupe, repeat, "
                "last_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.id,
                        r.device_id,
                        r.generation,
                        r.kind,
                        r.client,
                        r.mac,
                        r.detail,
                        r.time,
                        r.dedupe,
                        r.repeat,
                        r.last_time,
                    )
                    for r in pending.rows
                ],  # fmt: skip
            )
            db.executemany(
                "UPDATE events SET repeat = ?, last_time = ? WHERE id = ?",
                [(r.repeat, r.last_time, r.id) for r in pending.updates.values()],
            )
            for device_id in pending.prune:
                self._prune(device_id)
            if pending.forget:
                gone = [(device_id,) for device_id in pending.forget]
                db.executemany("DELETE FROM devices WHERE device_id = ?", gone)
                db.executemany("DELETE FROM events WHERE device_id = ?", gone)
            db.execute("COMMIT")
        except Exception:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._reread(pending.touched)
            self._next_id = self._first_free_id()
            raise

    def _first_free_id(self) -> int:
        """The next timeline id (ids are never reused, as AUTOINCREMENT promises)."""
        top = self._db.execute("SELECT max(id) FROM events").fetchone()[0] or 0
        seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return max(top, seq[0] if seq else 0) + 1

    def _prune(self, device_id: str) -> None:
        """Keep the device's newest MAX_EVENTS_PER_DEVICE events (run every _PRUNE_EVERY of its events)."""
        self._db.execute(
            "DELETE FROM events WHERE device_id = ? AND id <= (SELECT id FROM events WHERE device_id = ? "
            "ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (device_id, device_id, MAX_EVENTS_PER_DEVICE),
        )

    # -- persistence helpers --------------------------------------------------------------------

    def _device(self, device_id: str) -> DeviceRecord | None:
        """The device record (callers copy before changing it: ``observe`` and ``merge`` do)."""
        cached = self._devices.get(device_id)
        if cached is not None:
            return cached
        if device_id not in self._known:
            return None
        row = self._db.execute("SELECT data FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        if row is None:
            return None
        rec = DeviceRecord.from_json(_from_json(row[0]))
        self._remember(rec)
        return rec

    def _forget_oldest(self, cutoff: float) -> None:
        """Stage dropping the least recently seen unregistered devices beyond MAX_UNREGISTERED (in steps of
        FORGET_STEP) and those unseen since ``cutoff``: work per event does not grow with the store."""
        by_age = self._by_age
        over = len(by_age) > MAX_UNREGISTERED + FORGET_STEP
        while by_age:
            device_id, seen = next(iter(by_age.items()))
            if not (over and len(by_age) > MAX_UNREGISTERED) and seen >= cutoff:
                break
            del by_age[device_id]
            if self._is_registered(device_id):
                continue  # registered since: never forgotten (its next event is not tracked here)
            self._forget(device_id)

    def _forget(self, device_id: str) -> None:
        """Stage dropping one device record and its timeline."""
        pending = self._pending
        pending.forget.add(device_id)
        pending.devices.pop(device_id, None)
        pending.touched.add(("device", device_id))
        self._devices.pop(device_id, None)
        self._known.discard(device_id)
        self._inserts.pop(device_id, None)
        if is_pi_serial(device_id):
            for mac in [m for m, owner in self._pi_by_mac.items() if owner == device_id]:
                del self._pi_by_mac[mac]

    def _forget_unregistered(self, now: float) -> None:
        """Stage dropping unregistered devices unseen for UNREGISTERED_DAYS, and the oldest beyond
        MAX_UNREGISTERED, with their timelines (the whole table: see FULL_SWEEP_SECONDS). Registered nodes are
        never dropped."""
        self._flush()  # what is staged counts too
        rows = self._db.execute("SELECT device_id, last_seen FROM devices ORDER BY last_seen DESC").fetchall()
        unregistered = [(d, seen) for d, seen in rows if not self._is_registered(d)]
        cutoff = now - UNREGISTERED_DAYS * 86400
        gone = [
            d for index, (d, seen) in enumerate(unregistered) if index >= MAX_UNREGISTERED or seen < cutoff
        ]
        for device_id in gone:  # written with the batch, as the bound's own steps are
            self._by_age.pop(device_id, None)
            self._forget(device_id)

    def _remember(self, rec: DeviceRecord) -> None:
        self._devices.pop(rec.device_id, None)
        self._devices[rec.device_id] = rec
        if len(self._devices) > DEVICE_CACHE:
            del self._devices[next(iter(self._devices))]

    def _put_device(self, rec: DeviceRecord) -> None:
        self._pending.forget.discard(rec.device_id)
        self._known.add(rec.device_id)
        self._pending.devices[rec.device_id] = rec
        self._pending.touched.add(("device", rec.device_id))
        self._remember(rec)
        if rec.mac and is_pi_serial(rec.device_id):
            self._pi_by_mac[rec.mac] = rec.device_id

    def _put_node(self, node: NodeState) -> None:
        self._pending.nodes[node.device_id] = node
        self._pending.touched.add(("node", node.device_id))
        self._nodes[node.device_id] = node

    def _put_ip(self, ip: str, mac: str, at: float) -> None:
        self._pending.ips[ip] = (mac, at)
        self._pending.touched.add(("ip", ip))
        self._ip_mac[ip] = mac

    # -- queries --------------------------------------------------------------------------------

    def install_token(self, device_id: str, generation: int) -> str:
        """The token of one install of ``device_id``: an HMAC of a random secret kept in this database, so
        only the node's own user-data (and this store) knows it, and a new generation gets a new one."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'install-secret'").fetchone()
            if row is None:
                secret = secrets.token_hex(32)
                self._db.execute("INSERT INTO meta (key, value) VALUES ('install-secret', ?)", (secret,))
            else:
                secret = row[0]
        message = f"{device_id}:{generation}".encode()
        return hmac.new(bytes.fromhex(secret), message, hashlib.sha256).hexdigest()[:32]

    def boot_address(self, device_id: str) -> str | None:
        """The address ``device_id``'s firmware used in its current boot, or None."""
        rec = self.device(device_id)
        return rec.boot_ip if rec else None

    def node_state(self, device_id: str) -> NodeState:
        """The node's lifecycle state; a node never seen is 'discovered', generation 1 (from memory)."""
        return self._nodes.get(device_id) or NodeState(device_id)

    def mac_for_ip(self, ip: str) -> str | None:
        """The MAC last seen behind ``ip`` (4011 ciaddr, TFTP/HTTP of a known machine, else the ARP table,
        whose answer is reused for a moment)."""
        mac = self._ip_mac.get(ip)
        if mac or not self._use_arp:
            return mac
        now = time.monotonic()
        seen = self._arp.get(ip)
        if seen is not None and now - seen[0] < _ARP_TTL_SECONDS:
            return seen[1]
        found = _arp_mac(ip)
        if len(self._arp) > 4096:
            self._arp.clear()
        self._arp[ip] = (now, found)
        return found

    def device(self, device_id: str) -> DeviceRecord | None:
        with self._lock:
            rec = self._device(device_id)
            return copy.deepcopy(rec) if rec is not None else None

    def devices(self, limit: int | None = None, offset: int = 0) -> list[DeviceRecord]:
        """Devices discovered, registered or not, most recently seen first; a page of ``limit`` from
        ``offset`` (all of them without ``limit``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM devices ORDER BY last_seen DESC LIMIT ? OFFSET ?",
                (-1 if limit is None else max(0, int(limit)), max(0, int(offset))),
            ).fetchall()
        return [DeviceRecord.from_json(_from_json(r[0])) for r in rows]

    def devices_seen_between(self, since: float, until: float) -> list[DeviceRecord]:
        """Devices last seen in [``since``, ``until``], oldest first (an index range, not a scan)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM devices WHERE last_seen >= ? AND last_seen <= ? ORDER BY last_seen",
                (since, until),
            ).fetchall()
        return [DeviceRecord.from_json(_from_json(r[0])) for r in rows]

    def device_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM devices").fetchone()[0])

    def timeline(self, device_id: str, limit: int = 200) -> list[TimelineEntry]:
        """The node's last ``limit`` timeline entries, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, generation, kind, client, mac, detail, time, repeat, last_time FROM events "
                "WHERE device_id = ? ORDER BY id DESC LIMIT ?",
                (device_id, max(1, int(limit))),
            ).fetchall()
        entries = []
        for rid, gen, kind, client, mac, detail, t, repeat, last_time in reversed(rows):
            event = Event(Kind(kind), client or "", device_id, mac, _from_json(detail), t)
            entries.append(TimelineEntry(rid, event, gen, repeat, last_time))
        return entries

    def events(self, device_id: str, limit: int = 200) -> list[Event]:
        """The node's last ``limit`` events, oldest first; folded retries carry ``detail['repeat']``."""
        out = []
        for entry in self.timeline(device_id, limit):
            e = entry.event
            out.append(replace(e, detail={**e.detail, "repeat": entry.repeat}) if entry.repeat > 1 else e)
        return out

    # -- commands -------------------------------------------------------------------------------

    def reinstall(self, device_id: str) -> int:
        """Re-arm a node: a new install generation (so a new instance-id), state back to discovered."""
        now = time.time()
        with self._lock:
            self._flush()
            generation = self.node_state(device_id).generation + 1
            node = NodeState(device_id, "discovered", generation, now, None, "reinstall")
            event = reinstall_event(device_id, mac_of_device_id(device_id), generation, now)
            self._put_node(node)
            entry = self._append(event, generation, _to_json(event.detail), recent=False)
            self._flush()
            device = self._device(device_id) or DeviceRecord(device_id, first_seen=now, last_seen=now)
            subscribers = list(self._subscribers)
        log.info("%s: re-armed for install, generation %d", device_id, generation)
        for callback in subscribers:
            try:
                callback(Notification(entry, device, node))
            except Exception as exc:
                log.warning("state: a subscriber failed: %s", exc)
        return generation

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
