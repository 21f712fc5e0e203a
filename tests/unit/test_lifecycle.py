"""Install lifecycle: installer webhook events and the callback drive a node to installed or failed."""

from __future__ import annotations

from pathlib import Path

from pypxe_homelab.events import Event
from pypxe_homelab.state.lifecycle import NodeState, installer_outcome, installer_progress, transition
from pypxe_homelab.state.store import StateStore

PC = "01-52-54-00-a0-00-01"
MAC = "52:54:00:a0:00:01"

# The Subiquity stages in the order an autoinstall reports them (name, description).
STAGES = [
    ("subiquity/Install/install", "installing system"),
    ("subiquity/Install/install/configure_apt", "configuring apt"),
    ("subiquity/Install/install/curtin_install", "installing system"),
    (
        "subiquity/Install/install/curtin_install/run_curtin_step",
        "executing curtin install partitioning step",
    ),
    ("subiquity/Install/install/curtin_install/run_curtin_step", "executing curtin install extract step"),
    ("subiquity/Install/install/curtin_install/run_curtin_step", "executing curtin install curthooks step"),
    ("subiquity/Install/install/postinstall", "final system configuration"),
]


def hook(name: str, event_type: str, t: float, result: str | None = None, description: str = "") -> Event:
    detail = {
        "name": name,
        "event_type": event_type,
        "origin": "curtin",
        "timestamp": t,
        "level": "INFO",
        "description": description,
    }
    if result:
        detail["result"] = result
    return Event("install.event", "10.231.0.50:40000", PC, MAC, detail, t)


def boot_events(t: float) -> list[Event]:
    return [
        Event("dhcp.offer", "0.0.0.0:68", PC, MAC, {"arch": 7, "class": "efi64", "port": 67, "xid": 1}, t),
        Event(
            "dhcp.ack", "10.231.0.50:4011", PC, MAC, {"port": 4011, "ciaddr": "10.231.0.50", "xid": 2}, t + 1
        ),
        Event(
            "tftp.done",
            "10.231.0.50:2000",
            None,
            None,
            {"path": "efi64/syslinux.efi", "bytes": 200000, "duration": 0.5},
            t + 2,
        ),
        Event(
            "http.done",
            "10.231.0.50:3000",
            PC,
            MAC,
            {"path": f"/{PC}/casper/vmlinuz", "what": "kernel", "bytes": 14_000_000, "duration": 1.0},
            t + 3,
        ),
        Event("cloudinit.fetch", "10.231.0.50:3001", PC, MAC, {"file": "user-data"}, t + 10),
    ]


def run_install(store: StateStore, t: float) -> list[float | None]:
    progress = []
    for event in boot_events(t):
        store.record(event)
    assert store.node_state(PC).state == "installing"
    for i, (name, desc) in enumerate(STAGES):
        store.record(hook(name, "start", t + 20 + i, description=desc))
        progress.append(store.node_state(PC).progress)
    return progress


def test_installer_events_then_callback_reach_installed() -> None:
    store = StateStore(None, use_arp=False)
    assert store.node_state(PC).state == "discovered"
    progress = run_install(store, 1000.0)
    assert all(p is not None for p in progress)
    assert progress == sorted(progress) and progress[-1] > progress[0]
    assert store.node_state(PC).state == "installing"
    store.record(hook("subiquity/Install/install/postinstall", "finish", 1100.0, "SUCCESS"))
    store.record(Event("install.callback", "10.231.0.50:5000", PC, MAC, {}, 1101.0))
    state = store.node_state(PC)
    assert state.state == "installed" and state.progress == 100.0 and state.generation == 1
    kinds = [e.kind for e in store.events(PC)]
    assert kinds[0] == "dhcp.offer" and kinds[-1] == "install.callback"
    stages = [e.detail.get("progress") for e in store.events(PC) if e.kind == "install.event"]
    assert stages[0] is not None


def test_install_finish_success_alone_means_installed() -> None:
    store = StateStore(None, use_arp=False)
    run_install(store, 1000.0)
    store.record(hook("subiquity/Install/install", "finish", 1200.0, "SUCCESS"))
    assert store.node_state(PC).state == "installed"


