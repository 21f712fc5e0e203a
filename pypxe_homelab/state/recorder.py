"""Events off the reply path: services hand events to ``Recorder.emit``, which only queues them; one background
thread records them in the state store in batches and then tells the listeners (log line, metrics).

A slow or failing store therefore never delays a DHCP offer or a TFTP block. The thread wakes at most every
``BATCH_WAIT`` seconds and records what has gathered in one transaction, so a burst of requests costs one
wake-up, not one per event. When the queue is full (the store has fallen far behind), events are dropped and
counted, and the drop is logged once a minute.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from pypxe_homelab.events import Event

log = logging.getLogger("pypxe_homelab.state")

MAX_QUEUED = 100_000
MAX_BATCH = 512
BATCH_WAIT = 0.005  # seconds the thread lets events gather after the first one of a batch
# While the recording thread works, a service thread waiting for the interpreter gets it back within this
# long (Python's default is 5 ms, which would hold each datagram of a boot storm up to that long).
SWITCH_INTERVAL_SECONDS = 0.0005
_DROP_LOG_SECONDS = 60.0

Listener = Callable[[Event, float], None]  # the recorded event (device id filled in) and seconds it took


class EventStore(Protocol):
    """What the recorder needs of the store (``StateStore.record_many``)."""

    def record_many(self, events: list[Event]) -> list[str | None]: ...


class Recorder:
    """A queue and one thread between the services and the state store."""

    def __init__(
        self,
        store: EventStore,
        listeners: tuple[Listener, ...] = (),
        maxsize: int = MAX_QUEUED,
        around_batch: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self._store = store
        self._listeners = listeners
        self._around_batch = around_batch  # e.g. the log's held_output: one write per batch of log lines
        self._maxsize = maxsize
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._emitted = itertools.count(1)  # next() is atomic: emit may be called from any thread
        self._last_emitted = 0
        self._done = 0  # events taken off the queue and handled (recorded or failed); written by the thread
        self._progress = threading.Condition()
        self.dropped = 0
        self._drop_logged = 0.0

    def emit(self, event: Event) -> None:
        """Queue ``event`` for recording; never blocks."""
        if self._queue.qsize() >= self._maxsize:
            self.dropped += 1
            now = time.monotonic()
            if now - self._drop_logged >= _DROP_LOG_SECONDS:
                self._drop_logged = now
                log.warning(
                    "state: the recorder is %d events behind; %d dropped so far", self._maxsize, self.dropped
                )
            return
        self._last_emitted = next(self._emitted)
        self._queue.put(event)

    def start(self) -> None:
        """Start the recording thread (and shorten the interpreter's thread switch interval, see above)."""
        if self._thread is None:
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
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
        target = self._last_emitted
        deadline = time.monotonic() + timeout
        with self._progress:
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress.wait(left)
        return True

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            if self._queue.qsize() < MAX_BATCH:
                time.sleep(BATCH_WAIT)
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._record(batch)
            with self._progress:
                self._done += len(batch)
                self._progress.notify_all()
            if stop:
                return

    def _record(self, batch: list[Event]) -> None:
        started = time.perf_counter()
        try:
            ids = self._store.record_many(batch)
        except Exception:
            log.exception("state: recording %d event(s) failed", len(batch))
            ids = [None] * len(batch)
        each = (time.perf_counter() - started) / len(batch)
        with self._around_batch():
            self._tell(batch, ids, each)

    def _tell(self, batch: list[Event], ids: list[str | None], each: float) -> None:
        for event, device_id in zip(batch, ids, strict=True):
            if device_id and event.device_id is None:  # e.g. a hex-IP or UUID config name, told by the store
                event = event.evolve(device_id=device_id)
            for listener in self._listeners:
                try:
                    listener(event, each)
                except Exception:
                    log.exception("state: an event listener failed")
