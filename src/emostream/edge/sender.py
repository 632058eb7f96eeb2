"""The spooling producer: spool first, produce in spool order, delete a row only once the broker acked it.

One process at a time delivers a spool (an exclusive ``flock`` on ``<spool>.lock``); another
process that finds the lock taken only appends, and the owner picks its rows up on its next
pump. Records never time out inside librdkafka (``message.timeout.ms=0``): while the broker
is away they wait, in order, and the spool keeps them across restarts. A restarted sender
re-sends every row still in the spool, so delivery is at-least-once (a record in flight at a
kill is sent again; the worker drops repeated utterance ids). Per device order holds because
every row of a device has the same key (one partition) and the idempotent producer keeps a
partition's order with up to 5 requests in flight.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emostream.edge.errors import SpoolError
from emostream.edge.spool import Spool
from emostream.errors import KafkaClientError
from emostream.events import Transcript
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.producer import idempotent_producer

MAX_OUTSTANDING = 20_000  # records handed to librdkafka and not yet acked; the rest wait in the spool
DELETE_EVERY_S = 0.2


class SpoolLock:
    """Exclusive ownership of a spool's delivery; ``acquire`` returns False when another process has it."""

    def __init__(self, spool_path: Path) -> None:
        self.path = Path(f"{spool_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the process holding the lock, or '?'."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        """Give the lock back (closing the file releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class SenderStats:
    """Counters since this sender started."""

    produced: int = 0
    acked: int = 0
    failed: int = 0
    last_error: str | None = None


def transcript_row(t: Transcript, topic: str) -> tuple[str, str, bytes, bytes, str]:
    """The spool row of one transcript: (device, topic, key, value, utterance_id); key = device id."""
    return (t.device_id, topic, t.device_id.encode("utf-8"), t.encode(), t.utterance_id)


class SpoolingSender:
    """Delivers a spool's rows to Kafka in order; see the module docstring for the guarantees."""

    def __init__(self, client: ClientConfig, spool: Spool, *, producer_factory: Callable[..., Any] | None = None,
                 **producer_extra: Any) -> None:
        self.spool = spool
        self.stats = SenderStats()
        self._lock = SpoolLock(spool.path)
        if not self._lock.acquire():
            raise SpoolError(
                f"spool {spool.path} is being delivered by another emostream process (pid {self._lock.holder()}); "
                "stop it or give this command its own --spool"
            )
        settings = {
            "message.timeout.ms": 0,  # never give a record up: the broker may be away for hours
            "max.in.flight.requests.per.connection": 5,
            "queue.buffering.max.messages": MAX_OUTSTANDING * 2,
            **producer_extra,
        }
        self._producer = (producer_factory or idempotent_producer)(client, **settings)
        self._last_seq = 0  # highest seq handed to the producer
        self._outstanding = 0
        self._acked: list[int] = []
        self._last_delete = time.monotonic()
        self.bootstrap = client.bootstrap

    # --- public --------------------------------------------------------------------------------

    def submit(self, transcripts: Iterable[Transcript], topic: str, *, block_s: float = 10.0) -> list[int]:
        """Spool transcripts (one transaction), then hand them to the producer; their spool seqs."""
        rows = [transcript_row(t, topic) for t in transcripts]
        seqs = self.spool.append(rows, block_s=block_s, on_full_wait=lambda: self.service(0.05))
        self.pump()
        return seqs

    def pump(self) -> int:
        """Produce spooled rows not yet handed over, in spool order; how many were handed over."""
        handed = 0
        while self._outstanding < MAX_OUTSTANDING:
            rows = self.spool.pending(self._last_seq, min(5_000, MAX_OUTSTANDING - self._outstanding))
            if not rows:
                break
            for row in rows:
                self._produce(row.topic, row.key, row.value, row.seq)
                self._last_seq = row.seq
                handed += 1
            self._producer.poll(0)
        return handed

    def service(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks for up to ``timeout_s``, delete acked rows in a batch, pump new rows."""
        self._producer.poll(timeout_s)
        self._delete_acked(force=False)
        self.pump()

    def waiting(self) -> int:
        """Rows still in the spool (delivered rows are deleted in batches, so call ``service`` first)."""
        self._delete_acked(force=True)
        return self.spool.count()

    def drain(self, wait_s: float) -> int:
        """Deliver everything spooled, waiting at most ``wait_s``; how many rows are still waiting."""
        deadline = time.monotonic() + wait_s
        self.pump()
        while True:
            self.service(0.05)
            if self._outstanding == 0:
                remaining = self.waiting()
                if remaining == 0:
                    return 0
                if self.pump() == 0:  # all handed-over rows resolved and none new: the rest were refused
                    return remaining
            if time.monotonic() >= deadline:
                return self.waiting()

    def close(self) -> None:
        """Delete what was acked and release the spool; unacked records stay spooled for the next run."""
        try:
            self._producer.poll(0)
            self._delete_acked(force=True)
        finally:
            self._lock.release()

    # --- internals -----------------------------------------------------------------------------

    def _produce(self, topic: str, key: bytes | None, value: bytes, seq: int) -> None:
        def delivered(err: Any, _msg: Any, seq: int = seq) -> None:
            self._outstanding -= 1
            if err is None:
                self._acked.append(seq)
                self.stats.acked += 1
            else:
                # Permanent refusals only (timeouts are disabled): the row stays spooled for a later run.
                self.stats.failed += 1
                self.stats.last_error = str(err.str() if hasattr(err, "str") else err)
                if getattr(err, "fatal", lambda: False)():
                    raise KafkaClientError(f"the Kafka producer failed fatally: {self.stats.last_error}")

        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:  # librdkafka's queue is full: let acks drain it
                self._producer.poll(0.05)
        self._outstanding += 1
        self.stats.produced += 1

    def _delete_acked(self, *, force: bool) -> None:
        if not self._acked:
            return
        now = time.monotonic()
        if force or len(self._acked) >= 2_000 or now - self._last_delete >= DELETE_EVERY_S:
            batch, self._acked = self._acked, []
            self.spool.delete(batch)
            self._last_delete = now


def spooled_send(client: ClientConfig, spool: Spool, transcripts: Sequence[Transcript], topic: str,
                 wait_s: float, block_s: float = 10.0) -> tuple[int, int, SenderStats | None]:
    """Spool ``transcripts`` and deliver the spool, waiting up to ``wait_s``.

    Returns (records still waiting, records spooled now, stats). When another process owns the
    spool, the transcripts are only appended (that process delivers them) and stats is None.
    """
    lock = SpoolLock(spool.path)
    if not lock.acquire():
        spool.append([transcript_row(t, topic) for t in transcripts], block_s=block_s)
        return spool.count(), len(transcripts), None
    lock.release()
    sender = SpoolingSender(client, spool)
    try:
        sender.submit(transcripts, topic, block_s=block_s)
        remaining = sender.drain(wait_s)
        return remaining, len(transcripts), sender.stats
    finally:
        sender.close()
