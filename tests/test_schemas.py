"""The published JSON Schemas agree with the code: the docs' examples and the worker's real
output validate, and on boundary cases the transcript schema and the decoder give one verdict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from emostream.events import SourceRef, InvalidEvent, decode_emotion_event, decode_transcript
from emostream.model.labels import CLASSES
from emostream.schemas import SCHEMA_NAMES, load_schema
from emostream.worker.process import Record, process_batch
from tests.worker_helpers import KeywordClassifier

REPO = Path(__file__).resolve().parents[1]
EVENTS_MD = (REPO / "docs" / "events.md").read_text()
SOURCE = SourceRef("stt.transcripts", 3, 1041)


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def _errors(name: str, instance: object) -> list[str]:
    return [e.message for e in _validator(name).iter_errors(instance)]


def _doc_example(section: str) -> dict:
    """The first ```json block after the heading that starts with ``section``."""
    body = EVENTS_MD.split(f"\n## {section}", 1)[1]
    return json.loads(re.search(r"```json\n(.*?)```", body, re.DOTALL).group(1))


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schemas_are_valid_draft_2020_12_and_shipped(name):
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert (REPO / "src" / "emostream" / "schemas" / f"{name}.schema.json").is_file()


def test_pyproject_ships_the_schemas():
    assert '"schemas/*.json"' in (REPO / "pyproject.toml").read_text()


def test_docs_transcript_example_validates_and_decodes():
    example = _doc_example("Transcript")
    assert _errors("transcript", example) == []
    t = decode_transcript(example["device_id"].encode(), json.dumps(example).encode(), SOURCE)
    assert t.to_dict() == example


def test_docs_emotion_event_example_validates_and_decodes():
    example = _doc_example("EmotionEvent")
    assert _errors("emotion-event", example) == []
    assert decode_emotion_event(json.dumps(example).encode()) == example


def test_emotion_event_classes_are_the_models():
    schema = load_schema("emotion-event")
    assert schema["$defs"]["class"]["enum"] == list(CLASSES)
    assert sorted(schema["properties"]["scores"]["required"]) == sorted(CLASSES)


def _dead_letter_types_in_docs() -> set[str]:
    table = EVENTS_MD.split("| `error.type` | cause |", 1)[1].split("\n\n", 1)[0]
    return {name for row in table.splitlines()[2:] for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}


def test_dead_letter_types_match_docs_and_code():
    enum = set(load_schema("dead-letter-headers")["properties"]["error.type"]["enum"])
    assert enum == _dead_letter_types_in_docs()
    # Every reason the transcript path and the worker can give (emotion-event decoding's
    # invalid_schema never reaches a dead-letter topic).
    sources = [REPO / "src/emostream/events.py", *sorted((REPO / "src/emostream/worker").glob("*.py"))]
    raised = {m for p in sources for m in re.findall(r'(?:InvalidEvent\(|_dead_letter\([^)]*?)\s*"([a-z_]+)"', p.read_text())}
    assert raised - {"invalid_schema"} <= enum, raised - enum


def _records() -> list[Record]:
    """Valid and hostile transcript records, as the worker's consumer would hand them over."""
    full = {"v": 1, "device_id": "pi-kitchen", "utterance_id": "0193-a:b_c.d", "text": "I am so happy", "lang": "en",
            "confidence": 0.93, "started_at": "2026-11-26T18:00:00.120Z", "ended_at": "2026-11-26T18:00:01.480Z",
            "stt_engine": "whisper"}
    raw = [
        (b"pi-kitchen", json.dumps(full).encode()),
        (b"pi-kitchen", json.dumps({"v": 1, "text": "wow, gross"}).encode()),  # no id: derived '@' id
        (None, json.dumps({"v": 1, "device_id": "d" * 64, "text": "x" * 8192}).encode()),
        (b"pi-garage", b"this is so annoying"),  # plain text
        (None, b"plain text without a key"),
        (b"pi-1", "ünïcode ✓ 😀 sad".encode()),
        (b"pi-1", None),
        (b"pi-1", b"{not json"),
        (b"pi-1", b"\xff\xfe"),
        (b"pi-1", json.dumps({"v": 2, "text": "hi"}).encode()),
        (b"pi-1", json.dumps({"v": 1, "device_id": "pi-2", "text": "hi"}).encode()),
        (b"pi-1", json.dumps({"v": 1, "text": "hi", "confidence": 3}).encode()),
        (b"pi-1", json.dumps({"v": 1, "text": "boom"}).encode()),  # the stand-in model raises: model_error
        (b"k" * 300, b"hello"),  # key over 256 bytes: truncated in the dead letter
        (b"pi-1", b"x" * 1_000_000),  # value over 900,000 bytes: truncated in the dead letter
        (b".hidden", b"hello"),
    ]
    recs = [Record("stt.transcripts", 3, 100 + i, k, v, 1_764_180_000_000) for i, (k, v) in enumerate(raw)]
    recs.append(Record("stt.transcripts", 4, 7, None, None, unreadable="_MSG_SIZE_TOO_LARGE: too big"))
    return recs


def test_real_worker_output_validates():
    res = process_batch(_records(), KeywordClassifier(), target_topic="emotion.events", dlq_topic="stt.transcripts.dlq",
                        clock=lambda: 1_764_180_001.5, max_text_bytes=8192)
    assert len(res.events) == 6 and len(res.dead_letters) == 11
    for out in res.events:
        event = json.loads(out.value)
        assert _errors("emotion-event", event) == [], event
        assert decode_emotion_event(out.value) == event
    types = set()
    for dl in res.dead_letters:
        headers = dict((k, v.decode("utf-8")) for k, v in dl.headers)
        assert len(headers) == len(dl.headers), "duplicate header"
        assert _errors("dead-letter-headers", headers) == [], headers
        types.add(headers["error.type"])
    assert {"null_value", "model_error", "unreadable_record", "key_too_large", "value_too_large"} <= types


def test_real_worker_output_with_a_labels_array_validates():
    res = process_batch(_records()[:1], KeywordClassifier(), target_topic="o", dlq_topic="d")
    event = json.loads(res.events[0].value)
    assert _errors("emotion-event", {**event, "labels": ["joy", "surprise"]}) == []
    assert _errors("emotion-event", {**event, "labels": ["joy", "bliss"]}) != []


def _ok(device: str = "pi-1", **fields: object) -> dict:
    return {"v": 1, "device_id": device, "text": "hello", **fields}


# (case, transcript JSON): the decoder's verdict and the schema's must be the same.
BOUNDARY = [
    ("minimal", {"v": 1, "device_id": "pi-1", "text": "hi"}),
    ("device id 64 chars", _ok("d" * 64)),
    ("device id 65 chars", _ok("d" * 65)),
    ("device id starting with '.'", _ok(".pi")),
    ("device id starting with '-'", _ok("-pi")),
    ("device id with '@'", _ok("pi@home")),
    ("device id with ':'", _ok("pi:1")),
    ("device id with a space", _ok("pi 1")),
    ("utterance id 128 chars", _ok(utterance_id="u" * 128)),
    ("utterance id 129 chars", _ok(utterance_id="u" * 129)),
    ("utterance id with ':'", _ok(utterance_id="a:b")),
    ("utterance id with '/'", _ok(utterance_id="a/b")),
    ("utterance id, this record's derived id", _ok(utterance_id="@stt.transcripts-3-1041")),
    ("text 8192 chars", _ok(text="x" * 8192)),
    ("text 8193 chars", _ok(text="x" * 8193)),
    ("blank text", _ok(text="  \t ")),
    ("empty text", _ok(text="")),
    ("text not a string", _ok(text=5)),
    ("no text", {"v": 1, "device_id": "pi-1"}),
    ("v 2", {**_ok(), "v": 2}),
    ("v '1'", {**_ok(), "v": "1"}),
    ("v true", {**_ok(), "v": True}),
    ("no v", {"device_id": "pi-1", "text": "hi"}),
    ("lang 16", _ok(lang="x" * 16)),
    ("lang 17", _ok(lang="x" * 17)),
    ("stt_engine 64", _ok(stt_engine="x" * 64)),
    ("stt_engine 65", _ok(stt_engine="x" * 65)),
    ("stt_engine a number", _ok(stt_engine=1)),
    ("confidence 0", _ok(confidence=0)),
    ("confidence 1", _ok(confidence=1)),
    ("confidence 1.01", _ok(confidence=1.01)),
    ("confidence -0.1", _ok(confidence=-0.1)),
    ("confidence 'high'", _ok(confidence="high")),
    ("timestamp Z", _ok(ended_at="2026-11-26T18:00:01.480Z")),
    ("timestamp offset", _ok(ended_at="2026-11-26T19:00:01+01:00")),
    ("timestamp garbage", _ok(ended_at="yesterday")),
    ("timestamp 41 chars", _ok(ended_at="2026-11-26T18:00:01.480123456+00:00" + "0" * 6)),
    ("optional fields null", _ok(lang=None, confidence=None, ended_at=None, stt_engine=None, utterance_id=None)),
    ("optional strings empty", _ok(lang="", stt_engine="", utterance_id="")),
    ("unknown field", _ok(mood="fine")),
]


@pytest.mark.parametrize("case, value", BOUNDARY, ids=[c for c, _ in BOUNDARY])
def test_transcript_schema_and_decoder_agree(case, value):
    try:
        decode_transcript(None, json.dumps(value).encode(), SOURCE)
        decoded = True
    except InvalidEvent:
        decoded = False
    assert (_errors("transcript", value) == []) == decoded


# What no JSON Schema can see, so the schema admits and the worker still refuses (the schema's
# description lists each): a derived id of other coordinates, a byte limit, lone surrogates, 1.0
# for the integer 1, and Python's re.search letting '$' match before a final newline (ECMA-262
# validators, which JSON Schema specifies, do refuse that one).
BEYOND_SCHEMA = [
    ("another record's derived id", _ok(utterance_id="@stt.transcripts-0-5")),
    ("8192 characters over 8192 bytes", _ok(text="é" * 8192)),
    ("lone surrogate", _ok(text="\ud800 hi")),
    ("v 1.0", {**_ok(), "v": 1.0}),
    ("device id with a final newline", _ok("pi-1\n")),
]


@pytest.mark.parametrize("case, value", BEYOND_SCHEMA, ids=[c for c, _ in BEYOND_SCHEMA])
def test_what_only_the_decoder_checks(case, value):
    assert _errors("transcript", value) == []
    with pytest.raises(InvalidEvent):
        decode_transcript(None, json.dumps(value).encode(), SOURCE)


@pytest.mark.kafka
def test_worker_output_on_a_real_broker_validates(bootstrap, unique_name, tmp_path):
    from tests.worker_helpers import STUB_SPEC, header_dict, make_topics, produce_raw, read_all, start_worker, stop

    src, out, dlq = make_topics(bootstrap, unique_name, partitions=2)
    good = [(b"pi-1", json.dumps({"v": 1, "utterance_id": f"u-{i}", "text": f"I am so happy {i}"}).encode()) for i in range(5)]
    bad = [(b"pi-1", None), (b"pi-1", b"{broken"), (b"pi-1", json.dumps({"v": 1, "text": "hi", "lang": "x" * 17}).encode())]
    produce_raw(bootstrap, src, good + [(b"pi-2", b"plain words")] + bad)
    worker = start_worker(bootstrap, src, out, f"{unique_name}-g", "i1", tmp_path / "worker.log", STUB_SPEC)
    try:
        msgs = read_all(bootstrap, [out, dlq], expect=9, idle_s=3.0, max_s=180.0)
    finally:
        assert stop(worker) == 0
    events = [m for m in msgs if m.topic() == out]
    letters = [m for m in msgs if m.topic() == dlq]
    assert (len(events), len(letters)) == (6, 3)
    for m in events:
        assert _errors("emotion-event", json.loads(m.value())) == []
    for m in letters:
        assert _errors("dead-letter-headers", header_dict(m)) == []
