"""Consumers that only see committed data and never commit on their own."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from emostream.kafka.configuration import ClientConfig


def committed_consumer(client: ClientConfig, group: str, *, from_beginning: bool = True, **extra: Any) -> Consumer:
    """``isolation.level=read_committed``, manual offset commits, a named group."""
    return Consumer(
        client.librdkafka(
            **{
                "group.id": group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                **extra,
            }
        )
    )


def poll_batch(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Up to ``max_messages`` records, returning as soon as the first one arrives (or ``timeout``
    passes). ``consume(n, t)`` alone waits until it has ``n`` records or ``t`` has passed, so a
    reader at low traffic would hold every record up to ``t``: a latency users see."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)] if max_messages > 1 else [first]


def reader_consumer(client: ClientConfig, **extra: Any) -> Consumer:
    """A consumer for ``assign()``-only reads (changelogs, registries): read_committed, never joins
    a group nor commits (librdkafka still wants a ``group.id``: a throw-away one)."""
    return Consumer(
        client.librdkafka(
            **{
                "group.id": f"emostream-reader-{os.getpid()}-{os.urandom(4).hex()}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                **extra,
            }
        )
    )


def committed_lag(consumer: Consumer, committed: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """Lag per assigned partition from *committed* offsets: the cached high watermark (from the
    last fetch, no broker round trip) minus what the group committed (what a restart would resume
    from), not minus the in-memory position — a partition stuck on a record it cannot get past
    shows its true, growing lag. A partition not fetched yet reports no lag."""
    out: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        low, high = consumer.get_watermark_offsets(tp, cached=True)
        if high < 0:
            continue
        # Nothing committed yet: the group starts from the earliest record (auto.offset.reset).
        done = committed.get((tp.topic, tp.partition), max(low, 0))
        out[(tp.topic, tp.partition)] = max(0, high - done)
    return out


def read_to_end(consumer: Consumer, topic: str, starts: dict[int, int], ends: dict[int, int],
                handle: Callable[[Message], None], timeout_s: float) -> set[int]:
    """Assign ``topic``'s partitions at ``starts`` and hand every record to ``handle`` until each
    partition reached its ``ends`` offset; the partitions not finished within ``timeout_s``.

    A partition is done when its last record read is ``end - 1``, or its position passed ``end``
    (transaction markers take offsets but are never handed out). The assignment stays, so the
    caller may keep consuming what arrives later.
    """
    consumer.assign([TopicPartition(topic, p, offset) for p, offset in starts.items()])
    pending = {p: end for p, end in ends.items() if starts.get(p, end) < end}
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            if msg.error() is not None:
                continue
            handle(msg)
            if msg.offset() >= pending.get(msg.partition(), msg.offset() + 2) - 1:
                pending.pop(msg.partition(), None)
        if pending:
            for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                if tp.offset >= pending[tp.partition]:
                    pending.pop(tp.partition)
    return set(pending)
