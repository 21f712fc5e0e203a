"""Resumable, checksummed HTTP(S) downloads.

Bytes go to ``<dest>.part``; an interrupted download keeps it and the next call continues with an HTTP Range
request. The finished file is checked against its sha256 and only then renamed to ``dest``, so ``dest`` exists
only when it is complete and verified.

urllib's default opener honours the standard proxy variables (``http_proxy``, ``https_proxy``, ``no_proxy``, in
either case). A host that cannot look the server up, or has no route to it, is told so at once (with the
caller's offline alternative), not asked to retry.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from pypxe_homelab.errors import UserError

CHUNK = 1 << 20
TIMEOUT = 60.0
USER_AGENT = "pypxe-homelab"

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


_NO_ROUTE = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL)


class _Unreachable(Exception):
    """The server cannot be reached at all from this host (no DNS, no route): retrying will not help."""


class _Interrupted(Exception):
    """The connection ended before the whole body arrived; the .part file holds what came."""


def part_path(dest: Path) -> Path:
    """Where the bytes of an unfinished download of ``dest`` are kept."""
    return dest.with_name(dest.name + ".part")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    url: str | Sequence[str],
    dest: Path,
    sha256: str | None,
    *,
    progress: bool = True,
    retries: int = 3,
    timeout: float = TIMEOUT,
    offline_hint: str = "",
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify ``sha256`` and rename into place.

    ``url`` may be a list of mirrors, tried in order while they answer 404/410. A dropped connection is
    resumed up to ``retries`` times; after that the ``.part`` file stays and a UserError says to run again.
    When the server cannot be reached at all (no DNS, no route) the UserError says so and adds
    ``offline_hint`` (how to get the file another way).
    A checksum mismatch deletes the ``.part`` file and raises UserError. Returns ``dest``.
    """
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise UserError(f"no download URL for {dest.name}")
    expected = sha256.lower() if sha256 else None
    if dest.exists() and (expected is None or sha256_file(dest) == expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    last_error = ""
    for candidate in urls:
        try:
            _download(candidate, part, progress=progress, retries=retries, timeout=timeout)
        except _NotThere as exc:
            last_error = str(exc)
            continue
        except _Unreachable as exc:
            proxy = "" if _proxy_for(candidate) else "; behind a proxy, set https_proxy and http_proxy"
            hint = f"; {offline_hint}" if offline_hint else ""
            raise UserError(f"cannot download {dest.name}: {exc}{hint}{proxy}") from None
        _finish(part, dest, expected, candidate)
        return dest
    raise UserError(f"cannot download {dest.name}: {last_error}")


class _NotThere(Exception):
    """The server says this URL does not exist (try the next mirror)."""


def _finish(part: Path, dest: Path, expected: str | None, url: str) -> None:
    if expected is not None:
        actual = sha256_file(part)
        if actual != expected:
            part.unlink(missing_ok=True)
            raise UserError(
                f"{url}: sha256 is {actual}, expected {expected}; the download was deleted — "
                "check the URL and checksum, then try again"
            )
    os.replace(part, dest)


def _download(url: str, part: Path, *, progress: bool, retries: int, timeout: float) -> None:
    attempts = 0
    while True:
        try:
            _transfer(url, part, progress=progress, timeout=timeout)
            return
        except (_Interrupted, OSError) as exc:
            attempts += 1
            if attempts > retries:
                have = part.stat().st_size if part.exists() else 0
                raise UserError(
                    f"download of {url} interrupted after {have} bytes ({exc}); "
                    "run the same command again to resume"
                ) from None


def _proxy_for(url: str) -> str | None:
    """The proxy urllib uses for ``url`` (from the environment), or None."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _unreachable(url: str, exc: OSError) -> _Unreachable | None:
    """A connection error that means this host cannot reach the server at all, described; else None."""
    host = _proxy_for(url) or urlsplit(url).hostname or url
    if isinstance(exc, socket.gaierror):
        return _Unreachable(f"this host cannot look up {host} (no working DNS, or no internet connection)")
    if exc.errno in _NO_ROUTE:
        return _Unreachable(f"this host has no route to {host} (no internet connection?)")
    return None


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        # a fresh opener reads the proxy variables now (the shared one keeps those of its first use)
        return urllib.request.build_opener().open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return exc  # the .part file may already hold everything
        if exc.code in (404, 410):
            raise _NotThere(f"{url}: HTTP {exc.code}") from None
        raise UserError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, OSError):
            raise _unreachable(url, exc.reason) or exc.reason from None
        raise UserError(f"{url}: {exc.reason}") from None


def _transfer(url: str, part: Path, *, progress: bool, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, offset, timeout)
    with contextlib.closing(response):
        if isinstance(response, urllib.error.HTTPError):  # 416: nothing left to send
            return
        total = _total_size(response, offset)
        if offset and response.status != 206:
            offset = 0  # the server ignored Range: start over
        with part.open("r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            received = offset
            for chunk in _with_progress(_chunks(response), part.name, offset, total, progress):
                out.write(chunk)
                received += len(chunk)
        if total is not None and received < total:
            raise _Interrupted(f"connection closed at {received} of {total} bytes")


def _total_size(response, offset: int) -> int | None:
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            raise UserError(f"{response.url}: server sent a range that does not continue the download")
        return None if match.group(3) == "*" else int(match.group(3))
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _chunks(response) -> Iterator[bytes]:
    while True:
        try:
            chunk = response.read(CHUNK)
        except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
            raise _Interrupted(repr(exc)) from None
        if not chunk:
            return
        yield chunk


def _with_progress(
    chunks: Iterator[bytes], label: str, done: int, total: int | None, enabled: bool
) -> Iterator[bytes]:
    if not enabled:
        yield from chunks
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label.removesuffix(".part"), total=total, completed=done)
        for chunk in chunks:
            bar.advance(task, len(chunk))
            yield chunk
