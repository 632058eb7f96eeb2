"""Producers: idempotent (edge, simple tools) and transactional (the worker)."""

from __future__ import annotations

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
