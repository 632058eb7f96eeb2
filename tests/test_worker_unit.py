"""Worker logic without a broker: the process step, dedupe rollback, the checkpoint's invariants."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from emostream.errors import InvalidOffset, ModelError, TransactionAborted, TransactionFatal, UsageError, WorkerError
from emostream.events import Transcript
from emostream.kafka.types import KafkaError, KafkaException, TopicPartition
from emostream.kafka.configuration import ClientConfig
from emostream.worker.checkpoint import Checkpoint, rewind
from emostream.worker.batching import IDLE_POLL_S
from emostream.worker.runner import Worker, WorkerSettings
from emostream.worker.dedupe import RecentIds, utterance_digest
from emostream.model.base import Prediction
from emostream.worker.process import Output, Record, classify_with_fallback, drop_duplicates, process_batch
from tests.worker_helpers import KeywordClassifier


def _rec(offset: int, value: bytes | None, key: bytes | None = b"dev", partition: int = 0) -> Record:
    return Record("src", partition, offset, key, value, 1_700_000_000_000)


def _t(uid: str, text: str, dev: str = "dev") -> bytes:
    return Transcript(device_id=dev, utterance_id=uid, text=text, ended_at="2026-01-01T00:00:00.000Z").encode()


def test_process_classifies_valid_and_dead_letters_bad_in_one_model_call() -> None:
    model = KeywordClassifier()
    recs = [_rec(0, _t("a", "I am happy")), _rec(1, b"{oops"), _rec(2, None), _rec(3, b"plain angry words", b"pi")]
    res = process_batch(recs, model, target_topic="out", dlq_topic="src.dlq", clock=lambda: 1767225601.0)
    assert model.calls == 1
    assert [json.loads(e.value)["label"] for e in res.events] == ["joy", "anger"]
    first = json.loads(res.events[0].value)
    assert first["source"] == {"topic": "src", "partition": 0, "offset": 0}
    assert first["latency_ms"] == pytest.approx(1000.0)  # from ended_at
    assert res.events[0].key == b"dev" and res.events[1].key == b"pi"
    assert json.loads(res.events[1].value)["utterance_id"] == "@src-0-3"
    assert [(d.topic, d.key, d.value, d.error_type) for d in res.dead_letters] == [
        ("src.dlq", b"dev", b"{oops", "invalid_json"),
        ("src.dlq", b"dev", None, "null_value"),
    ]
    assert dict(res.dead_letters[0].headers)["source.offset"] == b"1"


def test_latency_falls_back_to_record_timestamp() -> None:
    res = process_batch([_rec(0, b"hello there")], KeywordClassifier(), target_topic="o", dlq_topic="d", clock=lambda: 1_700_000_002.5)
    assert json.loads(res.events[0].value)["latency_ms"] == pytest.approx(2500.0)


def test_model_error_on_one_record_dead_letters_only_that_one() -> None:
    recs = [_rec(0, _t("a", "happy")), _rec(1, _t("b", "boom goes it")), _rec(2, _t("c", "sad"))]
    res = process_batch(recs, KeywordClassifier(), target_topic="o", dlq_topic="d")
    assert [json.loads(e.value)["utterance_id"] for e in res.events] == ["a", "c"]
    assert [d.error_type for d in res.dead_letters] == ["model_error"]
    assert b"exploded" in dict(res.dead_letters[0].headers)["error.message"]


def test_a_model_that_fails_on_everything_stops_the_worker() -> None:
    recs = [_rec(0, _t("a", "boom")), _rec(1, _t("b", "boom too"))]
    with pytest.raises(ModelError):
        process_batch(recs, KeywordClassifier(), target_topic="o", dlq_topic="d")


class _Picky:
    """Fails any call that holds a text starting with "bad"; the label is the text (so order shows)."""

    name = "picky"

    def __init__(self, batches_internally: bool = False) -> None:
        self.calls: list[int] = []
        if batches_internally:
            self.batches_internally = True

    def classify(self, texts: list[str]) -> list[Prediction]:
        self.calls.append(len(texts))
        if any(t.startswith("bad") for t in texts):
            raise RuntimeError("bad text")
        return [Prediction(t) for t in texts]


@hyp_settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=300))
def test_a_failed_call_is_retried_until_only_the_failing_texts_fail(bad: list[bool]) -> None:
    texts = [f"{'bad' if b else 'ok'}-{i}" for i, b in enumerate(bad)]
    model = _Picky()
    if len(texts) > 1 and all(bad):
        with pytest.raises(ModelError):
            classify_with_fallback(model, texts)
        return
    out, _ = classify_with_fallback(model, texts, retry_batch=16)
    assert [isinstance(p, Exception) for p in out] == bad
    assert [p.label for p in out if not isinstance(p, Exception)] == [t for t, b in zip(texts, bad) if not b]
    # The failed call, calls of 16, each text alone only within a call of 16 that failed.
    failing_parts = sum(any(bad[i : i + 16]) for i in range(0, len(bad), 16)) if len(texts) > 16 else 1
    assert len(model.calls) <= 1 + math.ceil(len(texts) / 16) + 16 * failing_parts
    assert sum(model.calls) <= 3 * len(texts)


def test_one_bad_text_in_a_transaction_costs_its_call_of_64_one_by_one() -> None:
    texts = [f"ok-{i}" for i in range(1024)]
    texts[700] = "bad-700"
    model = _Picky()
    out, _ = classify_with_fallback(model, texts, retry_batch=64)
    assert isinstance(out[700], Exception) and sum(isinstance(p, Exception) for p in out) == 1
    assert len(model.calls) == 1 + 16 + 64 and sum(model.calls) == 2 * 1024 + 64  # one by one: 1,025 calls


def test_a_classifier_that_batches_internally_gets_the_whole_transaction_in_one_call() -> None:
    recs = [_rec(i, _t(f"u{i}", "x" * (i % 17 + 1))) for i in range(200)]
    whole, chunked = _Picky(batches_internally=True), _Picky()
    a = process_batch(recs, whole, target_topic="o", dlq_topic="d", model_batch=64, clock=lambda: 1_700_000_000.0)
    b = process_batch(recs, chunked, target_topic="o", dlq_topic="d", model_batch=64, clock=lambda: 1_700_000_000.0)
    assert whole.calls == [200] and chunked.calls == [64, 64, 64, 8]
    assert [e.value for e in a.events] == [e.value for e in b.events]  # same events, same order


def test_the_onnx_backend_batches_internally() -> None:
    from emostream.model.base import batches_internally
    from emostream.model.onnx_backend import OnnxClassifier

    assert batches_internally(OnnxClassifier) and not batches_internally(KeywordClassifier())


def test_duplicates_are_dropped_within_and_across_committed_batches() -> None:
    recent = RecentIds(capacity=100)
    recs = [_rec(0, _t("a", "x")), _rec(1, _t("a", "x")), _rec(2, _t("a", "x", dev="other"), key=b"other")]
    res = process_batch(recs, KeywordClassifier(), target_topic="o", dlq_topic="d", recent=recent)
    assert (len(res.events), res.duplicates) == (2, 1)
    recent.commit()
    res = process_batch([_rec(3, _t("a", "x"))], KeywordClassifier(), target_topic="o", dlq_topic="d", recent=recent)
    assert (len(res.events), res.duplicates) == (0, 1)


def _d(uid: str, dev: str = "d") -> bytes:
    return utterance_digest(dev, uid)


def test_dedupe_rolls_back_with_an_aborted_transaction() -> None:
    recent = RecentIds()
    assert recent.check_and_stage(("t", 0), _d("u1"))
    recent.rollback()
    assert recent.check_and_stage(("t", 0), _d("u1"))  # the retry of the aborted batch is not a duplicate
    recent.commit()
    assert not recent.check_and_stage(("t", 0), _d("u1"))
    assert recent.check_and_stage(("t", 1), _d("u1"))  # per partition


def test_dedupe_is_bounded() -> None:
    recent = RecentIds(capacity=3)
    for i in range(5):
        recent.check_and_stage(("t", 0), _d(f"u{i}"))
    recent.commit()
    assert len(recent) == 3
    assert recent.check_and_stage(("t", 0), _d("u0"))  # evicted, so no longer known
    assert not recent.check_and_stage(("t", 0), _d("u4"))


def test_dedupe_holds_fixed_size_digests_whatever_the_id_length() -> None:
    # Finding 4: 30 KB ids cost 16 bytes each in memory (ids are bounded by the decoder too).
    assert len(_d("x" * 30_000)) == 16 and _d("a", "pi-1") != _d("a", "pi-2") and _d("a") == _d("a")
    recent = RecentIds()
    recent.restore(("t", 0), [_d("old")])
    assert not recent.check_and_stage(("t", 0), _d("old"))  # restored from the changelog = seen


def test_offset_derived_ids_cannot_be_claimed_or_deduped() -> None:
    # Finding 6: a JSON id that looks like another record's derived id is refused, and derived ids
    # are never deduped, so no device can suppress plain-text records by claiming their ids first.
    recent = RecentIds()
    claim = json.dumps({"v": 1, "text": "claim", "utterance_id": "@src-0-1"}).encode()
    res = process_batch([_rec(0, claim, b"pi-1"), _rec(1, b"real words", b"pi-2"), _rec(1, b"real words", b"pi-2")],
                        KeywordClassifier(), target_topic="o", dlq_topic="d", recent=recent)
    assert [d.error_type for d in res.dead_letters] == ["invalid_utterance_id"]
    assert res.duplicates == 0 and len(res.events) == 2


def test_key_other_than_device_id_is_dead_lettered() -> None:
    # Finding 5 (plaintext part): the JSON device_id never wins over the record key.
    res = process_batch([_rec(0, _t("a", "I am happy", dev="pi-2"), b"pi-1")], KeywordClassifier(), target_topic="o", dlq_topic="d")
    assert [d.error_type for d in res.dead_letters] == ["device_mismatch"] and not res.events


class FakeProducer:
    def __init__(self, fail_commit: KafkaError | None = None) -> None:
        self.calls: list[str] = []
        self.produced: list[tuple] = []
        self.sent_offsets: list = []
        self.fail_commit = fail_commit

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic, value, key, headers=None, partition=None, on_delivery=None) -> None:
        self.produced.append((topic, key, value))

    def send_offsets_to_transaction(self, offsets, meta, timeout) -> None:
        self.calls.append("send_offsets")
        self.sent_offsets = [(tp.topic, tp.partition, tp.offset) for tp in offsets]

    def commit_transaction(self, timeout) -> None:
        self.calls.append("commit")
        if self.fail_commit is not None:
            raise KafkaException(self.fail_commit)

    def abort_transaction(self, timeout) -> None:
        self.calls.append("abort")


class FakeConsumer:
    def __init__(self, positions: dict[tuple[str, int], int], committed: dict[tuple[str, int], int] | None = None) -> None:
        self.positions = positions
        self.committed_offsets = committed or {}
        self.seeks: list[tuple[str, int, int]] = []

    def position(self, tps):
        return [TopicPartition(tp.topic, tp.partition, self.positions[(tp.topic, tp.partition)]) for tp in tps]

    def consumer_group_metadata(self):
        return object()

    def assignment(self):
        return [TopicPartition(t, p) for (t, p) in self.positions]

    def committed(self, tps, timeout=None):
        return [TopicPartition(tp.topic, tp.partition, self.committed_offsets.get((tp.topic, tp.partition), -1001)) for tp in tps]

    def seek(self, tp) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def test_checkpoint_commits_outputs_and_positions_in_order() -> None:
    prod, cons, recent, committed = FakeProducer(), FakeConsumer({("s", 0): 11, ("s", 1): 5}), RecentIds(), {}
    recent.check_and_stage(("s", 0), _d("u"))
    cp = Checkpoint(prod, cons, recent, committed)
    cp.begin()
    cp.produce(Output("out", b"d", b"v"))
    for off in (8, 9, 10):
        cp.store_offset("s", 0, off)
    cp.store_offset("s", 1, 4)
    cp.commit()
    assert prod.calls == ["begin", "send_offsets", "commit"]
    assert sorted(prod.sent_offsets) == [("s", 0, 11), ("s", 1, 5)]
    assert committed == {("s", 0): 11, ("s", 1): 5}
    assert not recent.check_and_stage(("s", 0), _d("u"))  # seen only after the commit


def test_offsets_only_move_forward() -> None:
    cp = Checkpoint(FakeProducer(), FakeConsumer({("s", 0): 10}), RecentIds(), {("s", 0): 7})
    cp.begin()
    cp.store_offset("s", 0, 7)
    with pytest.raises(InvalidOffset):
        cp.store_offset("s", 0, 7)
    cp2 = Checkpoint(FakeProducer(), FakeConsumer({("s", 0): 10}), RecentIds(), {("s", 0): 7})
    with pytest.raises(InvalidOffset):
        cp2.store_offset("s", 0, 6)  # before what was already committed


def test_position_behind_processed_records_fails_loudly() -> None:
    cp = Checkpoint(FakeProducer(), FakeConsumer({("s", 0): 3}), RecentIds(), {})
    cp.begin()
    cp.store_offset("s", 0, 5)
    with pytest.raises(InvalidOffset):
        cp.commit()


def test_abortable_commit_error_aborts_rewinds_and_rolls_back_dedupe() -> None:
    err = KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)
    prod, recent = FakeProducer(fail_commit=err), RecentIds()
    cons = FakeConsumer({("s", 0): 11, ("s", 1): 3}, committed={("s", 0): 8})
    cp = Checkpoint(prod, cons, recent, {})
    cp.begin()
    recent.check_and_stage(("s", 0), _d("u"))
    cp.store_offset("s", 0, 10)
    with pytest.raises(TransactionAborted):
        cp.commit()
    assert prod.calls[-1] == "abort" and cons.seeks == []  # the caller rewinds, in the consumer's thread
    rewind(cons)
    assert cons.seeks == [("s", 0, 8), ("s", 1, -2)]  # committed offset, else the beginning
    assert recent.check_and_stage(("s", 0), _d("u"))


def test_fatal_commit_error_is_fatal() -> None:
    err = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
    cp = Checkpoint(FakeProducer(fail_commit=err), FakeConsumer({("s", 0): 1}), RecentIds(), {})
    cp.begin()
    cp.store_offset("s", 0, 0)
    with pytest.raises(TransactionFatal):
        cp.commit()


def test_huge_dead_letter_is_truncated_so_it_can_always_be_written() -> None:
    from emostream.worker.process import DLQ_VALUE_LIMIT

    big = b"x" * 1_048_000
    res = process_batch([_rec(0, big)], KeywordClassifier(), target_topic="o", dlq_topic="d")
    (dl,) = res.dead_letters
    assert dl.error_type == "value_too_large" and len(dl.value) == DLQ_VALUE_LIMIT
    assert dict(dl.headers)["error.value_truncated_from"] == b"1048000"
    huge_key = b"k" * 2_000_000  # finding 2: a 2 MB key must not make the dead letter unwritable
    (dl,) = process_batch([_rec(2, b"hello", huge_key)], KeywordClassifier(), target_topic="o", dlq_topic="d").dead_letters
    assert dl.error_type == "key_too_large" and len(dl.key) == 256
    assert dict(dl.headers)["error.key_truncated_from"] == b"2000000"
    small = b"\xff" * 1000
    (dl,) = process_batch([_rec(1, small)], KeywordClassifier(), target_topic="o", dlq_topic="d").dead_letters
    assert dl.value == small and "error.value_truncated_from" not in dict(dl.headers)


def test_json_log_lines_carry_extra_fields() -> None:
    import logging

    from emostream.worker.logs import JsonFormatter

    rec = logging.makeLogRecord({"name": "emostream.worker", "levelname": "INFO", "msg": "assigned %s", "args": ("t[0]",), "partition": 0})
    line = json.loads(JsonFormatter().format(rec))
    assert (line["level"], line["msg"], line["partition"]) == ("info", "assigned t[0]", 0)
    assert line["ts"].endswith("Z")


def test_latency_budget_caps_a_transaction_by_measured_cost() -> None:
    from emostream.worker.runner import latency_cap

    assert latency_cap(None, 0.002, 64) is None  # no budget: only --txn-max-records
    assert latency_cap(100, 0.0, 64) is None  # nothing measured yet
    assert latency_cap(100, 0.0005, 64) == 200  # 100 ms at 0.5 ms a record
    assert latency_cap(100, 0.01, 64) == 64  # never below one model batch


def test_dedupe_layers_commit_in_order_and_an_abort_drops_them_all() -> None:
    # Pipelining: batch n's ids are sealed while it commits; batch n+1 stages on top of them.
    recent = RecentIds()
    assert recent.check_and_stage(("t", 0), _d("n"))
    recent.seal()
    assert not recent.check_and_stage(("t", 0), _d("n"))  # still committing counts as seen
    assert recent.check_and_stage(("t", 0), _d("n+1"))
    recent.commit_sealed()  # batch n committed; n+1 is still only staged
    assert len(recent) == 1 and not recent.check_and_stage(("t", 0), _d("n"))
    recent.seal()
    recent.rollback()  # batch n+1 aborted
    assert len(recent) == 1 and recent.check_and_stage(("t", 0), _d("n+1"))
    recent.seal()
    assert recent.check_and_stage(("t", 0), _d("n+2"))
    recent.rollback()  # an abort of the committing batch throws away the one read after it too
    assert recent.check_and_stage(("t", 0), _d("n+1")) and recent.check_and_stage(("t", 0), _d("n+2"))


class GatedProducer(FakeProducer):
    """commit_transaction waits for ``gate``, so a test can act while a commit is in flight."""

    def __init__(self, fail_commit=None) -> None:
        super().__init__(fail_commit)
        self.gate = threading.Event()
        self.committing = threading.Event()

    def commit_transaction(self, timeout) -> None:
        self.committing.set()
        assert self.gate.wait(10), "test never opened the gate"
        super().commit_transaction(timeout)


def _pipelined_worker(prod: FakeProducer, positions: dict) -> Worker:
    w = Worker(ClientConfig("localhost:1"), KeywordClassifier(), WorkerSettings(source_topic="src", durable_dedupe=False))
    w._producer, w._consumer = prod, FakeConsumer(positions)
    return w


def test_pipelined_worker_classifies_the_next_batch_while_the_last_commits_and_produces_it_after() -> None:
    prod = GatedProducer()
    w = _pipelined_worker(prod, {("src", 0): 2})
    w._process([_rec(0, _t("a", "I am happy")), _rec(1, _t("b", "sad"))])
    assert prod.committing.wait(5) and w._in_txn  # batch 1 commits in the background
    assert w.classifier.calls == 1
    w._consumer.positions[("src", 0)] = 3
    done = threading.Thread(target=w._process, args=([_rec(2, _t("c", "angry"))],))
    done.start()
    done.join(0.5)
    assert done.is_alive() and w.classifier.calls == 2  # batch 2 classified, waiting for batch 1's commit
    assert sum(p[0] == "emotion.events" for p in prod.produced) == 2  # batch 2 is not produced yet
    prod.gate.set()
    done.join(5)
    w._settle()
    assert prod.calls == ["begin", "send_offsets", "commit", "begin", "send_offsets", "commit"]
    assert [json.loads(v)["utterance_id"] for t, _, v in prod.produced if t == "emotion.events"] == ["a", "b", "c"]
    assert w._committed == {("src", 0): 3} and w.batches == 2 and not w._in_txn


def test_pipelined_abort_throws_away_the_batch_read_after_it_and_rewinds() -> None:
    err = KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)
    prod = GatedProducer(fail_commit=err)
    w = _pipelined_worker(prod, {("src", 0): 1})
    w._process([_rec(0, _t("a", "I am happy"))])
    assert prod.committing.wait(5)
    prod.gate.set()
    w._consumer.positions[("src", 0)] = 2
    w._process([_rec(1, _t("b", "sad"))])  # classified, then batch 1's abort settles: batch 2 is dropped
    assert prod.calls == ["begin", "send_offsets", "commit", "abort"]
    assert [json.loads(v)["utterance_id"] for t, _, v in prod.produced if t == "emotion.events"] == ["a"]
    assert w._rewind_needed and w.aborts == 1 and w._committed == {} and not w._in_txn
    # Both utterance ids are forgotten, so the re-read batches are not taken for duplicates.
    assert w._recent.check_and_stage(("src", 0), _d("a", "dev")) and w._recent.check_and_stage(("src", 0), _d("b", "dev"))


def test_a_revoke_waits_for_the_committing_transaction() -> None:
    prod = GatedProducer()
    w = _pipelined_worker(prod, {("src", 0): 1})
    w._process([_rec(0, _t("a", "I am happy"))])
    assert prod.committing.wait(5)
    threading.Timer(0.3, prod.gate.set).start()
    w._on_revoke(w._consumer, [TopicPartition("src", 0)])  # would assert on an open transaction
    assert prod.calls[-1] == "commit" and w.batches == 1 and not w._in_txn


class _Msg:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self):
        return None

    def topic(self):
        return "src"

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def key(self):
        return b"dev"

    def value(self):
        return b"{}"

    def timestamp(self):
        return (0, 0)

    def headers(self):
        return None


class QueueConsumer(FakeConsumer):
    """consume() as librdkafka does it: returns what is queued (up to num_messages), and only
    blocks (here: records the timeout) when less than asked is there."""

    def __init__(self, queued: int) -> None:
        super().__init__({("src", 0): 0})
        self.queue = [_Msg(i) for i in range(queued)]
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages, timeout):
        self.calls.append((num_messages, timeout))
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return out


@pytest.mark.parametrize("queued", [1, 5])
def test_no_batch_wait_takes_what_was_fetched_and_goes_without_waiting(queued: int) -> None:
    """--batch-wait-ms 0 (what --adaptive-batches did): a batch is what one poll finds."""
    w = Worker(ClientConfig("localhost:1"), KeywordClassifier(),
               WorkerSettings(source_topic="src", durable_dedupe=False, batch_wait_ms=0))
    w._last_closed = time.monotonic()  # a batch just closed: even then, nothing waits
    w._consumer = QueueConsumer(queued)
    batch = w._collect()
    assert [r.offset for r in batch] == list(range(queued))
    # the first record is waited for; the rest of the batch is drained without blocking
    assert w._consumer.calls[0][0] == 1 and all(t == 0.0 for _, t in w._consumer.calls[1:])


def test_fixed_batch_wait_and_the_serial_loop_still_wait_for_the_batch_to_fill() -> None:
    for settings in (WorkerSettings(source_topic="src", durable_dedupe=False, paced_batches=False),
                     WorkerSettings(source_topic="src", durable_dedupe=False, pipeline=False, paced_batches=False)):
        w = Worker(ClientConfig("localhost:1"), KeywordClassifier(), settings)
        w._consumer = QueueConsumer(3)
        assert len(w._collect()) == 3
        assert any(0 < t <= settings.batch_wait_ms / 1000.0 for _, t in w._consumer.calls[1:])


def test_model_calls_are_length_sorted_but_events_keep_source_order_and_their_own_labels() -> None:
    texts = ["a long and very happy sentence about the weather today", "sad", "so angry", "fine, happy", "x"]
    model = KeywordClassifier()
    res = process_batch([_rec(i, _t(str(i), text)) for i, text in enumerate(texts)], model, target_topic="o", dlq_topic="d",
                        model_batch=2)
    assert model.calls == 3
    events = [json.loads(e.value) for e in res.events]
    assert [e["utterance_id"] for e in events] == ["0", "1", "2", "3", "4"]
    assert [e["label"] for e in events] == ["joy", "sadness", "anger", "joy", "neutral"]


class _InitRefusals:
    """A transactional producer whose init_transactions raises the given errors, then succeeds."""

    def __init__(self, errors: list[KafkaError]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def init_transactions(self, timeout: float) -> None:
        self.calls += 1
        if self.errors:
            raise KafkaException(self.errors.pop(0))


def _worker_with(producers: list[_InitRefusals]) -> Worker:
    w = Worker(ClientConfig("localhost:1"), KeywordClassifier(), WorkerSettings(source_topic="src", durable_dedupe=False))
    w._new_producer = lambda: producers.pop(0)  # type: ignore[method-assign]
    w._producer = w._new_producer()
    return w


def test_a_coordinator_still_loading_is_waited_for_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in CI: a worker started right after its cluster exited 1 with 'Failed to initialize
    Producer ID: Broker: Coordinator load in progress'. Retriable refusals are tried again; a
    fatal one gets a new client; anything else still stops the worker at once."""
    monkeypatch.setattr("emostream.worker.runner.INIT_RETRY_PAUSE_S", 0.0)
    loading = KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, "Coordinator load in progress", retriable=True)
    first = _InitRefusals([loading, loading])
    w = _worker_with([first])
    w._init_transactions()
    assert first.calls == 3
    spent = _InitRefusals([KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE, "not available", fatal=True)])
    fresh = _InitRefusals([])
    w = _worker_with([spent, fresh])
    w._init_transactions()
    assert (spent.calls, fresh.calls) == (1, 1) and w._producer is fresh
    denied = _InitRefusals([KafkaError(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "denied")])
    with pytest.raises(WorkerError, match="cannot initialise transactions at localhost:1: denied"):
        _worker_with([denied])._init_transactions()
    assert denied.calls == 1
    lasting = _InitRefusals([loading] * 1000)
    with pytest.raises(WorkerError, match="Coordinator load in progress"):
        _worker_with([lasting])._init_transactions(retry_for_s=0.0)
    assert lasting.calls == 1


