"""The live reload: read off the event loop, restart-only settings kept, a file without nodes not applied."""

from __future__ import annotations

import asyncio
import logging
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pypxe_homelab.config.loader import load_inventory
from pypxe_homelab.server import ConfigWatcher

NODE = "nodes:\n  01-52-54-00-a0-00-01:\n    address: 10.0.0.5/24\n"
START = "server:\n  http_port: 8080\npaths:\n  root: /srv/first\ndefaults:\n  install: once\n" + NODE


def load(path: Path):
    return load_inventory(path, detect_host=False)


def watcher_for(tmp_path: Path, text: str = START) -> tuple[ConfigWatcher, SimpleNamespace, Path]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    runtime = SimpleNamespace(inventory=load(path))
    watcher = ConfigWatcher(path, runtime, load=load, host_check=lambda inventory: [])  # type: ignore[arg-type]
    return watcher, runtime, path


def edit(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text))


def test_loading_runs_off_the_event_loop(tmp_path: Path) -> None:
    watcher, runtime, path = watcher_for(tmp_path)

    def slow_load(p: Path):
        time.sleep(0.6)  # a huge file, a slow disk
        return load(p)

    watcher.load = slow_load
    edit(path, START.replace("install: once", "install: always"))

    async def scenario() -> tuple[bool, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.create_task(ticker())
        applied = await watcher.check()
        task.cancel()
        return applied, ticks

    applied, ticks = asyncio.run(scenario())
    assert applied and runtime.inventory.defaults.install == "always"
    assert ticks >= 6  # the loop kept running while the file was read


def test_restart_only_settings_wait_for_a_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    watcher, runtime, path = watcher_for(tmp_path)
    edit(
        path,
        START.replace("8080", "9090").replace("/srv/first", "/srv/second").replace("once", "always"),
    )
    with caplog.at_level(logging.INFO, "pypxe_homelab.server"):
        assert asyncio.run(watcher.check())
    inventory = runtime.inventory
    assert inventory.defaults.install == "always"  # applied at once
    assert inventory.server.http_port == 8080 and inventory.paths.root == Path("/srv/first")
    assert "server.http_port, paths.root changed: the old value stays in use until the server restarts" in (
        caplog.text
    )


@pytest.mark.parametrize("text", ["", "# emptied\n", "nodes:\n", "server:\n  unknown: ignore\n"])
def test_a_file_without_nodes_is_not_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    watcher, runtime, path = watcher_for(tmp_path)
    before = runtime.inventory
    edit(path, text)
    with caplog.at_level(logging.ERROR, "pypxe_homelab.server"):
        assert not asyncio.run(watcher.check())
    assert runtime.inventory is before and set(before.nodes) == {"01-52-54-00-a0-00-01"}
    assert "it has no nodes but 1 node(s) are served" in caplog.text
    assert "write `nodes: {}`" in caplog.text and "still serving the last good config" in caplog.text


def test_nodes_declared_empty_removes_every_node(tmp_path: Path) -> None:
    watcher, runtime, path = watcher_for(tmp_path)
    edit(path, "nodes: {}\n")
    assert asyncio.run(watcher.check())
    assert runtime.inventory.nodes == {}
