"""Pipeline events: Transcript, EmotionEvent and dead letters. Encode, decode, validate; no I/O.

Every value is versioned JSON (UTF-8). A transcript value that is plain text instead of JSON is
accepted too, with the record key as ``device_id``, so any Kafka client can feed the pipeline.
Decoding raises :class:`InvalidEvent`, whose ``error_type`` becomes the dead letter's
``error.type`` header.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

SCHEMA_VERSION = 1
DEFAULT_MAX_TEXT_BYTES = 8 * 1024
UNKNOWN_DEVICE = "unknown"
# Bounds on identifiers from outside. Device ids are the same alphabet as user ids (they name
# principals, topics and groups); utterance ids are bounded so the dedupe memory is too.
MAX_DEVICE_ID_CHARS = 64
MAX_UTTERANCE_ID_CHARS = 128
MAX_KEY_BYTES = 256
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_UTTERANCE_ID_CHARS = _ID_CHARS | {":"}


class InvalidEvent(ValueError):
    """A record that is not a usable transcript; ``error_type`` names why, for the DLQ header."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def check_device_id(device_id: str) -> str:
    """``device_id`` when it is 1-64 of ``[A-Za-z0-9._-]`` not starting with '.'; InvalidEvent otherwise."""
    if (
        not device_id
        or len(device_id) > MAX_DEVICE_ID_CHARS
        or device_id[0] == "."
        or not _ID_CHARS.issuperset(device_id)
    ):
        raise InvalidEvent(
            "invalid_device_id",
            f"device id must be 1-{MAX_DEVICE_ID_CHARS} letters, digits, '-', '_' or '.' (got {device_id[:80]!r})",
        )
    return device_id


def check_utterance_id(utterance_id: str) -> str:
    """``utterance_id`` when it is 1-128 of ``[A-Za-z0-9._:-]``; InvalidEvent otherwise."""
    if not utterance_id or len(utterance_id) > MAX_UTTERANCE_ID_CHARS or not _UTTERANCE_ID_CHARS.issuperset(utterance_id):
        raise InvalidEvent(
            "invalid_utterance_id",
            f"utterance id must be 1-{MAX_UTTERANCE_ID_CHARS} letters, digits, '-', '_', '.' or ':' (got {utterance_id[:80]!r})",
        )
    return utterance_id


def utc_now_iso() -> str:
    """Current UTC time as ISO-8601 with milliseconds and a ``Z`` suffix."""
    return format_ts(time.time())


def format_ts(epoch_s: float) -> str:
    """Epoch seconds to ISO-8601 UTC with milliseconds and ``Z``."""
    dt = datetime.fromtimestamp(epoch_s, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_ts(value: str) -> float:
    """ISO-8601 timestamp (``Z`` or offset) to epoch seconds; ValueError when unparseable."""
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def new_utterance_id() -> str:
    """A UUIDv7 string: unique, and sorting the strings sorts by creation time (ms)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return str(uuid.UUID(int=value))


@dataclass(frozen=True)
class Transcript:
    """What a device heard: one utterance's text and where/when it came from."""

    device_id: str
    utterance_id: str
    text: str
    lang: str = "en"
    confidence: float | None = None
    started_at: str | None = None
    ended_at: str | None = None
    stt_engine: str | None = None
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, ``v`` first, None fields left out."""
        body = {k: val for k, val in asdict(self).items() if val is not None and k != "v"}
        return {"v": self.v, **body}

    def encode(self) -> bytes:
        """The Kafka record value."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class SourceRef:
    """Where a record was read from; makes every output traceable and gives plain-text ids."""

    topic: str
    partition: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True)
