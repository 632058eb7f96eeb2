"""This device's emotion events: its own ``emotion.events.<device>`` topic when there is one (secure
clusters), else ``emotion.events`` (read_committed) keeping the records keyed by the device.

Each event goes to a handler (print a JSON line, or run a hook command with the JSON on stdin).
Offsets are committed after the handler ran, so a restarted listener resumes where it stopped
and a hook sees each event at least once. Hook failures are reported on stderr, never fatal.
Records that are not events (tombstones, garbage, hostile JSON) are counted, reported on stderr
at most once a minute per kind, and committed past, so they cannot stop a listener or its restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from emostream.config import EMOTIONS_TOPIC, device_events_topic
from emostream.errors import KafkaClientError
from emostream.events import InvalidEvent, decode_emotion_event
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer, poll_batch
from emostream.kafka.types import KafkaError, KafkaException

# How long to wait for the metadata that says whether the device's own results topic exists.
TOPIC_LOOKUP_TIMEOUT_S = 10.0


def listener_group(device: str) -> str:
    """The consumer group of a device's listener."""
    return f"emostream-edge-{device}"


def hook_runner(command: str, timeout_s: float = 30.0) -> Callable[[dict[str, Any]], None]:
    """A handler that runs ``command`` (through the shell) with the event JSON on stdin."""

    def run(event: dict[str, Any]) -> None:
        try:
            done = subprocess.run(command, shell=True, input=json.dumps(event) + "\n", text=True,
                                  capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            print(f"emostream: hook '{command}' timed out after {timeout_s:.0f}s on utterance {event.get('utterance_id')}",
                  file=sys.stderr)
            return
        if done.stdout:
            sys.stdout.write(done.stdout)
            sys.stdout.flush()
        if done.returncode != 0:
            err = (done.stderr or "").strip().splitlines()
            print(f"emostream: hook '{command}' exited {done.returncode} on utterance {event.get('utterance_id')}"
                  + (f": {err[-1]}" if err else ""), file=sys.stderr)

    return run


def print_json(event: dict[str, Any]) -> None:
    """A handler that prints one JSON line."""
    print(json.dumps(event, ensure_ascii=False), flush=True)


class SkippedEvents:
    """Counts records that were not events, by kind; reports the first of each kind, then at most one line per ``every_s``."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts: Counter[str] = Counter()
        self._every_s = every_s
        self._clock = clock
        self._reported_at: dict[str, float] = {}
        self._unreported: Counter[str] = Counter()

    def skip(self, where: str, exc: InvalidEvent) -> None:
        """Count one bad record at ``where``; print it unless this kind was printed recently."""
        kind = exc.error_type
        self.counts[kind] += 1
        now = self._clock()
        last = self._reported_at.get(kind)
        if last is not None and now - last < self._every_s:
            self._unreported[kind] += 1
            return
        self._reported_at[kind] = now
        more = self._unreported.pop(kind, 0)
        print(f"emostream: skipping a bad event at {where} ({kind}): {exc}"
              + (f" (and {more} more of this kind since the last report)" if more else ""), file=sys.stderr)

    @property
    def total(self) -> int:
        """All records skipped so far."""
        return sum(self.counts.values())


def own_results_topic(consumer: Any, device: str, timeout_s: float = TOPIC_LOOKUP_TIMEOUT_S) -> str | None:
    """``emotion.events.<device>`` when the cluster says it exists and this client may describe it, else None."""
    topic = device_events_topic(device)
    try:
        meta = consumer.list_topics(topic=topic, timeout=timeout_s)
    except KafkaException:
        return None  # unreachable or refused: the shared topic is the one that always exists
    info = meta.topics.get(topic)
    return topic if info is not None and info.error is None else None


def listen(client: ClientConfig, device: str, handler: Callable[[dict[str, Any]], None], *,
           topic: str | None = None, group: str | None = None, from_beginning: bool = False,
           max_events: int | None = None, idle_timeout_s: float | None = None,
           skipped: SkippedEvents | None = None) -> int:
    """Hand this device's events to ``handler`` until interrupted, ``max_events`` or ``idle_timeout_s``; the count.

    ``topic`` None picks the device's own results topic when it exists, else ``emotion.events``;
    on any topic but the device's own, only records keyed by ``device`` count. Records that do not
    decode are counted in ``skipped`` and committed past.
    """
    consumer = committed_consumer(client, group or listener_group(device), from_beginning=from_beginning)
    skipped = skipped if skipped is not None else SkippedEvents()
    seen, last_event = 0, time.monotonic()
    try:
        if topic is None:
            topic = own_results_topic(consumer, device) or EMOTIONS_TOPIC
        # The device's own topic holds only its events (the worker writes it, ACLs keep others out).
        key = None if topic == device_events_topic(device) else device.encode("utf-8")
        consumer.subscribe([topic])
        while max_events is None or seen < max_events:
            msgs = poll_batch(consumer, 500, 0.5)  # an event is shown as soon as it arrives
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise KafkaClientError(f"listening on {topic} failed: {err.str()}")
                    continue
                if key is not None and msg.key() != key:
                    consumer.store_offsets(message=msg)
                    continue
                try:
                    event = decode_emotion_event(msg.value())
                except InvalidEvent as exc:
                    skipped.skip(f"{topic}[{msg.partition()}]@{msg.offset()}", exc)
                    consumer.store_offsets(message=msg)  # past it: a restart must not meet it again
                    continue
                handler(event)
                consumer.store_offsets(message=msg)  # only after the handler: a restart re-delivers, never skips
                seen += 1
                last_event = time.monotonic()
                if max_events is not None and seen >= max_events:
                    break
            if msgs:
                _commit(consumer, final=False)
            elif idle_timeout_s is not None and time.monotonic() - last_event > idle_timeout_s:
                break
        _commit(consumer, final=True)  # everything handled or skipped is committed before we leave
    finally:
        consumer.close()
    if skipped.total:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.counts.items()))
        print(f"emostream: skipped {skipped.total} records on {topic} that were not emotion events ({kinds})", file=sys.stderr)
    return seen


def _commit(consumer, *, final: bool) -> None:
    try:
        consumer.commit(asynchronous=not final)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise KafkaClientError(f"could not commit the listener's position: {exc.args[0].str()}") from exc
