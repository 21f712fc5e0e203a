"""Run only the ProxyDHCP service on one interface with a small inventory given on the command line.

Events are printed as JSON lines on stdout; the first line is ``{"ready": true}`` once the sockets are
bound. Stops on SIGTERM/SIGINT. Example (inside a test namespace)::

    python -m tests.lab.proxydhcp_runner --iface eth0 --unknown ignore --node 01-52-54-00-a0-00-01=direct
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import signal
import sys

from pypxe_homelab.boot.booter import InventoryBooter
from pypxe_homelab.config.model import DEFAULT_LOADERS, Inventory, Node, ServerSettings
from pypxe_homelab.events import Event
from pypxe_homelab.identity import normalise_device_id
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.services.dhcp import InterfaceInfo, ProxyDhcpService


def _print_event(event: Event) -> None:
    print(json.dumps(dataclasses.asdict(event)), flush=True)


def build_inventory(args: argparse.Namespace) -> Inventory:
    loaders = dict(DEFAULT_LOADERS)
    for item in args.loader:
        key, _, value = item.partition("=")
        loaders[key] = value
    nodes = {}
    for item in args.node:
        device, _, mode = item.partition("=")
        device_id = normalise_device_id(device)
        nodes[device_id] = Node(device_id=device_id, uefi_mode=mode or None)  # type: ignore[arg-type]
    server = ServerSettings(unknown=args.unknown, uefi_mode=args.uefi_mode, loaders=loaders)
    return Inventory(server=server, nodes=nodes)


async def run(args: argparse.Namespace) -> None:
    iface = InterfaceInfo.of(args.iface)
    runtime = Runtime(
        inventory=build_inventory(args),
        store=None,  # type: ignore[arg-type]  # the proxy never touches the state store
        emit=_print_event,
        advertise=ipaddress.IPv4Address(iface.address),
        http_port=args.http_port,
    )
    service = ProxyDhcpService(InventoryBooter(lambda: runtime), [iface], runtime.emit)
    await service.start()
    print(json.dumps({"ready": True, "address": iface.address}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="proxydhcp_runner")
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--unknown", choices=("menu", "ignore"), default="menu")
    parser.add_argument("--uefi-mode", choices=("binl", "direct"), default="binl")
    parser.add_argument("--node", action="append", default=[], help="DEVICE_ID[=binl|direct]")
    parser.add_argument("--loader", action="append", default=[], help="CLASS=FILE ('' disables)")
    parser.add_argument("--http-port", type=int, default=12345)
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
