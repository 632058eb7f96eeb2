"""Durable dedupe: restore a partition's recently seen utterance digests from the changelog topic.

The worker writes the digest of every newly seen utterance id to ``<source>.dedupe``, in the
partition of the source record and inside the batch's transaction (the Kafka Streams state-store
pattern): the changelog holds exactly what committed. When partitions are assigned, the worker
reads each one's changelog partition from ``window_s`` ago (at most the last ``capacity``
records) up to its end, and seeds :class:`~emostream.worker.dedupe.RecentIds` with it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import read_to_end, reader_consumer
from emostream.kafka.errors import describe
from emostream.kafka.types import KafkaException, TopicPartition

log = logging.getLogger("emostream.worker")

DEFAULT_WINDOW_S = 24 * 3600.0
DIGEST_SIZE = 16


def restore_digests(
    client: ClientConfig,
    topic: str,
    partitions: list[int],
    *,
    window_s: float = DEFAULT_WINDOW_S,
    capacity: int,
    timeout_s: float = 30.0,
    clock: Any = time.time,
) -> dict[int, list[bytes]]:
    """partition → digests committed within ``window_s`` (oldest first, at most ``capacity``).

    A partition that cannot be read completely within ``timeout_s`` returns what was read and a
    warning: dedupe is best effort at the edges of the window, never a reason not to work.
    """
    if not partitions:
        return {}
    consumer = reader_consumer(client)
    out: dict[int, list[bytes]] = {p: [] for p in partitions}
    try:
        since_ms = int((clock() - window_s) * 1000)
        by_time = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions], timeout=timeout_s)
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        for tp in by_time:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout_s)
            first = tp.offset if tp.offset >= 0 else high  # no record that recent: nothing to restore
            starts[tp.partition] = max(first, low, high - capacity)
            ends[tp.partition] = high

        def keep(msg: Any) -> None:
            key = msg.key()
            if key is not None and len(key) == DIGEST_SIZE:
                out[msg.partition()].append(key)

        unfinished = read_to_end(consumer, topic, starts, ends, keep, timeout_s)
        if unfinished:
            log.warning("dedupe restore of %s%s stopped after %.0fs; re-sends of older utterances may be classified again",
                        topic, sorted(unfinished), timeout_s)
    except KafkaException as exc:
        log.warning("could not restore dedupe ids from %s: %s; re-sends may be classified again", topic, describe(exc))
    finally:
        consumer.close()
    return out
