"""The transcript decode table: every error type the DLQ can carry, and the accepted shapes."""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emostream.events import (
    MAX_KEY_BYTES,
    EmotionEvent,
    InvalidEvent,
    SourceRef,
    Transcript,
    check_utterance_id,
    decode_emotion_event,
    decode_transcript,
    dead_letter_headers,
    parse_ts,
)
from emostream.events import _finite_float, _load_json, _no_constant

SRC = SourceRef("stt.transcripts", 3, 1041)


def _j(**kw: object) -> bytes:
    return json.dumps(kw).encode()


@pytest.mark.parametrize(
    ("key", "value", "error_type"),
    [
        (b"d", None, "null_value"),
        (b"d", b"\xff\xfe\x00bad", "undecodable"),
        (b"d", b'{"v": 1, "text": ', "invalid_json"),
        (b"d", _j(v=2, text="hi"), "unsupported_version"),
        (b"d", _j(text="hi"), "unsupported_version"),
        (b"d", _j(v=1), "missing_text"),
        (b"d", _j(v=1, text=""), "missing_text"),
        (b"d", _j(v=1, text="   "), "missing_text"),
        (b"d", b"   ", "missing_text"),
        (None, _j(v=1, text="hi"), "missing_device_id"),
        (b"d", _j(v=1, text="hi", confidence="high"), "invalid_field"),
        (b"d", _j(v=1, text="x" * 9000), "text_too_long"),
        (b"d", b"x" * 9000, "text_too_long"),
        (b"d", b"x" * 1_000_000, "value_too_large"),
        # Hostile input (issue #13): each once crashed the worker with something other than InvalidEvent.
        (b"d", b'{"v":1,"text":"hi \\ud800"}', "invalid_text"),
        (None, b'{"v":1,"text":"hi","device_id":"pi\\ud800"}', "invalid_device_id"),
        (b"d", b'{"v":1,"text":"hi","utterance_id":"u\\udfff1"}', "invalid_utterance_id"),
        (b"d", b'{"v":1,"text":"hi","lang":"e\\ud800"}', "invalid_field"),
        (b"d", b'{"v":1,"text":"hi","stt_engine":"\\udc00"}', "invalid_field"),
        (b"d", b'{"v":1,"text":"hi","x":' + b"[" * 15_000 + b"]" * 15_000 + b"}", "too_deep"),
        (b"d", b'{"v":1,"text":"hi","x":' + b"[" * 33 + b"]" * 33 + b"}", "too_deep"),
        (b"d", b'{"v":1,"text":"hi","x":' + b"7" * 5_000 + b"}", "invalid_number"),
        (b"d", b'{"v":1,"text":"hi","confidence":NaN}', "invalid_number"),
        (b"d", b'{"v":1,"text":"hi","confidence":Infinity}', "invalid_number"),
        (b"d", b'{"v":1,"text":"hi","confidence":-1e999}', "invalid_number"),
        (b"d", _j(v=1, text="hi", confidence=1.5), "invalid_field"),
        (b"d", _j(v=1, text="hi", confidence=10**400), "invalid_field"),
        (b"d", _j(v=1, text="hi", confidence=True), "invalid_field"),
        (b"d", _j(v=True, text="hi"), "unsupported_version"),
        (b"d", _j(v=1, text="hi", lang="x" * 17), "invalid_field"),
        (b"d", _j(v=1, text="hi", stt_engine="x" * 65), "invalid_field"),
        (b"d", _j(v=1, text="hi", ended_at="2026-01-01T00:00:00Z" + " " * 30), "invalid_field"),
        (b"d", _j(v=1, text="hi", started_at="yesterday"), "invalid_field"),
        (b"d", _j(v=1, text="hi", started_at=12), "invalid_field"),
        (b"d", _j(v=1, text="hi", device_id="../etc"), "invalid_device_id"),
        (b"d", _j(v=1, text="hi", utterance_id="x" * 129), "invalid_utterance_id"),
        (b"pi-a", _j(v=1, text="hi", device_id="pi-b"), "device_mismatch"),
        (b"k" * (MAX_KEY_BYTES + 1), b"hi", "key_too_large"),
        (b"\xff\xfe", b"hi", "invalid_device_id"),
        (b"has space", b"hi", "invalid_device_id"),
    ],
)
def test_invalid_records_name_their_error(key: bytes | None, value: bytes | None, error_type: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_transcript(key, value, SRC)
    assert info.value.error_type == error_type
    assert str(info.value)


def test_json_transcript_keeps_its_fields() -> None:
    t = decode_transcript(b"pi", _j(v=1, device_id="pi", utterance_id="u1", text=" hello ", ended_at="2026-01-01T00:00:00Z"), SRC)
    assert (t.device_id, t.utterance_id, t.text, t.ended_at) == ("pi", "u1", "hello", "2026-01-01T00:00:00Z")


def test_plain_text_uses_key_and_source_for_ids() -> None:
    t = decode_transcript(b"pi-kitchen", "I can't believe it worked!\n".encode(), SRC)
    assert t.device_id == "pi-kitchen"
    assert t.utterance_id == "@stt.transcripts-3-1041"
    assert t.text == "I can't believe it worked!"
    assert decode_transcript(None, b"hello", SRC).device_id == "unknown"


def test_max_text_bytes_is_configurable() -> None:
    assert decode_transcript(b"d", b"x" * 100, SRC, max_text_bytes=100).text
    with pytest.raises(InvalidEvent):
        decode_transcript(b"d", b"x" * 101, SRC, max_text_bytes=100)


def test_dead_letter_headers() -> None:
    h = dict(dead_letter_headers("invalid_json", "bad", SRC))
    assert h == {
        "error.type": b"invalid_json",
        "error.message": b"bad",
        "source.topic": b"stt.transcripts",
        "source.partition": b"3",
        "source.offset": b"1041",
    }


def test_the_26_byte_poison_value_is_a_dead_letter_not_a_crash() -> None:
    value = b'{"v":1,"text":"hi \\ud800"}'
    assert len(value) == 26
    with pytest.raises(InvalidEvent) as info:
        decode_transcript(b"pi", value, SRC)
    assert info.value.error_type == "invalid_text"
    dict(dead_letter_headers(info.value.error_type, str(info.value), SRC))  # and the DLQ headers encode


def test_derived_utterance_ids_cannot_be_claimed_through_json() -> None:
    plain = decode_transcript(b"pi", b"hello", SRC)
    assert plain.utterance_id == "@stt.transcripts-3-1041"
    with pytest.raises(InvalidEvent) as info:  # another record claiming it
        decode_transcript(b"pi", _j(v=1, text="x", utterance_id=plain.utterance_id), SourceRef("stt.transcripts", 3, 7))
    assert info.value.error_type == "invalid_utterance_id"
    # The old, unmarked form is an ordinary id: it names no record's derived id any more.
    assert decode_transcript(b"pi", _j(v=1, text="x", utterance_id="stt.transcripts-3-1041"), SRC).utterance_id != plain.utterance_id
    # The same record decoded twice (or re-encoded and decoded again) keeps its id.
    assert decode_transcript(b"pi", b"hello", SRC) == plain
    assert decode_transcript(b"pi", plain.encode(), SRC) == plain
    assert decode_transcript(b"pi", _j(v=1, text="x"), SRC).utterance_id == plain.utterance_id


def test_key_and_json_device_id_agree_or_one_is_used() -> None:
    assert decode_transcript(b"pi", _j(v=1, text="x", device_id="pi"), SRC).device_id == "pi"
    assert decode_transcript(None, _j(v=1, text="x", device_id="pi"), SRC).device_id == "pi"
    assert decode_transcript(b"pi", _j(v=1, text="x"), SRC).device_id == "pi"
    assert decode_transcript(b"", b"plain", SRC).device_id == "unknown"


def test_accepted_optional_fields_round_trip() -> None:
    value = _j(v=1, text="hi", lang="de", confidence=1, started_at="2026-01-01T00:00:00+02:00",
               ended_at="2026-01-01T00:00:01.5Z", stt_engine="vosk")
    t = decode_transcript(b"pi", value, SRC)
    assert t == Transcript("pi", "@stt.transcripts-3-1041", "hi", "de", 1.0, "2026-01-01T00:00:00+02:00", "2026-01-01T00:00:01.5Z", "vosk")
    assert decode_transcript(b"pi", t.encode(), SRC) == t


def test_worst_case_escaped_text_still_round_trips() -> None:
    t = decode_transcript(b"pi", b"\x01" * 8192, SRC)  # each byte becomes a 6-byte JSON escape
    assert decode_transcript(b"pi", t.encode(), SRC) == t


@pytest.mark.parametrize("text", ["", "soon", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2026-13-01T00:00:00Z",
                                  "\ud800", "2026-01-01T00:00:00\x00"])
def test_parse_ts_raises_only_value_error(text: str) -> None:
    try:
        assert parse_ts(text) == parse_ts(text)  # finite when it parses
    except ValueError:
        pass


@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        (None, "null_value"),
        (b"", "invalid_json"),
        (b"\xff", "undecodable"),
        (b"[1]", "invalid_schema"),
        (b'{"v":1,"label":"joy"}', "invalid_schema"),
        (b'{"v":1,"device_id":"pi"}', "invalid_schema"),
        (b'{"v":2,"label":"joy","device_id":"pi"}', "invalid_schema"),
        (b'{"v":1,"label":"joy","device_id":"pi","scores":{"joy":"high"}}', "invalid_schema"),
        (b'{"v":1,"label":"joy","device_id":"pi","scores":[0.5]}', "invalid_schema"),
        (b'{"v":1,"label":"joy","device_id":"pi","scores":{"joy":NaN}}', "invalid_number"),
        (b'{"v":1,"label":"joy","device_id":"pi","latency_ms":' + b"9" * 400 + b"}", "invalid_number"),
        (b'{"v":1,"label":"joy","device_id":"pi","text":"\\ud800"}', "invalid_text"),
        (b'{"v":1,"label":"joy","device_id":"pi","x":' + b"[" * 15_000 + b"]" * 15_000 + b"}", "too_deep"),
        (b'{"v":1,"label":"joy","device_id":"pi","x":"' + b"a" * (1024 * 1024) + b'"}', "value_too_large"),
    ],
)
def test_emotion_event_decode_names_its_error(value: bytes | None, error_type: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_emotion_event(value)
    assert info.value.error_type == error_type


def test_emotion_event_keeps_its_fields() -> None:
    value = b'{"v":1,"device_id":"pi","label":"joy","scores":{"joy":0.9,"neutral":0},"source":{"offset":3},"x":[{"y":null}]}'
    event = decode_emotion_event(value)
    assert event["label"] == "joy" and event["scores"] == {"joy": 0.9, "neutral": 0} and event["source"] == {"offset": 3}


def test_dead_letter_headers_never_raise() -> None:
    h = dict(dead_letter_headers("x\ud800", "bad \udfff" * 500, SourceRef("t\ud800", 0, 1)))
    assert h["error.type"] == b"x?" and len(h["error.message"]) == 1000 and h["source.topic"] == b"t?"


def test_derived_id_is_outside_the_claimable_alphabet() -> None:
    with pytest.raises(InvalidEvent):
        check_utterance_id("@stt.transcripts-3-1041")


def test_dead_letter_message_is_at_most_1000_bytes_of_valid_utf8() -> None:
    from emostream.events import SourceRef, dead_letter_headers

    headers = dict(dead_letter_headers("invalid_text", "é" * 2000 + "\ud800", SourceRef("t", 0, 1)))
    assert len(headers["error.message"]) <= 1000
    assert headers["error.message"].decode("utf-8") == "é" * 500


# The JSON reader keeps one decoder per thread and the writers share one encoder (for speed): they
# must read and write exactly what json.loads / json.dumps with the same options do, from any thread.
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_JSON.map(json.dumps), st.text(max_size=40), st.just("\ufeff{}")))
def test_the_shared_json_reader_reads_what_json_loads_reads(text: str) -> None:
    try:
        expected = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except InvalidEvent:
        expected = InvalidEvent
    except (ValueError, RecursionError):
        expected = InvalidEvent
    try:
        got = _load_json(text, "value")
    except InvalidEvent:
        got = InvalidEvent
    assert got == expected if expected is InvalidEvent else json.dumps(got) == json.dumps(expected)


def test_json_reader_and_writer_from_many_threads_at_once() -> None:
    docs = [json.dumps({"v": 1, "text": f"utterance {i} é", "n": i, "x": [i * 0.5, {"k": str(i)}]}) for i in range(2000)]
    event = EmotionEvent(device_id="d", utterance_id="u", text="héllo", label="joy", scores={"joy": 0.91234567},
                         model="m", source=SRC, classified_at="2026-11-29T00:00:00.000Z", latency_ms=1.25)
    wanted = json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
    bad: list[str] = []

    def read_and_write() -> None:
        for i, doc in enumerate(docs):
            if _load_json(doc, "value") != json.loads(doc) or event.encode() != wanted:
                bad.append(doc)

    threads = [threading.Thread(target=read_and_write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
