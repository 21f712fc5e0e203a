"""`serve`: start ProxyDHCP, TFTP and HTTP in one asyncio process, reload config.yaml live, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pypxe_homelab.assets.bootloaders import install_advice, missing_bootloaders
from pypxe_homelab.boot.autoinstall_boot import check_nodes
from pypxe_homelab.boot.booter import InventoryBooter
from pypxe_homelab.boot.host_checks import host_problems
from pypxe_homelab.config import hostnet
from pypxe_homelab.config.loader import load_inventory, load_or_default
from pypxe_homelab.config.model import DEFAULT_CONFIG_PATH, Inventory
from pypxe_homelab.errors import ConfigError, UserError
from pypxe_homelab.events import Event, Kind
from pypxe_homelab.identity import is_pi_serial
from pypxe_homelab.logging_setup import log_event
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.services.dhcp import InterfaceInfo, ProxyDhcpService
from pypxe_homelab.services.http import HttpService
from pypxe_homelab.services.iscsi import IscsiService
from pypxe_homelab.services.tftp import TftpService
from pypxe_homelab.state.recorder import Recorder
from pypxe_homelab.state.store import Notification, StateStore
from pypxe_homelab.web.api import add_routes as add_api_routes

log = logging.getLogger("pypxe_homelab.server")

RELOAD_POLL_SECONDS = 1.0


def served_interfaces(inventory: Inventory) -> list[InterfaceInfo]:
    """The interfaces to serve: those in config, else the default route's; each must have IPv4."""
    names = list(inventory.server.interfaces)
    if not names:
        default = hostnet.default_route_interface()
        if default is None:
            raise UserError(
                "no default route, so no interface to serve was found: set server.interfaces: [<name>] "
                "in config.yaml (see `ip -br addr`)"
            )
        names = [default]
    return [InterfaceInfo.of(name) for name in names]


# Settings a running server cannot change: they are bound sockets, the advertised address and the data folder.
RESTART_ONLY_SERVER = (
    "interfaces",
    "address",
    "http_port",
    "tftp_port",
    "tftp_max_transfers",
    "tftp_max_per_client",
    "tftp_windowsize",
    "proxy_dhcp",
)


def keep_restart_only(running: Inventory, new: Inventory) -> Inventory:
    """``new`` with the restart-only settings (RESTART_ONLY_SERVER, ``paths``) of ``running``."""
    server = replace(new.server, **{key: getattr(running.server, key) for key in RESTART_ONLY_SERVER})
    return replace(new, server=server, paths=running.paths)


def restart_pending(running: Inventory, new: Inventory) -> list[str]:
    """The dotted keys whose new value in ``new`` waits for a restart."""
    keys = [
        f"server.{key}"
        for key in RESTART_ONLY_SERVER
        if getattr(running.server, key) != getattr(new.server, key)
    ]
    return keys + (["paths.root"] if running.paths != new.paths else [])


def describe_changes(old: Inventory, new: Inventory) -> list[str]:
    """Human lines for what a reload changed: nodes added, removed, changed; settings that need a restart."""
    lines = []
    for device_id in sorted(new.nodes.keys() - old.nodes.keys()):
        lines.append(f"node added: {device_id}")
    for device_id in sorted(old.nodes.keys() - new.nodes.keys()):
        lines.append(f"node removed: {device_id}")
    for device_id in sorted(old.nodes.keys() & new.nodes.keys()):
        a, b = old.nodes[device_id], new.nodes[device_id]
        if replace(a, line=None) != replace(b, line=None):  # a moved line is not a change
            lines.append(f"node changed: {device_id}")
    if old.defaults != new.defaults:
        lines.append("defaults changed")
    restart = restart_pending(old, new)
    if restart:
        lines.append(f"{', '.join(restart)} changed: the old value stays in use until the server restarts")
    return lines


def dropped_every_node(old: Inventory, new: Inventory) -> str | None:
    """Why ``new`` must not replace ``old``: it has no nodes, ``old`` has some, and it does not say
    ``nodes: {}`` (an emptied or truncated file, not a decision); None when it may be applied."""
    if old.nodes and not new.nodes and not new.nodes_declared_empty:
        return (
            f"it has no nodes but {len(old.nodes)} node(s) are served (an emptied or cut-off file?); "
            "to remove every node on purpose, write `nodes: {}`"
        )
    return None


Loader = Callable[[Path], Inventory]
HostCheck = Callable[[Inventory], list[str]]


