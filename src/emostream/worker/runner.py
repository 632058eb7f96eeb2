"""The worker's I/O shell: poll → micro-batch → process → one transaction per batch.

Exactly-once: every batch's EmotionEvents, dead letters and input offsets commit in one
transaction (see :class:`~emostream.worker.checkpoint.Checkpoint`). Rebalance callbacks only run
inside ``consume()``, which is only called between transactions, so a partition is never taken
away while one of its records is in an open transaction; records of revoked partitions that were
polled but not yet processed are dropped from the open batch (their new owner reads them from the
committed offset).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from emostream.config import EMOTIONS_TOPIC, TRANSCRIPTS_TOPIC, WORKER_GROUP, dlq_topic
from emostream.errors import TopicError, TransactionAborted, WorkerError
from emostream.events import DEFAULT_MAX_TEXT_BYTES
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer, partition_lag
from emostream.kafka.producer import transactional_producer
from emostream.kafka.types import KafkaError, KafkaException
from emostream.metrics import PipelineMetrics
from emostream.model.base import Classifier
from emostream.worker.batching import BatchPolicy
from emostream.worker.checkpoint import TXN_TIMEOUT_S, Checkpoint
from emostream.worker.dedupe import DEFAULT_CAPACITY, RecentIds
from emostream.worker.process import Record, process_batch

log = logging.getLogger("emostream.worker")

LAG_INTERVAL_S = 5.0
HEALTH_STALE_S = 30.0
# Eager or cooperative: both keep exactly-once (offsets are committed with the group generation,
# KIP-447); cooperative-sticky moves only the partitions that must move, so it is the default.
DEFAULT_ASSIGNMENT = "cooperative-sticky"


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the worker needs besides the Kafka client and the model."""

    source_topic: str = TRANSCRIPTS_TOPIC
    target_topic: str = EMOTIONS_TOPIC
    dlq_topic: str | None = None
    group: str = WORKER_GROUP
    batch_max: int = 64
    batch_wait_ms: float = 20.0
    txn_max_records: int = 1024
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
    instance_id: str | None = None
    assignment_strategy: str = DEFAULT_ASSIGNMENT
    session_timeout_ms: int = 10_000
    dedupe_capacity: int = DEFAULT_CAPACITY
    consumer_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dead_letter_topic(self) -> str:
        """The DLQ: explicit, else ``<source>.dlq``."""
        return self.dlq_topic or dlq_topic(self.source_topic)

    def transactional_id(self) -> str:
        """Unique per live instance. A stable ``--instance-id`` lets a restarted worker abort its
        predecessor's open transaction at once instead of after the transaction timeout."""
        instance = self.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        return f"emostream-worker-{self.group}-{instance}"


