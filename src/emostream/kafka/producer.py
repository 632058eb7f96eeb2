"""Producers: idempotent (edge, simple tools) and transactional (the worker)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer

from emostream.kafka.configuration import ClientConfig


def idempotent_producer(client: ClientConfig, **extra: Any) -> Producer:
    """``acks=all`` + idempotence: retries never duplicate or reorder a partition's records."""
    return Producer(
        client.librdkafka(
            **{
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                **extra,
            }
        )
    )


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
