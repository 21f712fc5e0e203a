"""The server's own ``tgtd`` (Debian package ``tgt``): start, configure with tgtadm, stop.

Each server runs a private tgtd: its control socket lives in the server's data root (``TGT_IPC_SOCKET``)
on control port :data:`CONTROL_PORT`, never the default socket and port 0 a system tgt service uses.
It listens on TCP 3260 of the served interface addresses only. It is started through util-linux
``setpriv --pdeathsig KILL`` so it dies with the server even when the server is killed; a tgtd left
by an earlier run on the same socket is stopped at start.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from pypxe_homelab.errors import UserError
from pypxe_homelab.iscsi.desired import NodeTarget
from pypxe_homelab.iscsi.naming import ISCSI_PORT
from pypxe_homelab.iscsi.plan import Step, TargetState, parse_targets, plan, tgtadm_args

log = logging.getLogger("pypxe_homelab.iscsi")

CONTROL_PORT = 3260  # tgtd's management channel number (a socket name suffix, not a TCP port)
SOCKET_NAME = "tgtd.socket"
LOG_NAME = "tgtd.log"
START_SECONDS = 10.0
STOP_SECONDS = 5.0
SUN_PATH_MAX = 107


class TargetError(UserError):
    """tgtd could not be started or configured; one line naming the fix."""


class TgtDaemon:
    """One tgtd process owned by this server, and the tgtadm calls that configure it."""

    def __init__(
        self,
        run_dir: Path,
        portals: Sequence[ipaddress.IPv4Address],
        *,
        port: int = ISCSI_PORT,
        control_port: int = CONTROL_PORT,
        tgtd: str = "tgtd",
        tgtadm: str = "tgtadm",
    ) -> None:
        self.run_dir = run_dir
        self.portals = list(portals)
        self.port = port
        self.control_port = control_port
        self._tgtd = tgtd
        self._tgtadm = tgtadm
        self.proc: subprocess.Popen | None = None

    # -- paths --------------------------------------------------------------------------------

    @property
    def socket_base(self) -> Path:
        """The ``TGT_IPC_SOCKET`` value; tgtd listens on ``<base>.<control port>``."""
        return self.run_dir / SOCKET_NAME

    @property
    def socket_path(self) -> Path:
        return Path(f"{self.socket_base}.{self.control_port}")

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_NAME

    def _env(self) -> dict[str, str]:
        return {**os.environ, "TGT_IPC_SOCKET": str(self.socket_base)}

    # -- lifecycle ----------------------------------------------------------------------------

    def spawn(self) -> None:
        """Check what tgtd needs and start it. Call from the thread that lives as long as the server:
        the parent-death signal follows the thread that started the process."""
        tgtd, tgtadm = shutil.which(self._tgtd), shutil.which(self._tgtadm)
        if tgtd is None or tgtadm is None:
            raise TargetError(
                "iSCSI: tgtd is not installed, so no Pi disk is exported; install it with "
                "`sudo apt install tgt` (the server starts its own tgtd; the tgt service may stay disabled)"
            )
        self._tgtadm = tgtadm
        if not self.portals:
            raise TargetError("iSCSI: no served interface address to listen on; set server.interfaces")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TargetError(f"iSCSI: cannot create {self.run_dir}: {exc.strerror}; run with sudo") from None
        if len(str(self.socket_path)) > SUN_PATH_MAX:
            raise TargetError(
                f"iSCSI: the control socket path {self.socket_path} is too long for a socket; "
                "set paths.root to a shorter path"
            )
        self.stop_stale()
        for address in self.portals:
            check_port_free(address, self.port)
        argv = [tgtd, "-f", "-C", str(self.control_port), "--iscsi", self._portal_option()]
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        else:
            log.warning("iSCSI: setpriv (util-linux) not found; tgtd is not stopped if the server is killed")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,  # a Ctrl-C in the terminal reaches the server, which stops tgtd
            )

    def wait_ready(self) -> None:
        """Wait until tgtd answers on its control socket and listens on exactly the wanted portals."""
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise TargetError(
                    f"iSCSI: tgtd exited at start (status {self.proc.returncode}): {self._log_tail()}"
                )
            if self._adm("--op", "show", "--mode", "system", check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise TargetError(f"iSCSI: tgtd did not answer on {self.socket_path}: {self._log_tail()}")
            time.sleep(0.05)
        for address in self.portals[1:]:  # tgtd takes one portal on its command line
            portal = f"portal={address}:{self.port}"
            self._adm("--lld", "iscsi", "--op", "new", "--mode", "portal", "--param", portal, check=False)
        have = portals_of(self._adm("--lld", "iscsi", "--op", "show", "--mode", "portal").stdout)
        want = {f"{a}:{self.port}" for a in self.portals}
        if have != want:  # tgtd falls back to 0.0.0.0/[::] when it cannot bind a portal
            self.stop()
            missing = ", ".join(sorted(want - have)) or ", ".join(sorted(want))
            raise TargetError(port_taken_message(missing))

    def start(self) -> None:
        """:meth:`spawn` then :meth:`wait_ready`."""
        self.spawn()
        self.wait_ready()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Withdraw every target (dropping sessions), ask tgtd to exit; kill it if it does not."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(TargetError, OSError):
                self._shutdown_gracefully()
            try:
                proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def _shutdown_gracefully(self) -> None:
        self._adm("--op", "update", "--mode", "sys", "--name", "State", "--value", "offline", check=False)
        for t in self.targets():
            self._adm("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", str(t.tid), "--force")
        self._adm("--op", "delete", "--mode", "system", check=False)

    def stop_stale(self) -> int | None:
        """Stop a tgtd of an earlier run still listening on this server's control socket (found by the
        socket's peer credentials, so no other tgtd is touched); returns its pid."""
        pid = socket_owner(self.socket_path)
        if pid is None:
            return None
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return None
        if comm != "tgtd":
            return None
        log.warning("iSCSI: stopping tgtd %d left by an earlier run on %s", pid, self.socket_path)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_SECONDS
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return pid

    # -- configuration ------------------------------------------------------------------------

    def targets(self) -> list[TargetState]:
        """The targets tgtd has now."""
        return parse_targets(self._adm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout)

    def reconcile(self, desired: Iterable[NodeTarget], refresh: Iterable[str] = ()) -> list[Step]:
        """Make tgtd export exactly ``desired`` (re-opening the disks of serials in ``refresh``); returns
        the steps taken. A step that fails raises TargetError; steps before it stay done."""
        steps = plan(self.targets(), list(desired), refresh)
        for step in steps:
            for args in tgtadm_args(step):
                self._adm("--lld", "iscsi", *args)
        return steps

    def _adm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [self._tgtadm, "-C", str(self.control_port), *args]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, env=self._env(), timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TargetError(f"iSCSI: tgtadm {' '.join(args)}: {exc}") from None
        if check and result.returncode != 0:
            raise TargetError(
                f"iSCSI: tgtadm {' '.join(args)} failed: {result.stderr.strip() or result.returncode}"
            )
        return result

    def _portal_option(self) -> str:
        return f"portal={self.portals[0]}:{self.port}"

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        useful = [
            line for line in lines if "RDMA" not in line and "oom" not in line and "nr_open" not in line
        ]
        return (useful or lines or ["no output"])[-1]


def portals_of(text: str) -> set[str]:
    """``ADDR:PORT`` of each line ``Portal: ADDR:PORT,TPGT`` of ``tgtadm --op show --mode portal``."""
    found = set()
    for line in text.splitlines():
        if line.startswith("Portal: "):
            found.add(line[len("Portal: ") :].rsplit(",", 1)[0])
    return found


def port_taken_message(where: str) -> str:
    return (
        f"iSCSI: TCP {where} is taken by another program (likely an iSCSI target: the tgt or "
        "targetcli service); stop it (`sudo systemctl disable --now tgt`) — Pi disks are not exported "
        "until then, PCs keep booting"
    )


def check_port_free(address: ipaddress.IPv4Address, port: int) -> None:
    """Raise TargetError when ``address:port`` cannot be bound (another listener, or not our address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((str(address), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise TargetError(port_taken_message(f"{address}:{port}")) from None
            raise TargetError(f"iSCSI: cannot listen on {address}:{port}: {exc.strerror}") from None


def socket_owner(path: Path) -> int | None:
    """The pid of the process listening on unix socket ``path``, or None when none does."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
    pid, _uid, _gid = struct.unpack("3i", creds)
    return pid or None