def test_paced_batches_take_what_is_fetched_and_wait_only_for_the_next_slot() -> None:
    """The first batch goes as soon as what was fetched is in (nothing closed a wait ago); the
    next, opened right after, waits for its slot (batch_wait_ms after the last one closed)."""
    w = Worker(ClientConfig("localhost:1"), KeywordClassifier(), WorkerSettings(source_topic="src", durable_dedupe=False))
    w._consumer = QueueConsumer(3)
    assert [r.offset for r in w._collect()] == [0, 1, 2]
    assert w._consumer.calls == [(1, IDLE_POLL_S), (w.policy.max_records - 1, 0)]  # one waited for, the rest without waiting
    w._consumer.queue = [_Msg(3)]
    w._consumer.calls.clear()
    assert [r.offset for r in w._collect()] == [3]
    slot = w.settings.batch_wait_ms / 1000.0
    assert any(0 < t <= slot for _, t in w._consumer.calls[1:]), w._consumer.calls


@pytest.mark.parametrize("ms", [0, -1, 300_001, 99_999_999])
def test_a_session_timeout_the_consumer_would_refuse_is_refused_up_front(ms: int) -> None:
    """librdkafka refuses session.timeout.ms above max.poll.interval.ms (5 min) only when the
    consumer is created, after the model has loaded: the settings say so at once."""
    with pytest.raises(UsageError, match="--session-timeout-ms must be 1..300000"):
        WorkerSettings(session_timeout_ms=ms)


