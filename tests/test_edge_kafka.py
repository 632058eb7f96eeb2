"""Edge against the shared real cluster: send round trip, listen filtering by device, simulator."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emostream.kafka.configuration import ClientConfig


def consume_all(client: ClientConfig, topic: str, expected: int, timeout_s: float = 60.0) -> list[tuple[bytes, bytes]]:
    """(key, value) of every committed record of ``topic``, waiting until ``expected`` arrived or the timeout."""
    return [(k, v) for k, v, _h in consume_with_headers(client, topic, expected, timeout_s)]


def consume_with_headers(client: ClientConfig, topic: str, expected: int, timeout_s: float = 60.0) -> list[tuple]:
    """(key, value, headers) of every committed record of ``topic``; see :func:`consume_all`."""
    from emostream.kafka.consumer import committed_consumer

    c = committed_consumer(client, f"check-{topic}-{time.monotonic_ns()}", from_beginning=True)
    out: list[tuple] = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        idle_since = None
        while time.monotonic() < deadline:
            msgs = c.consume(1000, 0.5)
            out += [(m.key(), m.value(), m.headers()) for m in msgs if m.error() is None]
            if len(out) >= expected:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 1.5:  # a little longer: catch duplicates beyond expected
                    break
    finally:
        c.close()
    return out


def make_topic(bootstrap: str, name: str, partitions: int = 3, configs: dict[str, str] | None = None) -> ClientConfig:
    from emostream.kafka.admin import Admin
    from emostream.topics import TopicPlan, create_topic, plan_topic

    client = ClientConfig(bootstrap)
    admin = Admin(client)
    plan = plan_topic(name, admin.live_brokers(), partitions=partitions)
    if configs:
        plan = TopicPlan(plan.name, plan.partitions, plan.replication, {**plan.configs, **configs})
    create_topic(admin, plan)
    return client


def emostream(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emostream", *args], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.mark.kafka
def test_send_text_round_trip_and_spool_status(bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    client = make_topic(bootstrap, unique_name)
    spool = str(tmp_path / "s.db")
    done = emostream("edge", "send", "--device", "pi-a", "--text", "I am so happy today", "--text", "where are my keys",
                     "--topic", unique_name, "--bootstrap", bootstrap, "--spool", spool, "--json")
    assert done.returncode == 0, done.stderr
    got = consume_all(client, unique_name, 2)
    values = [json.loads(v) for _k, v in got]
    assert [v["text"] for v in values] == ["I am so happy today", "where are my keys"]
    assert [v["utterance_id"] for v in values] == json.loads(done.stdout)["utterance_ids"]
    status = emostream("edge", "spool", "status", "--spool", spool, "--json")
    assert json.loads(status.stdout)[0]["count"] == 0


@pytest.mark.kafka
def test_unreachable_broker_spools_then_next_send_delivers_in_order(bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    client = make_topic(bootstrap, unique_name)
    spool = str(tmp_path / "s.db")
    first = emostream("edge", "send", "--device", "pi-b", "--text", "one", "--text", "two", "--topic", unique_name,
                      "--bootstrap", "127.0.0.1:9", "--spool", spool, "--wait", "1")
    assert first.returncode == 0, first.stderr
    assert "spooled" in first.stdout
    status = json.loads(emostream("edge", "spool", "status", "--spool", spool, "--json").stdout)[0]
    assert status["count"] == 2 and status["devices"][0]["device"] == "pi-b"
    second = emostream("edge", "send", "--device", "pi-b", "--text", "three", "--topic", unique_name,
                       "--bootstrap", bootstrap, "--spool", spool)
    assert second.returncode == 0, second.stderr
    got = consume_all(client, unique_name, 3)
    assert [json.loads(v)["text"] for _k, v in got] == ["one", "two", "three"]


@pytest.mark.kafka
def test_listen_prints_only_this_devices_events_and_hook_errors_are_not_fatal(bootstrap: str, unique_name: str) -> None:
    from emostream.events import EmotionEvent, SourceRef, new_utterance_id, utc_now_iso
    from emostream.kafka.producer import idempotent_producer

    client = make_topic(bootstrap, unique_name)
    p = idempotent_producer(client)
    for i, dev in enumerate(["pi-x", "pi-y", "pi-x", "pi-y", "pi-x"]):
        ev = EmotionEvent(dev, new_utterance_id(), f"text {i}", "joy", {"joy": 0.9, "neutral": 0.1}, "m@1",
                          SourceRef("stt.transcripts", 0, i), utc_now_iso(), 3.0)
        p.produce(unique_name, ev.encode(), dev.encode())
    assert p.flush(30) == 0
    done = emostream("edge", "listen", "--device", "pi-x", "--topic", unique_name, "--bootstrap", bootstrap,
                     "--from-beginning", "--max-events", "3", "--idle-timeout", "30")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["text"] for e in events] == ["text 0", "text 2", "text 4"]
    hooked = emostream("edge", "listen", "--device", "pi-y", "--topic", unique_name, "--bootstrap", bootstrap,
                       "--from-beginning", "--max-events", "2", "--idle-timeout", "30",
                       "--exec", "python3 -c 'import json,sys; e=json.load(sys.stdin); print(e[\"label\"]); sys.exit(3)'")
    assert hooked.returncode == 0, hooked.stderr
    assert hooked.stdout.split() == ["joy", "joy"]
    assert hooked.stderr.count("exited 3") == 2


@pytest.mark.kafka
def test_simulate_sends_what_it_says(bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    client = make_topic(bootstrap, unique_name, partitions=6)
    for extra in ([], ["--no-spool"]):
        done = emostream("edge", "simulate", "--devices", "20", "--rate", "0", "--count", "3000", "--topic", unique_name,
                         "--bootstrap", bootstrap, "--spool", str(tmp_path / "sim.db"), "--json", *extra)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        print(f"\nsimulate {extra or 'with spool'} (shared 3-broker cluster, RF 3): {summary}")
        assert summary["acked"] == 3000 and summary["spooled"] == 0
    got = consume_all(client, unique_name, 6000)
    assert len(got) == 6000
    assert len({k for k, _ in got}) == 20


@pytest.mark.kafka
def test_an_oversize_transcript_is_refused_before_the_spool_and_blocks_nothing(bootstrap: str, unique_name: str,
                                                                              tmp_path: Path) -> None:
    """Finding 9 (+13): a 1.25 MB line through 'edge send --stdin' is refused with a clear error, never spooled;
    the lines around it and a later send are delivered; --device '' is refused; the spool files are 0600."""
    client = make_topic(bootstrap, unique_name)
    spool = tmp_path / "s.db"
    common = ["--topic", unique_name, "--bootstrap", bootstrap, "--spool", str(spool)]
    big = "word " * 250_000  # 1.25 MB
    piped = emostream("edge", "send", "--stdin", "--device", "pi-o", *common,
                      input=f"before the big one\n{big}\nafter the big one\n")
    assert piped.returncode == 2, piped.stderr
    assert "input line 2 not sent: line is 1,250,000 bytes; a transcript is at most 8,192 bytes" in piped.stderr
    texted = emostream("edge", "send", "--device", "pi-o", "--text", "x" * 9000, *common)
    assert texted.returncode == 2 and "limit is 8,192" in texted.stderr
    nobody = emostream("edge", "send", "--device", "", "--text", "hello", *common)
    assert nobody.returncode == 2 and "device id must be" in nobody.stderr
    later = emostream("edge", "send", "--device", "pi-o", "--text", "a normal one", *common)
    assert later.returncode == 0, later.stderr
    got = [json.loads(v)["text"] for _k, v in consume_all(client, unique_name, 3)]
    assert got == ["before the big one", "after the big one", "a normal one"]
    status = json.loads(emostream("edge", "spool", "status", "--spool", str(spool), "--json").stdout)[0]
    assert status["count"] == 0 and status["rejected_total"] == 0
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir() if p.name.startswith("s.db")}
    assert set(modes.values()) == {"0o600"} and "s.db" in modes and "s.db.lock" in modes, modes


@pytest.mark.kafka
def test_a_row_the_broker_refuses_for_good_is_parked_and_order_is_kept(bootstrap: str, unique_name: str,
                                                                      tmp_path: Path) -> None:
    """Finding 10: the topic refuses one legal-but-large row (MSG_SIZE_TOO_LARGE): delivered 1, 3, 4 in that
    order, the refused row in 'rejected' and shown by 'spool status', the spool not blocked."""
    import base64
    import os

    client = make_topic(bootstrap, unique_name, partitions=1, configs={"max.message.bytes": "3000"})
    spool = str(tmp_path / "s.db")
    common = ["--device", "pi-r", "--topic", unique_name, "--bootstrap", bootstrap, "--spool", spool, "--json"]
    large = base64.b64encode(os.urandom(5000)).decode()  # 6.7 KB: under the edge's limit, over this topic's
    results = [emostream("edge", "send", "--text", text, *common) for text in ("one", large, "three", "four")]
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert "refused for good" in results[1].stderr and "rejected table" in results[1].stderr
    got = [json.loads(v)["text"] for _k, v in consume_all(client, unique_name, 3)]
    assert got == ["one", "three", "four"]
    status = json.loads(emostream("edge", "spool", "status", "--spool", spool, "--json").stdout)[0]
    assert status["count"] == 0 and status["rejected_total"] == 1
    [rejected] = status["rejected"]
    assert rejected["utterance_id"] == json.loads(results[1].stdout)["utterance_ids"][0]
    assert "too large" in rejected["error"].lower(), rejected
    text = emostream("edge", "spool", "status", "--spool", spool)
    assert "1 rejected" in text.stdout and f"rejected seq {rejected['seq']}" in text.stdout


@pytest.mark.kafka
def test_signed_records_carry_a_signature_the_worker_verifies(bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """Signing: a device profile with signing_key → every record sent (send, --stdin, flush) verifies against its key."""
    from emostream.signing import DeviceKeys, KeyRecord, generate_key

    client = make_topic(bootstrap, unique_name)
    private, public = generate_key()
    profile = tmp_path / "pi-sig.json"
    profile.write_text(json.dumps({"bootstrap": bootstrap, "signing_key": private}))
    profile.chmod(0o600)
    common = ["--device", "pi-sig", "--topic", unique_name, "--spool", str(tmp_path / "s.db"),
              "--security-profile", str(profile)]
    assert emostream("edge", "send", "--text", "signed one", *common).returncode == 0
    piped = emostream("edge", "send", "--stdin", *common, input="signed two\nsigned three\n")
    assert piped.returncode == 0, piped.stderr
    got = consume_with_headers(client, unique_name, 3)
    keys = DeviceKeys()
    keys.apply(KeyRecord("pi-sig", public))
    for key, value, headers in got:
        keys.verify("pi-sig", key, value, headers)  # raises InvalidEvent when unsigned or forged
    assert [json.loads(v)["text"] for _k, v, _h in got] == ["signed one", "signed two", "signed three"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"bootstrap": bootstrap, "signing_key": "not-a-key"}))
    bad.chmod(0o600)
    refused = emostream("edge", "send", "--device", "pi-sig", "--text", "x", "--topic", unique_name,
                        "--spool", str(tmp_path / "s2.db"), "--security-profile", str(bad))
    assert refused.returncode == 2 and "signing_key" in refused.stderr, refused.stderr


def test_corpus_is_varied_and_spoken_length() -> None:
    from emostream.edge.corpus import CLASSES, distinct_utterances, realistic_transcripts, utterances

    assert utterances(50, seed=7) == utterances(50, seed=7)
    for cls in CLASSES:
        texts = distinct_utterances(cls, limit=5000)
        assert len(texts) >= 200, cls
        assert all(3 <= len(t.split()) <= 25 for t in texts)
    ts = list(realistic_transcripts(["a", "b"], 4, seed=1))
    assert [t.device_id for t in ts] == ["a", "b", "a", "b"] and len({t.utterance_id for t in ts}) == 4
