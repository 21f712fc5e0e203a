"""Run one pypxe-homelab service alone, as ``serve`` wires it, until SIGTERM.

    python3 bench/ours.py tftp ROOT PORT              # TftpService on 127.0.0.1:PORT serving files under ROOT
    python3 bench/ours.py http ROOT PORT              # HttpService on 127.0.0.1:PORT, httproot = ROOT/httproot
    python3 bench/ours.py dhcp IFACE [--no-events]    # ProxyDhcpService on UDP 67/4011 of IFACE

Events go through the background recorder into an in-memory StateStore, as in ``serve`` (which uses the same
store on disk); ``--no-events`` drops them, to see the service's own cost. Prints "ready" once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pypxe_homelab.boot.booter import InventoryBooter  # noqa: E402
from pypxe_homelab.config.model import Inventory, Paths  # noqa: E402
from pypxe_homelab.events import Event  # noqa: E402
from pypxe_homelab.rootfiles import static_file  # noqa: E402
from pypxe_homelab.runtime import Runtime  # noqa: E402
from pypxe_homelab.server import bind_inventory_view  # noqa: E402
from pypxe_homelab.services.dhcp import InterfaceInfo, ProxyDhcpService  # noqa: E402
from pypxe_homelab.services.http import HttpService  # noqa: E402
from pypxe_homelab.services.tftp import TftpFile, TftpService  # noqa: E402
from pypxe_homelab.state.recorder import Recorder  # noqa: E402
from pypxe_homelab.state.store import StateStore  # noqa: E402


def _runtime(root: Path, port: int, advertise: str, events: bool) -> Runtime:
    store = StateStore(None)

    def drop(_event: Event) -> None:
        return None

    emit = drop
    if events:
        recorder = Recorder(store)
        recorder.start()
        emit = recorder.emit
    inventory = Inventory(paths=Paths(root=root))
    runtime = Runtime(inventory, store, emit, ipaddress.IPv4Address(advertise), port)
    bind_inventory_view(runtime)  # as `serve` does: the store knows which devices are registered
    return runtime


def _ready() -> None:
    gc.collect()  # as `serve` does once started: start-up's objects leave the collector's full passes
    gc.freeze()
    print("ready", flush=True)


def serve_tftp(root: Path, port: int, events: bool) -> None:
    runtime = _runtime(root, 0, "127.0.0.1", events)

    def resolve(path: str, _client: tuple[str, int]) -> TftpFile | None:
        found = static_file(root, path)
        return TftpFile(path=found) if found else None

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with TftpService("127.0.0.1", port, resolve, runtime.emit):
        _ready()
        done.wait()


async def _serve_async(start, stop) -> None:
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await start()
    _ready()
    await stopping.wait()
    await stop()


def serve_http(root: Path, port: int, events: bool) -> None:
    runtime = _runtime(root, port, "127.0.0.1", events)
    service = HttpService(InventoryBooter(lambda: runtime), runtime.emit, port, "127.0.0.1")
    asyncio.run(_serve_async(service.start, service.stop))


def serve_dhcp(iface: str, events: bool) -> None:
    info = InterfaceInfo.of(iface)
    runtime = _runtime(Path("/nonexistent"), 8080, info.address, events)
    service = ProxyDhcpService(InventoryBooter(lambda: runtime), [info], runtime.emit)
    asyncio.run(_serve_async(service.start, service.stop))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("service", choices=("tftp", "http", "dhcp"))
    parser.add_argument("where", help="root folder (tftp, http) or interface (dhcp)")
    parser.add_argument("port", nargs="?", type=int, default=0)
    parser.add_argument("--no-events", action="store_true", help="drop events instead of recording them")
    args = parser.parse_args()
    events = not args.no_events
    if args.service == "tftp":
        serve_tftp(Path(args.where), args.port, events)
    elif args.service == "http":
        serve_http(Path(args.where), args.port, events)
    else:
        serve_dhcp(args.where, events)


if __name__ == "__main__":
    main()