# Each numeric flag of ``emostream worker``, the values it may take, and whether ``value`` is one.
_WORKER_FLAGS = {
    "--batch-max": lambda v: v >= 1,
    "--txn-max-records": lambda v: v >= 1,
    "--max-text-bytes": lambda v: v >= 1,
    "--session-timeout-ms": lambda v: 1 <= v <= 300_000,
    "--batch-wait-ms": lambda v: 0 <= v < math.inf,
    "--max-latency-ms": lambda v: 0 < v < math.inf,
    "--dedupe-window-h": lambda v: 0 < v * 3600.0 < math.inf,
    "--stall-after-s": lambda v: 0 < v < math.inf,
}
_INT_FLAGS = {"--batch-max", "--txn-max-records", "--max-text-bytes", "--session-timeout-ms"}


_PARSER: list = []  # the CLI's parser, built once (argparse takes ~20 ms to build it)


@hyp_settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(_WORKER_FLAGS)), st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True))
def test_every_worker_flag_value_is_a_usage_error_naming_it_or_a_setting_in_range(flag: str, value) -> None:
    """What the command line hands the worker is checked once, by WorkerSettings: a value out of
    range (NaN and infinities too) is refused naming its flag, anything else is in range."""
    from emostream.cli import build_parser
    from emostream.cli.worker import settings_from_args

    if flag in _INT_FLAGS:
        value = int(value) if isinstance(value, int) or math.isfinite(value) else 0
    text = repr(value) if isinstance(value, float) else str(value)  # 'nan', 'inf', '1e+300' parse as floats
    if not _PARSER:
        _PARSER.append(build_parser())
    args = _PARSER[0].parse_args(["worker", f"{flag}={text}"])
    try:
        made = settings_from_args(args, secure=False)
    except UsageError as exc:
        assert flag in str(exc), str(exc)
        assert not _WORKER_FLAGS[flag](getattr(args, flag[2:].replace("-", "_")))
    else:
        assert _WORKER_FLAGS[flag](getattr(args, flag[2:].replace("-", "_")))
        assert made.identity == "key"  # --identity auto on a cluster without logins


