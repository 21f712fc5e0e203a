"""The install lifecycle of a registered node: discovered → booting → installing → installed | failed.

Pure functions: the node's state, an event and the node's install policy go in, the next state comes out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from pypxe_homelab.events import HTTP_KINDS, TFTP_KINDS, Event, Kind

STATES: tuple[str, ...] = ("discovered", "booting", "installing", "installed", "failed")

INSTALL_DONE = "subiquity/Install/install"
SHUTDOWN = "subiquity/Shutdown/shutdown"

# Installer progress: (word found in the event name or description, percent reached when it starts).
# Subiquity runs these in this order; curtin's steps appear as run_curtin_step children.
INSTALLER_STAGES: tuple[tuple[str, float], ...] = (
    ("subiquity/early", 12.0),
    ("subiquity/install/install", 15.0),
    ("configure_apt", 18.0),
    ("curtin_install", 22.0),
    ("initial", 25.0),
    ("partitioning", 30.0),
    ("formatting", 35.0),
    ("extract", 45.0),
    ("curthooks", 70.0),
    ("postinstall", 85.0),
    ("install_", 87.0),
    ("unattended", 90.0),
    ("restore_apt_config", 94.0),
    ("subiquity/late/run", 96.0),
)

# Progress for what a node fetches before the installer reports anything.
FETCH_PROGRESS: dict[str, float] = {
    "kernel": 1.0,
    "initrd": 2.0,
    "iso": 3.0,
    "iso-done": 10.0,
    "seed": 11.0,  # the cloud-init seed
}


@dataclass(frozen=True)
class NodeState:
    """Where a node is in its install lifecycle. ``progress`` is a percentage (0–100) while known."""

    device_id: str
    state: str = "discovered"
    generation: int = 1
    updated: float = 0.0
    progress: float | None = None
    last_event: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def installer_progress(detail: Mapping[str, Any]) -> float | None:
    """The percentage an installer (webhook) event stands for, from the known Subiquity stage order."""
    text = f"{detail.get('name', '')} {detail.get('description', '')}".lower()
    found = [pct for word, pct in INSTALLER_STAGES if word in text]
    return max(found) if found else None


def installer_outcome(detail: Mapping[str, Any]) -> str | None:
    """'installed' or 'failed' when an installer event ends the install, else None."""
    name = str(detail.get("name", ""))
    event_type = str(detail.get("event_type", ""))
    result = str(detail.get("result", "")).upper()
    if result == "FAIL":
        return "failed"
    if name == INSTALL_DONE and event_type == "finish" and result == "SUCCESS":
        return "installed"
    if name == SHUTDOWN and event_type == "start":
        return "installed"
    return None


def event_label(event: Event) -> str:
    """A short name of the event for NodeState.last_event."""
    d = event.detail
    if event.kind is Kind.INSTALL_EVENT:
        return f"{d.get('event_type', '?')} {d.get('name', '?')}" + (
            f" {d['result']}" if d.get("result") else ""
        )
    path = d.get("path") or d.get("file")
    return f"{event.kind} {path}" if path else event.kind


def _progress(state: NodeState, value: float | None) -> float | None:
    if value is None:
        return state.progress
    return max(value, state.progress or 0.0)


def _fetch_progress(event: Event) -> float | None:
    if event.kind is Kind.CLOUDINIT_FETCH:
        return FETCH_PROGRESS["seed"]
    what = str(event.detail.get("what", ""))
    if what == "iso" and event.kind is Kind.HTTP_DONE:
        return FETCH_PROGRESS["iso-done"]
    return FETCH_PROGRESS.get(what)


def starts_install(event: Event) -> bool:
    """Whether an event means the installer is being fetched or runs (kernel/initrd/ISO, cloud-init, webhook)."""
    if event.kind in (Kind.CLOUDINIT_FETCH, Kind.INSTALL_EVENT):
        return True
    return event.kind in (Kind.HTTP_GET, Kind.HTTP_DONE) and event.detail.get("what") in (
        "kernel",
        "initrd",
        "iso",
    )


def transition(state: NodeState, event: Event, policy: str, new_boot: bool) -> NodeState:
    """The node's state after ``event``.

    ``policy`` is the node's install policy ('once' | 'always' | 'never'); ``new_boot`` says the event starts a
    new boot of the machine (see discovery.starts_boot). An installed 'once' node stays installed (it boots its
    disk) until re-armed; an 'always' node starts a new install generation at every new boot; a 'never' node
    is only ever booting.
    """
    now = event.time
    label = event_label(event)
    current = state
    if new_boot and event.kind in (Kind.DHCP_OFFER, Kind.DHCP_ACK):
        if current.state in ("installed", "failed") and policy == "always":
            current = replace(current, generation=current.generation + 1, state="discovered", progress=None)
        if current.state in ("discovered", "failed", "installing"):
            return replace(current, state="booting", progress=None, updated=now, last_event=label)
    if current.state == "installed" and (policy != "always" or not new_boot):
        return replace(current, updated=now, last_event=label)
    if event.kind is Kind.INSTALL_CALLBACK:
        if policy == "never":
            return replace(current, updated=now, last_event=label)
        return replace(current, state="installed", progress=100.0, updated=now, last_event=label)
    if event.kind is Kind.INSTALL_EVENT and policy != "never":
        outcome = installer_outcome(event.detail)
        if outcome == "failed":
            return replace(current, state="failed", updated=now, last_event=label)
        if outcome == "installed":
            return replace(current, state="installed", progress=100.0, updated=now, last_event=label)
        if current.state == "failed":
            return replace(current, updated=now, last_event=label)
        pct = _progress(current, installer_progress(event.detail))
        return replace(current, state="installing", progress=pct, updated=now, last_event=label)
    if starts_install(event) and policy != "never" and current.state != "failed":
        pct = _progress(current, _fetch_progress(event))
        return replace(current, state="installing", progress=pct, updated=now, last_event=label)
    if event.kind in (Kind.DHCP_OFFER, Kind.DHCP_ACK) or event.kind in TFTP_KINDS or event.kind in HTTP_KINDS:
        if current.state == "discovered":
            return replace(current, state="booting", updated=now, last_event=label)
        return replace(current, updated=now, last_event=label)
    return replace(current, updated=now, last_event=label)
