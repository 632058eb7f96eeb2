"""The durable local spool: every transcript is written here first and removed only once the broker acked it.

SQLite in WAL mode. ``synchronous=FULL`` by default: a Pi is switched off by pulling the plug,
and with NORMAL a WAL commit can be lost on power failure (it still survives a killed process).
FULL costs one fsync per commit, which batching keeps rare: rows are inserted many per
transaction and acked rows are deleted in batches. Pass ``synchronous="NORMAL"`` where the
machine has a UPS or the data is synthetic (the simulator).

Rows are numbered by an AUTOINCREMENT ``seq``: spool order is delivery order. A corrupted file
is reported with the command to move it aside; it is never deleted here.

A row the broker refuses for good (too large, not authorized, invalid) and a row that no longer
reads back as a valid row (the file was edited or damaged) is moved to the ``rejected`` table with
the reason: it no longer blocks the rows behind it, and it is never deleted silently
(``emostream edge spool status`` shows it). The files are private to their owner (0600): they hold
what was said in the room.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emostream.config import home_dir
from emostream.edge.errors import SpoolCorruptError, SpoolError, SpoolFullError, SpoolRowError
from emostream.events import (
    DEFAULT_MAX_TEXT_BYTES,
    MAX_KEY_BYTES,
    InvalidEvent,
    check_device_id,
    check_utterance_id,
    max_value_bytes,
)

DEFAULT_MAX_RECORDS = 100_000
POLICIES = ("block", "drop-oldest")
# The largest record value a row may hold: the largest transcript value the worker decodes
# (events.decode_transcript refuses more before parsing), far under the broker's 1 MB. (It was
# 4 x text + 4 KB here and 6 x in the worker: text of control characters, 6 JSON bytes each, was
# refused on the device although the worker takes it.)
MAX_VALUE_BYTES = max_value_bytes(DEFAULT_MAX_TEXT_BYTES)
MAX_TOPIC_CHARS = 249
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
RECENT_REJECTED = 5  # how many of the latest rejections status() shows

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    device       TEXT NOT NULL,
    topic        TEXT NOT NULL,
    key          BLOB,
    value        BLOB NOT NULL,
    utterance_id TEXT NOT NULL,
    created      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Copied as they were (no type constraints): a damaged row is kept for a person to read.
CREATE TABLE IF NOT EXISTS rejected (
    seq          INTEGER PRIMARY KEY,
    device,
    topic,
    key,
    value,
    utterance_id,
    error        TEXT NOT NULL,
    rejected_at  REAL NOT NULL
);
"""


def default_spool_path(device: str) -> Path:
    """``$EMOSTREAM_SPOOL`` if set, else ``$EMOSTREAM_HOME/spool-<device>.db`` (one file per device)."""
    env = os.environ.get("EMOSTREAM_SPOOL")
    if env:
        return Path(env)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in device) or "device"
    return home_dir() / f"spool-{safe}.db"


@dataclass(frozen=True)
class Row:
    """One spooled record."""

    seq: int
    device: str
    topic: str
    key: bytes | None
    value: bytes
    utterance_id: str
    created: float


def _text(raw: Any, seq: int, column: str) -> str:
    # The connection reads TEXT as bytes so that invalid UTF-8 in one row fails that row only.
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes):
        raise SpoolRowError(seq, f"{column} is {type(raw).__name__}, not text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpoolRowError(seq, f"{column} is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def check_row(device: Any, topic: Any, key: Any, value: Any, utterance_id: Any, seq: int = 0) -> None:
    """SpoolRowError unless the fields make a row this spool can deliver (the same rules on write and read)."""
    try:
        check_device_id(device)
        check_utterance_id(utterance_id)
    except InvalidEvent as exc:
        raise SpoolRowError(seq, str(exc)) from None
    if not topic or len(topic) > MAX_TOPIC_CHARS or not _TOPIC_CHARS.issuperset(topic) or topic in (".", ".."):
        raise SpoolRowError(seq, f"topic {topic[:80]!r} is not a Kafka topic name")
    if key is not None and (not isinstance(key, bytes) or len(key) > MAX_KEY_BYTES):
        raise SpoolRowError(seq, f"key must be at most {MAX_KEY_BYTES} bytes")
    if not isinstance(value, bytes):
        raise SpoolRowError(seq, f"value is {type(value).__name__}, not bytes")
    if len(value) > MAX_VALUE_BYTES:
        raise SpoolRowError(seq, f"value is {len(value)} bytes; a row holds at most {MAX_VALUE_BYTES}")


def decode_row(raw: Sequence[Any]) -> Row:
    """A Row from one ``SELECT seq, device, topic, key, value, utterance_id, created``; SpoolRowError naming the row otherwise.

    The file is outside input: it may have been edited or damaged since it was written.
    """
    if len(raw) != 7:
        raise SpoolRowError(0, f"expected 7 columns, got {len(raw)}")
    seq, device, topic, key, value, utterance_id, created = raw
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise SpoolRowError(0, f"seq {seq!r} is not a positive integer")
    device = _text(device, seq, "device")
    topic = _text(topic, seq, "topic")
    utterance_id = _text(utterance_id, seq, "utterance_id")
    if isinstance(value, str):  # a TEXT value is still the record's bytes
        value = value.encode("utf-8")
    check_row(device, topic, key, value, utterance_id, seq)
    if not isinstance(created, (int, float)) or isinstance(created, bool) or not math.isfinite(created):
        raise SpoolRowError(seq, f"created {created!r} is not a time")
    return Row(seq, device, topic, key, value, utterance_id, float(created))


@dataclass(frozen=True)
class RejectedRow:
    """A row moved out of the queue: the broker refused it for good, or it no longer reads back."""

    seq: int
    device: str
    utterance_id: str
    error: str
    rejected_at: float

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"seq": self.seq, "device": self.device, "utterance_id": self.utterance_id, "error": self.error,
                "rejected_at": round(self.rejected_at, 3)}


