"""The persisted state: discovered devices, node lifecycles, the event timeline and the IP → MAC table.

One sqlite3 connection (WAL) guarded by a lock: the TFTP thread and the aiohttp loop both call ``record``.
Which device ids are registered, and their install policy, come from the inventory through
``set_inventory_view``; until it is set every device counts as registered with policy 'once'.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

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
        self._inserts = 0
        self._new_unregistered = 0
        self._closed = False

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
        """``record`` for a batch, in one transaction (each event in its own savepoint, so one odd event
        never undoes the others); subscribers hear of each after the commit."""
        notes: list[Notification | None] = []
        with self._lock:
            if self._closed:
                return [None] * len(events)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for event in events:
                    self._db.execute("SAVEPOINT one")
                    try:
                        notes.append(self._record(event))
                        self._db.execute("RELEASE one")
                    except Exception as exc:  # an odd event must never take a service down
                        self._db.execute("ROLLBACK TO one")
                        self._db.execute("RELEASE one")
                        log.warning(
                            "state: could not record %s from %s: %s", event.kind, event.client or "?", exc
                        )
                        notes.append(None)
                self._db.execute("COMMIT")
            except Exception as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
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
        if mac and not event.mac:
            event = replace(event, mac=mac)
        event = replace(event, device_id=device_id)
        if is_pi_serial(device_id) and event.mac:
            self._adopt_pi_mac_record(device_id, event.mac)
        previous = self._device(device_id)
        new_boot = starts_boot(previous, event)
        device = observe(previous, device_id, event, ip)
        self._save_device(device)
        if previous is None and not self._is_registered(device_id):
            self._new_unregistered += 1
            if self._new_unregistered % 50 == 1:  # bounded work: a sweep every 50 new machines
                self._forget_unregistered(event.time)
        self._learn_ip(event, ip, device, strong)
        node: NodeState | None = None
        if self._is_registered(device_id):
            before = self.node_state(device_id)
            node = transition(before, event, self._policy(device_id), new_boot)
            self._save_node(node)
        generation = node.generation if node else 1
        if event.kind is Kind.INSTALL_EVENT:
            pct = installer_progress(event.detail)
            if pct is not None:
                event = replace(event, detail={**event.detail, "progress": pct})
        entry = self._append(event, generation)
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
        row = self._db.execute(
            "SELECT device_id FROM devices WHERE mac = ? AND length(device_id) = 8 LIMIT 1", (mac,)
        ).fetchone()
        return row[0] if row else device_id_of_mac(mac)

    def _adopt_pi_mac_record(self, serial: str, mac: str) -> None:
        """Fold the record a Pi got under its MAC (before its serial was seen) into its serial record."""
        mac_id = device_id_of_mac(mac)
        other = self._device(mac_id)
        if other is None or not other.pi:
            return
        mine = self._device(serial)
        merged = merge(mine, other) if mine else replace(other, device_id=serial)
        self._save_device(merged)
        self._db.execute("DELETE FROM devices WHERE device_id = ?", (mac_id,))
        self._db.execute("UPDATE events SET device_id = ? WHERE device_id = ?", (serial, mac_id))
        if not self._is_registered(mac_id):
            self._db.execute("DELETE FROM nodes WHERE device_id = ?", (mac_id,))

    def _learn_ip(self, event: Event, ip: str | None, device: DeviceRecord, strong: bool) -> None:
        dhcp = event.kind in DHCP_KINDS
        ciaddr = event.detail.get("ciaddr") if dhcp else None
        mac = event.mac or device.mac
        if not mac:
            return
        for address in (ciaddr, ip if strong and not dhcp else None):
            if address and address not in ("0.0.0.0", "127.0.0.1", "::1"):
                self._db.execute(
                    "INSERT INTO ip_mac (ip, mac, time) VALUES (?, ?, ?) "
                    "ON CONFLICT(ip) DO UPDATE SET mac = excluded.mac, time = excluded.time",
                    (address, mac, event.time),
                )

    def _append(self, event: Event, generation: int) -> TimelineEntry:
        key = dedupe_key(event)
        if key is not None:
            row = self._db.execute(
                "SELECT id, repeat, time, last_time, detail FROM events WHERE device_id = ? AND dedupe = ? "
                "ORDER BY id DESC LIMIT 1",
                (event.device_id, key),
            ).fetchone()
            if row and event.time - (row[3] or row[2]) <= DEDUPE_WINDOW_SECONDS:
                self._db.execute(
                    "UPDATE events SET repeat = repeat + 1, last_time = ? WHERE id = ?", (event.time, row[0])
                )
                first = replace(event, time=row[2], detail=json.loads(row[4]))
                return TimelineEntry(row[0], first, generation, row[1] + 1, event.time)
        detail = json.dumps(event.detail, default=str)
        cur = self._db.execute(
            "INSERT INTO events (device_id, generation, kind, client, mac, detail, time, dedupe) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (event.device_id, generation, event.kind, event.client, event.mac, detail, event.time, key),
        )
        self._inserts += 1
        if self._inserts % _PRUNE_EVERY == 0:
            self._prune()
        return TimelineEntry(int(cur.lastrowid or 0), replace(event, detail=json.loads(detail)), generation)

    def _prune(self) -> None:
        for (device_id,) in self._db.execute("SELECT DISTINCT device_id FROM events").fetchall():
            self._db.execute(
                "DELETE FROM events WHERE device_id = ? AND id <= (SELECT id FROM events WHERE device_id = ? "
                "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (device_id, device_id, MAX_EVENTS_PER_DEVICE),
            )

    # -- persistence helpers --------------------------------------------------------------------

    def _device(self, device_id: str) -> DeviceRecord | None:
        row = self._db.execute("SELECT data FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return DeviceRecord.from_json(json.loads(row[0])) if row else None

    def _save_device(self, rec: DeviceRecord) -> None:
        self._db.execute(
            "INSERT INTO devices (device_id, mac, uuid, data, last_seen) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(device_id) DO UPDATE SET mac = excluded.mac, uuid = excluded.uuid, "
            "data = excluded.data, last_seen = excluded.last_seen",
            (rec.device_id, rec.mac, rec.uuid, json.dumps(rec.to_json()), rec.last_seen),
        )

    def _forget_unregistered(self, now: float) -> None:
        """Drop unregistered devices unseen for UNREGISTERED_DAYS, and the oldest beyond MAX_UNREGISTERED,
        with their timelines. Registered nodes are never dropped."""
        rows = self._db.execute("SELECT device_id, last_seen FROM devices ORDER BY last_seen DESC").fetchall()
        unregistered = [(d, seen) for d, seen in rows if not self._is_registered(d)]
        cutoff = now - UNREGISTERED_DAYS * 86400
        gone = [
            d for index, (d, seen) in enumerate(unregistered) if index >= MAX_UNREGISTERED or seen < cutoff
        ]
        for device_id in gone:
            self._db.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))
            self._db.execute("DELETE FROM events WHERE device_id = ?", (device_id,))

    def _save_node(self, node: NodeState) -> None:
        self._db.execute(
            "INSERT INTO nodes (device_id, state, generation, updated, progress, last_event) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET state = excluded.state, "
            "generation = excluded.generation, updated = excluded.updated, progress = excluded.progress, "
            "last_event = excluded.last_event",
            (node.device_id, node.state, node.generation, node.updated, node.progress, node.last_event),
        )

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
        """The node's lifecycle state; a node never seen is 'discovered', generation 1."""
        with self._lock:
            row = self._db.execute(
                "SELECT state, generation, updated, progress, last_event FROM nodes WHERE device_id = ?",
                (device_id,),
            ).fetchone()
        if row is None:
            return NodeState(device_id)
        return NodeState(device_id, row[0], int(row[1]), float(row[2]), row[3], row[4])

    def mac_for_ip(self, ip: str) -> str | None:
        """The MAC last seen behind ``ip`` (4011 ciaddr, TFTP/HTTP of a known machine, else the ARP table)."""
        with self._lock:
            row = self._db.execute("SELECT mac FROM ip_mac WHERE ip = ?", (ip,)).fetchone()
        if row:
            return row[0]
        return _arp_mac(ip) if self._use_arp else None

    def device(self, device_id: str) -> DeviceRecord | None:
        with self._lock:
            return self._device(device_id)

    def devices(self, limit: int | None = None, offset: int = 0) -> list[DeviceRecord]:
        """Devices discovered, registered or not, most recently seen first; a page of ``limit`` from
        ``offset`` (all of them without ``limit``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM devices ORDER BY last_seen DESC LIMIT ? OFFSET ?",
                (-1 if limit is None else max(0, int(limit)), max(0, int(offset))),
            ).fetchall()
        return [DeviceRecord.from_json(json.loads(r[0])) for r in rows]

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
            event = Event(Kind(kind), client or "", device_id, mac, json.loads(detail), t)
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
            self._db.execute("BEGIN IMMEDIATE")
            try:
                generation = self.node_state(device_id).generation + 1
                node = NodeState(device_id, "discovered", generation, now, None, "reinstall")
                self._save_node(node)
                event = reinstall_event(device_id, mac_of_device_id(device_id), generation, now)
                entry = self._append(event, generation)
                self._db.execute("COMMIT")
            except Exception:
                self._db.execute("ROLLBACK")
                raise
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