class ConfigWatcher:
    """Polls config.yaml (and reacts to SIGHUP); applies a valid edit, keeps the last good config otherwise.

    The file is read and validated in a worker thread, so a slow or huge file never stalls DHCP, TFTP or
    HTTP, nor the handling of SIGTERM. Restart-only settings keep their running value; a file that would
    drop every node is reported and not applied.
    """

    def __init__(
        self,
        path: Path,
        runtime: Runtime,
        on_applied: Callable[[Inventory], None] = lambda inventory: None,
        load: Loader = load_inventory,
        host_check: HostCheck = host_problems,
    ) -> None:
        self.path = path
        self.runtime = runtime
        self.on_applied = on_applied
        self.load = load
        self.host_check = host_check
        self._stamp = self._file_stamp()
        self._last_error: str | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    def _file_stamp(self) -> tuple | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    async def check(self, force: bool = False) -> bool:
        """Reload if the file changed (or ``force``). Returns True when a new inventory was applied."""
        async with self._lock:
            stamp = self._file_stamp()
            if not force and stamp == self._stamp:
                return False
            self._stamp = stamp
            if stamp is None:
                if self.runtime.inventory.source is not None:
                    self._report_once(f"{self.path}: file is gone; still serving the last good config")
                return False
            try:
                new = await asyncio.to_thread(self.load, self.path)
                # the file as written must work on this host, restart-only settings included
                problems = await asyncio.to_thread(self.host_check, new)
                if problems:
                    raise ConfigError(problems)
            except ConfigError as exc:
                self._report_once("; ".join(exc.errors) + " — still serving the last good config")
                return False
            except UserError as exc:
                self._report_once(f"{exc} — still serving the last good config")
                return False
            return self.apply(new)

    def apply(self, new: Inventory) -> bool:
        """Make ``new`` the served inventory (restart-only settings kept); False when it was refused."""
        old = self.runtime.inventory
        refused = dropped_every_node(old, new)
        if refused:
            self._report_once(f"{self.path}: {refused} — still serving the last good config")
            return False
        changes = describe_changes(old, new)
        applied = keep_restart_only(old, new)
        self.runtime.inventory = applied
        self._last_error = None
        log.info("config reloaded from %s: %s", self.path, "; ".join(changes) if changes else "no changes")
        self.on_applied(applied)
        return True

    def reload_now(self) -> None:
        """Reload at once (SIGHUP), in the background."""
        task = asyncio.get_running_loop().create_task(self._check_logged(force=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _report_once(self, message: str) -> None:
        digest = hashlib.sha256(message.encode()).hexdigest()
        if digest != self._last_error:
            log.error("config not applied: %s", message)
            self._last_error = digest

    async def _check_logged(self, force: bool = False) -> None:
        try:
            await self.check(force)
        except Exception:  # the server must outlive any reload problem
            log.error("config reload failed; still serving the last good config", exc_info=True)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_POLL_SECONDS)
            await self._check_logged()


class Server:
    """All services of one `serve` process."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.runtime: Runtime | None = None
        self._services: list[ProxyDhcpService | TftpService | HttpService | IscsiService] = []
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        inventory, embedded = load_or_default(self.config_path)
        interfaces = served_interfaces(inventory)
        self._prepare_root(inventory)
        store = StateStore(inventory.paths.state_db)
        recorder = Recorder(store, listeners=(_log_recorded,))
        advertise = inventory.server.address or ipaddress.IPv4Address(interfaces[0].address)
        served = tuple(ipaddress.IPv4Interface(f"{i.address}/{i.netmask}") for i in interfaces)
        runtime = Runtime(inventory, store, recorder.emit, advertise, inventory.server.http_port, served)
        self.runtime = runtime
        _bind_inventory_view(runtime)

        def get_runtime() -> Runtime:
            return runtime

        booter = InventoryBooter(get_runtime)
        mtu = min(i.mtu for i in interfaces)
        http = HttpService(
            booter,
            recorder.emit,
            inventory.server.http_port,
            routes=[lambda app: add_api_routes(app, get_runtime)],
        )
        tftp = TftpService(
            "0.0.0.0",
            inventory.server.tftp_port,
            lambda path, client: booter.tftp(path, client[0]),
            recorder.emit,
            mtu=mtu,
            max_transfers=inventory.server.tftp_max_transfers,
            max_per_client=inventory.server.tftp_max_per_client,
            max_windowsize=inventory.server.tftp_windowsize,
        )
        dhcp = ProxyDhcpService(booter, interfaces, recorder.emit) if inventory.server.proxy_dhcp else None
        recorder.start()
        try:
            # DHCP first: another DHCP server on this host is the likeliest conflict, and says so
            if dhcp is not None:
                await dhcp.start()
                self._services.append(dhcp)
            await asyncio.get_running_loop().run_in_executor(None, tftp.start)
            self._services.append(tftp)
            await http.start()
            self._services.append(http)
            self._summary(inventory, embedded, interfaces)
            loop = asyncio.get_running_loop()
            checks: set[asyncio.Future] = set()
            # iSCSI last: its problems are reported, never fatal; the PCs keep booting
            iscsi = IscsiService(inventory.paths, [i.ip for i in served], recorder.emit)
            self._services.append(iscsi)
            unsubscribe = store.subscribe(_on_reinstall(loop, runtime, iscsi, checks))
            await iscsi.apply(inventory)

            def check_later(inventory: Inventory) -> None:
                future = loop.run_in_executor(None, report_node_problems, inventory)
                checks.add(future)
                future.add_done_callback(checks.discard)
                task = asyncio.ensure_future(iscsi.apply(inventory))
                checks.add(task)
                task.add_done_callback(checks.discard)

            check_later(inventory)
            watcher = ConfigWatcher(self.config_path, runtime, check_later)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._stopping.set)
            loop.add_signal_handler(signal.SIGHUP, watcher.reload_now)
            watch_task = asyncio.create_task(watcher.run())
            sessions_task = asyncio.create_task(iscsi.watch(_current_inventory(runtime)))
            await self._stopping.wait()
            log.info("stopping")
            for task in (watch_task, sessions_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            unsubscribe()
        finally:
            for service in reversed(self._services):
                try:
                    result = service.stop()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("error while stopping %s", type(service).__name__)
            recorder.stop()
            store.close()
            log.info("stopped")

    def stop(self) -> None:
        self._stopping.set()

    def _prepare_root(self, inventory: Inventory) -> None:
        """Create the data folders; refuse to start without the boot loaders the config names."""
        paths = inventory.paths
        for folder in (paths.root, paths.tftproot, paths.httproot, paths.cache):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except PermissionError as exc:
                raise UserError(
                    f"cannot create {folder}: permission denied; run with sudo or set paths.root"
                ) from exc
        missing = missing_bootloaders(paths.tftproot, inventory.server.loaders)
        if missing:
            command = f"`sudo pypxe-homelab{_config_flag(self.config_path)} bootfiles install`"
            raise UserError(
                f"boot loaders missing in {paths.tftproot}: {', '.join(missing)}; install them with "
                + install_advice(missing, command)
            )

    def _summary(self, inventory: Inventory, embedded: bool, interfaces: list[InterfaceInfo]) -> None:
        if embedded:
            log.info(
                "no config file at %s: running on the embedded default (no nodes; every machine that "
                "network-boots is shown by `pypxe-homelab probe`)",
                self.config_path,
            )
        else:
            log.info("config: %s", self.config_path)
        for i in interfaces:
            log.info("serving %s: %s/%s mtu %d", i.name, i.address, i.netmask, i.mtu)
        runtime = self.runtime
        assert runtime is not None
        proxy = "ProxyDHCP udp/67+4011" if inventory.server.proxy_dhcp else "ProxyDHCP off"
        log.info(
            "%s, TFTP udp/%d (%s), HTTP %s; %d node(s); unknown machines: %s",
            proxy,
            inventory.server.tftp_port,
            inventory.paths.tftproot,
            runtime.base_url,
            len(inventory.nodes),
            "silent" if inventory.server.unknown == "ignore" else "shown their device id, then local boot",
        )


def report_node_problems(inventory: Inventory) -> list[str]:
    """Log what would stop a node from installing (no SSH key, image not fetched, schema errors): the
    server keeps serving the others, and the node is never sent a broken installer."""
    try:
        problems = check_nodes(inventory)
    except Exception:
        log.exception("could not check the nodes")
        return []
    for problem in problems:
        log.warning("node problem: %s", problem)
    return problems


def _log_recorded(event: Event, seconds: float) -> None:
    """Recorder listener: one log line per recorded event."""
    log_event(event)


def _current_inventory(runtime: Runtime) -> Callable[[], Inventory]:
    """A getter of the inventory in force (it is swapped whole on reload)."""
    return lambda: runtime.inventory


def _on_reinstall(
    loop: asyncio.AbstractEventLoop, runtime: Runtime, iscsi: IscsiService, tasks: set[asyncio.Future]
) -> Callable[[Notification], None]:
    """A store subscriber: after ``reinstall`` of a Pi (whose disk the CLI has just recreated), re-open
    its target so tgtd serves the new disk file."""

    def schedule(serial: str) -> None:
        task = asyncio.ensure_future(iscsi.apply(runtime.inventory, refresh=[serial]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def notified(note: Notification) -> None:
        event = note.entry.event
        if event.kind == Kind.NODE_REINSTALL and event.device_id and is_pi_serial(event.device_id):
            loop.call_soon_threadsafe(schedule, event.device_id)

    return notified


def _config_flag(path: Path) -> str:
    return "" if path == DEFAULT_CONFIG_PATH else f" --config {path}"


def _bind_inventory_view(runtime: Runtime) -> None:
    """Let the store ask the current inventory whether an id is registered and how it installs."""
    setter = getattr(runtime.store, "set_inventory_view", None)
    if setter is None:
        return

    def is_registered(device_id: str) -> bool:
        return runtime.inventory.node(device_id) is not None

    def install_policy(device_id: str) -> str:
        node = runtime.inventory.node(device_id)
        return runtime.inventory.effective(node).install or "once" if node else "once"

    setter(is_registered, install_policy)
