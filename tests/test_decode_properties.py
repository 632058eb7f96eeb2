"""Property tests: decoding outside input is total (InvalidEvent or a valid value, nothing else).

Any device can put any bytes on the transcripts topic, and anything on the emotions topic reaches
``edge listen`` and the dashboard. Hypothesis feeds arbitrary bytes, arbitrary JSON (lone
surrogates, NaN, huge numbers, deep nesting) and transcript-shaped objects with hostile fields.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from emostream.events import (
    DEFAULT_MAX_TEXT_BYTES,
    InvalidEvent,
    SourceRef,
    Transcript,
    check_device_id,
    check_utterance_id,
    decode_emotion_event,
    decode_transcript,
    dead_letter_headers,
    derived_utterance_id,
    new_utterance_id,
    parse_ts,
)

PROPERTY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# st.text() rarely yields a lone surrogate (and never by default); the second alphabet does, often.
HOSTILE_CHARS = ["\ud800", "\udfff", "\udc80", "\x00", "\n", " ", "@", ":", ".", "é", "😀", "\u2028", '"', "\\"]
any_char = st.characters(exclude_categories=())
hostile_text = st.one_of(
    st.text(any_char, max_size=40),
    st.text(st.sampled_from(HOSTILE_CHARS + list("ab-_09")), max_size=40),
)
id_text = st.one_of(st.text(st.sampled_from(list("abcXYZ019-_.:@ ") + ["\ud800"]), max_size=70), hostile_text)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 0.5, -0.0, True, False]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
any_json = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=20,
)
timestamps = st.one_of(
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123+02:00", "9999-12-31T23:59:59-23:59",
                     "0001-01-01T00:00:00+23:59", "2026-02-30T00:00:00Z", "", "now"]),
    hostile_text,
    numbers,
)

keys = st.one_of(st.none(), st.binary(max_size=300), id_text.map(lambda s: s.encode("utf-8", "surrogatepass")))

ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
device_ids = st.text(st.sampled_from(ID_CHARS), min_size=1, max_size=64).filter(lambda s: not s.startswith("."))
utterance_ids = st.text(st.sampled_from(ID_CHARS + ":"), min_size=1, max_size=128)


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a valid value (so the accepting path is exercised too), sometimes a hostile one."""
    return st.integers(0, 7).flatmap(lambda n: hostile if n == 0 else valid)


@st.composite
def transcript_records(draw: st.DrawFn) -> tuple[bytes | None, dict[str, Any]]:
    """A record key and a transcript-shaped object: each field absent, valid or hostile."""
    device = draw(device_ids)
    fields = {
        "v": mostly(st.just(1), numbers),
        "text": mostly(st.text(min_size=1, max_size=200), hostile_text),
        "device_id": mostly(st.just(device), id_text),
        "utterance_id": mostly(utterance_ids, id_text),
        "lang": mostly(st.sampled_from(["en", "de", "pt-BR"]), hostile_text),
        "confidence": mostly(st.floats(0, 1), numbers),
        "started_at": mostly(st.just("2026-01-01T00:00:00.123Z"), timestamps),
        "ended_at": mostly(st.just("2026-01-01T00:00:01+01:00"), timestamps),
        "stt_engine": mostly(st.sampled_from(["vosk", "whisper"]), hostile_text),
        "extra": any_json,
    }
    obj = {name: draw(strategy) for name, strategy in fields.items() if draw(st.booleans()) or name in ("v", "text")}
    key = draw(st.one_of(st.just(device.encode()), st.just(device.encode()), st.none(), keys))
    return key, obj


emotion_like = st.fixed_dictionaries(
    {
        "v": mostly(st.just(1), numbers),
        "device_id": mostly(device_ids, id_text),
        "label": mostly(st.sampled_from(["joy", "anger", "neutral"]), hostile_text),
    },
    optional={
        "scores": mostly(st.dictionaries(st.sampled_from(["joy", "anger", "neutral"]), st.floats(0, 1), max_size=3),
                         st.one_of(st.dictionaries(hostile_text, numbers, max_size=7), any_json)),
        "text": hostile_text,
        "latency_ms": numbers,
        "source": any_json,
    },
)
sources = st.builds(SourceRef, st.sampled_from(["stt.transcripts", "t-x.src"]), st.integers(0, 99), st.integers(0, 2**63 - 1))


def as_json(obj: Any) -> bytes:
    """JSON as a hostile producer writes it: NaN/Infinity allowed, lone surrogates as \\u escapes."""
    return json.dumps(obj, ensure_ascii=True, allow_nan=True).encode()


def deep(depth: int) -> bytes:
    return b'{"v":1,"text":"hi","device_id":"pi","label":"joy","x":' + b"[" * depth + b"]" * depth + b"}"


def check_transcript(key: bytes | None, value: bytes | None, source: SourceRef) -> Transcript | None:
    """Decode; when it succeeds, the transcript is valid, encodes, and re-decodes to itself."""
    try:
        t = decode_transcript(key, value, source)
    except InvalidEvent as exc:
        assert exc.error_type and str(exc)
        dead_letter_headers(exc.error_type, str(exc), source)
        return None
    check_device_id(t.device_id)
    if t.utterance_id != derived_utterance_id(source):
        check_utterance_id(t.utterance_id)
    assert t.text and t.text == t.text.strip()
    encoded = t.encode()
    assert decode_transcript(key, encoded, source) == t
    if t.started_at:
        parse_ts(t.started_at)
    if t.ended_at:
        parse_ts(t.ended_at)
    return t