class Worker:
    """Consume transcripts, classify them in micro-batches, produce EmotionEvents exactly once."""

    def __init__(
        self,
        client: ClientConfig,
        classifier: Classifier,
        settings: WorkerSettings | None = None,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.client = client
        self.classifier = classifier
        self.settings = settings or WorkerSettings()
        self.metrics = metrics or PipelineMetrics("worker")
        # A transaction costs a few replicated writes (~10-50 ms per partition on a busy host), so
        # one transaction takes what is waiting, up to txn_max_records, and the model sees it in
        # micro-batches of batch_max. At low load a transaction is one small batch (low latency);
        # under load it grows by itself and the commit cost is shared by many records.
        self.policy = BatchPolicy(max(self.settings.txn_max_records, self.settings.batch_max), self.settings.batch_wait_ms / 1000.0)
        self._recent = RecentIds(self.settings.dedupe_capacity)
        self._committed: dict[tuple[str, int], int] = {}
        self._pending: list[Record] = []
        self._in_txn = False
        self._stop = threading.Event()
        self._running = False
        self._last_poll = 0.0
        self._next_lag = 0.0
        self._consumer: Any = None
        self._producer: Any = None
        self.batches = 0
        self.aborts = 0
        self._aborts_in_row = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def check_topics(self) -> None:
        """TopicError with the fix when a topic the worker needs is missing."""
        admin = Admin(self.client)
        names = admin.topic_names()
        missing = [t for t in (self.settings.source_topic, self.settings.target_topic, self.settings.dead_letter_topic) if t not in names]
        if missing:
            flags = ""
            if self.settings.source_topic != TRANSCRIPTS_TOPIC:
                flags += f" --source-topic {self.settings.source_topic}"
            if self.settings.target_topic != EMOTIONS_TOPIC:
                flags += f" --target-topic {self.settings.target_topic}"
            raise TopicError(
                f"topic(s) {', '.join(repr(t) for t in missing)} missing at {self.client.bootstrap}; "
                f"create them with 'emostream topics ensure{flags}' (or 'emostream topics create NAME')"
            )

    def start(self) -> None:
        """Create the clients, fence older producers with our transactional id, join the group."""
        s = self.settings
        self._producer = transactional_producer(
            self.client, s.transactional_id(), **{"transaction.timeout.ms": int(TXN_TIMEOUT_S * 1000)}
        )
        try:
            self._producer.init_transactions(TXN_TIMEOUT_S)
        except KafkaException as exc:
            raise WorkerError(f"cannot initialise transactions at {self.client.bootstrap}: {exc.args[0].str()}") from exc
        self._consumer = committed_consumer(
            self.client,
            s.group,
            **{
                "partition.assignment.strategy": s.assignment_strategy,
                "session.timeout.ms": s.session_timeout_ms,
                **s.consumer_extra,
            },
        )
        self._consumer.subscribe([s.source_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._running = True
        self._last_poll = time.monotonic()
        log.info(
            "worker started: %s → %s (DLQ %s), group %s, transactional.id %s, model %s, batch ≤%d/%gms, %s",
            s.source_topic, s.target_topic, s.dead_letter_topic, s.group, s.transactional_id(),
            self.classifier.name, s.batch_max, s.batch_wait_ms, s.assignment_strategy,
        )

    def stop(self) -> None:
        """Ask the loop to finish the current batch, commit it and return (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once stop() was called."""
        return self._stop.is_set()

    def healthy(self) -> bool:
        """True while the loop runs and has polled recently (assigned or idle)."""
        return self._running and time.monotonic() - self._last_poll < HEALTH_STALE_S

    def run(self) -> None:
        """Start (unless started) and loop until stop(); always closes the clients."""
        if self._consumer is None:
            self.start()
        try:
            while not self._stop.is_set():
                batch = self._collect()
                self._update_lag()
                if batch:
                    self._process(batch)
        finally:
            self._running = False
            self._close()

    def _close(self) -> None:
        try:
            if self._consumer is not None:
                self._consumer.close()  # leaves the group now: partitions move without waiting for the session timeout
        finally:
            if self._producer is not None:
                self._producer.flush(5)
            log.info("worker stopped after %d batches (%d aborted)", self.batches, self.aborts)

    # -- rebalance -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        log.info("assigned %s", _names(partitions))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # Callbacks run inside consume(), between transactions: nothing of ours is in flight.
        assert not self._in_txn, "rebalance callback during an open transaction"
        gone = {(tp.topic, tp.partition) for tp in partitions}
        before = len(self._pending)
        self._pending[:] = [r for r in self._pending if (r.topic, r.partition) not in gone]
        for tp in gone:
            self._recent.drop_partition(tp)
            self._committed.pop(tp, None)
            self.metrics.forget_partition(*tp)
        log.info("revoked %s (dropped %d polled, unprocessed records)", _names(partitions), before - len(self._pending))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        log.warning("lost %s (session expired); their new owner resumes from the committed offsets", _names(partitions))
        self._on_revoke(consumer, partitions)

    # -- the loop ------------------------------------------------------------------------------

    def _collect(self) -> list[Record]:
        """Poll until the batch policy closes the batch, stop() is called, or an idle poll passes."""
        self._pending = []
        opened_at: float | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            if self.policy.is_closed(len(self._pending), opened_at, now):
                break
            # consume() waits until it has num_messages or the timeout passes, so an empty batch
            # asks for one record (returns as soon as it arrives) and only an open batch asks
            # for the rest, within what is left of its wait.
            msgs = self._consumer.consume(
                num_messages=max(1, self.policy.room(len(self._pending))) if self._pending else 1,
                timeout=self.policy.poll_timeout(len(self._pending), opened_at, now),
            )
            self._last_poll = time.monotonic()
            for m in msgs:
                err = m.error()
                if err is not None:
                    self._consumer_error(err)
                    continue
                ts_type, ts = m.timestamp()
                self._pending.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), ts if ts_type else None))
            if self._pending and opened_at is None:
                opened_at = self._last_poll
            if not msgs and not self._pending:
                break  # idle: let the loop do its housekeeping
        batch, self._pending = self._pending, []
        return batch

    def _consumer_error(self, err: Any) -> None:
        if err.fatal():
            raise WorkerError(f"fatal consumer error: {err.str()}")
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            log.warning("source topic %s is missing: %s", self.settings.source_topic, err.str())
        else:
            log.warning("consumer error: %s", err.str())

    def _process(self, batch: list[Record]) -> None:
        s = self.settings
        cp = Checkpoint(self._producer, self._consumer, self._recent, self._committed)
        self._in_txn = True
        try:
            cp.begin()
            result = process_batch(
                batch,
                self.classifier,
                target_topic=s.target_topic,
                dlq_topic=s.dead_letter_topic,
                recent=self._recent,
                max_text_bytes=s.max_text_bytes,
                model_batch=s.batch_max,
            )
            for out in result.outputs:
                cp.produce(out)
            for rec in batch:
                cp.store_offset(rec.topic, rec.partition, rec.offset)
            started = time.perf_counter()
            cp.commit()
            log.debug("batch of %d: model %.0f ms in %d call(s), commit %.0f ms", len(batch), result.model_s * 1000,
                      result.model_calls, (time.perf_counter() - started) * 1000)
        except TransactionAborted:
            self.aborts += 1
            self._aborts_in_row += 1
            self.metrics.transaction("aborted")
            # Back off while the cause lasts (a broker restarting, a partition without leader).
            self._stop.wait(min(10.0, 0.25 * 2 ** min(self._aborts_in_row, 6)))
            return
        except BaseException:
            cp.abort_quietly()
            raise
        finally:
            self._in_txn = False
        self.batches += 1
        self._aborts_in_row = 0
        m = self.metrics
        m.transaction("committed")
        m.records_in.inc(len(batch))
        m.batch_size.observe(len(batch))
        if result.model_calls:
            m.model_time.observe(result.model_s / result.model_calls)
        m.records_out.inc(len(result.events))
        for dl in result.dead_letters:
            m.dead_lettered(dl.error_type or "unknown")
        if result.duplicates:
            m.duplicates.inc(result.duplicates)
        for ev in result.events:
            if ev.latency_s is not None:
                m.latency.observe(max(0.0, ev.latency_s))
        if result.dead_letters:
            log.info("dead-lettered %d record(s): %s", len(result.dead_letters), sorted({d.error_type for d in result.dead_letters}))

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + LAG_INTERVAL_S
        try:
            for (topic, partition), lag in partition_lag(self._consumer).items():
                self.metrics.set_lag(topic, partition, lag)
        except KafkaException as exc:  # metrics must never stop the loop
            log.debug("lag update failed: %s", exc)


def _names(partitions: list[Any]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
