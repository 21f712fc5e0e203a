"""The `pypxe-homelab` command: a click group; each area's commands live in a module of this package."""

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


class _Group(click.Group):
    """Prints a UserError as one line (every line of a ConfigError) and exits 1, without a traceback."""

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


def _register() -> None:
    for name in ("serve", "nodes", "inspect", "probe", "status", "assets", "service"):
        module = importlib.import_module(f"pypxe_homelab.cli.{name}")
        for command in getattr(module, "COMMANDS", ()):
            main.add_command(command)


_register()
