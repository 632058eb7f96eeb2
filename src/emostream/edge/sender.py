"""The spooling producer: spool first, produce in spool order, delete a row only once the broker acked it.

One process at a time delivers a spool (an exclusive ``flock`` on ``<spool>.lock``); another
process that finds the lock taken only appends, and the owner picks its rows up on its next
pump. Records never time out inside librdkafka (``message.timeout.ms=0``): while the broker
is away they wait, in order, and the spool keeps them across restarts. A restarted sender
re-sends every row still in the spool, so delivery is at-least-once (a record in flight at a
kill is sent again; the worker drops repeated utterance ids). Per device order holds because
every row of a device has the same key (one partition) and the idempotent producer keeps a
partition's order with up to 5 requests in flight.

Order when a record fails: **a row is never delivered after a later row of its device.**

- Refused for good (too large, not authorized, invalid: ``PERMANENT``): the row moves to the
  spool's ``rejected`` table with the broker's reason. The rows behind it go on (they were
  after it and stay after it); nothing is deleted silently, nothing is blocked.
- Any other failure: the sender stops handing rows over, waits until every record in flight
  has resolved, then rewinds to the failed row and produces again from there. If a later row of
  the same device was acked meanwhile, sending the failed one now would put it after that row, so
  it is rejected instead ("would arrive out of order"), never re-sent behind it.
- A fatal producer error stops the sender (KafkaClientError); unacked rows stay spooled.

With ``signer`` every record carries the device's Ed25519 signature header
(:class:`emostream.signing.DeviceSigner`), computed when it is produced, not stored.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emostream.edge.errors import SigningKeyError, SpoolError, SpoolRowError
from emostream.edge.input import check_transcript
from emostream.edge.spool import Row, Spool
from emostream.errors import KafkaClientError
from emostream.events import InvalidEvent, Transcript
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.errors import RECORD_REFUSALS, describe, error_name, is_fatal, kafka_error
from emostream.kafka.producer import idempotent_producer, produce
from emostream.signing import DeviceSigner

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

MAX_OUTSTANDING = 20_000  # records handed to librdkafka and not yet acked; the rest wait in the spool
DELETE_EVERY_S = 0.2
RETRY_AFTER_S = 1.0  # after a non-permanent failure, wait this long before producing the row again

# Refusals that sending the same bytes again cannot fix: the record's own (size, format) plus
# this device's rights on the topic. The row is moved to ``rejected``.
PERMANENT = RECORD_REFUSALS | {"TOPIC_AUTHORIZATION_FAILED", "TOPIC_EXCEPTION", "POLICY_VIOLATION", "UNSUPPORTED_FOR_MESSAGE_FORMAT"}


def is_permanent(err: BaseException | KafkaError | None) -> bool:
    """True when the broker (or client) refuses this record for good; retrying the same bytes cannot help."""
    return not is_fatal(err) and error_name(err) in PERMANENT


def signer_for(client: ClientConfig) -> DeviceSigner | None:
    """The device's signer when its profile has a ``signing_key``; SigningKeyError when that key is malformed."""
    if not client.signing_key:
        return None
    try:
        return DeviceSigner(client.signing_key)
    except (InvalidEvent, ValueError) as exc:
        raise SigningKeyError(
            f"the security profile's signing_key is not a usable Ed25519 key ({exc}); "
            "write the key 'emostream users add' gave this device, or remove the field to send unsigned"
        ) from None


