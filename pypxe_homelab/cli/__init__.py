"""The `pypxe-homelab` command: a click group; each area's commands live in a module of this package.

The group is lazy: a command's module is imported only when that command runs (``--help`` lists the commands
from ``COMMANDS`` below without importing any), so `--help`, `list` or `status` never load the services,
scapy or aiohttp."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console

from pypxe_homelab.config.model import DEFAULT_CONFIG_PATH
from pypxe_homelab.errors import ConfigError, UserError
from pypxe_homelab.identity import normalise_device_id


@dataclass
class CliContext:
    """What every command gets: the config file path given with --config (or the default)."""

    config_path: Path


def console() -> Console:
    """A rich console: the terminal's width, or 160 columns when the output goes to a file or pipe."""
    return Console(width=None if sys.stdout.isatty() else 160)


def parse_device_id(text: str) -> str:
    """A device id given on the command line, normalised; UserError naming the accepted forms."""
    try:
        return normalise_device_id(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None


# command → (module in this package, the first paragraph of its help; a test keeps the two equal)
COMMANDS: dict[str, tuple[str, str]] = {
    "add": ("nodes", "Add a machine to config.yaml (DEVICE_ID: 01-<mac>, a MAC, or a Raspberry Pi serial)."),
    "bootfiles": (
        "assets",
        "Boot loaders (SYSLINUX lpxelinux.0 and syslinux.efi, iPXE when installed) in the TFTP root.",
    ),
    "health": (
        "service",
        "Ask the local server whether it is healthy (every service bound, last reload applied); exit 0 if so.",
    ),
    "images": ("assets", "Ubuntu installer images served over HTTP."),
    "install-service": (
        "service",
        "Write the systemd unit that runs `serve` as the service user (server.user), hardened.",
    ),
    "list": ("listing", "List the machines in config.yaml."),
    "probe": ("probe", "Show machines that network-booted but are not registered, live until Ctrl-C."),
    "reinstall": (
        "status",
        "Re-arm DEVICE_ID: it installs again at its next network boot (new install generation).",
    ),
    "remove": ("nodes", "Remove a machine from config.yaml."),
    "render": (
        "inspect",
        "Show what DEVICE_ID gets: DHCP answers per firmware, loader configs, URLs, kernel command line, "
        "cloud-init.",
    ),
    "serve": ("serve", "Serve ProxyDHCP (udp 67, 4011), TFTP (udp 69) and HTTP until Ctrl-C."),
    "status": ("status", "Show every node's install state (or DEVICE_ID's timeline), live until Ctrl-C."),
    "validate": (
        "inspect",
        "Check config.yaml and every node's rendered autoinstall; exit 1 listing every problem.",
    ),
}


class _Group(click.Group):
    """Imports a command's module only when the command is used; prints a UserError as one line (every line
    of a ConfigError) and exits 1, without a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"pypxe_homelab.cli.{COMMANDS[cmd_name][0]}")
        return next((c for c in module.COMMANDS if c.name == cmd_name), None)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of --help, from COMMANDS (no command module is imported)."""
        width = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(width))
            for name in sorted(COMMANDS)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for line in exc.errors:
                click.echo(f"error: {line}", err=True)
            sys.exit(1)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    "config_path",
    envvar="PYPXE_HOMELAB_CONFIG",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG_PATH,
    show_default=True,
    help="The inventory file (env PYPXE_HOMELAB_CONFIG).",
)
@click.version_option(package_name="pypxe-homelab")
@click.pass_context
def main(ctx: click.Context, config_path: Path) -> None:
    """Network-boot and install the machines of a homelab: ProxyDHCP, TFTP and HTTP in one process."""
    ctx.obj = CliContext(config_path=config_path)
