"""One batch's Kafka transaction: its outputs and its input offsets committed at once.

Shaped like quix-streams' ``Checkpoint`` and following confluent-kafka's
``examples/eos-transactions.py``: produce inside a transaction, add the consumer's position with
``send_offsets_to_transaction(..., consumer_group_metadata())`` (KIP-447: zombie workers are fenced
by the group generation), ``commit_transaction()``. An abortable error aborts; the caller rewinds the
consumer to the committed offsets (:func:`rewind`) and reads the batch again; a fatal one ends the worker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from emostream.errors import InvalidOffset, TransactionAborted, TransactionFatal
from emostream.events import SourceRef
from emostream.kafka.errors import describe, is_fatal, is_record_refusal, is_retriable, kafka_error
from emostream.kafka.producer import produce
from emostream.kafka.types import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from emostream.worker.dedupe import RecentIds
from emostream.worker.process import Output

log = logging.getLogger("emostream.worker")

TXN_TIMEOUT_S = 30.0
RETRIES = 5

PartitionKey = tuple[str, int]


def rewind(consumer: Any, timeout_s: float = TXN_TIMEOUT_S) -> dict[PartitionKey, int]:
    """Seek every assigned partition back to its committed offset (the start, when none).

    Used after an abort: the aborted batch's records are read again and processed afresh.
    """
    assigned = consumer.assignment()
    if not assigned:
        return {}
    try:
        committed = consumer.committed(assigned, timeout=timeout_s)
        positions: dict[PartitionKey, int] = {}
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            positions[(tp.topic, tp.partition)] = offset
        return positions
    except KafkaException as exc:
        # Without a rewind the next batch would skip the aborted records: stop instead (a restart
        # resumes from the committed offsets, so nothing is lost).
        raise TransactionFatal(f"could not rewind the consumer after an abort: {exc}") from exc


class Checkpoint:
    """What one batch processed, and the transaction that commits it (outputs + offsets).

    Use: ``begin()``, ``produce()`` each output, ``store_offset()`` each consumed record, then
    ``commit()`` — or ``prepare()`` in the consumer's thread and ``finish()`` in any one thread (a
    pipelined worker commits batch n in the background while it classifies batch n+1). On
    TransactionAborted the transaction is aborted and nothing of the batch is visible; the caller
    rewinds the consumer (:func:`rewind`) and reads the batch again.
    """

    def __init__(
        self,
        producer: Any,
        consumer: Any,
        recent: RecentIds | None,
        committed: dict[PartitionKey, int],
    ) -> None:
        self._producer = producer
        self._consumer = consumer
        # The dedupe memory whose staged ids this transaction commits or rolls back; None when the
        # caller does that itself (the pipelined worker, which stages the next batch meanwhile).
        self._recent = recent
        self._committed = committed  # owned by the caller: last offset it committed, per partition
        self._offsets: dict[PartitionKey, int] = {}
        self._open = False
        self._prepared: tuple[list[TopicPartition], Any] | None = None
        self.commit_s = 0.0  # how long finish() took (send offsets + commit)
        # Source records whose outputs were refused for their own sake (kafka.errors.RECORD_REFUSALS).
        self.refused: dict[SourceRef, str] = {}

    def begin(self) -> None:
        """Start the transaction."""
        self._call(self._producer.begin_transaction)
        self._open = True

    def produce(self, out: Output) -> None:
        """Produce one output inside the transaction (waits while the local queue is full)."""
        try:
            produce(self._producer, out.topic, out.value, out.key, headers=out.headers, partition=out.partition,
                    on_delivery=self._delivered(out.source) if out.source is not None else None)
        except KafkaException as exc:
            self._blame(out.source, kafka_error(exc))
            self._fail(exc)

    def _delivered(self, source: SourceRef) -> Any:
        def report(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                self._blame(source, err)

        return report

    def _blame(self, source: SourceRef | None, err: KafkaError | None) -> None:
        if source is not None and err is not None and is_record_refusal(err):
            self.refused.setdefault(source, f"output refused: {err.str()}"[:900])

    def store_offset(self, topic: str, partition: int, offset: int) -> None:
        """Record that ``offset`` was processed. Offsets only move forward: a paranoid check
        (cheap, and a silent step back would re-deliver or skip records)."""
        tp = (topic, partition)
        last = self._offsets.get(tp)
        if last is not None and offset <= last:
            raise InvalidOffset(f"offset {offset} of {topic}[{partition}] is not after {last}, already in this batch")
        floor = self._committed.get(tp)
        if floor is not None and offset < floor:
            raise InvalidOffset(f"offset {offset} of {topic}[{partition}] is before the committed {floor}")
        self._offsets[tp] = offset

    def offsets_to_commit(self, positions: list[TopicPartition] | None = None) -> list[TopicPartition]:
        """The consumer's position for each partition in the batch, checked against what was processed.
        ``positions``: the positions taken when the batch closed (the consumer has polled on since);
        default: ask the consumer now."""
        tps = [TopicPartition(t, p) for (t, p) in self._offsets]
        if positions is None:
            positions = self._consumer.position(tps)
        else:
            known = {(tp.topic, tp.partition): tp for tp in positions}
            positions = [known.get((tp.topic, tp.partition), TopicPartition(tp.topic, tp.partition, -1001)) for tp in tps]
        out = []
        for tp in positions:
            want = self._offsets[(tp.topic, tp.partition)] + 1
            if tp.offset < 0:
                # No position yet after a seek past an unreadable record: the next offset to read
                # is the one after the last record this batch processed.
                tp = TopicPartition(tp.topic, tp.partition, want)
            # The position may be past the last record (transaction markers are skipped), never before.
            if tp.offset < want:
                raise InvalidOffset(f"consumer position {tp.offset} of {tp.topic}[{tp.partition}] is before the processed {want}")
            out.append(TopicPartition(tp.topic, tp.partition, tp.offset))
        return out

    @property
    def offsets(self) -> dict[PartitionKey, int]:
        """The offsets this transaction commits (after prepare()), per partition."""
        return {(tp.topic, tp.partition): tp.offset for tp in (self._prepared[0] if self._prepared else [])}

    def prepare(self, positions: list[TopicPartition] | None = None) -> None:
        """Fix what the commit will send, in the consumer's thread: the consumer's position per
        partition (checked to move only forward) and the group metadata. The position must be the
        one when the batch closed: pass ``positions`` taken then if the consumer has polled since
        (else a record polled for the next batch would be committed with this one)."""
        if not self._open:
            raise RuntimeError("prepare() without begin()")
        offsets = self.offsets_to_commit(positions) if self._offsets else []
        for tp in offsets:
            floor = self._committed.get((tp.topic, tp.partition))
            if floor is not None and tp.offset < floor:
                raise InvalidOffset(f"would commit {tp.topic}[{tp.partition}] at {tp.offset}, before the committed {floor}")
        self._prepared = (offsets, self._consumer.consumer_group_metadata() if offsets else None)

    def finish(self) -> None:
        """Commit what prepare() fixed. Touches only the producer, so it may run in another thread
        while the consumer polls the next batch.

         1. ``send_offsets_to_transaction(position, group metadata)`` (KIP-447 fencing);
         2. ``commit_transaction()``: flushes the produced outputs and commits outputs + offsets
            atomically; retriable errors are retried, abortable ones abort (TransactionAborted),
            fatal ones raise TransactionFatal.
        """
        if self._prepared is None:
            raise RuntimeError("finish() without prepare()")
        offsets, metadata = self._prepared
        started = time.perf_counter()
        if offsets:
            self._call(lambda: self._producer.send_offsets_to_transaction(offsets, metadata, TXN_TIMEOUT_S))
        self._call(lambda: self._producer.commit_transaction(TXN_TIMEOUT_S))
        self._open = False
        self.commit_s = time.perf_counter() - started

    def commit(self) -> None:
        """prepare() + finish() in this thread; then the batch's utterance ids become "seen" and
        the committed offsets are remembered (the pipelined worker does both itself)."""
        self.prepare()
        self.finish()
        if self._recent is not None:
            self._recent.commit()
        self._committed.update(self.offsets)

    def abort(self, reason: str, *, retriable: bool = True) -> None:
        """Abort the open transaction and forget staged ids; raises TransactionAborted. The caller
        rewinds the consumer (:func:`rewind`) before it polls again."""
        log.warning("aborting transaction: %s", reason)
        if self._recent is not None:
            self._recent.rollback()
        if self._open:
            try:
                self._call(lambda: self._producer.abort_transaction(TXN_TIMEOUT_S), on_abortable=None)
            finally:
                self._open = False
        raise TransactionAborted(reason, retriable=retriable)

    def abort_quietly(self) -> None:
        """Abort an open transaction on the way out of an error; never raises (the error wins)."""
        if self._recent is not None:
            self._recent.rollback()
        if self._open:
            self._open = False
            try:
                self._producer.abort_transaction(TXN_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - the broker aborts it at the timeout anyway
                log.warning("could not abort the transaction on exit: %s", exc)

    def _call(self, fn: Any, on_abortable: str | None = "abort") -> Any:
        for attempt in range(RETRIES):
            try:
                return fn()
            except KafkaException as exc:
                if is_retriable(exc) and attempt < RETRIES - 1:
                    log.info("retriable transaction error (%s), retrying", describe(exc))
                    time.sleep(min(2.0, 0.1 * 2**attempt))
                    continue
                if on_abortable is None:
                    raise TransactionFatal(f"transaction could not be aborted: {exc}") from exc
                self._fail(exc)
        return None  # not reached

    def _fail(self, exc: KafkaException) -> None:
        if is_fatal(exc):
            raise TransactionFatal(f"fatal producer error, exiting: {describe(exc)}") from exc
        # Abortable, or retries exhausted: aborting is always safe (nothing is committed).
        err = kafka_error(exc)
        self.abort(describe(exc), retriable=bool(err is not None and err.retriable()))