class SpoolLock:
    """Exclusive ownership of a spool's delivery; ``acquire`` returns False when another process has it."""

    def __init__(self, spool_path: Path) -> None:
        self.path = Path(f"{spool_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
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
    failed: int = 0  # delivery failures of any kind (a retried row counts each time)
    rejected: int = 0  # rows moved to the spool's ``rejected`` table
    last_error: str | None = None


def transcript_row(t: Transcript, topic: str) -> tuple[str, str, bytes, bytes, str]:
    """The spool row of one checked transcript: (device, topic, key, value, utterance_id); key = device id.

    TranscriptError when the transcript cannot be sent (see :func:`emostream.edge.input.check_transcript`).
    """
    check_transcript(t)
    return (t.device_id, topic, t.device_id.encode("utf-8"), t.encode(), t.utterance_id)


class SpoolingSender:
    """Delivers a spool's rows to Kafka in order; see the module docstring for the guarantees."""

    def __init__(self, client: ClientConfig, spool: Spool, *, signer: DeviceSigner | None = None,
                 producer_factory: Callable[..., Any] | None = None, **producer_extra: Any) -> None:
        self.spool = spool
        self.stats = SenderStats()
        self._signer = signer
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
        try:
            self._producer = (producer_factory or idempotent_producer)(client, **settings)
        except BaseException:
            self._lock.release()
            raise
        self._last_seq = 0  # highest seq handed to the producer
        self._inflight: dict[int, tuple[str, str]] = {}  # seq -> (device, topic) of rows handed over, not resolved
        self._acked: list[int] = []  # acked, not yet deleted from the spool
        self._max_acked: dict[tuple[str, str], int] = {}  # (device, topic) -> highest acked seq
        self._reject: list[tuple[int, str]] = []  # refused for good, not yet moved to ``rejected``
        self._retry: dict[int, str] = {}  # failed, not for good: produce again once nothing is in flight
        self._retry_at = 0.0
        self._fatal: str | None = None
        self._last_delete = time.monotonic()
        self.bootstrap = client.bootstrap

    # --- public --------------------------------------------------------------------------------

    def submit(self, transcripts: Iterable[Transcript], topic: str, *, block_s: float = 10.0) -> list[int]:
        """Check and spool transcripts (one transaction), then hand them to the producer; their spool seqs.

        TranscriptError, before anything is spooled, when one of them cannot be sent.
        """
        rows = [transcript_row(t, topic) for t in transcripts]
        seqs = self.spool.append(rows, block_s=block_s, on_full_wait=lambda: self.service(0.05))
        self.pump()
        return seqs

    def pump(self) -> int:
        """Produce spooled rows not yet handed over, in spool order; how many were handed over.

        Nothing is handed over while a failed row waits to be produced again (see the module docstring).
        """
        self._check_fatal()
        if self._retry and not self._rewind():
            return 0
        handed = 0
        while self._outstanding() < MAX_OUTSTANDING and not self._retry:
            try:
                rows = self.spool.pending(self._last_seq, min(5_000, MAX_OUTSTANDING - self._outstanding()))
            except SpoolRowError as exc:  # the file was edited or damaged: park the row, go on behind it
                self._settle()
                self.spool.reject([(exc.seq, f"unreadable spool row: {exc.reason}")])
                self.stats.rejected += 1
                self.stats.last_error = str(exc)
                continue
            if not rows:
                break
            for row in rows:
                if not self._produce(row):
                    break
                handed += 1
            self._producer.poll(0)
        return handed

    def service(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks for up to ``timeout_s``, settle acked and refused rows in a batch, pump new rows."""
        self._producer.poll(timeout_s)
        self._check_fatal()
        self._settle(force=False)
        self.pump()

    def waiting(self) -> int:
        """Rows still in the spool (delivered rows are deleted in batches, so call ``service`` first)."""
        self._settle()
        return self.spool.count()

    def drain(self, wait_s: float) -> int:
        """Deliver everything spooled, waiting at most ``wait_s``; how many rows are still waiting."""
        deadline = time.monotonic() + wait_s
        self.pump()
        while True:
            self.service(0.05)
            if self._outstanding() == 0 and not self._retry and self.pump() == 0:
                remaining = self.waiting()
                if remaining == 0:
                    return 0
            if time.monotonic() >= deadline:
                return self.waiting()

    def close(self) -> None:
        """Settle what was acked or refused and release the spool; unacked records stay spooled for the next run."""
        try:
            self._producer.poll(0)
            self._settle()
        finally:
            self._lock.release()

    # --- internals -----------------------------------------------------------------------------

    def _outstanding(self) -> int:
        return len(self._inflight)

    def _produce(self, row: Row) -> bool:
        """Hand one row to librdkafka; False when it could not be (then pumping stops)."""
        def delivered(err: Any, _msg: Any, seq: int = row.seq) -> None:
            where = self._inflight.pop(seq, None)
            if err is None:
                self._acked.append(seq)
                self.stats.acked += 1
                if where is not None and seq > self._max_acked.get(where, 0):
                    self._max_acked[where] = seq
            else:
                self._failed(seq, err)

        headers = self._signer.headers(row.key, row.value) if self._signer is not None else None
        try:
            produce(self._producer, row.topic, row.value, row.key, headers=headers, on_delivery=delivered)
        except Exception as exc:  # KafkaException: refused before it left (too large for the client, unknown topic...)
            if kafka_error(exc) is None:
                raise
            self._last_seq = row.seq
            self._failed(row.seq, exc)
            self._check_fatal()
            return not self._retry
        self._inflight[row.seq] = (row.device, row.topic)
        self._last_seq = row.seq
        self.stats.produced += 1
        return True

    def _failed(self, seq: int, err: Any) -> None:
        text = describe(err)
        self.stats.failed += 1
        self.stats.last_error = text
        if is_fatal(err):
            self._fatal = text
        elif is_permanent(err):
            self._reject.append((seq, f"refused by the broker: {text}"))
        else:
            self._retry[seq] = text
            self._retry_at = time.monotonic() + RETRY_AFTER_S

    def _rewind(self) -> bool:
        """Once nothing is in flight, produce the failed rows again from the first one; False while waiting."""
        if self._inflight or time.monotonic() < self._retry_at:
            return False
        self._settle()  # acked rows leave the spool first: pending() must not hand them over again
        behind = []
        for seq in sorted(self._retry):
            rows = self.spool.pending(seq - 1, 1)
            row = rows[0] if rows and rows[0].seq == seq else None
            if row is not None and self._max_acked.get((row.device, row.topic), 0) > seq:
                behind.append((seq, f"not re-sent: a later record of device '{row.device}' was already delivered, "
                                    f"so this one would arrive out of order (it failed with: {self._retry[seq]})"))
        if behind:
            self.spool.reject(behind)
            self.stats.rejected += len(behind)
        self._last_seq = min(self._retry) - 1
        self._retry.clear()
        return True

    def _settle(self, *, force: bool = True) -> None:
        """Delete acked rows and move refused ones to ``rejected``, in batches."""
        if self._reject:
            batch, self._reject = self._reject, []
            self.stats.rejected += self.spool.reject(batch)
        if not self._acked:
            return
        now = time.monotonic()
        if force or len(self._acked) >= 2_000 or now - self._last_delete >= DELETE_EVERY_S:
            batch, self._acked = self._acked, []
            self.spool.delete(batch)
            self._last_delete = now

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise KafkaClientError(f"the Kafka producer failed fatally: {self._fatal}; "
                                   "the unacked transcripts stay spooled, run the command again")


def spooled_send(client: ClientConfig, spool: Spool, transcripts: Sequence[Transcript], topic: str,
                 wait_s: float, block_s: float = 10.0, *,
                 signer: DeviceSigner | None = None) -> tuple[int, int, SenderStats | None]:
    """Check and spool ``transcripts``, then deliver the spool, waiting up to ``wait_s``.

    Returns (records still waiting, records spooled now, stats). When another process owns the
    spool, the transcripts are only appended (that process delivers them) and stats is None.
    TranscriptError, before anything is spooled, when one of them cannot be sent.
    """
    rows = [transcript_row(t, topic) for t in transcripts]
    lock = SpoolLock(spool.path)
    if not lock.acquire():
        spool.append(rows, block_s=block_s)
        return spool.count(), len(transcripts), None
    lock.release()
    sender = SpoolingSender(client, spool, signer=signer)
    try:
        sender.submit(transcripts, topic, block_s=block_s)
        remaining = sender.drain(wait_s)
        return remaining, len(transcripts), sender.stats
    finally:
        sender.close()
