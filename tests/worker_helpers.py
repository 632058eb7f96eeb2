"""Helpers for the worker tests: a stand-in classifier, topic setup, producing and reading back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from emostream.events import Transcript, format_ts
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer
from emostream.kafka.producer import idempotent_producer, produce
from emostream.model.base import Prediction
from emostream.model.labels import CLASSES
from emostream.topics import create_topic, plan_dedupe, plan_topic

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

_KEYWORDS = {"happy": "joy", "great": "joy", "angry": "anger", "scared": "fear", "sad": "sadness", "wow": "surprise", "gross": "disgust"}


class KeywordClassifier:
    """A deterministic stand-in for the ONNX model: keyword → label. ``boom`` in a text raises."""

    name = "keyword-stub"

    def __init__(self, threads: int | None = None) -> None:
        self.calls = 0

    def classify(self, texts: list[str]) -> list[Prediction]:
        self.calls += 1
        out = []
        for text in texts:
            if "boom" in text:
                raise RuntimeError(f"model exploded on {text[:20]!r}")
            label = next((lab for kw, lab in _KEYWORDS.items() if kw in text.lower()), "neutral")
            out.append(Prediction(label, {c: (0.9 if c == label else 0.1 / 6) for c in CLASSES}))
        return out


def stub_classifier(threads: int | None = None) -> KeywordClassifier:
    """Factory for ``--model python:tests.worker_helpers:stub_classifier``."""
    return KeywordClassifier(threads)


def real_model_available() -> bool:
    """True once the shipped model has landed."""
    try:
        from emostream.model import resolve_model

        resolve_model(None)
        return True
    except Exception:  # noqa: BLE001
        return False


STUB_SPEC = "python:tests.worker_helpers:stub_classifier"


def model_spec() -> str | None:
    """The shipped model (None = the default spec), else the stand-in: when the model is missing,
    or when EMOSTREAM_TEST_STUB_MODEL=1 asks for quick runs that only exercise Kafka behaviour."""
    if os.environ.get("EMOSTREAM_TEST_STUB_MODEL") == "1" or not real_model_available():
        return STUB_SPEC
    return None


def make_topics(bootstrap: str, base: str, partitions: int = 6, replication: int = 3) -> tuple[str, str, str]:
    """Create ``base.src``, ``base.out`` and ``base.src.dlq``; returns their names."""
    admin = Admin(ClientConfig(bootstrap))
    live = admin.live_brokers()
    names = (f"{base}.src", f"{base}.out", f"{base}.src.dlq")
    for name in names:
        create_topic(admin, plan_topic(name, live, partitions, min(replication, live)))
    dedupe = plan_dedupe(names[0], partitions, live, min(replication, live))  # the worker's dedupe changelog
    create_topic(admin, dedupe)
    wait_until_every_broker_lists(bootstrap, [*names, dedupe.name])
    return names


def wait_until_every_broker_lists(bootstrap: str, names: list[str], timeout_s: float = 60.0) -> None:
    """Block until each broker's own metadata names every topic of ``names``.

    CreateTopics returns once the controller has the topic; the other brokers learn it a moment
    later, longer when the session cluster is busy with every xdist worker's tests. A worker
    started in that window asks one broker, is told a topic is missing, and exits 1. A fresh
    client with one broker as its bootstrap sends its first metadata request to that broker."""
    deadline = time.monotonic() + timeout_s
    for address in bootstrap.split(","):
        while True:
            missing = set(names) - Admin(ClientConfig(address), timeout_s=5).topic_names()
            if not missing:
                break
            assert time.monotonic() < deadline, f"{address} still lists no {sorted(missing)} after {timeout_s:.0f}s"
            time.sleep(0.2)


def produce_transcripts(
    bootstrap: str, topic: str, n: int, devices: int, prefix: str = "", seconds: float = 0.0
) -> dict[str, list[int]]:
    """Send ``n`` transcripts round-robin over ``devices`` (spread over ``seconds``); returns
    device → its utterance seq numbers."""
    p = idempotent_producer(ClientConfig(bootstrap))
    start = time.monotonic()
    sent: dict[str, list[int]] = {}
    words = ["happy", "angry", "scared", "sad", "wow", "gross", "fine"]
    for i in range(n):
        dev = f"{prefix}dev-{i % devices:03d}"
        seq = len(sent.setdefault(dev, []))
        sent[dev].append(seq)
        t = Transcript(
            device_id=dev,
            utterance_id=f"{dev}-u{seq:06d}",
            text=f"utterance {seq} I am so {words[i % len(words)]} about this",
            ended_at=format_ts(time.time()),
        )
        produce(p, topic, t.encode(), dev.encode())
        p.poll(0)
        if seconds and i % 100 == 99:
            ahead = start + seconds * (i + 1) / n - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    assert p.flush(60) == 0
    return sent


def produce_raw(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]], **extra: object) -> None:
    """Send raw key/value pairs in order (to one partition when keys match)."""
    p = idempotent_producer(ClientConfig(bootstrap), **extra)
    for key, value in records:
        p.produce(topic, value, key)
    assert p.flush(60) == 0


def read_all(bootstrap: str, topics: list[str], expect: int | None = None, idle_s: float = 8.0, max_s: float = 240.0) -> list:
    """Read every committed record of ``topics`` (read_committed) until ``expect`` are seen and the
    stream is idle for ``idle_s`` (or nothing new for ``idle_s`` when expect is None)."""
    c = committed_consumer(ClientConfig(bootstrap), f"reader-{os.urandom(4).hex()}")
    c.subscribe(topics)
    out = []
    deadline = time.monotonic() + max_s
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = c.consume(500, 0.5)
            for m in msgs:
                if m.error() is None:
                    out.append(m)
            if msgs:
                last_new = time.monotonic()
            enough = expect is None or len(out) >= expect
            if enough and time.monotonic() - last_new > idle_s:
                break
    finally:
        c.close()
    return out


def header_dict(msg) -> dict[str, str]:
    """A message's headers as str → str."""
    return {k: v.decode() for k, v in (msg.headers() or [])}


