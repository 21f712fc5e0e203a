"""`install-service` (the systemd unit) and `health` (the running server's /healthz, for container health
checks and scripts)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import click

from pypxe_homelab import privileges
from pypxe_homelab.atomicfile import write_atomic
from pypxe_homelab.cli import CliContext
from pypxe_homelab.config.loader import load_or_default
from pypxe_homelab.config.model import DEFAULT_HTTP_PORT
from pypxe_homelab.deploy.systemd import STATE_BASE, UNIT_DIR, UNIT_NAME, program_command, render_unit
from pypxe_homelab.errors import ConfigError, UserError


@click.command("install-service")
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=UNIT_DIR,
    show_default=True,
    help="Where the unit file is written.",
)
@click.option("--print", "print_only", is_flag=True, help="Print the unit instead of writing it.")
@click.pass_obj
def install_service(obj: CliContext, unit_dir: Path, print_only: bool) -> None:
    """Write the systemd unit that runs `serve` as the service user (server.user), hardened.

    It creates the service user if needed and reloads systemd; then start it with
    `sudo systemctl enable --now pypxe-homelab`.
    """
    inventory, _ = load_or_default(obj.config_path)
    user = inventory.server.user
    text = render_unit(inventory, obj.config_path, program_command(), user)
    if print_only:
        click.echo(text, nl=False)
        return
    if os.geteuid() != 0:
        raise UserError(
            f"writing {unit_dir / UNIT_NAME} needs root: run `sudo pypxe-homelab install-service`"
        )
    account = privileges.service_account(user, inventory.paths.root)
    privileges.check_program_readable(account)
    root = inventory.paths.root
    if not root.is_relative_to(STATE_BASE):  # systemd creates StateDirectory=; ReadWritePaths= must exist
        root.mkdir(parents=True, exist_ok=True)
        privileges.give_data_root(root, account)
    unit_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(unit_dir / UNIT_NAME, text)
    click.echo(f"wrote {unit_dir / UNIT_NAME} (runs as {user})")
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "daemon-reload"], check=False)
        click.echo("start it now and at every boot with: sudo systemctl enable --now pypxe-homelab")
    else:
        click.echo("systemd is not running here: the unit takes effect on a host that boots with systemd")


@click.command()
@click.option("--port", type=int, help="HTTP port of the server. Default: server.http_port of the config.")
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds to wait for an answer.")
@click.pass_obj
def health(obj: CliContext, port: int | None, timeout: float) -> None:
    """Ask the local server whether it is healthy (every service bound, last reload applied); exit 0 if so.

    Prints `ok` or the problems, one per line; exit status 1 when unhealthy or not answering.
    """
    if port is None:
        try:
            port = load_or_default(obj.config_path)[0].server.http_port
        except (ConfigError, UserError):  # a broken edit: the server still runs on the last good config
            port = DEFAULT_HTTP_PORT
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as err:
        try:
            body = json.loads(err.read())
        except ValueError:
            body = {"problems": [f"{url} answered {err.code}"]}
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as err:
        raise UserError(f"no pypxe-homelab server answers on {url}: {err}") from None
    problems = [str(p) for p in body.get("problems", [])]
    if problems:
        raise UserError("; ".join(problems))
    click.echo("ok")


COMMANDS = [install_service, health]