class EmotionEvent:
    """The worker's output for one transcript."""

    device_id: str
    utterance_id: str
    text: str
    label: str
    scores: dict[str, float]
    model: str
    source: SourceRef
    classified_at: str
    latency_ms: float | None = None
    v: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the documented field order."""
        out: dict[str, Any] = {
            "v": self.v,
            "device_id": self.device_id,
            "utterance_id": self.utterance_id,
            "text": self.text,
            "label": self.label,
            "scores": {k: round(float(s), 4) for k, s in self.scores.items()},
            "model": self.model,
            "source": self.source.to_dict(),
            "classified_at": self.classified_at,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
        }
        out.update(self.extra)
        return out

    def encode(self) -> bytes:
        """The Kafka record value."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_emotion_event(value: bytes) -> dict[str, Any]:
    """Parse an EmotionEvent value into a dict; InvalidEvent when it is not one."""
    try:
        obj = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent("invalid_json", f"emotion event is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("v") != SCHEMA_VERSION or "label" not in obj:
        raise InvalidEvent("invalid_schema", "emotion event lacks v=1 or label")
    return obj


def _device_from_key(key: bytes | None) -> str | None:
    if not key:
        return None
    try:
        text = key.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    return text or None


def _optional(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    val = obj.get(name)
    if val is not None and not isinstance(val, kind):
        raise InvalidEvent("invalid_field", f"field '{name}' must be {getattr(kind, '__name__', kind)}")
    return val


def decode_transcript(
    key: bytes | None,
    value: bytes | None,
    source: SourceRef,
    *,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
) -> Transcript:
    """Decode and validate one transcripts-topic record.

    JSON values must carry ``v`` = 1, a non-empty ``text`` and a ``device_id`` (or a record key).
    Plain-text values become a transcript with the key as device id; their utterance id is
    derived from ``source`` so that reprocessing the same record yields the same id.
    """
    if value is None:
        raise InvalidEvent("null_value", "record value is null (a tombstone), not a transcript")
    # Refuse huge values before decoding them: parsing a 1 MB "transcript" is wasted work.
    if len(value) > 4 * max_text_bytes + 4096:
        raise InvalidEvent("value_too_large", f"value is {len(value)} bytes; transcripts are at most {max_text_bytes} bytes of text")
    try:
        raw = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("undecodable", f"value is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    key_device = _device_from_key(key)
    stripped = raw.strip()
    if not stripped.startswith("{"):
        return _checked(
            Transcript(
                device_id=key_device or UNKNOWN_DEVICE,
                utterance_id=f"{source.topic}-{source.partition}-{source.offset}",
                text=stripped,
            ),
            max_text_bytes,
        )
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", f"value looks like JSON but does not parse: {exc.msg} at char {exc.pos}") from exc
    if not isinstance(obj, dict):
        raise InvalidEvent("invalid_json", "JSON value must be an object")
    version = obj.get("v")
    if version != SCHEMA_VERSION:
        raise InvalidEvent("unsupported_version", f"schema version {version!r} is not supported (expected {SCHEMA_VERSION})")
    text = obj.get("text")
    if not isinstance(text, str):
        raise InvalidEvent("missing_text", "field 'text' is missing or not a string")
    device_id = _optional(obj, "device_id", str) or key_device
    if not device_id:
        raise InvalidEvent("missing_device_id", "no 'device_id' field and no record key")
    utterance_id = _optional(obj, "utterance_id", str) or f"{source.topic}-{source.partition}-{source.offset}"
    confidence = _optional(obj, "confidence", (int, float))
    return _checked(
        Transcript(
            device_id=device_id,
            utterance_id=utterance_id,
            text=text.strip(),
            lang=_optional(obj, "lang", str) or "en",
            confidence=None if confidence is None else float(confidence),
            started_at=_optional(obj, "started_at", str),
            ended_at=_optional(obj, "ended_at", str),
            stt_engine=_optional(obj, "stt_engine", str),
        ),
        max_text_bytes,
    )


def _checked(t: Transcript, max_text_bytes: int) -> Transcript:
    if not t.text:
        raise InvalidEvent("missing_text", "transcript text is empty")
    size = len(t.text.encode("utf-8"))
    if size > max_text_bytes:
        raise InvalidEvent("text_too_long", f"text is {size} bytes; the limit is {max_text_bytes} (--max-text-bytes)")
    return t


def dead_letter_headers(error_type: str, message: str, source: SourceRef) -> list[tuple[str, bytes]]:
    """Headers of a dead letter: why it failed and where the original record came from."""
    return [
        ("error.type", error_type.encode()),
        ("error.message", message[:1000].encode("utf-8", "replace")),
        ("source.topic", source.topic.encode()),
        ("source.partition", str(source.partition).encode()),
        ("source.offset", str(source.offset).encode()),
    ]
