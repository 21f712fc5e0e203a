"""`serve`: run ProxyDHCP, TFTP and HTTP until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import logging

import click

from pypxe_homelab.cli import CliContext
from pypxe_homelab.logging_setup import configure


@click.command()
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One readable line per event, or one JSON object per line.",
)
@click.option("--debug", is_flag=True, help="Log debugging detail.")
@click.pass_obj
def serve(obj: CliContext, log_format: str, debug: bool) -> None:
    """Serve ProxyDHCP (udp 67, 4011), TFTP (udp 69) and HTTP until Ctrl-C.

    Without a config file it runs on an embedded default: the interface of the default route, no nodes;
    every machine that network-boots then shows its device id (see `probe`) and boots from its disk.
    """
    from pypxe_homelab.server import Server  # on use: every other command starts without the services

    configure(log_format, logging.DEBUG if debug else logging.INFO)
    asyncio.run(Server(obj.config_path).run())


COMMANDS = [serve]