def test_static_membership_without_an_instance_id_is_refused_naming_both_flags() -> None:
    from emostream.cli import build_parser
    from emostream.cli.worker import settings_from_args

    with pytest.raises(UsageError, match="--static-membership needs --instance-id"):
        settings_from_args(build_parser().parse_args(["worker", "--static-membership"]), secure=True)
    made = settings_from_args(build_parser().parse_args(["worker", "--static-membership", "--instance-id", "w1"]), secure=True)
    assert made.static_membership and made.identity == "signed"


# --- prefetch: under load the model classifies batch n while batch n+1 is polled ---------------------


class _TMsg(_Msg):
    def value(self):
        return _t(f"u{self._offset}", "I am happy")


class _SameIdMsg(_Msg):
    def value(self):
        return _t("u1", "I am happy")


class StreamConsumer(FakeConsumer):
    """A backlog of ``queued`` transcripts on src[0]: consume() hands them out in order and moves
    the position, as librdkafka does. ``revoke_at``: on that consume() call, ``on_revoke`` runs
    first (a rebalance callback) and the partition's remaining records are gone."""

    def __init__(self, queued: int) -> None:
        super().__init__({("src", 0): 0})
        self.queue = [_TMsg(i) for i in range(queued)]
        self.delivered = 0
        self.consumes = 0
        self.revoke_at: int | None = None
        self.on_revoke = None

    def consume(self, num_messages, timeout):
        self.consumes += 1
        if self.consumes == self.revoke_at:
            self.on_revoke(self, [TopicPartition("src", 0)])
            self.queue = []
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        self.delivered += len(out)
        self.positions[("src", 0)] = self.delivered
        if not out and timeout:
            time.sleep(min(timeout, 0.01))
        return out

    def get_watermark_offsets(self, tp, cached=False):
        return 0, self.delivered + len(self.queue)