def test_fail_means_failed_and_keeps_the_last_events() -> None:
    store = StateStore(None, use_arp=False)
    run_install(store, 1000.0)
    store.record(hook("subiquity/Install/install/curtin_install", "finish", 1300.0, "FAIL", "curtin failed"))
    store.record(hook("subiquity/Error/run", "start", 1301.0))
    state = store.node_state(PC)
    assert state.state == "failed"
    last = store.events(PC)[-2:]
    assert last[0].detail["result"] == "FAIL" and last[1].detail["name"] == "subiquity/Error/run"


def test_state_survives_reopening_the_database(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = StateStore(db, use_arp=False)
    run_install(store, 1000.0)
    store.record(Event("install.callback", "10.231.0.50:5000", PC, MAC, {}, 1101.0))
    count = len(store.events(PC))
    store.close()
    again = StateStore(db, use_arp=False)
    assert again.node_state(PC).state == "installed"
    assert len(again.events(PC)) == count
    assert again.device(PC).firmware == "efi64"
    again.close()


def test_reinstall_starts_a_new_generation(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db", use_arp=False)
    run_install(store, 1000.0)
    store.record(Event("install.callback", "10.231.0.50:5000", PC, MAC, {}, 1101.0))
    assert store.reinstall(PC) == 2
    state = store.node_state(PC)
    assert (state.state, state.generation, state.progress) == ("discovered", 2, None)
    for event in boot_events(2000.0):
        store.record(event)
    assert store.node_state(PC).state == "installing"
    assert store.timeline(PC)[-1].generation == 2


def test_installed_once_node_stays_installed_at_next_boot() -> None:
    store = StateStore(None, use_arp=False)
    run_install(store, 1000.0)
    store.record(Event("install.callback", "", PC, MAC, {}, 1101.0))
    store.record(Event("dhcp.offer", "0.0.0.0:68", PC, MAC, {"port": 67, "xid": 9}, 1300.0))
    assert store.node_state(PC).state == "installed"


def test_always_node_installs_again_with_a_new_generation() -> None:
    store = StateStore(None, use_arp=False)
    store.set_inventory_view(lambda _id: True, lambda _id: "always")
    run_install(store, 1000.0)
    store.record(Event("install.callback", "", PC, MAC, {}, 1101.0))
    assert store.node_state(PC).state == "installed"
    store.record(Event("dhcp.offer", "0.0.0.0:68", PC, MAC, {"port": 67, "xid": 9}, 1300.0))
    state = store.node_state(PC)
    assert (state.state, state.generation) == ("booting", 2)


def test_never_node_never_installs() -> None:
    store = StateStore(None, use_arp=False)
    store.set_inventory_view(lambda _id: True, lambda _id: "never")
    for event in boot_events(1000.0):
        store.record(event)
    store.record(Event("install.callback", "", PC, MAC, {}, 1101.0))
    assert store.node_state(PC).state == "booting"


def test_unregistered_devices_have_no_lifecycle() -> None:
    store = StateStore(None, use_arp=False)
    store.set_inventory_view(lambda _id: False, lambda _id: "once")
    for event in boot_events(1000.0):
        store.record(event)
    assert store.node_state(PC).state == "discovered"
    assert store.devices()[0].device_id == PC


def test_outcome_and_progress_rules() -> None:
    assert installer_outcome({"name": "subiquity/Shutdown/shutdown", "event_type": "start"}) == "installed"
    assert installer_outcome({"name": "x", "event_type": "finish", "result": "FAIL"}) == "failed"
    assert (
        installer_outcome({"name": "subiquity/Install/install", "event_type": "finish", "result": "WARN"})
        is None
    )
    assert installer_progress({"name": "subiquity/Late/run"}) == 96.0
    assert installer_progress({"name": "subiquity/Locale/apply"}) is None
    after = transition(NodeState(PC), hook("subiquity/Install/install", "start", 5.0), "once", False)
    assert after.state == "installing" and after.progress == 15.0
