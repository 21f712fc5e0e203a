"""CPU cost of one ProxyDHCP answer without sockets: parse, decide, build, and the service's whole handle()
(events dropped; queued for the background recorder as ``serve`` does; recorded in line, as before the recorder).

    python3 bench/decide_cost.py TEMPLATE_HEX SECONDS

Prints one JSON line: median microseconds per packet for each step (median over repeated timed batches).
"""

from __future__ import annotations

import ipaddress
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pypxe_homelab.boot.booter import InventoryBooter, dhcp_decision  # noqa: E402
from pypxe_homelab.config.model import Inventory  # noqa: E402
from pypxe_homelab.protocol.dhcp_codec import (  # noqa: E402
    ReplyEncoder,
    RequestParser,
    build_reply,
    parse_request,
)
from pypxe_homelab.protocol.proxydhcp import ServerView  # noqa: E402
from pypxe_homelab.runtime import Runtime  # noqa: E402
from pypxe_homelab.server import bind_inventory_view  # noqa: E402
from pypxe_homelab.services.dhcp import InterfaceInfo, ProxyDhcpService  # noqa: E402
from pypxe_homelab.state.recorder import Recorder  # noqa: E402
from pypxe_homelab.state.store import StateStore  # noqa: E402

SERVER = "10.231.0.3"


def per_packet_us(step, seconds: float, batch: int = 200) -> float:
    """Median µs per call of ``step()`` over batches run for about ``seconds``."""
    step()  # warm up caches and lazy imports
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 3:
        t0 = time.perf_counter()
        for _ in range(batch):
            step()
        samples.append((time.perf_counter() - t0) / batch * 1e6)
    return statistics.median(samples)


def main() -> None:
    payload = bytes.fromhex(sys.argv[1])
    seconds = float(sys.argv[2])
    inventory = Inventory()
    view = ServerView(address=SERVER, interface="eth0")
    request = parse_request(payload)
    store = StateStore(None)
    runtime = Runtime(inventory, store, store.record, ipaddress.IPv4Address(SERVER), 8080)
    bind_inventory_view(runtime)  # as `serve` does
    booter = InventoryBooter(lambda: runtime)
    decision = dhcp_decision(booter, request, 67, view)
    if decision is None or decision.reply is None:
        raise SystemExit("the template DISCOVER gets no OFFER: cannot time the OFFER path")
    iface = InterfaceInfo("eth0", SERVER)
    recorder = Recorder(store)
    recorder.start()
    quiet = ProxyDhcpService(booter, [iface], lambda _e: None)
    queued = ProxyDhcpService(booter, [iface], recorder.emit)
    in_line = ProxyDhcpService(booter, [iface], store.record)
    src = ("0.0.0.0", 68)
    share = seconds / 9
    parser, encoder = RequestParser(), ReplyEncoder()
    prefixes = (b"PXEClient",)
    result = {
        "parse_us": per_packet_us(lambda: parse_request(payload), share),
        "cached_parse_us": per_packet_us(lambda: parser.parse(payload, prefixes), share),
        "cached_build_us": per_packet_us(lambda: encoder.encode(decision.reply), share),
        "decide_us": per_packet_us(lambda: dhcp_decision(booter, request, 67, view), share),
        "build_us": per_packet_us(lambda: build_reply(decision.reply), share),
        "parse_decide_build_us": per_packet_us(
            lambda: build_reply(dhcp_decision(booter, parse_request(payload), 67, view).reply), share
        ),
        "handle_no_events_us": per_packet_us(lambda: quiet.handle(payload, src, iface, 67), share),
        "handle_queued_us": per_packet_us(lambda: queued.handle(payload, src, iface, 67), share),
        "handle_recorded_in_line_us": per_packet_us(lambda: in_line.handle(payload, src, iface, 67), share),
        "reply_bytes": len(build_reply(decision.reply)),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
