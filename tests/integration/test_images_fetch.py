"""Downloading images over real HTTP (a Range-capable server on 127.0.0.1 inside the test): resume after a
dropped connection, checksum refusal, mirror fallback, and the full fetch → extract → ready path."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pypxe_homelab.assets import images
from pypxe_homelab.assets.download import fetch, part_path
from pypxe_homelab.errors import UserError
from tests.fixtures.autoinstall.isobuild import build_test_iso


class Files:
    """What the server serves, and how it misbehaves."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_after: int | None = None  # close the connection after this many body bytes, once
        self.ranges: list[str | None] = []


def _handler(state: Files):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            data = state.files.get(self.path)
            state.ranges.append(self.headers.get("Range"))
            if data is None:
                self.send_error(404)
                return
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if state.drop_after is not None:
                cut, state.drop_after = state.drop_after, None
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Files]]:
    state = Files()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _payload(size: int) -> bytes:
    return hashlib.sha256(b"seed").digest() * (size // 32)


def test_interrupted_download_is_resumed_by_the_next_run(server, tmp_path):
    base, state = server
    data = _payload(3 * 1024 * 1024)
    state.files["/big.iso"] = data
    state.drop_after = len(data) // 2
    dest = tmp_path / "big.iso"
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(UserError, match="run the same command again to resume"):
        fetch(f"{base}/big.iso", dest, digest, progress=False, retries=0)
    assert not dest.exists()
    assert part_path(dest).stat().st_size == len(data) // 2
    assert fetch(f"{base}/big.iso", dest, digest, progress=False, retries=0) == dest
    assert dest.read_bytes() == data
    assert not part_path(dest).exists()
    assert state.ranges[-1] == f"bytes={len(data) // 2}-"


def test_a_dropped_connection_is_resumed_within_one_call(server, tmp_path):
    base, state = server
    data = _payload(1024 * 1024)
    state.files["/x.iso"] = data
    state.drop_after = 1000
    fetch(f"{base}/x.iso", tmp_path / "x.iso", hashlib.sha256(data).hexdigest(), progress=False)
    assert (tmp_path / "x.iso").read_bytes() == data
    assert state.ranges == [None, "bytes=1000-"]


def test_complete_part_file_is_finished_without_downloading_again(server, tmp_path):
    base, state = server
    data = _payload(64 * 1024)
    state.files["/x.iso"] = data
    part_path(tmp_path / "x.iso").write_bytes(data)
    fetch(f"{base}/x.iso", tmp_path / "x.iso", hashlib.sha256(data).hexdigest(), progress=False)
    assert (tmp_path / "x.iso").read_bytes() == data
    assert state.ranges == [f"bytes={len(data)}-"]


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    base, state = server
    state.files["/x.iso"] = _payload(64 * 1024)
    with pytest.raises(UserError, match="sha256 is .* expected 0000"):
        fetch(f"{base}/x.iso", tmp_path / "x.iso", "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_mirrors_are_tried_in_order_on_404(server, tmp_path):
    base, state = server
    data = _payload(4096)
    state.files["/second/x.iso"] = data
    fetch([f"{base}/first/x.iso", f"{base}/second/x.iso"], tmp_path / "x.iso", None, progress=False)
    assert (tmp_path / "x.iso").read_bytes() == data
    with pytest.raises(UserError, match="HTTP 404"):
        fetch([f"{base}/nowhere/y.iso"], tmp_path / "y.iso", None, progress=False)


def _catalogue_with(monkeypatch, base: str, iso: Path, sha256: str) -> None:
    entry = images.CatalogueEntry(
        name="test-22.04",
        description="test image",
        release="22.04.1",
        iso=iso.name,
        sha256=sha256,
        urls=(f"{base}/releases/{iso.name}",),
    )
    monkeypatch.setattr(images, "load_catalogue", lambda: {"test-22.04": entry})


def test_fetch_image_downloads_verifies_and_extracts(server, tmp_path, monkeypatch):
    base, state = server
    kernel, initrd = b"KERNEL" * 40000, b"INITRD" * 90000
    iso = build_test_iso(tmp_path / "ubuntu-test-live-server-amd64.iso", kernel, initrd)
    state.files[f"/releases/{iso.name}"] = iso.read_bytes()
    state.drop_after = iso.stat().st_size // 3
    _catalogue_with(monkeypatch, base, iso, hashlib.sha256(iso.read_bytes()).hexdigest())
    root = tmp_path / "httproot"
    with pytest.raises(UserError, match="resume"):
        fetch(
            f"{base}/releases/{iso.name}",
            root / "images/test-22.04" / iso.name,
            None,
            progress=False,
            retries=0,
        )
    assert images.image_paths(root, "test-22.04") is None
    info = images.fetch_image("test-22.04", root, progress=False)
    folder = root / "images" / "test-22.04"
    assert (folder / iso.name).read_bytes() == iso.read_bytes()
    assert (folder / "casper/vmlinuz").read_bytes() == kernel
    assert (folder / "casper/initrd").read_bytes() == initrd
    assert info.release == "22.04.1"
    assert images.image_paths(root, "test-22.04").iso == f"images/test-22.04/{iso.name}"
    assert images.fetch_image("test-22.04", root, progress=False) == info  # already ready: no request
    assert state.ranges[-1] is not None and state.ranges[-1].startswith("bytes=")


def test_fetch_image_with_bad_checksum_leaves_nothing_half_installed(server, tmp_path, monkeypatch):
    base, state = server
    iso = build_test_iso(tmp_path / "ubuntu-test.iso", b"k" * 1000, b"i" * 1000)
    state.files[f"/releases/{iso.name}"] = iso.read_bytes()
    _catalogue_with(monkeypatch, base, iso, "f" * 64)
    root = tmp_path / "httproot"
    with pytest.raises(UserError, match="sha256"):
        images.fetch_image("test-22.04", root, progress=False)
    assert images.image_paths(root, "test-22.04") is None
    assert not (root / "images" / "test-22.04").exists()


def test_the_standard_proxy_variables_are_honoured(server, tmp_path, monkeypatch):
    base, state = server  # here the test server plays the proxy: it gets absolute URLs
    data = _payload(64 * 1024)
    state.files["http://images.example/x.iso"] = data
    monkeypatch.setenv("http_proxy", base)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    fetch("http://images.example/x.iso", tmp_path / "x.iso", hashlib.sha256(data).hexdigest(), progress=False)
    assert (tmp_path / "x.iso").read_bytes() == data


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_without_internet_it_says_so_and_how_to_add_a_downloaded_iso(tmp_path):
    """`images fetch` in a network namespace with no interface but loopback: no route, no DNS."""
    config = tmp_path / "config.yaml"
    config.write_text(f"paths:\n  root: {tmp_path / 'root'}\n")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "pypxe_homelab", "--config", str(config)]
        + ["images", "fetch", "ubuntu-24.04", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    entry = images.load_catalogue()["ubuntu-24.04"]
    assert "interrupted" not in line and "run the same command again" not in line
    assert re.search(r"this host (cannot look up \S+ \(no working DNS|has no route to \S+)", line), line
    assert f"`pypxe-homelab images add PATH/{entry.iso} --name ubuntu-24.04`" in line
    assert "behind a proxy, set https_proxy" in line