class WaitingClassifier(KeywordClassifier):
    """Classifies once ``ready()`` is true (or after 5 s), so a test sees what the loop does
    meanwhile; notes in ``order`` when each call starts (by its first utterance id)."""

    def __init__(self, ready, order: list[str]) -> None:
        super().__init__()
        self.ready, self.order = ready, order
        self.threads: list[str] = []
        self.timed_out = 0  # calls that gave up waiting for ready()

    def classify(self, texts):
        self.threads.append(threading.current_thread().name)
        self.order.append(f"model {len(texts)}")
        deadline = time.monotonic() + 5
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        self.timed_out += not self.ready()
        return super().classify(texts)


class OrderedProducer(FakeProducer):
    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.order = order
        self.offsets_sent: list = []
        self.await_model = False

    def begin_transaction(self) -> None:
        # The first transaction begins only once the model is busy with the next batch (or 2 s
        # passed): the loop must not wait for this producer before it hands the model more work.
        if self.await_model and "begin" not in self.order:
            deadline = time.monotonic() + 2
            while self.order.count("model 4") < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
        self.order.append("begin")
        super().begin_transaction()

    def send_offsets_to_transaction(self, offsets, meta, timeout) -> None:
        super().send_offsets_to_transaction(offsets, meta, timeout)
        self.offsets_sent.append(self.sent_offsets)


