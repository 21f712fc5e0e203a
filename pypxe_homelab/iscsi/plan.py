"""Reconcile planning, pure: read tgtd's targets from ``tgtadm --op show`` text, and compute the
tgtadm steps that turn them into the desired set (nothing is run here)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pypxe_homelab.iscsi.desired import NodeTarget

_TARGET = re.compile(r"^Target (\d+): (\S+)$")
_LUN = re.compile(r"^LUN: (\d+)$")
_BACKING = re.compile(r"^Backing store path: (.*)$")
_INITIATOR = re.compile(r"^Initiator: (\S+)")
_ADDRESS = re.compile(r"^IP Address: (\S+)$")


@dataclass(frozen=True)
class Session:
    """A logged-in initiator of a target: its name and the address it connects from."""

    initiator: str
    address: str


@dataclass(frozen=True)
class TargetState:
    """One target as tgtd has it: id, IQN, LUN 1's backing file (None if no LUN 1), its ACL entries
    (initiator names and addresses alike: tgt lists both under "ACL information") and its sessions."""

    tid: int
    iqn: str
    backing: str | None
    acls: tuple[str, ...]
    sessions: tuple[Session, ...] = ()


@dataclass(frozen=True)
class Withdraw:
    """Delete target ``tid`` (its sessions are dropped)."""

    tid: int
    iqn: str


@dataclass(frozen=True)
class Export:
    """Create target ``tid`` for ``target``: LUN 1 on its disk, ACL its initiator name."""

    tid: int
    target: NodeTarget


Step = Withdraw | Export


def parse_targets(text: str) -> list[TargetState]:
    """The targets in the output of ``tgtadm --lld iscsi --op show --mode target``."""
    found: list[TargetState] = []
    tid: int | None = None
    iqn = ""
    backing: str | None = None
    acls: list[str] = []
    sessions: list[Session] = []
    initiator = ""
    lun: int | None = None
    section = ""

    def flush() -> None:
        if tid is not None:
            found.append(TargetState(tid, iqn, backing, tuple(acls), tuple(dict.fromkeys(sessions))))

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _TARGET.match(raw)
        if m:
            flush()
            tid, iqn, backing, lun, section = int(m.group(1)), m.group(2), None, None, ""
            acls, sessions, initiator = [], [], ""
            continue
        if line.endswith(":") and ":" not in line[:-1]:
            section = line[:-1]
            continue
        m = _LUN.match(line)
        if m:
            lun = int(m.group(1))
            continue
        m = _BACKING.match(line)
        if m and lun == 1:
            backing = m.group(1).strip()
            continue
        if section == "ACL information":
            acls.append(line)
        elif section == "I_T nexus information":
            m = _INITIATOR.match(line)
            if m:
                initiator = m.group(1)
            m = _ADDRESS.match(line)
            if m and initiator:
                sessions.append(Session(initiator, m.group(1)))
    flush()
    return found


def sessions_of(targets: Sequence[TargetState]) -> set[tuple[str, Session]]:
    """Every (target IQN, session) pair of ``targets``: what :func:`session_changes` compares."""
    return {(t.iqn, s) for t in targets for s in t.sessions}


def session_changes(
    before: set[tuple[str, Session]], after: set[tuple[str, Session]]
) -> tuple[list[tuple[str, Session]], list[tuple[str, Session]]]:
    """(logins, logouts) between two :func:`sessions_of` snapshots, sorted."""
    return sorted(after - before, key=str), sorted(before - after, key=str)


def _up_to_date(have: TargetState, want: NodeTarget) -> bool:
    return have.backing == str(want.disk) and have.acls == (want.initiator,)


def plan(
    current: Sequence[TargetState], desired: Iterable[NodeTarget], refresh: Iterable[str] = ()
) -> list[Step]:
    """The steps from ``current`` to ``desired``: withdraw targets no longer wanted, changed ones (other
    disk, other ACL: even an extra address ACL, which would widen access) and those in ``refresh``
    (serials whose disk file was replaced), then export what is missing, on the lowest free tids."""
    wanted = {t.iqn: t for t in desired}
    again = set(refresh)
    renew = {iqn for iqn, t in wanted.items() if t.serial in again}
    steps: list[Step] = []
    kept: dict[str, TargetState] = {}
    for have in sorted(current, key=lambda t: t.tid):
        want = wanted.get(have.iqn)
        if want is None or have.iqn in kept or have.iqn in renew or not _up_to_date(have, want):
            steps.append(Withdraw(have.tid, have.iqn))
        else:
            kept[have.iqn] = have
    used = {t.tid for t in kept.values()}
    tid = 1
    for iqn in sorted(wanted):
        if iqn in kept:
            continue
        while tid in used:
            tid += 1
        used.add(tid)
        steps.append(Export(tid, wanted[iqn]))
    return steps


def tgtadm_args(step: Step) -> list[list[str]]:
    """The tgtadm arguments (after ``-C <port> --lld iscsi``) that carry out ``step``, in order."""
    if isinstance(step, Withdraw):
        return [["--op", "delete", "--mode", "target", "--tid", str(step.tid), "--force"]]
    t = step.target
    tid = str(step.tid)
    return [
        ["--op", "new", "--mode", "target", "--tid", tid, "--targetname", t.iqn],
        ["--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", "1", "--backing-store", str(t.disk)],
        ["--op", "bind", "--mode", "target", "--tid", tid, "--initiator-name", t.initiator],
    ]
