"""Property tests over the worker's process step: whatever a device sends, one outcome per record.

These are how we find the next poison pill before a device does: arbitrary bytes and arbitrary
JSON for key, value and headers never raise, every record ends as exactly one event, one dead
letter or one counted duplicate, and outputs keep the source order per partition.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from emostream.events import SourceRef
from emostream.signing import DeviceKeys, DeviceSigner, KeyRecord, generate_key
from emostream.worker.checkpoint import Checkpoint
from emostream.worker.dedupe import RecentIds
from emostream.worker.process import Record, length_chunks, process_batch
from tests.worker_helpers import KeywordClassifier

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(st.characters(codec=None), max_size=30),
)
json_value = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                          max_leaves=20)
transcript_like = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 2, "1", None]), "text": json_value},
    optional={"device_id": json_value, "utterance_id": json_value, "confidence": json_value, "ended_at": json_value,
              "started_at": json_value, "lang": json_value, "stt_engine": json_value},
)


def _json_bytes(obj: object) -> bytes:
    # ensure_ascii=True writes lone surrogates as \\udXXX escapes: exactly the 26-byte poison pill's shape.
    return json.dumps(obj, ensure_ascii=True, allow_nan=True).encode()


values = st.one_of(st.none(), st.binary(max_size=300), transcript_like.map(_json_bytes), json_value.map(_json_bytes),
                   st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
keys = st.one_of(st.none(), st.binary(max_size=40), st.sampled_from([b"pi-1", b"pi-2", b"dev"]), st.binary(min_size=250, max_size=600))
headers = st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=20), st.one_of(st.none(), st.binary(max_size=80))), max_size=3))


@st.composite
def batches(draw: st.DrawFn) -> list[Record]:
    items = draw(st.lists(st.tuples(st.integers(0, 2), keys, values, headers, st.booleans()), min_size=1, max_size=25))
    offsets = {0: 0, 1: 0, 2: 0}
    out = []
    for part, key, value, hdrs, unreadable in items:
        offsets[part] += draw(st.integers(1, 3))
        out.append(Record("src", part, offsets[part], key, value, 1_700_000_000_000, hdrs,
                          "_BAD_COMPRESSION: bomb" if unreadable and draw(st.integers(0, 9)) == 0 else None))
    return out


def _outcomes(records: list[Record], res) -> None:
    by_source: dict[SourceRef, int] = {}
    for out in res.events + res.dead_letters:
        assert out.source is not None
        by_source[out.source] = by_source.get(out.source, 0) + 1
    # exactly one outcome per record: an event, a dead letter, or a counted duplicate
    assert all(n == 1 for n in by_source.values())
    assert len(by_source) + res.duplicates == len(records)
    for ev in res.events:
        body = json.loads(ev.value)
        assert ev.key == body["device_id"].encode() and len(ev.key) <= 64
        ev.value.decode("utf-8")  # always valid UTF-8
    for dl in res.dead_letters:
        assert dl.key is None or len(dl.key) <= 256
        assert dl.value is None or len(dl.value) <= 900_000
        assert dict(dl.headers)["error.type"]
    # outputs keep the source order per partition
    for part in (0, 1, 2):
        seen = [o.source.offset for o in res.events if o.source.partition == part]
        assert seen == sorted(seen)


@settings(max_examples=300, deadline=None)
@given(batches())
def test_any_batch_gives_one_outcome_per_record(records: list[Record]) -> None:
    res = process_batch(records, KeywordClassifier(), target_topic="o", dlq_topic="d", recent=RecentIds(), changelog_topic="c",
                        device_topic=lambda dev: f"o.{dev}")
    _outcomes(records, res)
    assert [c.source for c in res.changelog] == [c.source for c in res.changelog if c.partition == c.source.partition]


_PRIV, _PUB = generate_key()
_KEYS = DeviceKeys()
_KEYS.apply(KeyRecord("pi-1", _PUB))
_KEYS.apply(KeyRecord("pi-2", generate_key()[1]))


def _verify(rec: Record, t) -> None:
    from emostream.events import InvalidEvent

    if rec.key != t.device_id.encode():
        raise InvalidEvent("device_mismatch", "key")
    _KEYS.verify(t.device_id, rec.key, rec.value, rec.headers)


@settings(max_examples=200, deadline=None)
@given(batches())
def test_signed_mode_is_total_and_accepts_only_signed_records(records: list[Record]) -> None:
    res = process_batch(records, KeywordClassifier(), target_topic="o", dlq_topic="d", verify=_verify)
    _outcomes(records, res)
    assert not res.events  # nothing in an arbitrary batch carries pi-1's signature


def test_a_signed_record_passes_and_a_replayed_signature_on_other_bytes_does_not() -> None:
    signer = DeviceSigner(_PRIV)
    value = b'{"v":1,"text":"I am happy","utterance_id":"u1"}'
    good = Record("src", 0, 1, b"pi-1", value, None, signer.headers(b"pi-1", value))
    forged = Record("src", 0, 2, b"pi-2", value, None, signer.headers(b"pi-1", value))
    swapped = Record("src", 0, 3, b"pi-1", value.replace(b"happy", b"sad"), None, signer.headers(b"pi-1", value))
    res = process_batch([good, forged, swapped], KeywordClassifier(), target_topic="o", dlq_topic="d", verify=_verify)
    assert [json.loads(e.value)["utterance_id"] for e in res.events] == ["u1"]
    # pi-1's signature does not make a record keyed pi-2 pi-2's, nor cover changed bytes
    assert [d.error_type for d in res.dead_letters] == ["bad_signature", "bad_signature"]


def test_a_record_that_breaks_the_decoder_is_dead_lettered_not_fatal() -> None:
    def explode(rec: Record, t) -> None:
        raise RuntimeError("bug in a verifier")

    res = process_batch([Record("src", 0, 1, b"pi-1", b"hello", None)], KeywordClassifier(), target_topic="o", dlq_topic="d",
                        verify=explode)
    assert [d.error_type for d in res.dead_letters] == ["internal_error"]


def test_unreadable_and_poisoned_records_are_dead_lettered_by_coordinates() -> None:
    bomb = Record("src", 0, 5, None, None, None, unreadable="_BAD_COMPRESSION: Decompression failed")
    poison = Record("src", 0, 6, b"pi-1", b"hello", None)
    res = process_batch([bomb, poison], KeywordClassifier(), target_topic="o", dlq_topic="d",
                        poisoned={poison.source: "output refused: too large"})
    assert [(d.error_type, dict(d.headers)["source.offset"]) for d in res.dead_letters] == [
        ("unreadable_record", b"5"), ("poison_record", b"6")]
    assert not res.events


def test_private_copy_and_changelog_entry_per_event() -> None:
    value = b'{"v":1,"text":"I am happy","utterance_id":"u1"}'
    res = process_batch([Record("src", 3, 1, b"pi-1", value, None), Record("src", 3, 2, b"pi-1", b"plain words", None)],
                        KeywordClassifier(), target_topic="o", dlq_topic="d", recent=RecentIds(),
                        device_topic=lambda dev: f"o.{dev}", changelog_topic="src.dedupe")
    assert [(p.topic, p.key) for p in res.private] == [("o.pi-1", b"pi-1"), ("o.pi-1", b"pi-1")]
    # only the id the device chose is written to the changelog (derived ids are never deduped)
    assert [(c.topic, c.partition, len(c.key)) for c in res.changelog] == [("src.dedupe", 3, 16)]


class _RefusingProducer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic, value, key, **kw) -> None:
        from emostream.kafka.types import KafkaError, KafkaException

        raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))

    def abort_transaction(self, timeout) -> None:
        self.calls.append("abort")


class _Consumer:
    def assignment(self):
        return []


def test_checkpoint_blames_the_source_of_a_refused_output() -> None:
    from emostream.errors import TransactionAborted
    from emostream.worker.process import Output

    cp = Checkpoint(_RefusingProducer(), _Consumer(), RecentIds(), {})
    cp.begin()
    src = SourceRef("src", 0, 7)
    try:
        cp.produce(Output("o", b"k", b"v", source=src))
    except TransactionAborted as exc:
        assert not exc.retriable
    else:
        raise AssertionError("a refused output must abort the transaction")
    assert list(cp.refused) == [src]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=80), st.integers(min_value=-3, max_value=70))
def test_length_chunks_cover_every_text_once_in_calls_of_similar_length(texts: list[str], size: int) -> None:
    chunks = length_chunks(texts, size)
    flat = [i for chunk in chunks for i in chunk]
    assert sorted(flat) == list(range(len(texts)))  # each text in exactly one model call
    assert all(0 < len(chunk) <= max(1, size) for chunk in chunks)
    assert [len(texts[i]) for i in flat] == sorted(len(t) for t in texts)  # shortest first, no call mixes far lengths


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text("abdhmoprsty ", min_size=1, max_size=60), min_size=1, max_size=40),
       st.integers(min_value=1, max_value=8))
def test_length_sorted_model_calls_keep_each_event_on_its_own_record(texts: list[str], model_batch: int) -> None:
    records = [Record("src", 0, i, b"pi-1", text.encode("utf-8")) for i, text in enumerate(texts)]
    model = KeywordClassifier()
    res = process_batch(records, model, target_topic="o", dlq_topic="d", model_batch=model_batch)
    by_offset = {json.loads(e.value)["source"]["offset"]: json.loads(e.value) for e in res.events}
    assert [e.source.offset for e in res.events] == sorted(by_offset)  # outputs in source order
    for offset, event in by_offset.items():
        assert event["text"] in (texts[offset], texts[offset].strip())
        assert event["label"] == model.classify([event["text"]])[0].label  # its own text's label, not a neighbour's
    assert len(res.events) + len(res.dead_letters) == len(texts)
