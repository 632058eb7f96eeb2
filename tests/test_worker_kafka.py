"""The worker against real brokers: exactly-once through worker kills, a broker kill and
rebalances; bad inputs to the DLQ; plain text from a non-Python client."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from emostream.cluster import LocalCluster
from emostream.cluster.fetch import classpath
from emostream.config import cache_dir
from emostream.events import Transcript
from tests.worker_helpers import (
    check_device_order,
    check_exactly_once,
    events_from_one_worker,
    events_of,
    header_dict,
    make_topics,
    model_spec,
    produce_raw,
    produce_transcripts,
    STUB_SPEC,
    read_all,
    start_worker,
    stop,
    Workers,
)

pytestmark = pytest.mark.kafka

# Records per test, paced over 24-30 s (200-250/s): thousands in flight at every kill. (It was
# 10,000: 4,000 more records per test to classify, on a CI box whose 2 cores run the brokers too.)
N = 6_000
DEVICES = 50
# The broker's smallest session timeout (group.min.session.timeout.ms, 6 s) instead of the
# worker's 10 s: after a kill the group moves the dead worker's partitions 4 s sooner. What these
# tests check (nothing lost, nothing twice, order) does not depend on how soon.
FAST_SESSION = ("--session-timeout-ms", "6000")


def _report(name: str, **facts: object) -> None:
    print(f"\n[worker-eos] {name}: {json.dumps(facts)}", flush=True)


def _paced_producer(bootstrap: str, src: str, seconds: float) -> tuple[threading.Thread, dict]:
    box: dict = {}
    th = threading.Thread(target=lambda: box.update(produce_transcripts(bootstrap, src, N, DEVICES, seconds=seconds)))
    th.start()
    return th, box


def _drain_and_check(name: str, bootstrap: str, out: str, sent: dict, **facts: object) -> None:
    msgs = read_all(bootstrap, [out], expect=N, idle_s=4, max_s=300)
    dups, losses = check_exactly_once(events_of(msgs), sent)
    _report(name, records=N, devices=DEVICES, events=len(msgs), duplicates=dups, losses=losses, **facts)
    assert (dups, losses) == (0, 0)
    check_device_order(msgs)


def test_exactly_once_through_worker_kills(bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    src, out, _ = make_topics(bootstrap, unique_name)
    rng = random.Random(unique_name)
    workers = Workers(bootstrap, src, out, unique_name, tmp_path / "worker.log", model_spec())
    th, sent = _paced_producer(bootstrap, src, seconds=30)
    kills = 0
    try:
        for _ in range(5):
            p = workers.start("w1", *FAST_SESSION)
            time.sleep(rng.uniform(4.5, 9.0))  # start-up (~3 s), group join, then processing
            p.send_signal(signal.SIGKILL)
            p.wait(10)
            kills += 1
        th.join()
        final = workers.start("w1", *FAST_SESSION)
        _drain_and_check("worker kills", bootstrap, out, sent, kills=kills)
        assert stop(final) == 0
    finally:
        th.join()
        workers.cleanup()


def test_exactly_once_through_a_broker_kill(private_cluster: LocalCluster, unique_name: str, tmp_path: Path) -> None:
    bootstrap = private_cluster.bootstrap
    src, out, _ = make_topics(bootstrap, unique_name)
    workers = Workers(bootstrap, src, out, unique_name, tmp_path / "worker.log", model_spec())
    th, sent = _paced_producer(bootstrap, src, seconds=24)
    victim = 1
    try:
        p = workers.start("w1", *FAST_SESSION)
        time.sleep(8)
        assert private_cluster.stop_node(victim, signal.SIGKILL)
        time.sleep(6)
        p.send_signal(signal.SIGKILL)  # and the worker too, while the broker is down
        p.wait(10)
        th.join()
        final = workers.start("w1", *FAST_SESSION)
        _drain_and_check("broker kill", bootstrap, out, sent, broker_killed=victim, worker_kills=1)
        assert stop(final) == 0
    finally:
        th.join()
        workers.cleanup()


def test_exactly_once_while_workers_join_and_leave(bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    src, out, _ = make_topics(bootstrap, unique_name)
    workers = Workers(bootstrap, src, out, unique_name, tmp_path / "worker.log", model_spec())
    th, sent = _paced_producer(bootstrap, src, seconds=26)
    # Small transactions fill up on the backlog each worker finds when it starts or is given
    # partitions: full batches are classified in the model thread while the next batch is polled,
    # so the rebalances also come while a batch is being classified.
    small = (*FAST_SESSION, "--txn-max-records", "64")
    try:
        a = workers.start("a", *small)
        b = workers.start("b", *small)
        time.sleep(9)
        c = workers.start("c", *small)
        time.sleep(9)
        assert stop(a) == 0  # a leaves cleanly mid-stream
        th.join()
        _drain_and_check("join/leave", bootstrap, out, sent, workers="a,b then +c then -a")
        assert b.poll() is None and c.poll() is None
        assert stop(b) == 0 and stop(c) == 0
        prefetched = [int(n) for n in re.findall(r"aborted, (\d+) classified while the next was polled", workers.log.read_text())]
        assert len(prefetched) == 3 and sum(prefetched) > 0, prefetched
    finally:
        th.join()
        workers.cleanup()


def _t(uid: str, text: str) -> bytes:
    return Transcript(device_id="pi-bad", utterance_id=uid, text=text).encode()


BAD_INPUTS = [
    (b"\xff\xfe\x00\x01", "undecodable"),
    (b'{"v": 1, "text": ', "invalid_json"),
    (json.dumps({"v": 7, "text": "from the future"}).encode(), "unsupported_version"),
    (json.dumps({"v": 1, "device_id": "pi-bad"}).encode(), "missing_text"),
    (json.dumps({"v": 1, "device_id": "pi-bad", "text": ""}).encode(), "missing_text"),
    (_t("long", "x" * 9000), "text_too_long"),
    (b"y" * 1_000_000, "value_too_large"),
    (None, "null_value"),
    (_t("boom", "this one makes the model go boom"), "model_error"),
]


def test_bad_inputs_go_to_the_dlq_and_good_ones_around_them_are_classified(bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    src, out, dlq = make_topics(bootstrap, unique_name, partitions=1)
    records = [(b"pi-bad", _t("good-0", "I am so happy"))]
    for i, (value, _) in enumerate(BAD_INPUTS):
        records += [(b"pi-bad", value), (b"pi-bad", _t(f"good-{i + 1}", "that was sad"))]
    # The 1 MB value needs a producer limit above librdkafka's default (the broker takes ~1 MB).
    produce_raw(bootstrap, src, records, **{"message.max.bytes": 1_048_000})
    # The model error needs a model that fails on demand: the stand-in raises on "boom".
    workers = Workers(bootstrap, src, out, unique_name, tmp_path / "worker.log", STUB_SPEC)
    try:
        p = workers.start("w1")
        events = events_of(read_all(bootstrap, [out], expect=len(BAD_INPUTS) + 1, idle_s=3))
        letters = read_all(bootstrap, [dlq], expect=len(BAD_INPUTS), idle_s=3)
        assert p.poll() is None, "the worker must keep running"
        assert stop(p) == 0
    finally:
        workers.cleanup()
    assert [e["utterance_id"] for e in events] == [f"good-{i}" for i in range(len(BAD_INPUTS) + 1)]
    assert len(letters) == len(BAD_INPUTS)
    for i, (msg, (value, error_type)) in enumerate(zip(letters, BAD_INPUTS)):
        h = header_dict(msg)
        assert h["error.type"] == error_type
        assert h["error.message"]
        assert (h["source.topic"], h["source.partition"], h["source.offset"]) == (src, "0", str(2 * i + 1))
        assert msg.key() == b"pi-bad"
        if error_type == "value_too_large":
            assert msg.value() == value[: len(msg.value())] and h["error.value_truncated_from"] == str(len(value))
        else:
            assert msg.value() == value
    _report("bad inputs", dead_letters=len(letters), types=[header_dict(m)["error.type"] for m in letters])


def test_plain_text_from_the_kafka_console_producer_is_classified(bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    src, out, _ = make_topics(bootstrap, unique_name, partitions=1)
    lines = "pi-java:I am so happy this finally works\npi-java:this is awful, I am really angry\n"
    subprocess.run(
        ["java", "-cp", classpath(cache_dir()), "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bootstrap.split(",")[0],
         "--topic", src, "--property", "parse.key=true", "--property", "key.separator=:"],
        input=lines.encode(), check=True, timeout=120, capture_output=True,
    )
    events = events_from_one_worker(bootstrap, src, out, unique_name, tmp_path / "worker.log", model_spec(), expect=2, idle_s=2)
    assert [(e["device_id"], e["utterance_id"]) for e in events] == [("pi-java", f"@{src}-0-0"), ("pi-java", f"@{src}-0-1")]
    assert events[0]["text"] == "I am so happy this finally works"
    assert all(e["label"] in e["scores"] for e in events)
    _report("console producer", events=[(e["utterance_id"], e["label"]) for e in events], model=events[0]["model"])


def test_a_session_timeout_the_brokers_refuse_stops_the_worker_with_a_clear_error(bootstrap: str, unique_name: str,
                                                                                   tmp_path: Path) -> None:
    # Below the brokers' group.min.session.timeout.ms (6 s by default) no join can succeed: the
    # worker used to log "JoinGroup failed" every 2 s for ever, consuming nothing.
    src, out, _ = make_topics(bootstrap, unique_name, partitions=1)
    log = tmp_path / "worker.log"
    worker = start_worker(bootstrap, src, out, unique_name, "w1", log, STUB_SPEC, "--session-timeout-ms", "3000")
    try:
        code = worker.wait(timeout=90)
    finally:
        stop(worker)
    text = log.read_text()
    assert code != 0, text
    assert "--session-timeout-ms 3000" in text and "group.min.session.timeout.ms" in text, text
