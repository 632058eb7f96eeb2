"""The SQLite spool: order, batching, bounds and policies, corruption. No broker needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from emostream.edge.errors import SpoolCorruptError, SpoolFullError
from emostream.edge.spool import Spool


def _rows(n: int, device: str = "d1", start: int = 0):
    return [(device, "stt.transcripts", device.encode(), f"v{i}".encode(), f"u{i}") for i in range(start, start + n)]


def test_rows_come_back_in_spool_order_and_delete_in_batches(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        seqs = s.append(_rows(5)) + s.append(_rows(3, "d2"))
        assert seqs == sorted(seqs) and len(set(seqs)) == 8
        assert [r.value for r in s.pending()] == [b"v0", b"v1", b"v2", b"v3", b"v4", b"v0", b"v1", b"v2"]
        assert [r.seq for r in s.pending(after_seq=seqs[4])] == seqs[5:]
        assert s.delete(seqs[:4] + [999_999]) == 4
        st = s.status()
        assert st.count == 4 and {(d.device, d.count) for d in st.devices} == {("d1", 1), ("d2", 3)}
    with Spool(tmp_path / "s.db") as again:  # rows survive reopening
        assert [r.utterance_id for r in again.pending()] == ["u4", "u0", "u1", "u2"]


def test_full_spool_with_block_policy_waits_then_fails(tmp_path: Path) -> None:
    waits = []
    with Spool(tmp_path / "s.db", max_records=10, policy="block") as s:
        s.append(_rows(10))
        with pytest.raises(SpoolFullError, match="full .*--spool-policy drop-oldest"):
            s.append(_rows(1, start=10), block_s=0.2, on_full_wait=lambda: waits.append(1))
        assert waits, "block policy must give the sender a chance to free space"
        assert s.count() == 10


def test_block_policy_proceeds_once_space_is_freed(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_records=3, policy="block") as s:
        seqs = s.append(_rows(3))
        s.append(_rows(1, start=3), block_s=5, on_full_wait=lambda: s.delete(seqs[:1]))
        assert [r.utterance_id for r in s.pending()] == ["u1", "u2", "u3"]


def test_drop_oldest_policy_drops_and_counts(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_records=5, policy="drop-oldest") as s:
        s.append(_rows(4))
        s.append(_rows(3, start=4))
        assert s.dropped == 2
        assert [r.utterance_id for r in s.pending()] == ["u2", "u3", "u4", "u5", "u6"]
        assert s.status().dropped_total == 2


def test_corrupted_spool_is_reported_with_how_to_move_it_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path) as s:
        s.append(_rows(50))
    data = bytearray(path.read_bytes())
    data[100:4000] = b"\x5a" * 3900  # header and first pages garbage
    path.write_bytes(bytes(data))
    with pytest.raises(SpoolCorruptError) as info:
        Spool(path)
    assert "mv " in str(info.value) and str(path) in str(info.value)
    assert path.exists(), "a corrupted spool must never be deleted"


def test_not_a_database_at_all(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_text("this is not sqlite, it is a note somebody saved here\n" * 100)
    with pytest.raises(SpoolCorruptError, match="Move it aside"):
        Spool(path)
    assert path.read_text().startswith("this is not sqlite")


def test_spool_and_lock_files_are_private(tmp_path: Path) -> None:
    """Finding 13: the spool holds what was said; db, -wal, -shm and the lock are 0600, a new folder 0700."""
    from emostream.edge.sender import SpoolLock

    path = tmp_path / "new" / "s.db"
    with Spool(path) as s:
        s.append(_rows(3))
        lock = SpoolLock(path)
        assert lock.acquire()
        modes = {p.name: p.stat().st_mode & 0o777 for p in path.parent.iterdir()}
        lock.release()
    assert modes == {"s.db": 0o600, "s.db-wal": 0o600, "s.db-shm": 0o600, "s.db.lock": 0o600}
    assert path.parent.stat().st_mode & 0o777 == 0o700
    existing = tmp_path / "mine"
    existing.mkdir(mode=0o755)
    Spool(existing / "s.db").close()
    assert existing.stat().st_mode & 0o777 == 0o755, "an existing folder of the user's is never chmod-ed"


def test_append_refuses_a_row_that_could_not_be_delivered(tmp_path: Path) -> None:
    from emostream.edge.errors import SpoolRowError
    from emostream.edge.spool import MAX_VALUE_BYTES

    with Spool(tmp_path / "s.db") as s:
        for bad in [("", "t", b"k", b"v", "u"), ("d", "no spaces", b"k", b"v", "u"), ("d", "t", b"k", "str", "u"),
                    ("d", "t", b"k", b"v" * (MAX_VALUE_BYTES + 1), "u"), ("d", "t", b"k", b"v", "")]:
            with pytest.raises(SpoolRowError):
                s.append([*_rows(1), bad])
        assert s.count() == 0, "a batch with one bad row is refused whole, before anything is written"


def test_rejected_rows_leave_the_queue_are_kept_and_shown(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        seqs = s.append(_rows(3))
        assert s.reject([(seqs[1], "refused by the broker: Broker: Message size too large")]) == 1
        assert [r.utterance_id for r in s.pending()] == ["u0", "u2"]
        st = s.status()
        assert st.count == 2 and st.rejected_total == 1
        assert st.rejected[0].seq == seqs[1] and "too large" in st.rejected[0].error
        assert st.to_dict()["rejected"][0]["utterance_id"] == "u1"


def test_a_damaged_row_is_named_and_the_rows_before_it_still_read(tmp_path: Path) -> None:
    import sqlite3

    from emostream.edge.errors import SpoolRowError

    path = tmp_path / "s.db"
    with Spool(path) as s:
        seqs = s.append(_rows(3))
    db = sqlite3.connect(path)
    db.execute("UPDATE spool SET device = CAST(x'ff00' AS TEXT) WHERE seq = ?", (seqs[1],))  # invalid UTF-8
    db.commit()
    db.close()
    with Spool(path) as s:
        assert [r.seq for r in s.pending()] == seqs[:1]
        with pytest.raises(SpoolRowError, match=f"spool row {seqs[1]}: device is not UTF-8"):
            s.pending(after_seq=seqs[0])
        assert s.status().devices  # status still reads a spool with a damaged row


def test_line_splitter_bounds_lines_and_keeps_the_rest() -> None:
    from emostream.edge.input import LineSplitter, TooLong

    sp = LineSplitter(max_bytes=10)
    out = list(sp.feed(b"one\ntw")) + list(sp.feed(b"o\n" + b"x" * 25)) + list(sp.feed(b"x" * 5 + b"\nlast"))
    out += list(sp.feed(b""))
    assert out == [b"one", b"two", TooLong(30), b"last"]
    assert list(LineSplitter().feed(b"")) == []


def test_transcript_from_text_is_checked_before_spooling() -> None:
    from emostream.edge.errors import TranscriptError
    from emostream.edge.input import transcript_from_text
    from emostream.events import DEFAULT_MAX_TEXT_BYTES

    t = transcript_from_text("pi-1", "  hello  ", lang="de")
    assert (t.device_id, t.text, t.lang, t.stt_engine) == ("pi-1", "hello", "de", "text")
    for device, text, match in [("", "hi", "device id"), ("pi 1", "hi", "device id"), ("pi", "   ", "empty"),
                                ("pi", "é" * (DEFAULT_MAX_TEXT_BYTES // 2 + 1), "limit is 8,192")]:
        with pytest.raises(TranscriptError, match=match):
            transcript_from_text(device, text)


def test_permanent_refusals_are_told_apart_from_retriable_ones() -> None:
    from confluent_kafka import KafkaError

    from emostream.edge.sender import is_permanent

    assert is_permanent(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert is_permanent(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert not is_permanent(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    assert not is_permanent(KafkaError(KafkaError._TRANSPORT))
    assert not is_permanent(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, fatal=True))


def test_a_malformed_signing_key_is_a_clear_error_at_start_up() -> None:
    from emostream.edge.errors import SigningKeyError
    from emostream.edge.sender import signer_for
    from emostream.kafka.configuration import ClientConfig
    from emostream.signing import generate_key

    assert signer_for(ClientConfig("x:1")) is None
    assert signer_for(ClientConfig("x:1", signing_key=generate_key()[0])) is not None
    for bad in ["not base64!", "AAAA"]:
        with pytest.raises(SigningKeyError, match="signing_key is not a usable Ed25519 key"):
            signer_for(ClientConfig("x:1", signing_key=bad))


class _FakeProducer:
    """Stands in for librdkafka: every produced record resolves on the next poll, as ``outcomes`` says.

    ``outcomes[text]`` is a list of errors to hand out for that transcript, one per attempt (then success).
    """

    def __init__(self, outcomes: dict) -> None:
        self.outcomes = outcomes
        self.queue: list = []
        self.delivered: list[tuple[str, str]] = []  # (device, text) in the order the "broker" stored them
        self.headers: list = []
        self.hold = False  # True: records stay in flight (nothing resolves) until it is False again

    def produce(self, topic, value, key, headers=None, on_delivery=None) -> None:
        self.queue.append((value, on_delivery))
        self.headers.append(headers)

    def poll(self, _timeout: float = 0) -> int:
        import json

        if self.hold:
            return 0
        batch, self.queue = self.queue, []
        for value, cb in batch:
            t = json.loads(value)
            errs = self.outcomes.get(t["text"]) or []
            err = errs.pop(0) if errs else None
            if err is None:
                self.delivered.append((t["device_id"], t["text"]))
            cb(err, None)
        return len(batch)


def _fake_sender(tmp_path: Path, outcomes: dict, monkeypatch, **kw):
    from emostream.edge import sender as sender_mod
    from emostream.kafka.configuration import ClientConfig

    monkeypatch.setattr(sender_mod, "RETRY_AFTER_S", 0.0)
    fake = _FakeProducer(outcomes)
    spool = Spool(tmp_path / "s.db")
    return sender_mod.SpoolingSender(ClientConfig("x:1"), spool, producer_factory=lambda _c, **_s: fake, **kw), fake


def _send(sender, device: str, *texts: str) -> None:
    from emostream.edge.input import transcript_from_text

    sender.submit([transcript_from_text(device, t) for t in texts], "stt.transcripts")


def test_a_permanently_refused_row_is_parked_and_the_rest_keep_their_order(tmp_path: Path, monkeypatch) -> None:
    """Finding 10: sent 1,2,3 with 2 refused for good → 1,3 delivered, 2 rejected and shown, nothing blocked."""
    from confluent_kafka import KafkaError

    sender, fake = _fake_sender(tmp_path, {"two": [KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)]}, monkeypatch)
    try:
        _send(sender, "pi", "one", "two", "three")
        assert sender.drain(5) == 0
        _send(sender, "pi", "four")
        assert sender.drain(5) == 0
    finally:
        sender.close()
    assert [t for _d, t in fake.delivered] == ["one", "three", "four"]
    st = sender.spool.status()
    assert st.count == 0 and st.rejected_total == 1 and "too large" in st.rejected[0].error
    assert sender.stats.rejected == 1


def test_a_retriable_failure_rewinds_and_resends_in_order(tmp_path: Path, monkeypatch) -> None:
    """Finding 10: rows that fail for a while (every one in flight failed) are produced again from the first."""
    from confluent_kafka import KafkaError

    unknown = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
    sender, fake = _fake_sender(tmp_path, {t: [unknown, unknown] for t in ("two", "three", "four")},
                                monkeypatch)
    try:
        _send(sender, "pi", "one", "two", "three", "four")
        assert sender.drain(5) == 0
    finally:
        sender.close()
    assert [t for _d, t in fake.delivered] == ["one", "two", "three", "four"]
    assert sender.spool.status().rejected_total == 0


def test_a_failed_row_is_never_resent_behind_a_later_row_of_its_device(tmp_path: Path, monkeypatch) -> None:
    """Finding 10: 'two' failed but 'three' (same device) was acked: re-sending 'two' would reorder, so it is parked.
    Another device's row acked meanwhile does not stop the re-send."""
    from confluent_kafka import KafkaError

    unknown = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
    sender, fake = _fake_sender(tmp_path, {"two": [unknown], "b-one": [unknown]}, monkeypatch)
    try:
        fake.hold = True  # all five in flight together, as librdkafka pipelines them
        _send(sender, "pi-a", "one", "two")
        _send(sender, "pi-b", "b-one")
        _send(sender, "pi-a", "three")
        _send(sender, "pi-c", "c-one")
        fake.hold = False
        assert sender.drain(5) == 0
    finally:
        sender.close()
    by_device: dict[str, list[str]] = {}
    for d, t in fake.delivered:
        by_device.setdefault(d, []).append(t)
    assert by_device == {"pi-a": ["one", "three"], "pi-b": ["b-one"], "pi-c": ["c-one"]}
    st = sender.spool.status()
    assert st.rejected_total == 1 and "out of order" in st.rejected[0].error


