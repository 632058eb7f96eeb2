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