def _prefetching_worker(queued: int, ready, batch_wait_ms: float = 60_000) -> tuple[Worker, OrderedProducer, StreamConsumer]:
    # The batch wait is long by default: a batch that is not full never closes by time during a
    # test, so what goes to the model thread does not depend on how fast the test runs.
    settings = WorkerSettings(source_topic="src", durable_dedupe=False, batch_max=4, txn_max_records=4,
                              batch_wait_ms=batch_wait_ms)
    order: list[str] = []
    w = Worker(ClientConfig("localhost:1"), WaitingClassifier(ready, order), settings)
    prod, cons = OrderedProducer(order), StreamConsumer(queued)
    w._producer, w._consumer = prod, cons
    return w, prod, cons


def _events(prod: FakeProducer) -> list[str]:
    return [json.loads(v)["utterance_id"] for t, _, v in prod.produced if t == "emotion.events"]


def test_under_load_the_model_runs_while_the_loop_polls_and_produces_and_each_batch_commits_its_own_offsets() -> None:
    holder: dict = {}
    w, prod, cons = _prefetching_worker(10, lambda: holder["cons"].delivered >= 8)
    holder["cons"] = cons
    prod.await_model = True
    first = w._collect()
    assert [r.offset for r in first] == [0, 1, 2, 3] and w._filled
    w._process(first)
    w._settle()
    # Both full batches were classified in the model thread: the second while the first was being
    # produced (its model call starts before the first transaction begins).
    assert w.classifier.threads == ["emostream-model_0"] * 2
    assert w.classifier.order == ["model 4", "model 4", "begin", "begin"]
    # Each transaction committed the position when its batch closed, not the one after later polls.
    assert prod.offsets_sent == [[("src", 0, 4)], [("src", 0, 8)]] and w._committed == {("src", 0): 8}
    assert _events(prod) == [f"u{i}" for i in range(8)] and w.batches == 2
    # The last two records do not make a full batch (nor one the policy closes yet, with this
    # test's long wait): the next _collect takes them, in order, once their wait is over.
    w.policy = dataclasses.replace(w.policy, max_wait_s=0.0)
    assert w._classifying is None and [r.offset for r in w._collect()] == [8, 9]


def test_duplicates_classified_in_the_model_thread_are_dropped_when_produced() -> None:
    w, prod, cons = _prefetching_worker(8, lambda: True)
    cons.queue[5] = _SameIdMsg(5)  # u1 again, in the second batch
    w._recent.check_and_stage(("src", 0), _d("u2", "dev"))
    w._recent.commit()  # u2 was seen before
    while batch := w._collect():
        w._process(batch)
    w._settle()
    assert _events(prod) == ["u0", "u1", "u3", "u4", "u6", "u7"]
    assert w.classifier.threads and all(t.startswith("emostream-model") for t in w.classifier.threads)


def test_a_revoke_while_prefetching_commits_the_classified_batch_first_and_drops_the_prefetched() -> None:
    seen: dict = {}
    w, prod, cons = _prefetching_worker(10, lambda: "revoking" in seen)

    def on_revoke(consumer, partitions) -> None:
        seen["revoking"] = list(w._pending)
        w._on_revoke(consumer, partitions)
        seen["calls"], seen["events"], seen["pending"] = list(prod.calls), _events(prod), list(w._pending)

    cons.on_revoke = on_revoke
    first = w._collect()
    cons.revoke_at = cons.consumes + 2  # the second poll of the prefetch, after record 4 came
    w._process(first)
    assert [r.offset for r in seen["revoking"]] == [4]
    # Inside the callback, the batch being classified was produced and committed in its own
    # transaction before the partition went (it leaves between transactions), and the record
    # polled for the next batch was dropped: its new owner reads it from the committed offset 4.
    assert seen["calls"] == ["begin", "send_offsets", "commit"] and seen["events"] == ["u0", "u1", "u2", "u3"]
    assert seen["pending"] == [] and prod.sent_offsets == [("src", 0, 4)]
    assert w.batches == 1 and not w._in_txn and w._classifying is None and prod.calls.count("commit") == 1


