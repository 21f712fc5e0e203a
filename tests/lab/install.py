"""The program as a user installs it: a wheel built from the repository, installed into a fresh venv in a
folder every user can read (the server reads its own files after it drops to its service user)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")


@dataclass(frozen=True)
class Installed:
    """A venv with pypxe-homelab installed from its wheel."""

    venv: Path
    wheel: Path

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "pypxe-homelab"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def site_packages(self) -> Path:
        [found] = (self.venv / "lib").glob("python3*/site-packages")
        return found


def _world_readable_python() -> str:
    """A Python whose standard library every user can read: Debian's, else the one running the tests."""
    for candidate in (SYSTEM_PYTHON, Path(sys.base_prefix) / "bin" / "python3"):
        if candidate.exists():
            lib = subprocess.run(
                [str(candidate), "-c", "import os; print(os.path.dirname(os.__file__))"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            if lib and all(os.stat(p).st_mode & stat.S_IXOTH for p in [lib, *map(str, Path(lib).parents)]):
                return str(candidate)
    return sys.executable


def build_wheel(out: Path) -> Path:
    """`pip wheel` of the repository (no dependencies) into ``out``; the wheel's path."""
    with tempfile.TemporaryDirectory() as src:
        tree = Path(src) / "src"  # a clean copy: no build/ or egg-info left in the clone
        shutil.copytree(
            REPO,
            tree,
            ignore=shutil.ignore_patterns(
                ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*cache"
            ),
        )
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(tree)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    if result.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{result.stdout}\n{result.stderr}")
    [wheel] = out.glob("pypxe_homelab-*.whl")
    return wheel


def install(base: Path) -> Installed:
    """Build the wheel and install it into a fresh venv under ``base``."""
    wheel = build_wheel(base / "dist")
    venv = base / "venv"
    subprocess.run([_world_readable_python(), "-m", "venv", str(venv)], check=True, timeout=300)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"installing the wheel failed:\n{result.stdout}\n{result.stderr}")
    return Installed(venv, wheel)


def shared_tempdir(prefix: str) -> Path:
    """A temporary folder outside pytest's private one, searchable by every user (remove it when done)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    return path
