"""serve's log: one readable line per event, or one JSON object per line."""

from __future__ import annotations

import json
import logging

from pypxe_homelab.events import Event
from pypxe_homelab.logging_setup import JsonFormatter, TextFormatter, event_line, events_log

EVENT = Event(
    "tftp.done",
    "10.0.0.9:2070",
    "01-52-54-00-a0-00-01",
    "52:54:00:a0:00:01",
    {"path": "lpxelinux.0", "bytes": 42, "duration": 0.01, "options": {"blksize": "1408"}},
)


def _record(event: Event) -> logging.LogRecord:
    return events_log.makeRecord(
        events_log.name, logging.INFO, __file__, 1, event_line(event), (), None, extra={"event": event}
    )


def test_event_line_names_kind_machine_client_and_facts() -> None:
    line = event_line(EVENT)
    assert line == "tftp.done 01-52-54-00-a0-00-01 (10.0.0.9:2070) path=lpxelinux.0 bytes=42 duration=0.01"


def test_event_line_without_a_known_machine() -> None:
    assert event_line(Event("tftp.rrq", "10.0.0.9:2070", detail={"path": "x"})).startswith("tftp.rrq ? (")


def test_json_lines_carry_the_whole_event() -> None:
    doc = json.loads(JsonFormatter().format(_record(EVENT)))
    assert doc["level"] == "info" and doc["message"] == event_line(EVENT)
    assert doc["event"]["kind"] == "tftp.done" and doc["event"]["detail"]["options"] == {"blksize": "1408"}
    assert "\n" not in JsonFormatter().format(_record(EVENT))


def test_text_lines_have_a_timestamp_and_no_level_for_info() -> None:
    text = TextFormatter().format(_record(EVENT))
    assert text.endswith(event_line(EVENT)) and "INFO" not in text
