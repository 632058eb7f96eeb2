"""Consumers that only see committed data and never commit on their own."""

from __future__ import annotations

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


def partition_lag(consumer: Consumer) -> dict[tuple[str, int], int]:
    """Lag per assigned partition: the cached high watermark minus the position (no broker round trip).

    The high watermark comes from the last fetch response, so this is cheap enough to call every
    few seconds from the poll loop; a partition not fetched yet reports no lag.
    """
    assigned = consumer.assignment()
    if not assigned:
        return {}
    out: dict[tuple[str, int], int] = {}
    for tp in consumer.position(assigned):
        if tp.offset < 0:
            continue
        _low, high = consumer.get_watermark_offsets(tp, cached=True)
        if high >= 0:
            out[(tp.topic, tp.partition)] = max(0, high - tp.offset)
    return out
