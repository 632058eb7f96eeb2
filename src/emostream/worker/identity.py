"""The worker's view of device identities: the public-key registry and the per-device results topics.

On a secure cluster (``--identity signed``) the worker reads the compacted key registry
(``emostream.device-keys``, written by ``emostream users add``) once at start and then, between
batches, whatever was added since. Each transcript's record key is its device; the record must
carry a valid Ed25519 signature of that device (:mod:`emostream.signing`), else it is
dead-lettered (``unknown_device``, ``unsigned``, ``bad_signature``). A device's event also goes
to its private results topic ``emotion.events.<device>`` when that topic exists.
"""

from __future__ import annotations

import logging

from emostream.config import DEVICE_KEYS_TOPIC, device_events_topic
from emostream.errors import WorkerError
from emostream.events import InvalidEvent, Transcript
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import read_to_end, reader_consumer
from emostream.kafka.errors import describe
from emostream.kafka.types import KafkaException, TopicPartition
from emostream.signing import DeviceKeys, decode_key_record
from emostream.worker.process import Record

log = logging.getLogger("emostream.worker")


class DeviceRegistry:
    """Follows the key registry topic; verifies records; knows which private topics exist."""

    def __init__(self, client: ClientConfig, topic: str = DEVICE_KEYS_TOPIC, timeout_s: float = 30.0) -> None:
        self.topic = topic
        self.keys = DeviceKeys()
        self.invalid = 0
        self._timeout = timeout_s
        self._consumer = reader_consumer(client)
        self._private: dict[str, str | None] = {}

    def load(self) -> None:
        """Read the whole registry (blocking, at start); WorkerError when it cannot be read."""
        try:
            md = self._consumer.list_topics(topic=self.topic, timeout=self._timeout)
            meta = md.topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise WorkerError(f"device key registry '{self.topic}' is missing; create it with 'emostream topics ensure' "
                                  "and register devices with 'emostream users add ID --role device'")
            starts: dict[int, int] = {}
            ends: dict[int, int] = {}
            for p in meta.partitions:
                starts[p], ends[p] = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=self._timeout)
            unfinished = read_to_end(self._consumer, self.topic, starts, ends,
                                     lambda msg: self._apply(msg.key(), msg.value()), self._timeout)
            if unfinished:
                raise WorkerError(f"could not read the device key registry '{self.topic}' within {self._timeout:.0f}s")
        except KafkaException as exc:
            raise WorkerError(f"could not read the device key registry '{self.topic}': {describe(exc)}") from exc
        log.info("device key registry: %d device(s)", len(self.keys))

    def refresh(self) -> int:
        """Apply what was added to the registry since the last call (never blocks); how many records."""
        n = 0
        for msg in self._consumer.consume(num_messages=1000, timeout=0):
            if msg.error() is None:
                self._apply(msg.key(), msg.value())
                n += 1
        return n

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            record = decode_key_record(key, value)
        except InvalidEvent as exc:
            self.invalid += 1
            log.warning("ignoring an invalid device key record: %s", exc)
            return
        self.keys.apply(record)
        self._private.pop(record.device_id, None)  # look the private topic up again

    def verify(self, rec: Record, t: Transcript) -> None:
        """InvalidEvent unless ``rec`` is signed by the device it names (record key = device id)."""
        if rec.key is None or rec.key != t.device_id.encode("utf-8"):
            raise InvalidEvent("device_mismatch", "signed transcripts need the device id as record key")
        self.keys.verify(t.device_id, rec.key, rec.value, rec.headers)

    def private_topic(self, device_id: str) -> str | None:
        """The device's results topic when it exists (looked up once per device and key change)."""
        if device_id in self._private:
            return self._private[device_id]
        name = device_events_topic(device_id)
        found: str | None = None
        try:
            md = self._consumer.list_topics(topic=name, timeout=5)
            meta = md.topics.get(name)
            if meta is not None and meta.error is None and meta.partitions:
                found = name
        except KafkaException as exc:
            log.warning("could not look up %s: %s", name, describe(exc))
            return None  # ask again next time
        if found is None:
            log.warning("device %s has no results topic %s; its events go to the shared topic only", device_id, name)
        self._private[device_id] = found
        return found

    def close(self) -> None:
        """Close the registry consumer."""
        self._consumer.close()
