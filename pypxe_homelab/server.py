"""`serve`: start ProxyDHCP, TFTP and HTTP in one asyncio process, reload config.yaml live, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import ipaddress
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pypxe_homelab import privileges, sdnotify
from pypxe_homelab.assets.bootloaders import install_advice, missing_bootloaders
from pypxe_homelab.boot.autoinstall_boot import check_nodes
from pypxe_homelab.boot.booter import InventoryBooter, loaders_in_use
from pypxe_homelab.boot.host_checks import host_problems
from pypxe_homelab.config import hostnet
from pypxe_homelab.config.loader import load_inventory, load_or_default
from pypxe_homelab.config.model import DEFAULT_CONFIG_PATH, Inventory
from pypxe_homelab.errors import ConfigError, UserError
from pypxe_homelab.events import Event, Kind
from pypxe_homelab.identity import is_pi_serial
from pypxe_homelab.logging_setup import held_output, log_event
from pypxe_homelab.metrics import Metrics
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.services.dhcp import InterfaceInfo, ProxyDhcpService
from pypxe_homelab.services.http import HttpService
from pypxe_homelab.services.iscsi import IscsiService
from pypxe_homelab.services.tftp import TftpService
from pypxe_homelab.services.watch import Diagnoser, RivalListener
from pypxe_homelab.state.recorder import Recorder
from pypxe_homelab.state.store import Notification, StateStore
from pypxe_homelab.web import monitoring
from pypxe_homelab.web.api import add_routes as add_api_routes
from pypxe_homelab.web.monitoring import Health

log = logging.getLogger("pypxe_homelab.server")

RELOAD_POLL_SECONDS = 1.0
LOOPBACK = "127.0.0.1"
ANY = "0.0.0.0"


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
    "user",
    "http_listen",
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


def listen_addresses(inventory: Inventory, interfaces: list[InterfaceInfo]) -> tuple[list[str], list[str]]:
    """The addresses TFTP and HTTP listen on: the served interfaces', loopback (for `status` and `probe`),
    ``server.address`` when it is an address of this host; HTTP also on ``server.http_listen``."""
    own = [i.address for i in interfaces]
    advertised = inventory.server.address
    if advertised is not None and str(advertised) not in own and _is_local(str(advertised)):
        own.append(str(advertised))
    tftp = list(dict.fromkeys([*own, LOOPBACK]))
    extra = [str(a) for a in inventory.server.http_listen]
    http = [ANY] if ANY in extra else list(dict.fromkeys([*tftp, *extra]))
    return tftp, http


def _is_local(address: str) -> bool:
    """True when ``address`` belongs to an interface of this host (it can be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


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
        on_failed: Callable[[str], None] = lambda problem: None,
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
        self.on_failed = on_failed
        self.problem: str | None = None  # why the last reload was not applied; None when it was

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
                    self._failed(f"{self.path}: file is gone", "; still serving the last good config")
                return False
            try:
                new = await asyncio.to_thread(self.load, self.path)
                # the file as written must work on this host, restart-only settings included
                problems = await asyncio.to_thread(self.host_check, new)
                if problems:
                    raise ConfigError(problems)
            except ConfigError as exc:
                self._failed("; ".join(exc.errors), " — still serving the last good config")
                return False
            except UserError as exc:
                self._failed(str(exc), " — still serving the last good config")
                return False
            return self.apply(new)

    def apply(self, new: Inventory) -> bool:
        """Make ``new`` the served inventory (restart-only settings kept); False when it was refused."""
        old = self.runtime.inventory
        refused = dropped_every_node(old, new)
        if refused:
            self._failed(f"{self.path}: {refused}", " — still serving the last good config")
            return False
        changes = describe_changes(old, new)
        applied = keep_restart_only(old, new)
        self.runtime.inventory = applied
        self._last_error = None
        self.problem = None
        log.info("config reloaded from %s: %s", self.path, "; ".join(changes) if changes else "no changes")
        self.on_applied(applied)
        return True

    def reload_now(self) -> None:
        """Reload at once (SIGHUP), in the background."""
        task = asyncio.get_running_loop().create_task(self._check_logged(force=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _failed(self, problem: str, consequence: str) -> None:
        self.problem = problem
        self.on_failed(problem)
        self._report_once(problem + consequence)

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
        self.metrics = Metrics()
        self.health = Health()
        self._services: list[ProxyDhcpService | TftpService | HttpService | IscsiService | RivalListener] = []
        self._stopping = asyncio.Event()

    def _runtime(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the server is still starting")
        return self.runtime

    async def run(self) -> None:
        inventory, embedded = load_or_default(self.config_path)
        interfaces = served_interfaces(inventory)
        account = privileges.service_account(inventory.server.user, inventory.paths.root)
        privileges.check_program_readable(account)
        self._prepare_root(inventory)
        privileges.give_data_root(inventory.paths.root, account)
        # The recorder, and with it the store, starts after the drop; until then nothing is recorded.
        recorder: Recorder | None = None
        pending: list[Event] = []

        def emit(event: Event) -> None:
            (recorder.emit if recorder is not None else pending.append)(event)

        booter = InventoryBooter(self._runtime)
        mtu = min(i.mtu for i in interfaces)
        tftp_hosts, http_hosts = listen_addresses(inventory, interfaces)
        http = HttpService(
            booter,
            emit,
            inventory.server.http_port,
            http_hosts,
            routes=[
                lambda app: add_api_routes(app, self._runtime),
                monitoring.routes(self.metrics, self.health),
            ],
        )
        tftp = TftpService(
            tftp_hosts,
            inventory.server.tftp_port,
            lambda path, client: booter.tftp(path, client[0]),
            emit,
            mtu=mtu,
            max_transfers=inventory.server.tftp_max_transfers,
            max_per_client=inventory.server.tftp_max_per_client,
            max_windowsize=inventory.server.tftp_windowsize,
        )
        dhcp = ProxyDhcpService(booter, interfaces, emit) if inventory.server.proxy_dhcp else None
        store: StateStore | None = None
        try:
            # Every port is bound first, while privileged. DHCP first: another DHCP server on this host is
            # the likeliest conflict, and says so.
            if dhcp is not None:
                await dhcp.start()
                self._services.append(dhcp)
            tftp.bind_sockets()
            self._services.append(tftp)
            await http.start()
            self._services.append(http)
            # UDP 68, to hear other PXE servers' offers (listening only); skipped when it cannot be bound
            own = {i.address for i in interfaces} | {str(inventory.server.address or interfaces[0].address)}
            rivals = RivalListener(interfaces, emit, lambda: own)
            await rivals.start()
            self._services.append(rivals)
            # then no privilege is needed any more: run as the service user, before any thread starts
            privileges.drop(account)
            privileges.check_data_root(inventory.paths.root)
            privileges.check_config_readable(self.config_path)
            store = StateStore(inventory.paths.state_db)
            recorder = Recorder(
                store, listeners=(_log_recorded, self.metrics.recorded), around_batch=held_output
            )
            advertise = inventory.server.address or ipaddress.IPv4Address(interfaces[0].address)
            served = tuple(ipaddress.IPv4Interface(f"{i.address}/{i.netmask}") for i in interfaces)
            runtime = Runtime(inventory, store, recorder.emit, advertise, inventory.server.http_port, served)
            self.runtime = runtime
            bind_inventory_view(runtime)
            recorder.start()
            for event in pending:
                recorder.emit(event)
            tftp.start()
            diagnoser = Diagnoser(lambda: runtime.inventory, store, recorder.emit, str(advertise))
            self._summary(inventory, embedded, interfaces, tftp_hosts, http_hosts)
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

            def applied(inventory: Inventory) -> None:
                self.metrics.reloaded(True)
                check_later(inventory)

            check_later(inventory)
            watcher = ConfigWatcher(
                self.config_path, runtime, applied, on_failed=lambda problem: self.metrics.reloaded(False)
            )
            self._watch_health(runtime, watcher, dhcp, tftp, http)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._stopping.set)
            loop.add_signal_handler(signal.SIGHUP, watcher.reload_now)
            watch_task = asyncio.create_task(watcher.run())
            sessions_task = asyncio.create_task(iscsi.watch(_current_inventory(runtime)))
            diagnoser_task = asyncio.create_task(diagnoser.run())
            # What start-up made (modules, the inventory, templates) lives as long as the process: out of the
            # collector's full passes, which otherwise walk all of it and held the loop ~60 ms in a boot storm.
            gc.collect()
            gc.freeze()
            sdnotify.notify("READY=1", f"STATUS=serving {len(inventory.nodes)} node(s)")
            await self._stopping.wait()
            sdnotify.notify("STOPPING=1")
            log.info("stopping")
            for task in (watch_task, sessions_task, diagnoser_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            unsubscribe()
        finally:
            self.health.services.clear()
            for service in reversed(self._services):
                try:
                    result = service.stop()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("error while stopping %s", type(service).__name__)
            if recorder is not None:
                recorder.stop()
            if store is not None:
                store.close()
            gc.unfreeze()  # a server run inside another program (tests) leaves its objects collectable
            log.info("stopped")

    def _watch_health(
        self,
        runtime: Runtime,
        watcher: ConfigWatcher,
        dhcp: ProxyDhcpService | None,
        tftp: TftpService,
        http: HttpService,
    ) -> None:
        """What /healthz and the gauges of /metrics read when asked."""
        services: dict[str, Callable[[], bool]] = {"http": lambda: bool(http.addresses)}
        if dhcp is not None:
            services["dhcp"] = lambda: dhcp.bound
        services["tftp"] = lambda: tftp.running
        self.health.services = services
        self.health.reload_problem = lambda: watcher.problem
        self.metrics.read_at_scrape(
            active_transfers=lambda: tftp.transfers,
            nodes=lambda: len(runtime.inventory.nodes),
            services=services,
        )

    def stop(self) -> None:
        self._stopping.set()

    def _prepare_root(self, inventory: Inventory) -> None:
        """Create the data folders; refuse to start without the boot loaders the config names."""
        paths = inventory.paths
        if paths.root.exists() and os.geteuid() != 0:
            privileges.check_data_root(paths.root)
        for folder in (paths.root, paths.tftproot, paths.httproot, paths.cache):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except PermissionError as exc:
                raise UserError(
                    f"cannot create {folder}: permission denied; run with sudo or set paths.root"
                ) from exc
        missing = missing_bootloaders(paths.tftproot, loaders_in_use(inventory, optional=False))
        arm64_missing = set(missing_bootloaders(paths.tftproot, loaders_in_use(inventory))) - set(missing)
        if arm64_missing:
            log.warning(
                "arm64 UEFI and UEFI HTTP Boot machines of these loaders will not be served: %s missing in %s; run %s",
                ", ".join(sorted(arm64_missing)),
                paths.tftproot,
                install_advice(sorted(arm64_missing), "`pypxe-homelab bootfiles install`"),
            )
        if missing:
            command = f"`sudo pypxe-homelab{_config_flag(self.config_path)} bootfiles install`"
            raise UserError(
                f"boot loaders missing in {paths.tftproot}: {', '.join(missing)}; install them with "
                + install_advice(missing, command)
            )

    def _summary(
        self,
        inventory: Inventory,
        embedded: bool,
        interfaces: list[InterfaceInfo],
        tftp_hosts: list[str],
        http_hosts: list[str],
    ) -> None:
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
        log.info(
            "TFTP listens on %s, HTTP on %s; running as user %s with %s",
            ", ".join(tftp_hosts),
            ", ".join(http_hosts),
            privileges.Account.current().name,
            ", ".join(sorted(privileges.capabilities())) or "no capabilities",
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


def bind_inventory_view(runtime: Runtime) -> None:
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