def test_partitions_lost_while_prefetching_drop_the_classified_batch_instead_of_committing_it() -> None:
    """on_lost (the group let this member go): the batch in the model thread is not produced, as
    the member's group metadata would no longer fence its offsets; the new owner reads it again."""
    seen: dict = {}
    w, prod, cons = _prefetching_worker(10, lambda: "lost" in seen)

    def on_lost(consumer, partitions) -> None:
        seen["lost"] = True
        w._on_lost(consumer, partitions)

    cons.on_revoke = on_lost
    first = w._collect()
    cons.revoke_at = cons.consumes + 2
    w._process(first)
    w._settle()
    assert _events(prod) == [] and w.batches == 0 and prod.calls.count("begin") == 0
    assert w._classifying is None and w._pending == [] and ("src", 0) not in w._committed


def test_the_last_batch_of_a_backlog_goes_to_the_model_thread_once_the_policy_closes_it() -> None:
    """A backlog's last batch (not full) goes to the model thread as soon as the model is done
    and the batch policy closes it (no wait here), while the batch before it is produced: not
    afterwards in the loop's own thread. Its own transaction, its own offsets, order kept."""
    holder: dict = {}

    def ready() -> bool:  # each model call ends once the next batch is polled (the last: all 10)
        started = sum(o.startswith("model") for o in holder["w"].classifier.order)
        return holder["cons"].delivered >= min(10, 4 * (started + 1))

    w, prod, cons = _prefetching_worker(10, ready, batch_wait_ms=0)
    holder.update(w=w, cons=cons)
    first = w._collect()
    assert [r.offset for r in first] == [0, 1, 2, 3] and w._filled
    w._process(first)
    w._settle()
    assert w.classifier.timed_out == 0 and w.classifier.threads == ["emostream-model_0"] * 3
    assert [o for o in w.classifier.order if o.startswith("model")] == ["model 4", "model 4", "model 2"]
    assert prod.offsets_sent == [[("src", 0, 4)], [("src", 0, 8)], [("src", 0, 10)]]
    assert _events(prod) == [f"u{i}" for i in range(10)] and w.batches == 3 and w._classifying is None


def test_under_load_the_next_batch_is_decoded_while_the_model_classifies_this_one(monkeypatch) -> None:
    """The model thread runs the model only: the loop decodes the next full batch while the model
    works on this one (each batch decoded once, in the loop's thread), so that Python work does not
    leave a core idle between model calls. Each model call here waits until the next batch is
    decoded (or there is none): with decoding after the model call, every call would time out."""
    import emostream.worker.runner as runner_mod

    decoded: list[tuple[str, list[int]]] = []
    real = runner_mod.prepare_batch

    def prepare(records, **kw):
        decoded.append((threading.current_thread().name, [r.offset for r in records]))
        return real(records, **kw)

    monkeypatch.setattr(runner_mod, "prepare_batch", prepare)
    holder: dict = {}
    w, prod, cons = _prefetching_worker(
        12, lambda: len(decoded) > holder["w"].classifier.order.count("model 4") or not (holder["cons"].queue or holder["w"]._pending))
    holder.update(w=w, cons=cons)
    first = w._collect()
    w._process(first)
    w._settle()
    assert w.classifier.timed_out == 0 and w.classifier.order.count("model 4") == 3
    assert decoded == [(threading.current_thread().name, list(range(i, i + 4))) for i in (0, 4, 8)]
    assert _events(prod) == [f"u{i}" for i in range(12)] and w.batches == 3


class _CountingRegistry:
    """A device registry that trusts every record, counts its refreshes and notes the threads it
    was used from: only the loop's own thread may touch it (a refresh replaces the keys that
    verify reads), never the model thread, which runs nothing but the model."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.refreshes = 0
        self.threads: set[str] = set()

    def refresh(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.refreshes += 1

    def verify(self, rec, t) -> None:
        self.threads.add(threading.current_thread().name)

    def private_topic(self, device_id: str) -> None:
        self.threads.add(threading.current_thread().name)


def test_a_long_backlog_still_refreshes_the_device_registry_and_the_lag_checks() -> None:
    """Batch after full batch goes to the model thread without _collect()'s housekeeping: the
    hand-offs run it, or a backlog lasting hours would freeze device keys, lag and stall checks.
    The registry is used from the loop's thread only (the model thread runs the model alone)."""
    holder: dict = {}
    # The model finishes once the next batch is full (or the backlog is gone): a chain of hand-offs.
    w, prod, cons = _prefetching_worker(40, lambda: len(holder["w"]._pending) >= 4 or not holder["cons"].queue)
    holder.update(w=w, cons=cons)
    registry = _CountingRegistry(w)
    lag_checks: list[float] = []
    w._update_lag = lambda: lag_checks.append(time.monotonic())
    first = w._collect()
    w._registry = registry  # after the first _collect, so only the hand-offs count
    w._process(first)
    w._settle()
    assert w.batches == w.prefetched >= 2
    assert registry.refreshes >= w.prefetched - 1 and len(lag_checks) >= w.prefetched - 1
    assert registry.threads == {threading.current_thread().name}
    assert w.classifier.threads and all(t.startswith("emostream-model") for t in w.classifier.threads)


def test_records_are_verified_against_the_device_keys_as_they_are_after_the_poll_that_brought_them() -> None:
    """Under load the next batch is decoded while the model works: the registry of device keys is
    refreshed right before, so a key registered while those records were being polled counts."""
    holder: dict = {}
    w, prod, cons = _prefetching_worker(40, lambda: len(holder["w"]._pending) >= 4 or not holder["cons"].queue)
    holder.update(w=w, cons=cons)
    seen: list[tuple] = []
    consume = cons.consume

    def logged_consume(num_messages, timeout):
        out = consume(num_messages, timeout)
        seen.extend(("polled", m.offset()) for m in out)
        return out

    cons.consume = logged_consume
    registry = _CountingRegistry(w)
    registry.refresh = lambda: seen.append(("refresh",))
    registry.verify = lambda rec, t: seen.append(("verify", rec.offset))
    first = w._collect()
    w._registry = registry
    w._process(first)
    w._settle()
    assert w.batches >= 3
    for i, event in enumerate(seen):
        if event[0] == "verify":
            polled = seen.index(("polled", event[1]))
            assert ("refresh",) in seen[polled:i], f"record {event[1]} verified with keys from before its poll"


