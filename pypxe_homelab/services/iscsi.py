"""The iSCSI service: keeps the server's tgtd exporting exactly the Pi nodes of the current inventory.

It never stops the other services: a missing tgtd, a taken port 3260 or a full disk is logged as one
line naming the fix, the PCs keep booting, and the next reload tries again. With no Pi node that has
a Pi image it does nothing at all (tgtd is not even looked for).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pypxe_homelab.config.model import Inventory, Paths
from pypxe_homelab.events import EventSink, IscsiDetail, Kind, iscsi_event
from pypxe_homelab.iscsi.desired import NodeTarget, desired_targets
from pypxe_homelab.iscsi.disks import DiskError, ensure_disk, remove_leftovers
from pypxe_homelab.iscsi.naming import serial_of_target
from pypxe_homelab.iscsi.plan import Export, Session, Withdraw, session_changes, sessions_of
from pypxe_homelab.iscsi.target import TargetError, TgtDaemon

log = logging.getLogger("pypxe_homelab.iscsi")

RUN_DIR = "tgtd"  # under the data root: tgtd's control socket and log
SESSION_POLL_SECONDS = 2.0


def run_dir(paths: Paths) -> Path:
    """Where the server's tgtd keeps its control socket and log."""
    return paths.root / RUN_DIR


class IscsiService:
    """Owns one :class:`TgtDaemon`; :meth:`apply` reconciles it with an inventory (at start, on every
    reload, after a reinstall). Calls are serialised; call them from the event loop's thread."""

    def __init__(
        self, paths: Paths, portals: Sequence[ipaddress.IPv4Address], emit: EventSink = lambda event: None
    ) -> None:
        self.daemon = TgtDaemon(run_dir(paths), portals)
        self.emit = emit
        self._lock = asyncio.Lock()
        self._reported: set[str] = set()
        self._sessions: set[tuple[str, Session]] = set()

    async def watch(self, current: Callable[[], Inventory], interval: float = SESSION_POLL_SECONDS) -> None:
        """Until cancelled: record each iSCSI login and logout as an event of its node, and start tgtd
        again (re-exporting ``current()``) if it exited."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._check_sessions(loop, current)
            except Exception:  # the server must outlive any iSCSI problem
                log.exception("iSCSI: session check failed")

    async def _check_sessions(
        self, loop: asyncio.AbstractEventLoop, current: Callable[[], Inventory]
    ) -> None:
        if self.daemon.proc is None:
            return
        if not self.daemon.running:
            await self.apply(current())
            return
        try:
            targets = await loop.run_in_executor(None, self.daemon.targets)
        except TargetError:
            return
        now = sessions_of(targets)
        logins, logouts = session_changes(self._sessions, now)
        self._sessions = now
        for kind, changes in ((Kind.ISCSI_LOGIN, logins), (Kind.ISCSI_LOGOUT, logouts)):
            for iqn, session in changes:
                self._record(kind, iqn, session)

    def _record(self, kind: Kind, iqn: str, session: Session) -> None:
        serial = serial_of_target(iqn)
        if serial is None:
            return
        detail = IscsiDetail(target=iqn, initiator=session.initiator, address=session.address)
        try:
            self.emit(iscsi_event(kind, session.address, serial, detail))
        except Exception:
            log.exception("iSCSI: could not record %s", kind)

    async def apply(self, inventory: Inventory, refresh: Iterable[str] = ()) -> None:
        """Export the Pi nodes of ``inventory`` and withdraw the others; ``refresh``: serials whose disk
        file was replaced (their target is re-created so tgtd opens the new file)."""
        async with self._lock:
            try:
                await self._apply(inventory, tuple(refresh))
            except (TargetError, DiskError) as exc:
                self._report(str(exc))
            except Exception:  # the server must outlive any iSCSI problem
                log.exception("iSCSI: reconcile failed; Pi disks may not be exported")

    async def _apply(self, inventory: Inventory, refresh: tuple[str, ...]) -> None:
        targets, skipped = desired_targets(inventory)
        for line in skipped:
            self._report(line, level=logging.WARNING)
        if not self.daemon.running:
            if not targets:
                return
            if self.daemon.proc is not None:
                log.error("iSCSI: tgtd exited (status %s); starting it again", self.daemon.proc.returncode)
                self.daemon.proc = None
            self.daemon.spawn()  # on this thread: the parent-death signal follows the spawning thread
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.daemon.wait_ready)
            log.info(
                "iSCSI: tgtd listening on %s (control socket %s)",
                ", ".join(f"{a}:{self.daemon.port}" for a in self.daemon.portals),
                self.daemon.socket_path,
            )
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, self._prepare_disks, targets)
        steps = await loop.run_in_executor(None, self.daemon.reconcile, ready, refresh)
        for step in steps:
            if isinstance(step, Export):
                t = step.target
                log.info("iSCSI: exporting %s (%s) as %s to %s", t.serial, t.disk, t.iqn, t.initiator)
            elif isinstance(step, Withdraw):
                log.info("iSCSI: withdrew %s", step.iqn)
        self._reported.clear()

    def _prepare_disks(self, targets: list[NodeTarget]) -> list[NodeTarget]:
        """Create the disks that do not exist yet; the targets whose disk is there."""
        ready = []
        folders = {t.disk.parent for t in targets}
        for folder in folders:
            for path in remove_leftovers(folder):
                log.warning("iSCSI: removed %s, an unfinished disk copy of an earlier run", path)
        for t in targets:
            try:
                if ensure_disk(t.image, t.disk):
                    log.info("iSCSI: created the disk of %s: %s (from %s)", t.serial, t.disk, t.image)
            except DiskError as exc:
                self._report(str(exc))
                continue
            ready.append(t)
        return ready

    def _report(self, message: str, level: int = logging.ERROR) -> None:
        if message not in self._reported:
            self._reported.add(message)
            log.log(level, "%s", message)

    def stop(self) -> None:
        """Stop tgtd (its targets are withdrawn first)."""
        self.daemon.stop()