def check_emotion_event(value: bytes | None) -> dict[str, Any] | None:
    """Decode; when it succeeds, the dict has the documented shape and prints as strict JSON."""
    try:
        event = decode_emotion_event(value)
    except InvalidEvent as exc:
        assert exc.error_type and str(exc)
        return None
    assert event["v"] == 1 and isinstance(event["label"], str) and isinstance(event["device_id"], str)
    json.dumps(event, ensure_ascii=False, allow_nan=False).encode("utf-8")  # what listen prints and the dashboard serves
    return event


@PROPERTY
@given(keys, st.one_of(st.none(), st.binary(max_size=2000)), sources)
def test_transcript_decode_of_arbitrary_bytes_is_total(key: bytes | None, value: bytes | None, source: SourceRef) -> None:
    check_transcript(key, value, source)


@PROPERTY
@given(keys, any_json, sources)
def test_transcript_decode_of_arbitrary_json_is_total(key: bytes | None, obj: Any, source: SourceRef) -> None:
    check_transcript(key, as_json(obj), source)


@PROPERTY
@given(transcript_records(), sources)
def test_transcript_shaped_json_with_hostile_fields_is_total(record: tuple[bytes | None, dict[str, Any]], source: SourceRef) -> None:
    key, obj = record
    check_transcript(key, as_json(obj), source)


@PROPERTY
@given(st.one_of(st.none(), st.binary(max_size=2000)))
def test_emotion_event_decode_of_arbitrary_bytes_is_total(value: bytes | None) -> None:
    check_emotion_event(value)


@PROPERTY
@given(st.one_of(any_json, emotion_like))
def test_emotion_event_decode_of_arbitrary_json_is_total(obj: Any) -> None:
    check_emotion_event(as_json(obj))


@PROPERTY
@given(transcript_records(), st.binary(max_size=8), st.integers(0, 400))
def test_mutated_json_values_are_total(record: tuple[bytes | None, dict[str, Any]], junk: bytes, at: int) -> None:
    value = as_json(record[1])
    at = min(at, len(value))
    for mutated in (value[:at], value[:at] + junk + value[at:], value[:at] + value[at + 1 :]):
        check_transcript(b"pi", mutated, SourceRef("stt.transcripts", 0, at))
        check_emotion_event(mutated)


@PROPERTY
@given(sources, st.integers(0, 2**63 - 1))
def test_no_json_record_claims_another_records_derived_id(source: SourceRef, other_offset: int) -> None:
    other = SourceRef(source.topic, source.partition, other_offset)
    value = as_json({"v": 1, "text": "hi", "utterance_id": derived_utterance_id(other)})
    t = check_transcript(b"pi", value, source)
    assert (t is not None) == (other == source)


@pytest.mark.parametrize("depth", [31, 32, 33, 1000, 15_000, 100_000])
def test_nesting_is_bounded_at_any_depth(depth: int) -> None:
    value = deep(depth)
    accepted = check_transcript(b"pi", value, SourceRef("stt.transcripts", 0, 0)) is not None
    assert accepted == (depth < 32)  # the object itself is one level
    assert (check_emotion_event(value) is not None) == (depth < 32)


@PROPERTY
@given(st.one_of(hostile_text, st.text(st.sampled_from(list("0123456789-+:.TZz ")), max_size=45)))
def test_parse_ts_raises_only_value_error(text: str) -> None:
    try:
        epoch = parse_ts(text)
    except ValueError:
        return
    assert epoch == epoch and abs(epoch) < float("inf")


_edge_texts = st.one_of(
    st.text(max_size=300),
    # One character many times: control characters are 6 bytes each once JSON-escaped.
    st.builds(lambda c, n: c * n, st.characters(exclude_categories=("Cs",)), st.integers(1, DEFAULT_MAX_TEXT_BYTES)),
    st.builds(lambda c, n: c * n, st.characters(categories=("Cc",)), st.integers(DEFAULT_MAX_TEXT_BYTES - 64, DEFAULT_MAX_TEXT_BYTES)),
)


@PROPERTY
@given(_edge_texts)
@example("\x01" * DEFAULT_MAX_TEXT_BYTES)
def test_what_a_device_accepts_the_worker_decodes_and_the_reverse(text: str) -> None:
    # The device refuses a transcript before spooling it exactly when the worker would dead-letter
    # it: nothing spooled is refused later, nothing the worker takes is refused on the device.
    from emostream.edge.input import TranscriptError, check_transcript as device_check

    t = Transcript(device_id="pi-1", utterance_id=new_utterance_id(), text=text)
    source = SourceRef("stt.transcripts", 0, 7)
    try:
        device_check(t)
        on_device = None
    except TranscriptError as exc:
        on_device = str(exc)
    try:
        got = decode_transcript(b"pi-1", t.encode(), source)
        in_worker = None
    except InvalidEvent as exc:
        in_worker = str(exc)
    assert (on_device is None) == (in_worker is None), (on_device, in_worker)
    if on_device is None:
        assert got.text == text.strip()
