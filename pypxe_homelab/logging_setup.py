"""Logging for `serve`: one readable line per event, or one JSON object per line with --log-format json."""

from __future__ import annotations

import json
import logging
import sys
import time

from pypxe_homelab.events import Event

events_log = logging.getLogger("pypxe_homelab.events")


class JsonFormatter(logging.Formatter):
    """One JSON object per record; event records carry the whole event."""

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
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        level = "" if record.levelno == logging.INFO else f"{record.levelname}: "
        return f"{stamp} {level}{record.getMessage()}"


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("scapy", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_SHOWN_DETAIL = ("path", "file", "class", "arch", "bytes", "duration", "status", "reason", "name", "result")


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
