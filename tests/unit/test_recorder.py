"""Events off the reply path: the recorder queues, records in the background, and never stalls a service."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from pathlib import Path

from pypxe_homelab.boot.booter import InventoryBooter
from pypxe_homelab.config.model import Inventory
from pypxe_homelab.events import Event, Kind
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.services.dhcp import InterfaceInfo, ProxyDhcpService
from pypxe_homelab.state.recorder import Recorder
from pypxe_homelab.state.store import StateStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dhcp" / "captured.json"
DISCOVER = next(
    bytes.fromhex(p["payload"])
    for p in json.loads(FIXTURES.read_text())["packets"]
    if p["name"] == "edk2_discover"
)
IFACE = InterfaceInfo("eth0", "10.231.0.3")


class SlowStore:
    """A store that takes ``delay`` seconds per batch (or fails), and remembers what it was given."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail
        self.batches: list[list[Event]] = []
        self.entered = threading.Event()

    def record_many(self, events: list[Event]) -> list[str | None]:
        self.entered.set()
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("disk on fire")
        self.batches.append(list(events))
        return [e.device_id for e in events]


def dhcp_with(emit) -> ProxyDhcpService:
    runtime = Runtime(Inventory(), StateStore(None), emit, ipaddress.IPv4Address("10.231.0.3"), 12345)
    return ProxyDhcpService(InventoryBooter(lambda: runtime), [IFACE], emit)


def test_a_slow_store_does_not_delay_the_reply() -> None:
    store = SlowStore(delay=0.5)
    recorder = Recorder(store)
    recorder.start()
    service = dhcp_with(recorder.emit)
    assert service.handle(DISCOVER, ("0.0.0.0", 68), IFACE, 67) is not None
    assert store.entered.wait(2)  # the recorder is now busy for 0.5 s
    started = time.perf_counter()
    for _ in range(20):
        assert service.handle(DISCOVER, ("0.0.0.0", 68), IFACE, 67) is not None
    assert time.perf_counter() - started < 0.4  # 20 replies while the store is still stuck in one batch
    assert recorder.flush(5)
    recorded = [e for batch in store.batches for e in batch]
    assert len(recorded) == 21 and all(e.kind is Kind.DHCP_OFFER for e in recorded)
    assert len(store.batches) <= 3  # the 20 queued meanwhile went in one or two batches
    recorder.stop()


def test_a_failing_store_never_reaches_the_service() -> None:
    recorder = Recorder(SlowStore(fail=True))
    recorder.start()
    service = dhcp_with(recorder.emit)
    for _ in range(3):
        assert service.handle(DISCOVER, ("0.0.0.0", 68), IFACE, 67) is not None
    assert recorder.flush(5)
    recorder.stop()


def test_listeners_hear_each_event_after_it_is_recorded_with_the_id_the_store_told() -> None:
    heard: list[tuple[Event, float]] = []
    store = StateStore(None, use_arp=False)
    recorder = Recorder(store, listeners=(lambda e, s: heard.append((e, s)),))
    recorder.start()
    recorder.emit(
        Event(Kind.DHCP_OFFER, "0.0.0.0:68", "01-52-54-00-a0-00-02", "52:54:00:a0:00:02", {"port": 67})
    )
    recorder.emit(
        Event(Kind.TFTP_RRQ, "10.0.0.5:2000", None, None, {"path": "pxelinux.cfg/01-52-54-00-a0-00-02"})
    )
    assert recorder.flush(5)
    recorder.stop()
    assert [e.kind for e, _ in heard] == [Kind.DHCP_OFFER, Kind.TFTP_RRQ]
    assert heard[1][0].device_id == "01-52-54-00-a0-00-02"  # told by the store from the config name
    assert all(s >= 0 for _, s in heard)
    assert len(store.events("01-52-54-00-a0-00-02")) == 2
    store.close()


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    store = SlowStore(delay=0.3)
    recorder = Recorder(store, maxsize=5)
    recorder.start()
    recorder.emit(Event(Kind.DHCP_OFFER))
    assert store.entered.wait(2)
    started = time.perf_counter()
    for _ in range(50):
        recorder.emit(Event(Kind.DHCP_OFFER))
    assert time.perf_counter() - started < 0.1
    assert recorder.dropped == 45
    assert recorder.flush(5)
    recorder.stop()
    assert sum(len(b) for b in store.batches) == 6
