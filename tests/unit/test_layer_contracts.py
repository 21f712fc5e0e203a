"""The layer contracts (pyproject [tool.importlinter]) hold, and a violation, even inside a function, breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT.exists(), reason="import-linter is not installed (pip install '.[test]')"
)


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_contracts_are_kept() -> None:
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module,line,contract",
    [
        (
            "protocol/proxydhcp.py",
            "from pypxe_homelab.config import model",
            "Protocol code is mechanism only",
        ),
        ("boot/booter.py", "from pypxe_homelab.services import dhcp", "Layers"),
        ("services/http.py", "from pypxe_homelab.web import api", "Layers"),
    ],
)
def test_a_function_local_violation_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    shutil.copytree(
        REPO / "pypxe_homelab", tmp_path / "pypxe_homelab", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "pypxe_homelab" / module
    target.write_text(target.read_text() + f"\n\ndef _violation() -> None:\n    {line}  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout
