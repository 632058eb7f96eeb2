"""Producers: idempotent (edge, simple tools) and transactional (the worker)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer

from emostream.kafka.configuration import ClientConfig


def idempotent_producer(client: ClientConfig, **extra: Any) -> Producer:
    """``acks=all`` + idempotence: retries never duplicate or reorder a partition's records.

    ``linger.ms=0``: a device sends one transcript every few seconds, and lingering only delays
    each one (5 ms of every utterance's end-to-end latency at 5 ms). A backlog (a spool replayed
    after an outage) still goes in batches: records queue while up to five requests are in flight."""
    return Producer(
        client.librdkafka(
            **{
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "compression.type": "lz4",
                **extra,
            }
        )
    )


# The broker answers EndTxn before it has written the commit markers, so a transaction that starts
# right after a commit often gets CONCURRENT_TRANSACTIONS on AddOffsetsToTxn, which librdkafka
# retries after retry.backoff.ms: at the default 100 ms that was a 100+ ms commit for ~1 in 3
# transactions at 50 transcripts/s (librdkafka debug=eos; 50/s p50/p99 90/350 ms). At 10 ms:
# 39/65 ms. The backoff still grows exponentially to retry.backoff.max.ms (1 s) while a cause lasts.
TXN_RETRY_BACKOFF_MS = 10


def transactional_producer(client: ClientConfig, transactional_id: str, **extra: Any) -> Producer:
    """A producer for consume-transform-produce transactions; call ``init_transactions()`` before use."""
    return Producer(
        client.librdkafka(
            **{
                "transactional.id": transactional_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                "transaction.timeout.ms": 60_000,
                "retry.backoff.ms": TXN_RETRY_BACKOFF_MS,
                **extra,
            }
        )
    )


BACKPRESSURE_POLL_S = 0.05


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    *,
    headers: list[tuple[str, bytes]] | None = None,
    partition: int | None = None,
    on_delivery: Callable[..., Any] | None = None,
) -> None:
    """``producer.produce`` with back-pressure: while librdkafka's local queue is full
    (``BufferError``) serve delivery reports for a moment and try again. Any other error
    (``KafkaException``: record too large, unknown topic, fatal producer) is raised to the caller;
    map it with :mod:`emostream.kafka.errors`."""
    kwargs: dict[str, Any] = {}
    if headers:
        kwargs["headers"] = headers
    if partition is not None:
        kwargs["partition"] = partition
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(topic, value, key, **kwargs)
            return
        except BufferError:
            producer.poll(BACKPRESSURE_POLL_S)
