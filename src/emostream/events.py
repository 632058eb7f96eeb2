"""Pipeline events: Transcript, EmotionEvent and dead letters. Encode, decode, validate; no I/O.

Every value is versioned JSON (UTF-8). A transcript value that is plain text instead of JSON is
accepted too, with the record key as ``device_id``, so any Kafka client can feed the pipeline.
Decoding is total: whatever bytes arrive, :func:`decode_transcript` and
:func:`decode_emotion_event` return a valid value or raise :class:`InvalidEvent` (never anything
else), whose ``error_type`` becomes the dead letter's ``error.type`` header. Every field is
bounded, every string survives a UTF-8 round trip, nesting depth and number size are capped.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
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
# Ids derived from a record's position start with '@', outside the utterance-id alphabet, so a
# JSON record can never claim another record's derived id.
DERIVED_ID_PREFIX = "@"
MAX_LANG_CHARS = 16
MAX_ENGINE_CHARS = 64
MAX_TS_CHARS = 40
# Deeper JSON is refused before parsing: json.loads recurses per level (RecursionError).
MAX_JSON_DEPTH = 32
# Integers in emotion events: anything a 64-bit reader (and float()) can take.
MAX_EVENT_INT = 2**63
# Emotion events are produced by the worker; the broker's default record limit bounds them.
MAX_EVENT_BYTES = 1024 * 1024


class InvalidEvent(ValueError):
    """A record that is not a usable transcript or event; ``error_type`` names why (the DLQ header)."""

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
    """ISO-8601 timestamp (``Z`` or offset) to finite epoch seconds; ValueError (only) for anything else."""
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be a string, not {type(value).__name__}")
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        epoch = dt.timestamp()
    except (ValueError, OverflowError, TypeError) as exc:
        raise ValueError(f"not an ISO-8601 timestamp: {value[:60]!r}") from exc
    if not math.isfinite(epoch):
        raise ValueError(f"timestamp is out of range: {value[:60]!r}")
    return epoch


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
        return _ENCODER.encode(self.to_dict()).encode("utf-8")


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
    labels: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the documented field order."""
        out: dict[str, Any] = {
            "v": self.v,
            "device_id": self.device_id,
            "utterance_id": self.utterance_id,
            "text": self.text,
            "label": self.label,
            "scores": {k: round(float(s), 4) for k, s in self.scores.items()},
            **({"labels": list(self.labels)} if self.labels is not None else {}),
            "model": self.model,
            "source": self.source.to_dict(),
            "classified_at": self.classified_at,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
        }
        out.update(self.extra)
        return out

    def encode(self) -> bytes:
        """The Kafka record value."""
        return _ENCODER.encode(self.to_dict()).encode("utf-8")


def derived_utterance_id(source: SourceRef) -> str:
    """The utterance id of a record that carries none: ``@<topic>-<partition>-<offset>``, the same on every read."""
    return f"{DERIVED_ID_PREFIX}{source.topic}-{source.partition}-{source.offset}"


# A JSON string or one bracket. A string left unterminated runs to the end of the text, so one
# pass over the text finds every token (no retry per quote, no quadratic worst case).
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def _nests_deeper_than(text: str, limit: int) -> bool:
    if text.count("[") + text.count("{") <= limit:
        return False  # every ordinary record: no scan at all
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _no_constant(name: str) -> Any:
    raise InvalidEvent("invalid_number", f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InvalidEvent("invalid_number", f"number {text[:40]} is out of range")
    return number


# One encoder for every value we write (json.dumps with options builds one per call), and one
# decoder per thread (its scanner keeps a key memo between the calls' start and end).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_DECODERS = threading.local()


def _decoder() -> json.JSONDecoder:
    decoder = getattr(_DECODERS, "decoder", None)
    if decoder is None:
        decoder = _DECODERS.decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)
    return decoder


