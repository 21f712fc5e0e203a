"""Logging for `serve`: one readable line per event, or one JSON object per line with --log-format json.

Client bytes (request paths, file names, vendor classes) reach log messages; the text log shows every control
character, escape sequence and bidirectional-override character as a visible escape (``\\x1b``), so a client
cannot move the cursor, recolour or rewrite a terminal that shows the log. An unexpected error is one line
(its type and message) pointing at ``--debug``, which adds the traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from pypxe_homelab.events import Event

events_log = logging.getLogger("pypxe_homelab.events")


DEBUG_HINT = "traceback: run `pypxe-homelab serve --debug`"

_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
_ESCAPES.update(
    {
        code: f"\\u{code:04x}"
        for code in (0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
    }
)


def printable(text: str) -> str:
    """``text`` with control, escape and bidi-override characters shown as escapes (one line, inert)."""
    return text.translate(_ESCAPES)


def _exception_line(record: logging.LogRecord) -> str:
    """``Type: message`` of the record's exception, or ""."""
    if not record.exc_info or record.exc_info[1] is None:
        return ""
    exc = record.exc_info[1]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class JsonFormatter(logging.Formatter):
    """One JSON object per record; event records carry the whole event."""

    def __init__(self, debug: bool = False) -> None:
        super().__init__()
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if isinstance(event, Event):
            doc["event"] = {
                "kind": event.kind,
                "client": event.client,
                "device_id": event.device_id,
                "mac": event.mac,
                "detail": event.detail,
            }
        error = _exception_line(record)
        if error:
            doc["error"] = error
            if self.debug and record.exc_info:
                doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """``<time> [LEVEL: ]<message>``, one line; with ``debug`` an error's traceback follows it."""

    def __init__(self, debug: bool = False) -> None:
        super().__init__()
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        level = "" if record.levelno == logging.INFO else f"{record.levelname}: "
        line = f"{stamp} {level}{printable(record.getMessage())}"
        error = _exception_line(record)
        if not error:
            return line
        if self.debug and record.exc_info:
            return f"{line}: {printable(error)}\n{self.formatException(record.exc_info)}"
        return f"{line}: {printable(error)} ({DEBUG_HINT})"


class HoldingStreamHandler(logging.StreamHandler):
    """A StreamHandler whose lines, inside ``held()`` on one thread, are gathered and written at once.

    The recorder tells a whole batch of events inside ``held()``: a boot storm costs one write per batch
    instead of one per event. Other threads' lines are written as they come."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        lines = getattr(self._local, "lines", None)
        if lines is None:
            super().emit(record)
            return
        try:
            lines.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if getattr(self._local, "lines", None) is not None:  # already held further up
            yield
            return
        self._local.lines = []
        try:
            yield
        finally:
            lines, self._local.lines = self._local.lines, None
            if lines:
                self.acquire()
                try:
                    self.stream.write("".join(lines))
                    self.flush()
                except Exception:  # a closed or full stream must not take the recorder down
                    pass
                finally:
                    self.release()


def held_output() -> contextlib.AbstractContextManager[None]:
    """Gather this thread's log lines and write them when the block ends (see ``HoldingStreamHandler``)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, HoldingStreamHandler):
            return handler.held()
    return contextlib.nullcontext()


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    handler = HoldingStreamHandler(sys.stderr)
    debug = level <= logging.DEBUG
    handler.setFormatter(JsonFormatter(debug) if log_format == "json" else TextFormatter(debug))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("scapy", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_SHOWN_DETAIL = (
    "path", "file", "class", "arch", "bytes", "duration", "status", "server", "cause", "reason", "fix", "name", "result",
)  # fmt: skip


def event_line(event: Event) -> str:
    """``<kind> <who> <facts>``, e.g. ``tftp.done 01-52-54-00-a0-00-01 (10.0.0.5:2070) path=lpxelinux.0 bytes=42…``."""
    who = event.device_id or event.mac or "?"
    facts = " ".join(
        f"{k}={event.detail[k]}"
        for k in _SHOWN_DETAIL
        if k in event.detail and event.detail[k] not in (None, "")
    )
    return f"{event.kind} {who} ({event.client}) {facts}".rstrip()


def log_event(event: Event) -> None:
    events_log.info(event_line(event), extra={"event": event})
