"""``edge listen`` and the dashboard reader against records that are not events (issue #13 finding 12).

A tombstone, a 15,000-deep JSON value or a lone surrogate on the emotions topic once stopped
``edge listen`` (again on every restart) and the dashboard's reader for good. Now each is counted,
skipped and (for the listener) committed past.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from emostream.dashboard.aggregation import DashboardState
from emostream.dashboard.reader import KafkaReader
from emostream.edge import listen as listen_module
from emostream.edge.listen import SkippedEvents, listen
from emostream.events import EmotionEvent, InvalidEvent, SourceRef, new_utterance_id, utc_now_iso
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer
from emostream.kafka.types import TopicPartition
from emostream.topics import create_topic, plan_topic
from tests.worker_helpers import produce_raw

NESTED = b'{"v":1,"device_id":"pi","label":"joy","x":' + b"[" * 15_000 + b"]" * 15_000 + b"}"
POISON = b'{"v":1,"device_id":"pi","label":"joy","text":"hi \\ud800"}'


def event(device: str, text: str) -> bytes:
    return EmotionEvent(device, new_utterance_id(), text, "joy", {"joy": 0.9, "neutral": 0.1}, "m@1",
                        SourceRef("stt.transcripts", 0, 0), utc_now_iso(), 3.0).encode()


def make_topic(bootstrap: str, name: str) -> ClientConfig:
    client = ClientConfig(bootstrap)
    admin = Admin(client)
    create_topic(admin, plan_topic(name, admin.live_brokers(), partitions=1))
    return client


def committed_offset(client: ClientConfig, group: str, topic: str) -> int:
    consumer = committed_consumer(client, group)
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=30)
        return tp.offset
    finally:
        consumer.close()


def wait_for(predicate: Any, timeout_s: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


# ---- no broker ---------------------------------------------------------------------------


def test_skipped_events_reports_each_kind_once_then_at_most_once_a_minute(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    skipped = SkippedEvents(every_s=60.0, clock=lambda: now[0])
    for _ in range(100):
        skipped.skip("t[0]@1", InvalidEvent("null_value", "tombstone"))
    skipped.skip("t[0]@2", InvalidEvent("too_deep", "deep"))
    now[0] = 61.0
    skipped.skip("t[0]@3", InvalidEvent("null_value", "tombstone"))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert "(null_value)" in lines[0] and "(too_deep)" in lines[1]
    assert "and 99 more" in lines[2]
    assert skipped.counts == {"null_value": 101, "too_deep": 1} and skipped.total == 102


class FakeMessage:
    def __init__(self, value: bytes | None, topic: str = "emotion.events") -> None:
        self._value, self._topic = value, topic

    def error(self) -> None:
        return None

    def value(self) -> bytes | None:
        return self._value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0

    def headers(self) -> None:
        return None


def test_dashboard_reader_counts_bad_records_by_kind() -> None:
    state = DashboardState()
    reader = KafkaReader(state, ClientConfig("127.0.0.1:1"), "emotion.events", None)
    for value in (None, NESTED, POISON, b"\xff", event("pi", "fine")):
        reader._handle(FakeMessage(value))
    summary = state.summary()
    assert summary["events"] == 1 and summary["invalid"] == 4
    assert summary["invalid_types"] == {"null_value": 1, "too_deep": 1, "invalid_text": 1, "undecodable": 1}


# ---- real broker -------------------------------------------------------------------------


@pytest.mark.kafka
def test_listen_skips_bad_records_commits_past_them_and_restarts_cleanly(bootstrap: str, unique_name: str) -> None:
    client = make_topic(bootstrap, unique_name)
    device, group = "pi-hostile", f"{unique_name}-g"
    key = device.encode()
    produce_raw(bootstrap, unique_name, [(key, None), (key, NESTED), (key, POISON), (b"other", None),
                                         (key, event(device, "one")), (key, None), (key, NESTED)])
    got: list[dict[str, Any]] = []
    skipped = SkippedEvents()
    n = listen(client, device, got.append, topic=unique_name, group=group, from_beginning=True, idle_timeout_s=6,
               skipped=skipped)
    assert n == 1 and [e["text"] for e in got] == ["one"]
    assert skipped.counts == {"null_value": 2, "too_deep": 2, "invalid_text": 1}
    assert committed_offset(client, group, unique_name) == 7  # past the trailing tombstone and nested record

    produce_raw(bootstrap, unique_name, [(key, None), (key, event(device, "two"))])
    again: list[dict[str, Any]] = []
    n = listen(client, device, again.append, topic=unique_name, group=group, from_beginning=True, max_events=1,
               idle_timeout_s=60)
    assert n == 1 and [e["text"] for e in again] == ["two"]  # resumed after the bad records, not before them


@pytest.mark.kafka
def test_listen_reads_the_devices_own_results_topic_when_it_exists(bootstrap: str, unique_name: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from emostream.config import device_events_topic

    device = f"pi-{os.urandom(4).hex()}"
    own = device_events_topic(device)
    client = make_topic(bootstrap, own)
    shared = unique_name  # stands in for emotion.events, which the session cluster does not have
    make_topic(bootstrap, shared)
    monkeypatch.setattr(listen_module, "EMOTIONS_TOPIC", shared)
    produce_raw(bootstrap, shared, [(device.encode(), event(device, "shared"))])
    produce_raw(bootstrap, own, [(None, None), (None, event(device, "own"))])  # own topic: no key filter
    got: list[dict[str, Any]] = []
    assert listen(client, device, got.append, from_beginning=True, max_events=1, idle_timeout_s=60) == 1
    assert [e["text"] for e in got] == ["own"]


@pytest.mark.kafka
def test_listen_falls_back_to_the_shared_topic_filtered_by_key(bootstrap: str, unique_name: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    device = f"pi-{os.urandom(4).hex()}"  # no emotion.events.<device> topic
    client = make_topic(bootstrap, unique_name)
    monkeypatch.setattr(listen_module, "EMOTIONS_TOPIC", unique_name)
    produce_raw(bootstrap, unique_name, [(b"someone-else", event("someone-else", "theirs")), (device.encode(), None),
                                         (device.encode(), event(device, "mine"))])
    got: list[dict[str, Any]] = []
    assert listen(client, device, got.append, from_beginning=True, max_events=1, idle_timeout_s=60) == 1
    assert [e["text"] for e in got] == ["mine"]


@pytest.mark.kafka
def test_dashboard_reader_survives_bad_records(bootstrap: str, unique_name: str) -> None:
    client = make_topic(bootstrap, unique_name)
    state = DashboardState()
    reader = KafkaReader(state, client, unique_name, None, from_beginning=True)
    reader.start()
    try:
        produce_raw(bootstrap, unique_name, [(b"pi", None), (b"pi", NESTED), (b"pi", POISON), (b"pi", event("pi", "one"))])
        assert wait_for(lambda: state.summary()["events"] == 1), state.summary()
        summary = state.summary()
        assert summary["invalid"] == 3
        assert summary["invalid_types"] == {"null_value": 1, "too_deep": 1, "invalid_text": 1}
        produce_raw(bootstrap, unique_name, [(b"pi", NESTED), (b"pi", event("pi", "two"))])
        assert wait_for(lambda: state.summary()["events"] == 2), state.summary()
        assert reader.alive and state.summary()["invalid"] == 4
        assert [e["text"] for e in state.events("pi")] == ["one", "two"]
    finally:
        reader.stop()
