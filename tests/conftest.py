"""Shared pytest fixtures: the isolated test LAN, the program installed from its wheel."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence

import pytest

from tests.lab.install import Installed, install, shared_tempdir
from tests.lab.netns import TestLan, ip_netns_available


def lab_skip_reason() -> str | None:
    """Why namespace-based tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not ip_netns_available():
        return "`ip netns` (iproute2) is not available"
    return None


@pytest.fixture
def test_lan() -> Iterator[Callable[..., TestLan]]:
    """Factory: ``lan = test_lan(["server", "client"])`` returns an entered TestLan, torn down after the test."""
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    lans: list[TestLan] = []

    def make(hosts: Sequence[str] = ("server", "client"), **kw) -> TestLan:
        lan = TestLan(hosts, **kw)
        lans.append(lan)
        return lan.__enter__()

    try:
        yield make
    finally:
        for lan in reversed(lans):
            lan.close()


@pytest.fixture(scope="session")
def installed_program() -> Iterator[Installed]:
    """pypxe-homelab built as a wheel and installed into a fresh venv that every user can read."""
    base = shared_tempdir("pxh-installed-")
    try:
        yield install(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
