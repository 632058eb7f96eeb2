"""This device's emotion events: read ``emotion.events`` (read_committed), keep the records keyed by the device.

Each event goes to a handler (print a JSON line, or run a hook command with the JSON on stdin).
Offsets are committed after the handler ran, so a restarted listener resumes where it stopped
and a hook sees each event at least once. Hook failures are reported on stderr, never fatal.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from emostream.config import EMOTIONS_TOPIC
from emostream.errors import KafkaClientError
from emostream.events import InvalidEvent, decode_emotion_event
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer
from emostream.kafka.types import KafkaError, KafkaException


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


def listen(client: ClientConfig, device: str, handler: Callable[[dict[str, Any]], None], *,
           topic: str = EMOTIONS_TOPIC, group: str | None = None, from_beginning: bool = False,
           max_events: int | None = None, idle_timeout_s: float | None = None) -> int:
    """Hand this device's events to ``handler`` until interrupted, ``max_events`` or ``idle_timeout_s``; the count."""
    consumer = committed_consumer(client, group or listener_group(device), from_beginning=from_beginning)
    key = device.encode("utf-8")
    seen, last_event = 0, time.monotonic()
    try:
        consumer.subscribe([topic])
        while max_events is None or seen < max_events:
            msgs = consumer.consume(500, 0.5)
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise KafkaClientError(f"listening on {topic} failed: {err.str()}")
                    continue
                if msg.key() != key:
                    consumer.store_offsets(message=msg)
                    continue
                try:
                    event = decode_emotion_event(msg.value())
                except InvalidEvent as exc:
                    print(f"emostream: skipping a bad event at {topic}[{msg.partition()}]@{msg.offset()}: {exc}", file=sys.stderr)
                    consumer.store_offsets(message=msg)
                    continue
                handler(event)
                consumer.store_offsets(message=msg)  # only after the handler: a restart re-delivers, never skips
                seen += 1
                last_event = time.monotonic()
                if max_events is not None and seen >= max_events:
                    break
            if msgs:
                _commit(consumer, final=max_events is not None and seen >= max_events)
            elif idle_timeout_s is not None and time.monotonic() - last_event > idle_timeout_s:
                break
    finally:
        consumer.close()
    return seen


def _commit(consumer, *, final: bool) -> None:
    try:
        consumer.commit(asynchronous=not final)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise KafkaClientError(f"could not commit the listener's position: {exc.args[0].str()}") from exc
