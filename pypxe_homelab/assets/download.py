"""Resumable, checksummed HTTP(S) downloads.

Bytes go to ``<dest>.part``; an interrupted download keeps it and the next call continues with an HTTP Range
request. The finished file is checked against its sha256 and only then renamed to ``dest``, so ``dest`` exists
only when it is complete and verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from pypxe_homelab.errors import UserError

CHUNK = 1 << 20
TIMEOUT = 60.0
USER_AGENT = "pypxe-homelab"

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


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
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify ``sha256`` and rename into place.

    ``url`` may be a list of mirrors, tried in order while they answer 404/410. A dropped connection is
    resumed up to ``retries`` times; after that the ``.part`` file stays and a UserError says to run again.
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


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs from the catalogue
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return exc  # the .part file may already hold everything
        if exc.code in (404, 410):
            raise _NotThere(f"{url}: HTTP {exc.code}") from None
        raise UserError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, OSError):
            raise exc.reason from None
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
