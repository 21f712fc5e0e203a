"""JSON views of the state joined with the inventory: what the API serves and what the CLI prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pypxe_homelab.config.hostnet import network_of
from pypxe_homelab.config.model import Inventory, Node
from pypxe_homelab.identity import add_command, address_note
from pypxe_homelab.state.discovery import DeviceRecord

if TYPE_CHECKING:  # the CLI asking a running server's API never loads the store (sqlite3 and its tables)
    from pypxe_homelab.state.store import StateStore


def device_facts(rec: DeviceRecord) -> dict[str, Any]:
    """A device record as JSON, with the facts and where each was learned."""
    return rec.to_json()


def suggested_add(rec: DeviceRecord) -> str:
    """The command that registers a discovered device, with the prefix of the LAN it is on."""
    return add_command(rec.device_id, network_of(rec.ip))


def _suggestion(rec: DeviceRecord) -> dict[str, str]:
    network = network_of(rec.ip)
    return {"suggested": add_command(rec.device_id, network), "address_note": address_note(network, rec.ip)}


def current_diagnosis(rec: DeviceRecord | None) -> dict[str, Any] | None:
    """Why the machine's current (or last) boot attempt stopped, when the server has said so."""
    return dict(rec.diagnosis) if rec is not None and rec.diagnosis else None


def _node_json(
    inventory: Inventory, store: StateStore, node: Node, rec: DeviceRecord | None
) -> dict[str, Any]:
    eff = inventory.effective(node)
    state = store.node_state(node.device_id)
    return {
        "device_id": node.device_id,
        "registered": True,
        "hostname": node.name,
        "address": str(node.address) if node.address else None,
        "os": eff.os,
        "install": eff.install,
        "state": state.state,
        "generation": state.generation,
        "progress": state.progress,
        "updated": state.updated or None,
        "last_event": state.last_event,
        "last_seen": rec.last_seen if rec else None,
        "stage": rec.stage if rec else None,
        "mac": node.mac or (rec.mac if rec else None),
        "ip": rec.ip if rec else None,
        "firmware": rec.firmware if rec else None,
        "pi": node.is_pi or bool(rec and rec.pi),
        "secure_boot": eff.secure_boot,
        "diagnosis": current_diagnosis(rec),
    }


def _unregistered_json(rec: DeviceRecord) -> dict[str, Any]:
    return {
        "device_id": rec.device_id,
        "registered": False,
        "hostname": None,
        "address": None,
        "os": None,
        "install": None,
        "state": "unregistered",
        "generation": None,
        "progress": None,
        "updated": None,
        "last_event": None,
        "last_seen": rec.last_seen,
        "stage": rec.stage,
        "mac": rec.mac,
        "ip": rec.ip,
        "firmware": rec.firmware,
        "pi": rec.pi,
        "secure_boot": None,
        "diagnosis": current_diagnosis(rec),
    }


def nodes_view(inventory: Inventory, store: StateStore) -> list[dict[str, Any]]:
    """Every registered node (inventory order), then every discovered device not registered (flagged)."""
    records = {r.device_id: r for r in store.devices()}
    out = [
        _node_json(inventory, store, node, records.get(node.device_id)) for node in inventory.nodes.values()
    ]
    out += [_unregistered_json(r) for r in records.values() if r.device_id not in inventory.nodes]
    return out


def nodes_page(
    inventory: Inventory, store: StateStore, unregistered: int
) -> tuple[list[dict[str, Any]], int]:
    """Every registered node, then the ``unregistered`` most recently seen devices that are not, and how many
    are not registered in all: what a table shows, read as a page instead of every device record."""
    out, seen = [], 0
    for node in inventory.nodes.values():
        rec = store.device(node.device_id)
        seen += rec is not None
        out.append(_node_json(inventory, store, node, rec))
    page = store.devices(limit=max(0, unregistered) + len(inventory.nodes))
    out += [_unregistered_json(r) for r in page if r.device_id not in inventory.nodes][: max(0, unregistered)]
    return out, store.device_count() - seen


def node_view(inventory: Inventory, store: StateStore, device_id: str) -> dict[str, Any] | None:
    """One node (or discovered device) with its device facts; None when neither registered nor seen."""
    rec = store.device(device_id)
    node = inventory.node(device_id)
    if node is None and rec is None:
        return None
    out = _node_json(inventory, store, node, rec) if node else _unregistered_json(rec)  # type: ignore[arg-type]
    out["device"] = device_facts(rec) if rec else None
    if node is None and rec is not None:
        out.update(_suggestion(rec))
    return out


def devices_view(
    inventory: Inventory, store: StateStore, limit: int | None = None, offset: int = 0
) -> list[dict[str, Any]]:
    """Discovered devices not yet in the inventory, most recently seen first, with their facts and the
    command that adds them; a page of ``limit`` from ``offset`` (the store keeps at most a few thousand)."""
    found = [r for r in store.devices() if r.device_id not in inventory.nodes]
    page = found[offset:] if limit is None else found[offset : offset + limit]
    return [{**device_facts(r), **_suggestion(r), "diagnosis": current_diagnosis(r)} for r in page]


def timeline_view(store: StateStore, device_id: str, limit: int = 200) -> list[dict[str, Any]]:
    return [entry.to_json() for entry in store.timeline(device_id, limit)]