@dataclass(frozen=True)
class DeviceStatus:
    """What waits for one device."""

    device: str
    count: int
    oldest_age_s: float


@dataclass(frozen=True)
class SpoolStatus:
    """What waits in a spool file."""

    path: str
    count: int
    oldest_age_s: float | None
    size_bytes: int
    dropped_total: int
    devices: tuple[DeviceStatus, ...]
    rejected_total: int = 0
    rejected: tuple[RejectedRow, ...] = ()  # the latest, newest first

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "path": self.path,
            "count": self.count,
            "oldest_age_s": None if self.oldest_age_s is None else round(self.oldest_age_s, 1),
            "size_bytes": self.size_bytes,
            "dropped_total": self.dropped_total,
            "devices": [{"device": d.device, "count": d.count, "oldest_age_s": round(d.oldest_age_s, 1)} for d in self.devices],
            "rejected_total": self.rejected_total,
            "rejected": [r.to_dict() for r in self.rejected],
        }


def _shown(raw: Any) -> str:
    """A column for a person to read, whatever the file holds."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return "" if raw is None else str(raw)


def _time(raw: Any, default: float) -> float:
    return float(raw) if isinstance(raw, (int, float)) and math.isfinite(raw) else default


def _corrupt(path: Path, exc: Exception) -> SpoolCorruptError:
    aside = f"{path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
    return SpoolCorruptError(
        f"spool {path} is damaged ({exc}); its undelivered transcripts cannot be read. Move it aside and "
        f"start a fresh one: mv '{path}' '{aside}' (and any '{path}-wal'/'{path}-shm' next to it), then run again"
    )


class Spool:
    """A bounded, ordered, crash-safe queue of Kafka records in one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        policy: str = "block",
        synchronous: str = "FULL",
        create: bool = True,
    ) -> None:
        if policy not in POLICIES:
            raise SpoolError(f"unknown spool policy '{policy}'; choose one of: {', '.join(POLICIES)}")
        if max_records < 1:
            raise SpoolError(f"--spool-max must be at least 1, got {max_records}")
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise SpoolError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = Path(path)
        self.max_records = max_records
        self.policy = policy
        self.dropped = 0  # dropped by this object (drop-oldest); the file keeps the running total
        if not create and not self.path.exists():
            raise SpoolError(f"no spool at {self.path}")
        try:
            # A new folder is private; an existing one is the user's and is left as it is.
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # SQLite creates -wal and -shm with the database file's mode, so a 0600 file keeps them 0600.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise SpoolError(f"cannot create the spool {self.path}: {exc.strerror}") from None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so a batch is one transaction.
            self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.text_factory = bytes  # decode_row decodes, so one bad row cannot fail a whole read
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check not in ("ok", b"ok"):
                raise sqlite3.DatabaseError(check)
            self._db.executescript(_SCHEMA)
            self._count = self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise SpoolError(f"spool {self.path} is locked by another process for too long; try again") from None
            raise _corrupt(self.path, exc) from None

    # --- writing -------------------------------------------------------------------------------

    def append(self, rows: Sequence[tuple[str, str, bytes | None, bytes, str]], *, block_s: float = 0.0,
               on_full_wait=None) -> list[int]:
        """Insert ``(device, topic, key, value, utterance_id)`` rows in one transaction; their seqs.

        When the spool would exceed ``max_records``: ``drop-oldest`` deletes the oldest rows (counted
        in ``dropped``); ``block`` calls ``on_full_wait()`` (which should deliver and free space) until
        there is room or ``block_s`` has passed, then raises SpoolFullError.
        """
        if not rows:
            return []
        for row in rows:
            if len(row) != 5:
                raise SpoolRowError(0, f"a row to append has {len(row)} fields, not 5")
            check_row(*row)
        if len(rows) > self.max_records:
            raise SpoolFullError(f"{len(rows)} records do not fit a spool of at most {self.max_records} (--spool-max)")
        if self.policy == "block" and self._count + len(rows) > self.max_records:
            deadline = time.monotonic() + block_s
            while True:
                self._count = self._query_one("SELECT COUNT(*) FROM spool")
                if self._count + len(rows) <= self.max_records:
                    break
                if time.monotonic() >= deadline:
                    raise SpoolFullError(
                        f"spool {self.path} is full ({self._count} of {self.max_records} records waiting for the broker); "
                        "bring the broker back, raise --spool-max, or use --spool-policy drop-oldest"
                    )
                if on_full_wait is not None:
                    on_full_wait()
                else:
                    time.sleep(0.05)
        now = time.time()
        with self._transaction():
            overflow = self._count + len(rows) - self.max_records
            if self.policy == "drop-oldest" and overflow > 0:
                cur = self._db.execute(
                    "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT ?)", (overflow,)
                )
                self.dropped += cur.rowcount
                self._count -= cur.rowcount
                self._db.execute(
                    "INSERT INTO counters(name, value) VALUES('dropped', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (cur.rowcount,),
                )
            first = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM spool").fetchone()[0]
            # AUTOINCREMENT may skip past deleted seqs; read the seqs back instead of assuming them.
            self._db.executemany(
                "INSERT INTO spool(device, topic, key, value, utterance_id, created) VALUES (?, ?, ?, ?, ?, ?)",
                [(d, t, k, v, u, now) for d, t, k, v, u in rows],
            )
            seqs = [r[0] for r in self._db.execute("SELECT seq FROM spool WHERE seq > ? ORDER BY seq", (first,))]
        self._count += len(rows)
        return seqs

    def delete(self, seqs: Iterable[int]) -> int:
        """Remove delivered rows (one transaction); how many were there."""
        batch = [(s,) for s in seqs]
        if not batch:
            return 0
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany("DELETE FROM spool WHERE seq = ?", batch)
            removed = self._db.total_changes - before
        self._count = max(0, self._count - removed)
        return removed

    def reject(self, rejections: Iterable[tuple[int, str]]) -> int:
        """Move ``(seq, reason)`` rows from the queue to ``rejected`` (one transaction); how many moved."""
        batch = [(seq, reason, time.time(), seq) for seq, reason in rejections]
        if not batch:
            return 0
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR REPLACE INTO rejected(seq, device, topic, key, value, utterance_id, error, rejected_at) "
                "SELECT seq, device, topic, key, value, utterance_id, ?, ? FROM spool WHERE seq = ?",
                [(reason[:2000], at, seq) for seq, reason, at, _ in batch],
            )
            moved = self._db.total_changes - before
            self._db.executemany("DELETE FROM spool WHERE seq = ?", [(seq,) for seq, *_ in batch])
        self._count = max(0, self._count - moved)
        return moved

    # --- reading -------------------------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 10_000) -> list[Row]:
        """Rows with ``seq > after_seq`` in spool order, at most ``limit``.

        A row that does not read back as a valid row ends the list before it; when it is the
        first, SpoolRowError names its seq (move it away with ``reject`` and call again).
        """
        try:
            raw = self._db.execute(
                "SELECT seq, device, topic, key, value, utterance_id, created FROM spool WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None
        rows: list[Row] = []
        for r in raw:
            try:
                rows.append(decode_row(r))
            except SpoolRowError:
                if rows:
                    break
                raise
        return rows

    def rejected(self, limit: int = RECENT_REJECTED) -> list[RejectedRow]:
        """The latest rejected rows, newest first."""
        try:
            raw = self._db.execute(
                "SELECT seq, device, utterance_id, error, rejected_at FROM rejected ORDER BY rejected_at DESC, seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None
        return [RejectedRow(seq, _shown(device), _shown(uid), _shown(error), float(at or 0.0))
                for seq, device, uid, error, at in raw]

    def count(self) -> int:
        """Rows waiting."""
        self._count = self._query_one("SELECT COUNT(*) FROM spool")
        return self._count

    def status(self) -> SpoolStatus:
        """Count, oldest age, file size, per-device counts and the total dropped so far."""
        now = time.time()
        try:
            per = self._db.execute(
                "SELECT device, COUNT(*), MIN(created) FROM spool GROUP BY device ORDER BY device"
            ).fetchall()
            dropped = self._db.execute("SELECT value FROM counters WHERE name='dropped'").fetchone()
            rejected_total = self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None
        devices = tuple(DeviceStatus(_shown(d), n, now - _time(oldest, now)) for d, n, oldest in per)
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return SpoolStatus(
            str(self.path),
            sum(d.count for d in devices),
            max((d.oldest_age_s for d in devices), default=None),
            size,
            dropped[0] if dropped else 0,
            devices,
            rejected_total,
            tuple(self.rejected()) if rejected_total else (),
        )

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self._db.close()

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rejected_count(self) -> int:
        """Rows moved to ``rejected`` so far."""
        return self._query_one("SELECT COUNT(*) FROM rejected")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error; SQLite errors become SpoolErrors."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None

    def _query_one(self, sql: str) -> int:
        try:
            return self._db.execute(sql).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: sqlite3.DatabaseError) -> SpoolError:
        if isinstance(exc, sqlite3.OperationalError):
            msg = str(exc)
            if "locked" in msg or "busy" in msg:
                return SpoolError(f"spool {self.path} stayed locked by another process; try again")
            if "disk" in msg or "full" in msg or "readonly" in msg:
                return SpoolError(f"cannot write spool {self.path}: {msg}")
        return _corrupt(self.path, exc)
