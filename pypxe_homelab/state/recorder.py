"""Events off the reply path: services hand events to ``Recorder.emit``, which only queues them; one background
thread records them in the state store in batches and then tells the listeners (log line, metrics).

A slow or failing store therefore never delays a DHCP offer or a TFTP block. When the queue is full (the store
has fallen far behind), events are dropped and counted, and the drop is logged once a minute.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from pypxe_homelab.events import Event

log = logging.getLogger("pypxe_homelab.state")

MAX_QUEUED = 100_000
MAX_BATCH = 512
_DROP_LOG_SECONDS = 60.0

Listener = Callable[[Event, float], None]  # the recorded event (device id filled in) and seconds it took


class EventStore(Protocol):
    """What the recorder needs of the store (``StateStore.record_many``)."""

    def record_many(self, events: list[Event]) -> list[str | None]: ...


class Recorder:
    """A queue and one thread between the services and the state store."""

    def __init__(
        self, store: EventStore, listeners: tuple[Listener, ...] = (), maxsize: int = MAX_QUEUED
    ) -> None:
        self._store = store
        self._listeners = listeners
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize)
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        self.dropped = 0
        self._drop_logged = 0.0

    def emit(self, event: Event) -> None:
        """Queue ``event`` for recording; never blocks."""
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
            self.dropped += 1
            now = time.monotonic()
            if now - self._drop_logged >= _DROP_LOG_SECONDS:
                self._drop_logged = now
                log.warning(
                    "state: the recorder is %d events behind; %d dropped so far", MAX_QUEUED, self.dropped
                )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Record what is queued (for up to ``timeout`` seconds), then stop the thread."""
        if self._thread is None:
            return
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event emitted so far is recorded; False when ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._record(batch)
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()

    def _record(self, batch: list[Event]) -> None:
        started = time.perf_counter()
        try:
            ids = self._store.record_many(batch)
        except Exception:
            log.exception("state: recording %d event(s) failed", len(batch))
            ids = [None] * len(batch)
        each = (time.perf_counter() - started) / len(batch)
        for event, device_id in zip(batch, ids, strict=True):
            if device_id and event.device_id is None:  # e.g. a hex-IP or UUID config name, told by the store
                event = replace(event, device_id=device_id)
            for listener in self._listeners:
                try:
                    listener(event, each)
                except Exception:
                    log.exception("state: an event listener failed")
