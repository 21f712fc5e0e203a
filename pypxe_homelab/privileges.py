"""Least privilege for `serve`: it needs root (or CAP_NET_BIND_SERVICE) only to bind UDP 67/69/4011 and a low
HTTP port. Once its sockets are bound it runs as the service user (``server.user``) with no capabilities at
all: sending to the broadcast address from a socket that is already bound (SO_BROADCAST) and opening the
per-transfer TFTP sockets on unprivileged ports need none, and Linux since 5.7 lets any user set
SO_BINDTODEVICE on a socket that is not yet bound.

Capabilities are read and cleared with pyprctl (pure Python over ctypes, no compiler needed). The drop must
happen while the process has a single thread: capabilities are a per-thread attribute.
"""

from __future__ import annotations

import contextlib
import grp
import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pyprctl

from pypxe_homelab.errors import UserError

log = logging.getLogger("pypxe_homelab.privileges")

ROOT_USER = "root"
# what `serve` writes while it runs: the state database and SQLite's two companion files
STATE_FILES = ("state.db", "state.db-wal", "state.db-shm")
# folders the server writes into while it runs, with their files: Pi node disks, its tgtd's socket and log
WRITTEN_FOLDERS = ("iscsiroot", "tgtd")
# packages whose files are read after the drop (templates, static files, lazily imported modules)
PROGRAM_PACKAGES = ("pypxe_homelab", "aiohttp", "jinja2", "scapy", "tftpy")


@dataclass(frozen=True)
class Account:
    """The user `serve` runs as: name, uid, primary gid."""

    name: str
    uid: int
    gid: int

    @classmethod
    def current(cls) -> Account:
        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return cls(name, uid, os.getegid())


def create_user_command(name: str, home: Path) -> str:
    """The command that creates the service user (what `serve` runs itself when started as root)."""
    return (
        f"useradd --system --user-group --home-dir {home} --no-create-home --shell /usr/sbin/nologin {name}"
    )


def lookup(name: str) -> Account | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def service_account(name: str, home: Path) -> Account:
    """The account `serve` will run as. Started as root: ``name`` (created as a system user if missing);
    started as anyone else: that user itself (it cannot change users)."""
    if os.geteuid() != 0:
        return Account.current()
    if name == ROOT_USER:
        return Account(ROOT_USER, 0, 0)
    found = lookup(name)
    if found is not None:
        return found
    command = create_user_command(name, home)
    if shutil.which("useradd") is None:
        raise UserError(f"service user {name!r} does not exist: create it with `sudo {command}`")
    result = subprocess.run(command.split(), capture_output=True, text=True, check=False)
    found = lookup(name)
    if result.returncode != 0 or found is None:
        why = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["unknown error"]
        raise UserError(
            f"service user {name!r} does not exist and could not be created ({why[0]}): "
            f"create it with `sudo {command}` or set server.user"
        )
    log.info("created the system user %s (uid %d) to run the server", name, found.uid)
    return found


def readable_by(path: Path, account: Account) -> bool:
    """Whether ``account`` can reach and read ``path`` by its mode bits (every folder above searchable)."""
    groups = set(_groups(account))
    target = path.resolve()
    for part in [*reversed(target.parents), target]:
        try:
            st = part.stat()
        except OSError:
            return False
        need = (stat.S_IRUSR if part == target else 0) | (stat.S_IXUSR if stat.S_ISDIR(st.st_mode) else 0)
        if st.st_uid == account.uid:
            bits = need
        elif st.st_gid in groups:
            bits = need >> 3
        else:
            bits = need >> 6
        if st.st_mode & bits != bits:
            return False
    return True


def program_files() -> list[Path]:
    """Where the program's code and data lie: Python's library, this package, its dependencies."""
    places = [Path(os.__file__).parent]
    for name in PROGRAM_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            places.append(Path(spec.origin).parent)
    return places


def check_program_readable(account: Account) -> None:
    """Refuse to start as ``account`` when it could not read the program's own files (Python's library,
    the package, its templates): they are read after the drop. A venv in a private home folder is the
    usual cause."""
    if account.uid == 0 or os.geteuid() != 0:
        return
    for place in program_files():
        if not readable_by(place, account):
            raise UserError(
                f"user {account.name} could not read the program's files in {place}: install pypxe-homelab "
                "where every user can read it (e.g. `sudo python3 -m venv /opt/pypxe-homelab`, see README) "
                "or set server.user: root"
            )


def give_data_root(root: Path, account: Account) -> None:
    """Make the data root and what the server writes there (state files, Pi node disks, its tgtd's folder)
    belong to ``account`` (as root only)."""
    if os.geteuid() != 0 or account.uid == 0:
        return
    written: list[Path] = []
    for name in WRITTEN_FOLDERS:
        folder = root / name
        with contextlib.suppress(OSError):
            written += [folder, *folder.iterdir()]
    for path in (root, *(root / name for name in STATE_FILES), *written):
        with contextlib.suppress(FileNotFoundError):
            st = path.lstat()
            if (st.st_uid, st.st_gid) != (account.uid, account.gid):
                os.lchown(path, account.uid, account.gid)


def check_data_root(root: Path) -> None:
    """Refuse, in one line with the fix, a data root this process cannot write (call after the drop)."""
    me = Account.current()
    fix = f"run `sudo chown -R {me.name}: {root}`, or start serve as root once (it gives the folder to the user)"
    if not os.access(root, os.W_OK | os.X_OK):
        raise UserError(f"the data root {root} is not writable by user {me.name}: {fix}")
    for name in STATE_FILES:
        path = root / name
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise UserError(f"{path} is not writable by user {me.name}: {fix}")


def check_config_readable(path: Path) -> None:
    """Refuse a config.yaml this process could not read again on a reload (call after the drop)."""
    me = Account.current()
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if path.exists():
        ok = os.access(path, os.R_OK)
        fix = f"`sudo chmod a+r {path}` and make its folders searchable (chmod a+x), or set server.user"
    else:
        ok = os.access(folder, os.X_OK)
        fix = f"`sudo chmod a+x {folder}`, or set server.user"
    if not ok:
        raise UserError(f"{path} would not be readable by user {me.name} for live reload: {fix}")


def drop(account: Account) -> None:
    """Become ``account`` and give up every capability, for good (no regaining them through exec)."""
    if threading.active_count() != 1:
        raise RuntimeError("privileges must be dropped before any thread is started")
    if os.geteuid() == 0 and account.uid != 0:
        for cap in pyprctl.Cap:  # the bounding set: nothing exec'd later can gain a capability
            with contextlib.suppress(OSError):
                pyprctl.capbset_drop(cap)
        os.setgroups(_groups(account))
        os.setresgid(account.gid, account.gid, account.gid)
        os.setresuid(account.uid, account.uid, account.uid)  # the kernel clears all capability sets
    if account.uid != 0:
        with contextlib.suppress(OSError):
            pyprctl.cap_ambient_clear_all()
        pyprctl.CapState(effective=set(), permitted=set(), inheritable=set()).set_current()
    pyprctl.set_no_new_privs()


def _groups(account: Account) -> list[int]:
    """The account's primary and supplementary groups."""
    return sorted({account.gid, *(g.gr_gid for g in grp.getgrall() if account.name in g.gr_mem)})


def capabilities() -> set[str]:
    """Names of this process's effective capabilities (for the start-up log)."""
    return {cap.name.lower() for cap in pyprctl.CapState.get_current().effective}
