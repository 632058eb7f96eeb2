"""Consumers that only see committed data and never commit on their own."""

from __future__ import annotations

import os
from typing import Any

from confluent_kafka import Consumer

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
