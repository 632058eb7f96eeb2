"""One device must never be able to stop, stall or silence the others: the worker against hostile
records on real brokers (issue #13 findings 1-4, 6, 11 and the stalled-partition health check).

Each hostile record below crashed or stalled the worker before (poison pills, a 2 MB key, a
decompression bomb) or let one device suppress another's transcripts (claimed ids, dedupe lost on
restart). The worker must stay up, give exactly one event per valid transcript and one dead
letter per hostile record, and keep every partition moving.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.producer import idempotent_producer, produce
from tests.worker_helpers import (
    Workers,
    check_exactly_once,
    events_of,
    header_dict,
    make_topics,
    model_spec,
    produce_raw,
    produce_transcripts,
    read_all,
    stop,
)

pytestmark = pytest.mark.kafka

POISON = b'{"v":1,"text":"hi \\ud800"}'
assert len(POISON) == 26


def _hostile() -> list[tuple[str, bytes | None, bytes | None, str]]:
    """(name, key, value, expected error.type) — each reproduced against the old worker."""
    return [
        ("surrogate text (26 bytes)", b"pi-evil", POISON, "invalid_text"),
        ("surrogate device_id", None, b'{"v":1,"text":"hi","device_id":"pi-\\udc00"}', "invalid_device_id"),
        ("surrogate utterance_id", b"pi-evil", b'{"v":1,"text":"hi","utterance_id":"u-\\ud800"}', "invalid_utterance_id"),
        ("15,000-deep JSON", b"pi-evil", b'{"v":1,"text":"hi","x":' + b"[" * 15_000 + b"]" * 15_000 + b"}", "too_deep"),
        ("5,000-digit integer", b"pi-evil", b'{"v":1,"text":"hi","confidence":' + b"9" * 5000 + b"}", "invalid_number"),
        ("key is not the device", b"pi-evil", b'{"v":1,"text":"I am pi-victim","device_id":"pi-victim"}', "device_mismatch"),
        ("30 KB utterance id", b"pi-evil", json.dumps({"v": 1, "text": "hi", "utterance_id": "u" * 30_000}).encode(), "invalid_utterance_id"),

        ("tombstone", b"pi-evil", None, "null_value"),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return -1


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        total = 0.0
        for line in resp.read().decode().splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def test_worker_survives_every_hostile_record_among_thousands_of_valid_ones(bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    src, out, dlq = make_topics(bootstrap, unique_name, partitions=3)
    hostile = _hostile()
    n_valid, devices = 600, 12
    # Half the valid transcripts first, then every hostile record, then the other half.
    sent = produce_transcripts(bootstrap, src, n_valid // 2, devices, prefix="a")
    produce_raw(bootstrap, src, [(k, v) for _, k, v, _ in hostile])
    # Finding 6: a device claims the ids the next plain-text records of a victim would get
    # (offset-derived ids were predictable and shared the dedupe namespace); then the victim speaks.
    claims = [json.dumps({"v": 1, "text": "mine", "utterance_id": f"@{src}-{p}-{o}"}).encode() for p in range(3) for o in range(2000)][:40]
    produce_raw(bootstrap, src, [(b"pi-victim", c) for c in claims] + [(b"pi-victim", b"my doctor called, I am scared")])
    hostile += [("claimed offset-derived id", b"pi-victim", c, "invalid_utterance_id") for c in claims]
    # A 2 MB key, lz4-compressed so the broker takes it (finding 2).
    produce_raw(bootstrap, src, [(b"k" * 2_000_000, b'{"v":1,"text":"big key"}')],
                **{"compression.type": "lz4", "message.max.bytes": 10_000_000})
    # A decompression bomb: 150 MB of zeros, zstd-compressed to a few KB (finding 3).
    bomb = idempotent_producer(ClientConfig(bootstrap), **{"compression.type": "zstd", "message.max.bytes": 200_000_000,
                                                           "batch.size": 200_000_000, "linger.ms": 0})
    produce(bomb, src, b"\0" * 150_000_000, b"pi-evil")
    assert bomb.flush(60) == 0
    del bomb
    later = produce_transcripts(bootstrap, src, n_valid // 2, devices, prefix="b")
    sent.update(later)
    n_hostile = len(hostile) + 2

    port = _free_port()
    workers = Workers(bootstrap, src, out, unique_name, tmp_path / "worker.log", model_spec())
    try:
        p = workers.start("w1", "--metrics-port", str(port))
        msgs = read_all(bootstrap, [out], expect=n_valid + 1, idle_s=4, max_s=300)
        letters = read_all(bootstrap, [dlq], expect=n_hostile, idle_s=3, max_s=120)
        assert p.poll() is None, "the worker must keep running: " + (tmp_path / "worker.log").read_text()[-2000:]
        _wait(lambda: _health(port) == 200, 30, "/healthz 200")
        _wait(lambda: _metric(port, "emostream_consumer_lag{") == 0, 30, "lag 0 on every partition")

        # Finding 11: after a restart, edge re-sends of already classified utterances (same ids)
        # are still recognised: the dedupe ids come back from the changelog topic.
        assert stop(p) == 0
        resend = produce_transcripts(bootstrap, src, 24, devices, prefix="a")
        p2 = workers.start("w2", "--metrics-port", str(port))
        _wait(lambda: _health(port) == 200, 60, "restarted worker healthy")
        _wait(lambda: _metric(port, "emostream_records_duplicate_total") >= 24, 60, "24 re-sends dropped as duplicates")
        assert stop(p2) == 0
    finally:
        workers.cleanup()
    events = events_of(msgs)
    victim = [e for e in events if e["device_id"] == "pi-victim"]
    assert [e["text"] for e in victim] == ["my doctor called, I am scared"] and victim[0]["utterance_id"].startswith("@")
    dups, losses = check_exactly_once([e for e in events if e["device_id"] != "pi-victim"], sent)
    assert (dups, losses) == (0, 0)
    assert set(resend) <= set(sent)
    after = read_all(bootstrap, [out], expect=None, idle_s=3)
    assert len(after) == n_valid + 1, f"{len(after) - n_valid - 1} re-sent utterance(s) classified twice after a restart"
    types = [header_dict(m)["error.type"] for m in letters]
    assert len(letters) == n_hostile
    assert sorted(types) == sorted([t for *_, t in hostile] + ["key_too_large", "unreadable_record"])
    by_type = {header_dict(m)["error.type"]: m for m in letters}
    big = by_type["key_too_large"]
    assert len(big.key()) == 256 and header_dict(big)["error.key_truncated_from"] == "2000000"
    bomb_letter = by_type["unreadable_record"]
    assert bomb_letter.value() is None and "Decompression" in header_dict(bomb_letter)["error.message"]
    print(f"\n[hostile] valid={n_valid} events={len(msgs)} dead_letters={len(letters)} types={sorted(set(types))}", flush=True)


def test_a_partition_that_cannot_commit_turns_health_red_and_recovers(bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    src, out, dlq = make_topics(bootstrap, unique_name, partitions=1)
    port = _free_port()
    workers = Workers(bootstrap, src, out, unique_name, tmp_path / "worker.log", model_spec())
    admin = Admin(ClientConfig(bootstrap))
    try:
        p = workers.start("w1", "--metrics-port", str(port), "--stall-after-s", "3")
        _wait(lambda: _health(port) == 200, 60, "worker healthy")
        # Take the DLQ away under the worker: a bad record can then never be committed.
        admin.delete_topics([dlq])
        produce_raw(bootstrap, src, [(b"pi-1", b"{oops"), (b"pi-1", b'{"v":1,"text":"I am happy","utterance_id":"u1"}')])
        _wait(lambda: _health(port) == 503, 90, "/healthz 503 while the partition is stalled")
        assert _metric(port, "emostream_stalled_partitions{") == 1
        make_topics(bootstrap, unique_name, partitions=1)  # the DLQ comes back (the others exist already)
        _wait(lambda: _health(port) == 200, 240, "/healthz 200 once the partition moves again")
        events = events_of(read_all(bootstrap, [out], expect=1, idle_s=2))
        assert [e["utterance_id"] for e in events] == ["u1"]
        assert p.poll() is None
        assert stop(p) == 0
    finally:
        workers.cleanup()