class _BadMsg(_Msg):
    """A record the consumer cannot read (librdkafka reports it as an error at its offset)."""

    def error(self):
        return KafkaError(KafkaError._BAD_MSG, "corrupt record")


class _RepeatingConsumer(StreamConsumer):
    """StreamConsumer whose queue may repeat an offset (an error reported again): the position
    is the highest offset handed out + 1, as librdkafka's."""

    def __init__(self, msgs) -> None:
        super().__init__(0)
        self.queue = list(msgs)
        self.next_offset = 0

    def consume(self, num_messages, timeout):
        out = super().consume(num_messages, timeout)
        self.next_offset = max([self.next_offset, *(m.offset() + 1 for m in out)])
        self.positions[("src", 0)] = self.next_offset
        return out


def test_an_unreadable_records_error_repeated_while_its_batch_is_classified_is_not_handled_twice() -> None:
    """librdkafka may report an unreadable record again after the worker seeked past it. If the
    repeat comes while that record's batch is in the model thread (in neither the pending records
    nor the committed offsets), it is still a repeat: no seek back, no second dead letter (which
    would have made the next transaction store an offset below the committed one)."""
    w, prod, _ = _prefetching_worker(0, lambda: cons.consumes >= 3)
    cons = w._consumer = _RepeatingConsumer([_TMsg(0), _TMsg(1), _BadMsg(2), _TMsg(3), _BadMsg(2), _TMsg(4), _TMsg(5), _TMsg(6), _TMsg(7)])
    first = w._collect()
    assert [r.offset for r in first] == [0, 1, 2, 3] and w._filled
    w._process(first)
    while batch := w._collect():
        w._process(batch)
    w._settle()
    assert cons.seeks == [("src", 0, 3)]  # past the bad record once, never back
    assert [t for t, _, _ in prod.produced].count("src.dlq") == 1
    assert _events(prod) == [f"u{i}" for i in (0, 1, 3, 4, 5, 6, 7)] and w._committed == {("src", 0): 8}


def test_an_abort_found_while_the_next_batch_is_classified_drops_it_and_rewinds() -> None:
    err = KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)
    w, prod, cons = _prefetching_worker(12, lambda: True)
    prod.fail_commit = err
    while not w.aborts and (batch := w._collect()):
        w._process(batch)
    # Batch 1 committed in the background and aborted; found when batch 2 was to be produced (with
    # batch 3 already at the model, if it was polled by then): all are dropped, and the consumer is
    # rewound to read them again.
    assert prod.calls == ["begin", "send_offsets", "commit", "abort"]
    assert w._rewind_needed and w._committed == {} and not w._pending and w._classifying is None and w.aborts == 1
    assert w._recent.check_and_stage(("src", 0), _d("u0", "dev")) and w._recent.check_and_stage(("src", 0), _d("u4", "dev"))


def test_an_idle_worker_never_prefetches() -> None:
    w, prod, cons = _prefetching_worker(2, lambda: True)
    batch = w._collect()
    assert len(batch) == 2 and not w._filled
    w._process(batch)
    w._settle()
    assert w.classifier.threads == [threading.current_thread().name] and w._modeller is None


_values = st.one_of(
    st.builds(lambda dev, uid, text: _t(uid, text, dev), st.sampled_from(["a", "b"]), st.sampled_from(["u1", "u2", "u3"]),
              st.sampled_from(["I am happy", "so sad", "boom", "plain words"])),
    st.sampled_from([b"plain text from a console", b"boom in plain text", b"{not json", b""]),
    st.none(),
)


@given(
    values=st.lists(st.tuples(_values, st.integers(0, 1)), max_size=12),
    seen=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["u1", "u2", "u3"]), st.integers(0, 1)), max_size=4),
)
def test_deferred_dedupe_gives_the_outputs_of_inline_dedupe(values, seen) -> None:
    """The model thread classifies with ``defer_dedupe`` and the loop drops duplicates after: for
    any batch (duplicates within it and of ids seen before, bad records, texts the model fails on)
    the outputs, the duplicate count, a refusal (the worker stops) and the dedupe window
    afterwards are those of staging inline."""
    offsets = {0: 0, 1: 0}
    recs = []
    for value, partition in values:
        recs.append(Record("src", partition, offsets[partition], b"b" if value and b'"device_id":"b"' in value else b"a",
                           value, 1_700_000_000_000))
        offsets[partition] += 1
    windows = []
    for _ in range(2):
        recent = RecentIds()
        for dev, uid, partition in seen:
            recent.check_and_stage(("src", partition), _d(uid, dev))
        recent.commit()
        windows.append(recent)
    kw = dict(target_topic="o", dlq_topic="d", changelog_topic="src.dedupe", clock=lambda: 1_767_225_601.0)

    def run(deferred: bool):
        try:
            res = process_batch(recs, KeywordClassifier(), recent=windows[deferred], defer_dedupe=deferred, **kw)
            if deferred:
                res = drop_duplicates(res, windows[1])
            return res.outputs, res.duplicates
        except ModelError as exc:
            return "refused", str(exc)

    inline = run(False)
    assert inline == run(True)
    if inline[0] == "refused":
        return  # the worker stops: what it staged does not matter
    # The LRU order too (a duplicate refreshes its id's place, so a device that re-sends it keeps
    # it remembered), then membership.
    assert {tp: list(ids) for tp, ids in windows[0]._seen.items()} == {tp: list(ids) for tp, ids in windows[1]._seen.items()}
    probes = [(("src", p), _d(uid, dev)) for dev in "ab" for uid in ("u1", "u2", "u3") for p in (0, 1)]
    assert [windows[0].check_and_stage(*pr) for pr in probes] == [windows[1].check_and_stage(*pr) for pr in probes]
