"""The worker's I/O shell: poll → micro-batch → process → one transaction per batch.

Exactly-once: every batch's EmotionEvents, dead letters and input offsets commit in one
transaction (see :class:`~emostream.worker.checkpoint.Checkpoint`).

Pipelined: once batch n's outputs are produced and its offsets fixed, its transaction commits in a
background thread (``send_offsets_to_transaction`` + ``commit_transaction``, which only touch the
producer and release the GIL) while this thread polls and classifies batch n+1. Batch n+1 is only
produced after batch n's commit has settled, so outputs still commit in source order per partition
and each batch's outputs and offsets stay in one transaction. If batch n aborts, batch n+1 (read
after it) is thrown away with it and both are read again from the committed offsets.

Under load (a batch that closed full: a backlog), the model does not wait for the poll either:
batch n+1's texts are classified in a model thread (the tokenizer and ONNX Runtime release the GIL)
while this thread polls batch n+2 into the pending records and decodes it. Only then is batch n+1
encoded and produced (here, while the model classifies n+2), so the order above holds; at most one
batch is classified and not yet in a transaction. The model thread runs the model only: decoding
and encoding hold the GIL, and done there they left a core idle before and after each model call.

Rebalances happen between transactions: callbacks only run inside ``consume()``, and the revoke
callback first finishes a batch being classified (produced and committed in its own transaction;
a lost assignment drops it instead) and waits for a committing transaction to settle, so a
partition is never taken away while one of its records is classified, or in an open transaction;
records of revoked partitions that were polled but not yet processed are dropped (their new owner
reads them from the committed offset).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from emostream.config import EMOTIONS_TOPIC, TRANSCRIPTS_TOPIC, WORKER_GROUP, dedupe_topic, dlq_topic
from emostream.errors import TopicError, TransactionAborted, UsageError, WorkerError
from emostream.events import DEFAULT_MAX_TEXT_BYTES, SourceRef
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer, committed_lag
from emostream.kafka.errors import describe, error_name, is_fatal, is_retriable
from emostream.kafka.producer import transactional_producer
from emostream.kafka.types import KafkaError, KafkaException, TopicPartition
from emostream.metrics import PipelineMetrics
from emostream.model.base import Classifier
from emostream.worker.batching import DEFAULT_BATCH_WAIT_MS, BatchPolicy
from emostream.worker.changelog import DEFAULT_WINDOW_S, restore_digests
from emostream.worker.checkpoint import TXN_TIMEOUT_S, Checkpoint, rewind
from emostream.worker.dedupe import DEFAULT_CAPACITY, RecentIds
from emostream.worker.process import (
    BatchResult,
    Classified,
    Prepared,
    Record,
    classify_texts,
    drop_duplicates,
    finish_batch,
    prepare_batch,
    process_batch,
)

log = logging.getLogger("emostream.worker")

LAG_INTERVAL_S = 5.0
# init_transactions refused with a retriable error (a coordinator still loading, or moving) is tried
# again for this long: a worker started with a cluster that has just come up must not exit 1.
INIT_RETRY_S = 60.0
INIT_RETRY_PAUSE_S = 1.0
# session.timeout.ms may not exceed max.poll.interval.ms (librdkafka's default, 5 min, which the
# worker keeps): a longer one fails at consumer creation, after the model has loaded.
MAX_SESSION_TIMEOUT_MS = 300_000
COORDINATOR_NOT_READY = frozenset({"COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR"})
HEALTH_STALE_S = 30.0
# Prefetching (the model thread classifies a batch while this one polls the next): the longest one
# poll waits, so the classified batch is produced this long at most after the model is done.
PREFETCH_POLL_S = 0.005
# A partition with records waiting whose committed offset has not moved for this long is stalled:
# /healthz turns 503 and emostream_stalled_partitions counts it.
DEFAULT_STALL_S = 60.0
# A batch that aborts this many times in a row at the same offsets is split in halves; a single
# record that still aborts (with a non-retriable error) is dead-lettered by its coordinates.
ISOLATE_AFTER = 3
# Consumer errors that concern one record at a known offset, which no retry can fix: the record
# is dead-lettered by coordinates and skipped (a decompression bomb, a corrupt batch).
UNREADABLE_CODES = frozenset({KafkaError._BAD_COMPRESSION, KafkaError._BAD_MSG, KafkaError.INVALID_MSG})
IDENTITIES = ("key", "signed")
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
    # Paced (default): at most one batch closes per batch_wait_ms; a record that arrives longer than
    # that after the last batch closed goes at once. Not paced: a batch waits batch_wait_ms after its
    # first record. See worker/batching.py.
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS
    paced_batches: bool = True
    txn_max_records: int = 1024
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
    instance_id: str | None = None
    assignment_strategy: str = DEFAULT_ASSIGNMENT
    session_timeout_ms: int = 10_000
    dedupe_capacity: int = DEFAULT_CAPACITY
    # Durable dedupe: ids are written to ``<source>.dedupe`` and restored on assignment for this long.
    dedupe_window_s: float = DEFAULT_WINDOW_S
    durable_dedupe: bool = True
    # "key": the record key names the device (plaintext clusters: nobody is authenticated);
    # "signed": every transcript must be signed by the device it names (secure clusters).
    identity: str = "key"
    stall_after_s: float = DEFAULT_STALL_S
    # Latency budget of one transaction under load: it takes at most as many records as the
    # worker processes in this time (measured, at least batch_max). None: only txn_max_records.
    max_latency_ms: float | None = None
    # Commit batch n in the background while batch n+1 is polled and classified (see the module doc).
    pipeline: bool = True
    # Static group membership (KIP-345): the consumer joins as ``instance_id``, so an instance that
    # restarts within the session timeout gets its partitions back at once, without a rebalance
    # and without waiting for the dead member's session to expire. The price: a stopped instance's
    # partitions wait for the session timeout before they move (static members do not leave).
    static_membership: bool = False
    consumer_extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every setting checked once, here (the CLI passes its flags on unchecked): a
        :class:`UsageError` naming the ``emostream worker`` flag, as the consumer or the policy
        would refuse the value later (after the model has loaded) or misbehave with it (NaN
        passes every comparison)."""

        def positive(value: float, flag: str, unit: str = "") -> None:
            if not 0 < value < math.inf:
                raise UsageError(f"{flag} must be a positive finite number, got {value}{unit}")

        for value, flag in ((self.batch_max, "--batch-max"), (self.txn_max_records, "--txn-max-records"),
                            (self.max_text_bytes, "--max-text-bytes"), (self.dedupe_capacity, "dedupe_capacity")):
            if value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        if not 0 <= self.batch_wait_ms < math.inf:
            raise UsageError(f"--batch-wait-ms must be a finite number ≥ 0, got {self.batch_wait_ms}")
        if not 1 <= self.session_timeout_ms <= MAX_SESSION_TIMEOUT_MS:
            raise UsageError(f"--session-timeout-ms must be 1..{MAX_SESSION_TIMEOUT_MS} (at most the consumer's "
                             f"max.poll.interval.ms), got {self.session_timeout_ms}")
        if self.max_latency_ms is not None:
            positive(self.max_latency_ms, "--max-latency-ms")
        positive(self.dedupe_window_s, "the dedupe window (--dedupe-window-h)", " s")
        positive(self.stall_after_s, "--stall-after-s")
        if self.identity not in IDENTITIES:
            raise UsageError(f"--identity must be one of {', '.join(IDENTITIES)}, got {self.identity!r}")
        if self.static_membership and not self.instance_id:
            raise UsageError("--static-membership needs --instance-id (a name that stays the same across restarts, e.g. %H-%i)")

    @property
    def changelog_topic(self) -> str | None:
        """The dedupe changelog, or None when dedupe is per process only."""
        return dedupe_topic(self.source_topic) if self.durable_dedupe else None

    @property
    def dead_letter_topic(self) -> str:
        """The DLQ: explicit, else ``<source>.dlq``."""
        return self.dlq_topic or dlq_topic(self.source_topic)

    def transactional_id(self) -> str:
        """Unique per live instance. A stable ``--instance-id`` lets a restarted worker abort its
        predecessor's open transaction at once instead of after the transaction timeout."""
        instance = self.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        return f"emostream-worker-{self.group}-{instance}"


