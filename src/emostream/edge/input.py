"""What a device is asked to send: transcripts built from text, checked before they reach the spool.

Everything here refuses bad input *before* it is spooled (a bad device id, empty text, text over
the worker's limit, a record over the spool's bound), so one bad transcript is an error for its
sender and never a row that blocks the rows behind it. ``send_lines`` is the ``edge send --stdin``
loop: one transcript per line, a refused line reported and skipped.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emostream.edge.errors import TranscriptError
from emostream.edge.spool import MAX_VALUE_BYTES
from emostream.events import (
    DEFAULT_MAX_TEXT_BYTES,
    InvalidEvent,
    Transcript,
    check_device_id,
    check_utterance_id,
    new_utterance_id,
    utc_now_iso,
)

if TYPE_CHECKING:
    from emostream.edge.sender import SpoolingSender

# A line longer than this cannot be a transcript (text limit plus room for multi-byte slack);
# the rest of it is skipped without being held in memory.
MAX_LINE_BYTES = 4 * DEFAULT_MAX_TEXT_BYTES
READ_CHUNK = 65536


def check_device(device: str) -> str:
    """``device`` when it is a valid device id; TranscriptError (a usage error) otherwise."""
    try:
        return check_device_id(device)
    except InvalidEvent as exc:
        raise TranscriptError(f"--device {device[:80]!r}: {exc}") from None


def check_transcript(t: Transcript) -> Transcript:
    """``t`` when the worker would accept it and it fits a spool row; TranscriptError otherwise."""
    check_device(t.device_id)
    try:
        check_utterance_id(t.utterance_id)
    except InvalidEvent as exc:
        raise TranscriptError(str(exc)) from None
    if not t.text.strip():
        raise TranscriptError("transcript text is empty")
    size = len(t.text.encode("utf-8"))
    if size > DEFAULT_MAX_TEXT_BYTES:
        raise TranscriptError(
            f"transcript is {size:,} bytes of text; the limit is {DEFAULT_MAX_TEXT_BYTES:,} "
            "(the worker refuses longer ones): split it into utterances"
        )
    value = len(t.encode())
    if value > MAX_VALUE_BYTES:
        raise TranscriptError(f"transcript record is {value:,} bytes; at most {MAX_VALUE_BYTES:,}: shorten its fields")
    return t


def transcript_from_text(device: str, text: str, **fields: Any) -> Transcript:
    """A checked Transcript of typed or piped ``text`` (stripped), with a new utterance id and now as its time."""
    now = utc_now_iso()
    fields = {"started_at": now, "ended_at": now, "stt_engine": "text", **fields}
    return check_transcript(Transcript(device, fields.pop("utterance_id", None) or new_utterance_id(), text.strip(), **fields))


@dataclass(frozen=True)
class TooLong:
    """A line over ``MAX_LINE_BYTES``: how long it was (its bytes are not kept)."""

    size: int


class LineSplitter:
    """Bytes in, complete lines out, each line held to ``max_bytes`` (the rest of a longer one is counted, not kept)."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buf = b""
        self._skipping = 0  # > 0: inside a too-long line, this many bytes so far

    def feed(self, chunk: bytes) -> Iterator[bytes | TooLong]:
        """The lines completed by ``chunk``; an empty chunk is end of input (a last line without newline counts)."""
        eof = not chunk
        data = chunk if chunk else b"\n"
        while data:
            nl = data.find(b"\n")
            part, data = (data, b"") if nl < 0 else (data[:nl], data[nl + 1:])
            if self._skipping:
                self._skipping += len(part)
            else:
                self._buf += part
                if len(self._buf) > self.max_bytes:
                    self._skipping, self._buf = len(self._buf), b""
            if nl < 0:
                break
            if self._skipping:
                yield TooLong(self._skipping)
            elif not (eof and not self._buf):
                yield self._buf
            self._buf, self._skipping = b"", 0


@dataclass
class LinesResult:
    """What ``send_lines`` did."""

    accepted: int = 0
    refused: int = 0


def send_lines(sender: SpoolingSender, fd: int, device: str, topic: str, *, block_s: float,
               on_refused: Callable[[int, TranscriptError], None]) -> LinesResult:
    """Spool and deliver one transcript per line read from ``fd`` until end of input.

    A refused line (too long, empty is skipped silently) is reported through
    ``on_refused(line_number, error)`` and skipped: it never reaches the spool. Delivery goes on
    while waiting for input, so the broker may come and go.
    """
    check_device(device)
    splitter, result, line_no, eof = LineSplitter(), LinesResult(), 0, False
    while not eof:
        # Raw reads, not sys.stdin.readline(): select() cannot see lines already in Python's buffer,
        # which would hold transcripts back until more input arrives.
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, READ_CHUNK)
            eof = not chunk
            batch = []
            for line in splitter.feed(chunk):
                line_no += 1
                try:
                    if isinstance(line, TooLong):
                        raise TranscriptError(f"line is {line.size:,} bytes; a transcript is at most "
                                              f"{DEFAULT_MAX_TEXT_BYTES:,} bytes of text: split it into utterances")
                    text = line.decode("utf-8", "replace").strip()
                    if text:
                        batch.append(transcript_from_text(device, text))
                except TranscriptError as exc:
                    result.refused += 1
                    on_refused(line_no, exc)
            if batch:
                sender.submit(batch, topic, block_s=block_s)
                result.accepted += len(batch)
        sender.service(0)
    return result