def start_worker(bootstrap: str, src: str, out: str, group: str, instance: str, log: Path, model: str | None, *extra: str) -> subprocess.Popen:
    """Run ``python -m emostream worker`` as a subprocess (its own process group)."""
    cmd = [PYTHON, "-m", "emostream", "worker", "--bootstrap", bootstrap, "--source-topic", src, "--target-topic", out,
           "--group", group, "--instance-id", instance, *extra]
    if model:
        cmd += ["--model", model]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
    """Signal a worker and wait for it (SIGKILL after ``timeout``)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def events_of(msgs: list) -> list[dict]:
    """Decode emotion event values."""
    return [json.loads(m.value()) for m in msgs]


def check_exactly_once(events: list[dict], sent: dict[str, list[int]]) -> tuple[int, int]:
    """(duplicates, losses) by utterance_id; asserts per-device order by source offset and seq."""
    expected = {f"{dev}-u{seq:06d}" for dev, seqs in sent.items() for seq in seqs}
    seen: dict[str, int] = {}
    for e in events:
        seen[e["utterance_id"]] = seen.get(e["utterance_id"], 0) + 1
    dups = sum(n - 1 for n in seen.values())
    losses = len(expected - set(seen))
    extra = set(seen) - expected
    assert not extra, f"events for unknown utterances: {sorted(extra)[:5]}"
    return dups, losses


def check_device_order(msgs: list) -> None:
    """Within each output partition, each device's events come in source-offset order."""
    last: dict[str, int] = {}
    for m in sorted(msgs, key=lambda m: (m.partition(), m.offset())):
        e = json.loads(m.value())
        seq = int(e["utterance_id"].rsplit("-u", 1)[1])
        dev = e["device_id"]
        assert seq > last.get(dev, -1), f"{dev}: utterance {seq} after {last[dev]}"
        last[dev] = seq


class Workers:
    """Worker subprocesses of one test; every one is killed at the end whatever happens."""

    def __init__(self, bootstrap: str, src: str, out: str, group: str, log: Path, model: str | None) -> None:
        self.args = (bootstrap, src, out, group)
        self.log, self.model = log, model
        self.procs: list[subprocess.Popen] = []

    def start(self, instance: str, *extra: str) -> subprocess.Popen:
        p = start_worker(*self.args, instance, self.log, self.model, *extra)
        self.procs.append(p)
        return p

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def events_from_one_worker(bootstrap: str, src: str, out: str, group: str, log: Path, model: str | None, *,
                           expect: int, idle_s: float, instance: str = "w1") -> list[dict]:
    """Start one worker, read ``expect`` events from ``out``, and check it stops cleanly (exit 0)."""
    workers = Workers(bootstrap, src, out, group, log, model)
    try:
        worker = workers.start(instance)
        events = events_of(read_all(bootstrap, [out], expect=expect, idle_s=idle_s))
        assert stop(worker) == 0
    finally:
        workers.cleanup()
    return events
