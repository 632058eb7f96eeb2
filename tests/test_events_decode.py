"""The transcript decode table: every error type the DLQ can carry, and the accepted shapes."""

from __future__ import annotations

import json

import pytest

from emostream.events import InvalidEvent, SourceRef, decode_transcript, dead_letter_headers

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
    ],
)
def test_invalid_records_name_their_error(key: bytes | None, value: bytes | None, error_type: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_transcript(key, value, SRC)
    assert info.value.error_type == error_type
    assert str(info.value)


def test_json_transcript_keeps_its_fields() -> None:
    t = decode_transcript(b"key-dev", _j(v=1, device_id="pi", utterance_id="u1", text=" hello ", ended_at="2026-01-01T00:00:00Z"), SRC)
    assert (t.device_id, t.utterance_id, t.text, t.ended_at) == ("pi", "u1", "hello", "2026-01-01T00:00:00Z")


def test_plain_text_uses_key_and_source_for_ids() -> None:
    t = decode_transcript(b"pi-kitchen", "I can't believe it worked!\n".encode(), SRC)
    assert t.device_id == "pi-kitchen"
    assert t.utterance_id == "stt.transcripts-3-1041"
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