def test_a_damaged_row_on_disk_is_parked_and_does_not_block(tmp_path: Path, monkeypatch) -> None:
    import sqlite3

    sender, fake = _fake_sender(tmp_path, {}, monkeypatch)
    try:
        db = sqlite3.connect(sender.spool.path)
        db.execute("INSERT INTO spool(device, topic, key, value, utterance_id, created) VALUES ('pi', 'bad topic!', x'00', x'00', 'u', 0)")
        db.commit()
        db.close()
        _send(sender, "pi", "after")
        assert sender.drain(5) == 0
    finally:
        sender.close()
    assert [t for _d, t in fake.delivered] == ["after"]
    st = sender.spool.status()
    assert st.rejected_total == 1 and "unreadable spool row" in st.rejected[0].error and "not a Kafka topic" in st.rejected[0].error


def test_every_record_carries_the_devices_signature(tmp_path: Path, monkeypatch) -> None:
    from emostream.edge.input import transcript_from_text
    from emostream.edge.sender import transcript_row
    from emostream.signing import DeviceKeys, DeviceSigner, KeyRecord, generate_key

    private, public = generate_key()
    sender, fake = _fake_sender(tmp_path, {}, monkeypatch, signer=DeviceSigner(private))
    t = transcript_from_text("pi-s", "signed words")
    try:
        sender.submit([t], "stt.transcripts")
        assert sender.drain(5) == 0
    finally:
        sender.close()
    keys = DeviceKeys()
    keys.apply(KeyRecord("pi-s", public))
    _dev, _topic, key, value, _uid = transcript_row(t, "stt.transcripts")
    keys.verify("pi-s", key, value, fake.headers[0])  # raises when the signature is missing or wrong