def _load_json(text: str, what: str) -> Any:
    """``json.loads`` that raises only InvalidEvent: bounded depth, finite numbers, no NaN/Infinity."""
    if _nests_deeper_than(text, MAX_JSON_DEPTH):
        raise InvalidEvent("too_deep", f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        if text.startswith("\ufeff"):  # as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _decoder().decode(text)
    except InvalidEvent:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", f"{what} looks like JSON but does not parse: {exc.msg} at char {exc.pos}") from exc
    except RecursionError as exc:  # unreachable after the depth scan; kept so no input can get past
        raise InvalidEvent("too_deep", f"{what} nests too deep to parse") from exc
    except ValueError as exc:  # an integer longer than Python's int digit limit
        raise InvalidEvent("invalid_number", f"{what} holds a number too large to parse: {str(exc)[:120]}") from exc


def _is_unicode(text: str) -> bool:
    """Whether ``text`` survives UTF-8 (JSON escapes can smuggle in lone surrogates, which do not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_tree(obj: Any, what: str) -> None:
    """Every string (keys too) valid Unicode, every integer within 64 bits; iterative, depth is already bounded."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if not _is_unicode(node):
                raise InvalidEvent("invalid_text", f"{what} holds a string that is not valid Unicode (a lone surrogate)")
        elif isinstance(node, int) and not isinstance(node, bool):
            if abs(node) > MAX_EVENT_INT:
                raise InvalidEvent("invalid_number", f"{what} holds an integer beyond 64 bits")
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def decode_emotion_event(value: bytes | None) -> dict[str, Any]:
    """Parse an EmotionEvent value into a dict; InvalidEvent (only) when it is not one.

    Checked: v=1, a ``label`` and a ``device_id`` string, ``scores`` (when present) a dict of
    finite numbers; every string valid Unicode, every integer within 64 bits, bounded size and depth.
    """
    if value is None:
        raise InvalidEvent("null_value", "record value is null (a tombstone), not an emotion event")
    if not isinstance(value, (bytes, bytearray)):
        raise InvalidEvent("invalid_json", f"emotion event must be bytes, not {type(value).__name__}")
    if len(value) > MAX_EVENT_BYTES:
        raise InvalidEvent("value_too_large", f"emotion event is {len(value)} bytes; at most {MAX_EVENT_BYTES}")
    try:
        raw = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("undecodable", f"emotion event is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    obj = _load_json(raw, "emotion event")
    if not isinstance(obj, dict):
        raise InvalidEvent("invalid_schema", "emotion event must be a JSON object")
    _check_tree(obj, "emotion event")
    version = obj.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InvalidEvent("invalid_schema", f"emotion event has v={str(version)[:20]!r}, expected {SCHEMA_VERSION}")
    for name in ("label", "device_id"):
        if not isinstance(obj.get(name), str) or not obj[name]:
            raise InvalidEvent("invalid_schema", f"emotion event lacks a '{name}' string")
    scores = obj.get("scores")
    if scores is not None and (not isinstance(scores, dict) or not all(_is_number(s) for s in scores.values())):
        raise InvalidEvent("invalid_schema", "emotion event 'scores' must map labels to numbers")
    return obj


def _device_from_key(key: bytes | None) -> str | None:
    """The device id a record key names; None without a key; InvalidEvent when the key is not a device id."""
    if not key:
        return None
    try:
        text = bytes(key).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid_device_id", f"record key is not UTF-8 ({exc.reason} at byte {exc.start}); it must be the device id") from exc
    return check_device_id(text)


def _optional(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    val = obj.get(name)
    if val is not None and not isinstance(val, kind):
        raise InvalidEvent("invalid_field", f"field '{name}' must be {getattr(kind, '__name__', kind)}")
    return val


def _string_field(obj: dict[str, Any], name: str, max_chars: int) -> str | None:
    """An optional string field, bounded and valid Unicode; "" counts as absent."""
    val = _optional(obj, name, str)
    if not val:
        return None
    if len(val) > max_chars:
        raise InvalidEvent("invalid_field", f"field '{name}' is {len(val)} characters; at most {max_chars}")
    if not _is_unicode(val):
        raise InvalidEvent("invalid_field", f"field '{name}' is not valid Unicode (a lone surrogate)")
    return val


def _timestamp_field(obj: dict[str, Any], name: str) -> str | None:
    val = _string_field(obj, name, MAX_TS_CHARS)
    if val is not None:
        try:
            parse_ts(val)
        except ValueError as exc:
            raise InvalidEvent("invalid_field", f"field '{name}': {exc}") from exc
    return val


def _confidence(obj: dict[str, Any]) -> float | None:
    val = obj.get("confidence")
    if val is None:
        return None
    # NaN fails both comparisons; a huge integer compares without overflowing.
    if not _is_number(val) or not 0 <= val <= 1:
        raise InvalidEvent("invalid_field", "field 'confidence' must be a number from 0 to 1")
    return float(val)


def max_value_bytes(max_text_bytes: int) -> int:
    """Largest transcript value decoded: room for the text JSON-escaped (at most 6 bytes a byte) and the other fields."""
    return 6 * max_text_bytes + 4096


def decode_transcript(
    key: bytes | None,
    value: bytes | None,
    source: SourceRef,
    *,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
) -> Transcript:
    """Decode and validate one transcripts-topic record; InvalidEvent (only) when it is not one.

    JSON values must carry ``v`` = 1, a non-empty ``text`` and a ``device_id`` or a record key
    (both present must agree: the key is what the producer was allowed to write). Plain-text
    values become a transcript with the key as device id (``unknown`` without a key). A record
    without an ``utterance_id`` gets :func:`derived_utterance_id`, so reprocessing the same
    record yields the same id, and no JSON record can claim another record's derived id.
    """
    if value is None:
        raise InvalidEvent("null_value", "record value is null (a tombstone), not a transcript")
    if key is not None and len(key) > MAX_KEY_BYTES:
        raise InvalidEvent("key_too_large", f"record key is {len(key)} bytes; at most {MAX_KEY_BYTES} (it must be the device id)")
    # Refuse huge values before decoding them: parsing a 1 MB "transcript" is wasted work.
    if len(value) > max_value_bytes(max_text_bytes):
        raise InvalidEvent("value_too_large", f"value is {len(value)} bytes; transcripts are at most {max_text_bytes} bytes of text")
    try:
        raw = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("undecodable", f"value is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    key_device = _device_from_key(key)
    derived = derived_utterance_id(source)
    stripped = raw.strip()
    if not stripped.startswith("{"):
        return _checked(Transcript(device_id=key_device or UNKNOWN_DEVICE, utterance_id=derived, text=stripped), max_text_bytes)
    obj = _load_json(stripped, "value")
    if not isinstance(obj, dict):
        raise InvalidEvent("invalid_json", "JSON value must be an object")
    version = obj.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InvalidEvent("unsupported_version", f"schema version {str(version)[:20]!r} is not supported (expected {SCHEMA_VERSION})")
    text = obj.get("text")
    if not isinstance(text, str):
        raise InvalidEvent("missing_text", "field 'text' is missing or not a string")
    json_device = _optional(obj, "device_id", str) or None
    if json_device is not None:
        check_device_id(json_device)
        if key_device is not None and json_device != key_device:
            raise InvalidEvent("device_mismatch", f"field 'device_id' {json_device!r} differs from the record key {key_device!r}")
    device_id = key_device or json_device
    if not device_id:
        raise InvalidEvent("missing_device_id", "no 'device_id' field and no record key")
    claimed = _optional(obj, "utterance_id", str)
    # A record may name its own derived id (a decoded transcript re-encoded); never another's.
    utterance_id = derived if not claimed or claimed == derived else check_utterance_id(claimed)
    return _checked(
        Transcript(
            device_id=device_id,
            utterance_id=utterance_id,
            text=text.strip(),
            lang=_string_field(obj, "lang", MAX_LANG_CHARS) or "en",
            confidence=_confidence(obj),
            started_at=_timestamp_field(obj, "started_at"),
            ended_at=_timestamp_field(obj, "ended_at"),
            stt_engine=_string_field(obj, "stt_engine", MAX_ENGINE_CHARS),
        ),
        max_text_bytes,
    )


def _checked(t: Transcript, max_text_bytes: int) -> Transcript:
    if not t.text:
        raise InvalidEvent("missing_text", "transcript text is empty")
    try:
        size = len(t.text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidEvent("invalid_text", f"text is not valid Unicode (a lone surrogate at character {exc.start})") from exc
    if size > max_text_bytes:
        raise InvalidEvent("text_too_long", f"text is {size} bytes; the limit is {max_text_bytes} (--max-text-bytes)")
    return t


def _header_value(value: object, limit: int) -> bytes:
    """At most ``limit`` bytes of UTF-8, cut on a character boundary (lone surrogates become '?')."""
    raw = str(value).encode("utf-8", "replace")
    return raw[:limit].decode("utf-8", "ignore").encode("utf-8") if len(raw) > limit else raw


def dead_letter_headers(error_type: str, message: str, source: SourceRef) -> list[tuple[str, bytes]]:
    """Headers of a dead letter: why it failed and where the original record came from. Never raises."""
    return [
        ("error.type", _header_value(error_type, 100)),
        ("error.message", _header_value(message, 1000)),
        ("source.topic", _header_value(source.topic, 300)),
        ("source.partition", _header_value(source.partition, 20)),
        ("source.offset", _header_value(source.offset, 20)),
    ]
