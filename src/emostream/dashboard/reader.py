"""The Kafka side of the dashboard: one thread reads the emotions topic and its DLQ into the state.

The dashboard only watches: it reads committed data (``read_committed``) in its own consumer
group and never commits offsets, so it cannot disturb the worker and a restart starts afresh
(from "now" by default, from the beginning with ``from_beginning``). A record that is not an
event (a tombstone, garbage, hostile JSON) is counted as invalid by kind and skipped; no single
record can stop the reader.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from emostream.dashboard.aggregation import DashboardState
from emostream.events import InvalidEvent, decode_emotion_event
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer, poll_batch
from emostream.kafka.types import KafkaError

log = logging.getLogger(__name__)

# At most one log line per this many seconds about records the reader could not take.
_BAD_RECORD_LOG_EVERY_S = 60.0


def default_group() -> str:
    """A consumer group unique to this process: each dashboard sees every event."""
    return f"emostream-dashboard-{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class KafkaReader:
    """Consumes ``topic`` (emotion events) and ``dlq_topic`` (dead letters) into a :class:`DashboardState`."""

    def __init__(
        self,
        state: DashboardState,
        client: ClientConfig,
        topic: str,
        dlq_topic: str | None,
        *,
        group: str | None = None,
        from_beginning: bool = False,
        batch: int = 500,
    ) -> None:
        self.state = state
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.group = group or default_group()
        self.assigned = threading.Event()
        self.last_error: str | None = None
        self._client = client
        self._from_beginning = from_beginning
        self._batch = batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bad_logged_at = float("-inf")

    def start(self) -> None:
        """Start the reader thread (it creates and closes its own consumer)."""
        self._thread = threading.Thread(target=self._run, name="dashboard-kafka-reader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to stop, wait for it to close its consumer and leave the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the reader thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        if partitions:
            self.assigned.set()

    def _run(self) -> None:
        consumer = committed_consumer(
            self._client,
            self.group,
            from_beginning=self._from_beginning,
            # A topic the worker has not created yet is not an error worth a log line per poll.
            **{"topic.metadata.refresh.interval.ms": 5000, "allow.auto.create.topics": False},
        )
        try:
            topics = [self.topic] + ([self.dlq_topic] if self.dlq_topic else [])
            consumer.subscribe(topics, on_assign=self._on_assign)
            while not self._stop.is_set():
                for msg in poll_batch(consumer, self._batch, 0.2):  # counted as soon as it arrives
                    try:
                        self._handle(msg)
                    except Exception:  # a record we failed to take is one invalid record, not the end of the reader
                        self.state.add_invalid("internal_error")
                        self._log_bad_record(msg, "could not aggregate", exc_info=True)
        except Exception as exc:  # keep serving the page; /healthz reports the reader as down
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("dashboard Kafka reader stopped")
        finally:
            consumer.close()

    def _handle(self, msg: Any) -> None:
        err = msg.error()
        if err is not None:
            if err.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                self.last_error = err.str()
                log.warning("dashboard consumer: %s", err.str())
            return
        if msg.topic() == self.dlq_topic:
            self.state.add_dead_letter(_header(msg.headers(), "error.type"))
            return
        try:
            event = decode_emotion_event(msg.value())
        except InvalidEvent as exc:
            self.state.add_invalid(exc.error_type)
            self._log_bad_record(msg, f"skipped ({exc.error_type}): {exc}")
            return
        self.state.add_event(event)

    def _log_bad_record(self, msg: Any, what: str, *, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._bad_logged_at < _BAD_RECORD_LOG_EVERY_S:
            return  # the counts are in the state; the log only says that it happens
        self._bad_logged_at = now
        log.warning("dashboard: record at %s[%s]@%s %s (further bad records: see the 'invalid' count)",
                    msg.topic(), msg.partition(), msg.offset(), what, exc_info=exc_info)


def _header(headers: list[tuple[str, bytes | None]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name and value is not None:
            return value.decode("utf-8", "replace")
    return None