@dataclass
class _Classifying:
    """A batch the model thread is classifying while this thread polls the next one."""

    batch: list[Record]
    since: float
    prepared: Prepared  # decoded in this thread; the model thread only runs the model
    future: Future[Classified]
    positions: list[TopicPartition]  # the consumer's, when the batch closed (it polls on meanwhile)


@dataclass
class _Committing:
    """A batch whose transaction is committing (in the background when pipelined)."""

    batch: list[Record]
    result: BatchResult
    checkpoint: Checkpoint
    since: float
    future: Future[None] | None = None


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
        self.policy = BatchPolicy(max(self.settings.txn_max_records, self.settings.batch_max), self.settings.batch_wait_ms / 1000.0,
                                  paced=self.settings.paced_batches)
        self._last_closed: float | None = None  # when the last non-empty batch closed (paced batches)
        self._recent = RecentIds(self.settings.dedupe_capacity)
        self._committed: dict[tuple[str, int], int] = {}
        self._registry: Any = None
        # Poison isolation: records that failed their transaction on their own, the reason; the
        # failed batch's start and how often it failed; a cap on batch size while isolating.
        self._poisoned: dict[SourceRef, str] = {}
        self._failed_start: tuple[tuple[str, int, int], ...] = ()
        self._failed_times = 0
        self._batch_limit: int | None = None
        self._record_cost_s = 0.0  # moving average of the processing time per record (latency budget)
        # Stall detection: per partition, the committed offset and since when it has not moved.
        self._progress: dict[tuple[str, int], tuple[int, float]] = {}
        self._stalled: set[tuple[str, int]] = set()
        self._txn_since = 0.0
        self._txn_partitions: set[tuple[str, int]] = set()
        # Read at scrape time, so a loop blocked inside a commit still shows its stall.
        self.metrics.stalled.set_function(lambda: len(self.stalled_partitions()))
        self._pending: list[Record] = []
        self._opened_at: float | None = None  # when the first pending record was polled
        # The highest offset polled per partition since the last rewind: an unreadable record's
        # error repeated at or below it is one already handled (its batch may be in the model
        # thread or committing, in neither _pending nor _committed).
        self._handed: dict[tuple[str, int], int] = {}
        self._filled = False  # the last batch closed because it was full (under load: prefetch)
        self._classifying: _Classifying | None = None
        self._modeller: ThreadPoolExecutor | None = None
        self._in_txn = False
        self._committing: _Committing | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._rewind_needed = False  # a transaction aborted: seek back before using what is polled
        self._stop = threading.Event()
        self._running = False
        self._last_poll = 0.0
        self._next_lag = 0.0
        self._consumer: Any = None
        self._producer: Any = None
        self.batches = 0
        self.prefetched = 0  # full batches classified in the model thread while the next was polled
        self.tails = 0  # batches not full that went to the model thread after a full one (a backlog's last)
        self.aborts = 0
        self._aborts_in_row = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def check_topics(self) -> None:
        """TopicError with the fix when a topic the worker needs is missing."""
        admin = Admin(self.client)
        names = admin.topic_names()
        needed = [self.settings.source_topic, self.settings.target_topic, self.settings.dead_letter_topic]
        if self.settings.changelog_topic:
            needed.append(self.settings.changelog_topic)
        missing = [t for t in needed if t not in names]
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
        if s.identity == "signed" and self._registry is None:
            from emostream.worker.identity import DeviceRegistry

            self._registry = DeviceRegistry(self.client)
            self._registry.load()
        self._producer = self._new_producer()
        self._init_transactions()
        self._consumer = committed_consumer(
            self.client,
            s.group,
            **{
                "partition.assignment.strategy": s.assignment_strategy,
                "session.timeout.ms": s.session_timeout_ms,
                **({"group.instance.id": s.instance_id} if s.static_membership else {}),
                **s.consumer_extra,
            },
        )
        self._consumer.subscribe([s.source_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._running = True
        self._last_poll = time.monotonic()
        log.info(
            "worker started: %s → %s (DLQ %s), group %s%s, transactional.id %s, model %s, batch ≤%d/%gms, %s, %s",
            s.source_topic, s.target_topic, s.dead_letter_topic, s.group, " (static member)" if s.static_membership else "",
            s.transactional_id(), self.classifier.name, s.batch_max, s.batch_wait_ms, s.assignment_strategy,
            "pipelined" if s.pipeline else "serial",
        )

    def _new_producer(self) -> Any:
        return transactional_producer(
            self.client, self.settings.transactional_id(), **{"transaction.timeout.ms": int(TXN_TIMEOUT_S * 1000)}
        )

    def _init_transactions(self, retry_for_s: float = INIT_RETRY_S) -> None:
        """Fence older producers with our transactional id. A retriable refusal (the transaction
        coordinator still loading its log on a cluster that has just started: ``COORDINATOR_LOAD_IN_PROGRESS``,
        or a coordinator moving) is tried again, once a second, for ``retry_for_s``; anything
        else, or a refusal that lasts, stops the worker with what the broker said."""
        deadline = time.monotonic() + retry_for_s
        while True:
            try:
                self._producer.init_transactions(TXN_TIMEOUT_S)
                return
            except KafkaException as exc:
                again = is_retriable(exc) or error_name(exc) in COORDINATOR_NOT_READY
                if not again or time.monotonic() >= deadline or self._stop.is_set():
                    raise WorkerError(f"cannot initialise transactions at {self.client.bootstrap}: {describe(exc)}") from exc
                log.warning("initialising transactions at %s: %s; trying again", self.client.bootstrap, describe(exc))
                self._stop.wait(INIT_RETRY_PAUSE_S)
                if is_fatal(exc):  # the client is spent: a new one, same transactional id
                    self._producer = self._new_producer()

    def stop(self) -> None:
        """Ask the loop to finish the current batch, commit it and return (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once stop() was called."""
        return self._stop.is_set()

    def healthy(self) -> bool:
        """True while the loop runs, has polled recently and no partition is stalled."""
        return self._running and time.monotonic() - self._last_poll < HEALTH_STALE_S and not self.stalled_partitions()

    def stalled_partitions(self) -> set[tuple[str, int]]:
        """Partitions with records waiting and no commit for ``stall_after_s``: those the lag check
        found, plus those of a transaction open that long (the loop is stuck inside it)."""
        stuck = set(self._stalled)
        if self._in_txn and time.monotonic() - self._txn_since >= self.settings.stall_after_s:
            stuck |= self._txn_partitions
        return stuck

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
                else:
                    self._settle()  # idle: nothing to overlap the commit with
            self._finish_classifying()
            self._settle()
        finally:
            self._running = False
            self._drop_classifying()
            self._settle_quietly()
            self._close()

    def _close(self) -> None:
        for pool in (self._modeller, self._committer):
            if pool is not None:
                pool.shutdown(wait=True)
        try:
            if self._consumer is not None:
                self._consumer.close()  # leaves the group now: partitions move without waiting for the session timeout
        finally:
            if self._registry is not None:
                self._registry.close()
            if self._producer is not None:
                self._producer.flush(5)
            log.info("worker stopped after %d batches (%d aborted, %d classified while the next was polled, "
                     "%d more not full after them)", self.batches, self.aborts, self.prefetched, self.tails)

    # -- rebalance -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        # Runs inside consume(), between transactions. The committed offsets seed the lag and
        # stall checks; the changelog gives back the utterance ids of the dedupe window (a batch the
        # model thread classifies meanwhile does not touch that window: its ids are staged here,
        # when it is produced).
        try:
            for tp in consumer.committed(partitions, timeout=TXN_TIMEOUT_S):
                if tp.offset >= 0:
                    self._committed[(tp.topic, tp.partition)] = tp.offset
        except KafkaException as exc:
            log.warning("could not read committed offsets of %s: %s", _names(partitions), describe(exc))
        restored = 0
        changelog = self.settings.changelog_topic
        if changelog:
            by_partition = restore_digests(
                self.client, changelog, [tp.partition for tp in partitions],
                window_s=self.settings.dedupe_window_s, capacity=self.settings.dedupe_capacity,
            )
            for tp in partitions:
                digests = by_partition.get(tp.partition, [])
                self._recent.restore((tp.topic, tp.partition), digests)
                restored += len(digests)
        log.info("assigned %s (%d recent utterance ids restored)", _names(partitions), restored)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # Callbacks run inside consume(); a batch being classified is produced and committed, and
        # a transaction still committing settles first, so the partitions leave between transactions.
        self._finish_classifying()
        self._settle()
        assert not self._in_txn, "rebalance callback during an open transaction"
        gone = {(tp.topic, tp.partition) for tp in partitions}
        before = len(self._pending)
        self._pending[:] = [r for r in self._pending if (r.topic, r.partition) not in gone]
        if not self._pending:
            self._opened_at = None
        for tp in gone:
            self._handed.pop(tp, None)
            self._recent.drop_partition(tp)
            self._committed.pop(tp, None)
            self._progress.pop(tp, None)
            self._stalled.discard(tp)
            self.metrics.forget_partition(*tp)
        self._poisoned = {src: why for src, why in self._poisoned.items() if (src.topic, src.partition) not in gone}
        log.info("revoked %s (dropped %d polled, unprocessed records)", _names(partitions), before - len(self._pending))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        log.warning("lost %s (session expired); their new owner resumes from the committed offsets", _names(partitions))
        # A batch the model thread classified is dropped, not produced: the group has let this
        # member go, so its group metadata no longer fences a commit of those offsets, and their
        # new owner reads the records again from the committed offsets.
        self._drop_classifying()
        self._on_revoke(consumer, partitions)

    # -- the loop ------------------------------------------------------------------------------

    def _collect(self, prefetch: bool = False) -> list[Record]:
        """Poll until the batch policy closes the batch, stop() is called, or an idle poll passes.

        ``prefetch``: the model thread is classifying the previous batch; poll until this batch is
        full or the model is done, and leave the records pending (the next call continues with
        them). Records polled so far stay in ``self._pending`` between calls, where a rebalance
        callback or an abort can drop them."""
        if self._registry is not None and not prefetch:
            self._registry.refresh()  # (prefetching: _prepare refreshes it right before it verifies)
        limit = self._record_limit()
        paced = self.policy.paced
        drain = False  # paced: the last poll brought records; take what else is fetched already, without waiting
        full = False
        while not self._stop.is_set():
            if self._rewind_needed:
                # A transaction aborted: everything polled after its records is read again.
                self._rewind_needed = False
                self._pending.clear()
                self._handed.clear()
                self._opened_at = None
                drain = False
                rewind(self._consumer)
            now = time.monotonic()
            size = len(self._pending)
            full = self._is_full(size, limit)
            if full:
                break
            if prefetch:
                if self._classifying is None or self._classifying.future.done():
                    break
            elif not drain and self.policy.is_closed(size, self._opened_at, now, self._last_closed):
                break
            # consume() waits until it has num_messages or the timeout passes, so an empty batch
            # asks for one record (returns as soon as it arrives). Paced, a poll that brought
            # records is followed by one that takes whatever else is fetched already (timeout 0),
            # before the batch may close. Every poll's records join the batch before the next
            # poll: a rebalance callback inside consume() must see all of them to drop those of a
            # revoked partition. Prefetching, polls are short, so the model's batch is produced
            # soon after the model is done.
            room = max(1, self.policy.room(size)) if self._pending else 1
            if limit is not None:
                room = max(1, min(room, limit - size))
            if prefetch:
                msgs = self._consumer.consume(num_messages=room, timeout=PREFETCH_POLL_S)
            elif drain:
                msgs = self._consumer.consume(num_messages=room, timeout=0)
            else:
                timeout = self.policy.poll_timeout(size, self._opened_at, now, self._last_closed)
                msgs = self._consumer.consume(num_messages=room, timeout=timeout)
            drain = paced and bool(msgs) and not drain
            self._last_poll = time.monotonic()
            if self._rewind_needed:
                continue  # an abort settled inside this consume(): these may predate the rewind
            headers = self._registry is not None  # signatures travel in headers; otherwise skip the copy
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() in UNREADABLE_CODES:
                        unreadable = self._unreadable(m, err)
                        if unreadable is not None:
                            self._pending.append(unreadable)
                            self._handed[(unreadable.topic, unreadable.partition)] = unreadable.offset
                    else:
                        self._consumer_error(err)
                    continue
                ts_type, ts = m.timestamp()
                self._pending.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), ts if ts_type else None,
                                            m.headers() if headers else None))
                self._handed[(m.topic(), m.partition())] = m.offset()
            if self._pending and self._opened_at is None:
                self._opened_at = self._last_poll
            if not msgs and not self._pending and not prefetch:
                break  # idle: let the loop do its housekeeping
        if prefetch:
            return []
        return self._close_batch(full)

    def _record_limit(self) -> int | None:
        """Records per transaction beyond ``policy.max_records``: the latency budget's share at the
        measured cost per record, and the cap while a failing batch is being narrowed down."""
        limit = latency_cap(self.settings.max_latency_ms, self._record_cost_s, self.settings.batch_max)
        if self._batch_limit is not None:
            limit = self._batch_limit if limit is None else min(limit, self._batch_limit)
        return limit

    def _is_full(self, size: int, limit: int | None) -> bool:
        return size >= self.policy.max_records or (limit is not None and size >= limit)

    def _close_batch(self, full: bool) -> list[Record]:
        """The pending records as a batch; ``full``: it closed because it was (under load: prefetch)."""
        batch, self._pending, self._opened_at = self._pending, [], None
        self._filled = full
        if batch:
            self._last_closed = time.monotonic()
        return batch

    def _unreadable(self, msg: Any, err: Any) -> Record | None:
        """A record the consumer cannot read (it would fail on every fetch, stalling its partition):
        a Record that process_batch dead-letters by coordinates; the consumer skips past it."""
        if msg.topic() is None or msg.partition() is None:
            self._consumer_error(err)
            return None
        offset = msg.offset()
        if offset is None or offset < 0:
            return None
        tp = (msg.topic(), msg.partition())
        floor = self._committed.get(tp, -1)
        if offset < floor or offset <= self._handed.get(tp, -1):
            return None  # a repeat of one already handled
        log.warning("cannot read %s[%d]@%d (%s): dead-lettering it by coordinates", tp[0], tp[1], offset, err.str())
        self._consumer.seek(TopicPartition(tp[0], tp[1], offset + 1))
        return Record(tp[0], tp[1], offset, None, None, None, unreadable=f"{err.name()}: {err.str()}"[:900])

    def _consumer_error(self, err: Any) -> None:
        if err.fatal():
            raise WorkerError(f"fatal consumer error: {err.str()}")
        if err.code() == KafkaError.INVALID_SESSION_TIMEOUT:
            # The consumer would retry the join every few seconds for ever; no retry can succeed.
            raise WorkerError(f"the brokers refuse --session-timeout-ms {self.settings.session_timeout_ms}: it must lie "
                              "within their group.min.session.timeout.ms .. group.max.session.timeout.ms "
                              "(Kafka's defaults: 6000 .. 1800000)")
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            log.warning("source topic %s is missing: %s", self.settings.source_topic, err.str())
        else:
            log.warning("consumer error: %s", err.str())

    def _process(self, batch: list[Record]) -> None:
        """Classify the batch (while the previous batch may still be committing), then, once that
        one has settled, produce the batch in its own transaction and start committing it.

        A full batch (under load) is decoded here and its texts go to the model thread, and this
        thread keeps the model busy: it polls the next batch meanwhile and, once that one is full,
        decodes it while the model still works; once the model is done, the next batch's texts go
        to it before this one's events are encoded and produced, and so on until the load drops
        (the last batch, not full, goes the same way once the batch policy closes it).
        So the model thread runs nothing but the model (which releases the GIL), and this thread's
        Python work overlaps it instead of leaving a core idle between model calls. Utterance ids
        are staged here, in batch order, when a batch is produced (``drop_duplicates``)."""
        since = time.monotonic()
        if not (self.settings.pipeline and self._filled):
            self._produce(batch, self._classify(batch), since)
            return
        self._start_classifying(batch, since)
        while self._classifying is not None:
            self._collect(prefetch=True)
            c, self._classifying = self._classifying, None
            if c is None:
                return  # a rebalance callback inside the poll produced it
            ahead = self._prepare(self._pending) if self._next_is_full() else None  # while the model works
            # Nothing below polls before the batch closes: ``ahead`` is of the records that close.
            classified = c.future.result()
            # Lag and stall checks run here too, else a backlog that keeps the batches full for
            # hours would freeze them.
            self._update_lag()
            full = self._next_is_full()
            if full or self._next_is_due():
                # A full batch, or one the policy closes now (a backlog's last): to the model at
                # once, while this one is produced, instead of after it in this thread.
                nxt = self._close_batch(full)
                assert ahead is None or _same(ahead.records, nxt), "the batch decoded ahead is not the one that closed"
                self._start_classifying(nxt, self._last_closed, ahead)
            self._produce(c.batch, self._finish(c.prepared, classified), c.since, c.positions)

    def _next_is_full(self) -> bool:
        """The records polled meanwhile make a full batch that may go to the model now."""
        if self._stop.is_set() or self._rewind_needed:
            return False
        return self._is_full(len(self._pending), self._record_limit())

    def _next_is_due(self) -> bool:
        """The records polled meanwhile make a batch, not full, that the batch policy closes now
        (the last of a backlog: its records have waited for the whole model call already)."""
        if self._stop.is_set() or self._rewind_needed or not self._pending:
            return False
        return self.policy.is_closed(len(self._pending), self._opened_at, time.monotonic(), self._last_closed)

    def _start_classifying(self, batch: list[Record], since: float, prepared: Prepared | None = None) -> None:
        """Send ``batch``'s texts to the model thread (``prepared``: the batch, decoded already)."""
        # The offsets this batch commits are the positions now, before the consumer polls on.
        positions = self._consumer.position([TopicPartition(t, p) for t, p in dict.fromkeys((r.topic, r.partition) for r in batch)])
        if prepared is None:
            prepared = self._prepare(batch)
        if self._modeller is None:
            self._modeller = ThreadPoolExecutor(1, thread_name_prefix="emostream-model")
        future = self._modeller.submit(classify_texts, self.classifier, prepared.texts, self.settings.batch_max)
        self._classifying = _Classifying(batch, since, prepared, future, positions)
        if self._filled:
            self.prefetched += 1
        else:
            self.tails += 1

    def _prepare(self, batch: list[Record]) -> Prepared:
        """Decode and check ``batch`` for the model thread, with the device keys as they are now.
        The dedupe window is only read: the ids are staged when the batch is produced
        (``drop_duplicates``), after the batches before it."""
        s = self.settings
        registry = self._registry
        if registry is not None:
            registry.refresh()  # never blocks
        return prepare_batch(batch, dlq_topic=s.dead_letter_topic, recent=self._recent, defer_dedupe=True,
                             max_text_bytes=s.max_text_bytes, verify=registry.verify if registry is not None else None,
                             poisoned=self._poisoned)

    def _finish(self, prepared: Prepared, classified: Classified) -> BatchResult:
        """The outputs of a batch the model thread classified."""
        s = self.settings
        registry = self._registry
        return finish_batch(prepared, classified, model=self.classifier.name, target_topic=s.target_topic,
                            dlq_topic=s.dead_letter_topic, device_topic=registry.private_topic if registry is not None else None,
                            changelog_topic=s.changelog_topic)

    def _classify(self, batch: list[Record]) -> BatchResult:
        """The whole process step for ``batch`` in this thread (a batch that did not close full)."""
        s = self.settings
        registry = self._registry
        return process_batch(
            batch,
            self.classifier,
            target_topic=s.target_topic,
            dlq_topic=s.dead_letter_topic,
            recent=self._recent,
            max_text_bytes=s.max_text_bytes,
            model_batch=s.batch_max,
            verify=registry.verify if registry is not None else None,
            device_topic=registry.private_topic if registry is not None else None,
            changelog_topic=s.changelog_topic,
            poisoned=self._poisoned,
        )

    def _finish_classifying(self) -> None:
        """Produce the batch the model thread classified (waiting for it), if there is one."""
        c, self._classifying = self._classifying, None
        if c is not None:
            self._produce(c.batch, self._finish(c.prepared, c.future.result()), c.since, c.positions)

    def _drop_classifying(self) -> None:
        """Wait for the model thread and forget its batch: not produced, so read again by whoever
        owns its partitions next (after an abort, or on the way out of an error)."""
        c, self._classifying = self._classifying, None
        if c is not None:
            wait([c.future])

    def _produce(self, batch: list[Record], result: BatchResult, since: float,
                 positions: list[TopicPartition] | None = None) -> None:
        """Produce a classified batch and its offsets in one transaction, once the previous one
        has settled; commit it in the background when pipelined. ``positions``: the consumer's
        when the batch closed, if it has polled since (default: its positions now)."""
        s = self.settings
        if not self._settle():
            return  # the previous batch aborted; this one, read after it, is read again
        if result.digests or result.known:
            result = drop_duplicates(result, self._recent)  # classified in the model thread
        cp = Checkpoint(self._producer, self._consumer, None, self._committed)
        self._txn_since = since
        self._txn_partitions = {(r.topic, r.partition) for r in batch}
        self._in_txn = True
        try:
            cp.begin()
            for out in result.outputs:
                cp.produce(out)
            for rec in batch:
                cp.store_offset(rec.topic, rec.partition, rec.offset)
            cp.prepare(positions)
        except TransactionAborted as exc:
            self._in_txn = False
            self._aborted(batch, cp, exc)
            return
        except BaseException:
            self._in_txn = False
            self._recent.rollback()
            cp.abort_quietly()
            raise
        self._recent.seal()
        committing = _Committing(batch, result, cp, since)
        if s.pipeline:
            if self._committer is None:
                self._committer = ThreadPoolExecutor(1, thread_name_prefix="emostream-commit")
            committing.future = self._committer.submit(cp.finish)
        self._committing = committing
        if not s.pipeline:
            self._settle()

    def _settle(self) -> bool:
        """Wait for the committing transaction (if any) and account for it. False when it aborted:
        the consumer must be rewound before what was polled since is used (``_rewind_needed``)."""
        c = self._committing
        if c is None:
            return True
        self._committing = None
        started = time.perf_counter()
        try:
            if c.future is not None:
                c.future.result()
            else:
                c.checkpoint.finish()
        except TransactionAborted as exc:
            self._aborted(c.batch, c.checkpoint, exc)
            return False
        except BaseException:
            self._recent.rollback()
            raise
        finally:
            self._in_txn = False
        self._committed.update(c.checkpoint.offsets)
        self._recent.commit_sealed()
        log.debug("batch of %d: model %.0f ms in %d call(s), commit %.0f ms (waited %.0f ms for it)", len(c.batch),
                  c.result.model_s * 1000, c.result.model_calls, c.checkpoint.commit_s * 1000,
                  (time.perf_counter() - started) * 1000)
        self._committed_batch(c.batch, c.result, c.since)
        return True

    def _settle_quietly(self) -> None:
        """Settle on the way out of an error; the error wins over a failed commit."""
        try:
            self._settle()
        except BaseException as exc:  # noqa: BLE001
            log.warning("the last transaction did not commit: %s", exc)

    def _aborted(self, batch: list[Record], cp: Checkpoint, exc: TransactionAborted) -> None:
        """A transaction aborted: forget staged ids (of this batch and any read after it), rewind
        before the next poll, find the culprit or back off."""
        self._recent.rollback()
        self._drop_classifying()  # read after the aborted batch: read again too
        self._pending.clear()
        self._opened_at = None
        self._rewind_needed = True
        self.aborts += 1
        self._aborts_in_row += 1
        self.metrics.transaction("aborted")
        if self._isolate(batch, cp, exc):
            return  # retry at once: the next transaction is smaller or skips the culprit
        # Back off while the cause lasts (a broker restarting, a partition without leader).
        self._stop.wait(min(10.0, 0.25 * 2 ** min(self._aborts_in_row, 6)))

    def _committed_batch(self, batch: list[Record], result: BatchResult, since: float) -> None:
        self.batches += 1
        self._aborts_in_row = 0
        cost = (time.monotonic() - since) / len(batch)
        self._record_cost_s = cost if not self._record_cost_s else 0.8 * self._record_cost_s + 0.2 * cost
        for rec in batch:
            self._poisoned.pop(rec.source, None)
        if self._failed_start and not self._poisoned:
            self._failed_start, self._failed_times, self._batch_limit = (), 0, None
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

    def _isolate(self, batch: list[Record], cp: Checkpoint, exc: TransactionAborted) -> bool:
        """After an abort: find the record that caused it, so one record cannot stall a partition.

        Outputs the broker refused for their own sake (too large, invalid) name their source
        records: those are dead-lettered on the retry. Otherwise, a batch that keeps failing at the
        same offsets is halved until the culprit is alone; a lone record that still fails with a
        non-retriable error is dead-lettered by coordinates. True when the retry should start now.
        """
        if cp.refused:
            self._poisoned.update(cp.refused)
            log.warning("dead-lettering %d record(s) whose outputs the broker refused: %s", len(cp.refused),
                        sorted(f"{r.topic}[{r.partition}]@{r.offset}" for r in cp.refused))
            return True
        start = tuple(sorted({(r.topic, r.partition): (r.topic, r.partition, r.offset) for r in reversed(batch)}.values()))
        self._failed_times = self._failed_times + 1 if start == self._failed_start else 1
        self._failed_start = start
        if self._failed_times < ISOLATE_AFTER:
            return False
        if len(batch) > 1:
            self._batch_limit = max(1, len(batch) // 2)
            self._failed_times = 0
            log.warning("a batch of %d failed %d times at the same offsets; retrying in batches of %d", len(batch),
                        ISOLATE_AFTER, self._batch_limit)
            return True
        if not exc.retriable:
            rec = batch[0]
            self._poisoned[rec.source] = f"transaction failed {self._failed_times} times on this record alone: {exc}"[:900]
            log.warning("dead-lettering %s[%d]@%d: its transaction keeps failing (%s)", rec.topic, rec.partition, rec.offset, exc)
            return True
        return False

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + LAG_INTERVAL_S
        try:
            lags = committed_lag(self._consumer, self._committed)
        except KafkaException as exc:  # metrics must never stop the loop
            log.debug("lag update failed: %s", exc)
            return
        for (topic, partition), lag in lags.items():
            self.metrics.set_lag(topic, partition, lag)
        self._check_stalls(lags, now)

    def _check_stalls(self, lags: dict[tuple[str, int], int], now: float) -> None:
        """A partition with records waiting whose committed offset has not moved for stall_after_s."""
        for tp, lag in lags.items():
            committed = self._committed.get(tp, -1)
            last = self._progress.get(tp)
            if last is None or last[0] != committed or lag == 0:
                self._progress[tp] = (committed, now)
                if tp in self._stalled:
                    self._stalled.discard(tp)
                    log.info("%s[%d] moves again", *tp)
            elif now - last[1] >= self.settings.stall_after_s and tp not in self._stalled:
                self._stalled.add(tp)
                log.error("%s[%d] is stalled: %d record(s) waiting, no commit for %.0fs", tp[0], tp[1], lag, now - last[1])


def latency_cap(max_latency_ms: float | None, record_cost_s: float, floor: int) -> int | None:
    """Records one transaction may take to finish within ``max_latency_ms`` at ``record_cost_s``
    each (never fewer than ``floor``, the model batch); None without a budget or a measurement."""
    if max_latency_ms is None or record_cost_s <= 0:
        return None
    return max(floor, int(max_latency_ms / 1000.0 / record_cost_s))


def _same(a: list[Record], b: list[Record]) -> bool:
    """The same records, in the same order (the very objects: a batch decoded ahead is the one that closed)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _names(partitions: list[Any]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
