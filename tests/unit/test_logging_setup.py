"""serve's log: one readable line per event, or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys

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


def _error_record(debug_message: str = "could not record %s") -> logging.LogRecord:
    try:
        raise ValueError("boom")
    except ValueError:
        return logging.getLogger("pypxe_homelab.server").makeRecord(
            "pypxe_homelab.server", logging.ERROR, __file__, 1, debug_message, ("x",), sys.exc_info()
        )


def test_client_bytes_cannot_drive_the_terminal() -> None:
    hostile = Event("http.get", "10.0.0.9:5000", detail={"path": "/\x1b[2J\x1b]0;owned\x07a\r\nb\u202e.cfg"})
    text = TextFormatter().format(_record(hostile))
    assert "\x1b" not in text and "\x07" not in text and "\n" not in text and "\r" not in text
    assert "\u202e" not in text
    assert "path=/\\x1b[2J\\x1b]0;owned\\x07a\\r\\nb\\u202e.cfg" in text


def test_an_unexpected_error_is_one_line_pointing_at_debug() -> None:
    text = TextFormatter().format(_error_record())
    assert "\n" not in text
    assert text.endswith(
        "ERROR: could not record x: ValueError: boom (traceback: run `pypxe-homelab serve --debug`)"
    )
    doc = json.loads(JsonFormatter().format(_error_record()))
    assert doc["error"] == "ValueError: boom" and "traceback" not in doc


def test_debug_keeps_the_traceback() -> None:
    text = TextFormatter(debug=True).format(_error_record())
    first, rest = text.split("\n", 1)
    assert first.endswith("could not record x: ValueError: boom")
    assert rest.startswith("Traceback (most recent call last):") and "raise ValueError" in rest
    assert "raise ValueError" in json.loads(JsonFormatter(debug=True).format(_error_record()))["traceback"]


def test_held_lines_are_written_at_once_and_other_threads_are_not_held() -> None:
    import io
    import threading

    from pypxe_homelab.logging_setup import HoldingStreamHandler, TextFormatter

    class Stream(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            Stream.writes += 1
            return super().write(text)

    stream = Stream()
    handler = HoldingStreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("test.held")
    logger.propagate, logger.handlers = False, [handler]
    logger.setLevel(logging.INFO)
    with handler.held():
        for n in range(100):
            logger.info("event %d", n)
        other = threading.Thread(target=logger.info, args=("from another thread",))
        other.start()
        other.join()
        assert stream.getvalue().endswith("from another thread\n")  # not held
        assert "event 0" not in stream.getvalue()
    assert stream.getvalue().count("event ") == 100 and Stream.writes == 2
    logger.info("after")
    assert stream.getvalue().endswith("after\n")
