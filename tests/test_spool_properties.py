"""Property tests: spool rows are outside input on the way back (the file may be edited or damaged),
and transcripts from typed or piped text are outside input on the way in. No broker needed."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emostream.edge.errors import SpoolRowError, TranscriptError
from emostream.edge.input import LineSplitter, TooLong, transcript_from_text
from emostream.edge.sender import transcript_row
from emostream.edge.spool import Row, Spool, check_row, decode_row
from emostream.events import SourceRef, decode_transcript

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any SQLite value: what an edited file can hold in any column.
sqlite_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40),
)
ids = st.one_of(st.text(max_size=70), st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}", fullmatch=True))
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)  # non-BMP included, surrogates are not UTF-8


@contextmanager
def fresh_spool() -> Iterator[Spool]:
    with tempfile.TemporaryDirectory() as d:
        with Spool(Path(d) / "s.db", synchronous="NORMAL") as s:
            yield s


@SETTINGS
@given(raw=st.tuples(sqlite_values, sqlite_values, sqlite_values, sqlite_values, sqlite_values, sqlite_values, sqlite_values))
def test_decoding_any_raw_row_gives_a_valid_row_or_names_the_row(raw: tuple) -> None:
    try:
        row = decode_row(raw)
    except SpoolRowError as exc:
        assert str(exc).startswith("spool row")
        return
    assert isinstance(row, Row)
    check_row(row.device, row.topic, row.key, row.value, row.utterance_id)


@SETTINGS
@given(device=ids, topic=st.one_of(st.just("stt.transcripts"), ids), key=st.one_of(st.none(), st.binary(max_size=300)),
       value=st.binary(max_size=2000), utterance_id=ids)
def test_append_then_pending_gives_the_same_row_or_refuses_it_whole(device, topic, key, value, utterance_id) -> None:
    with fresh_spool() as s:
        try:
            seqs = s.append([(device, topic, key, value, utterance_id)])
        except SpoolRowError:
            assert s.count() == 0
            return
        [row] = s.pending()
        assert (row.seq, row.device, row.topic, row.key, row.value, row.utterance_id) == (
            seqs[0], device, topic, key, value, utterance_id)


@SETTINGS
@given(rows=st.lists(st.tuples(sqlite_values, sqlite_values, sqlite_values, sqlite_values, sqlite_values, sqlite_values),
                     min_size=1, max_size=4))
def test_rows_written_behind_the_spools_back_read_valid_or_name_the_bad_row(rows: list) -> None:
    with fresh_spool() as s:
        db = sqlite3.connect(s.path)
        seqs = []
        for r in rows:
            # Column NOT NULL constraints hold even in an edited file (SQLite stores NaN as NULL).
            r = tuple(b"" if v is None or v != v else v for v in r)
            seqs.append(db.execute("INSERT INTO spool(device, topic, key, value, utterance_id, created) "
                                   "VALUES (?, ?, ?, ?, ?, ?)", r).lastrowid)
        db.commit()
        db.close()
        after, seen = 0, []
        while True:
            try:
                got = s.pending(after)
            except SpoolRowError as exc:
                assert exc.seq == seqs[len(seen)], "the error names the first row that does not read back"
                assert s.reject([(exc.seq, exc.reason)]) == 1
                seen.append(exc.seq)
                continue
            if not got:
                break
            seen += [r.seq for r in got]
            after = got[-1].seq
        assert seen == seqs  # every row either read back or was named (and parked), in order
        assert s.count() + s.rejected_count() == len(rows)


@SETTINGS
@given(device=ids, text=texts)
def test_what_the_edge_accepts_the_worker_decodes_to_the_same_text(device: str, text: str) -> None:
    try:
        t = transcript_from_text(device, text)
    except TranscriptError:
        return
    _dev, _topic, key, value, uid = transcript_row(t, "stt.transcripts")
    with fresh_spool() as s:
        s.append([transcript_row(t, "stt.transcripts")])
        [row] = s.pending()
    back = decode_transcript(row.key, row.value, SourceRef("stt.transcripts", 0, 0))
    assert (back.device_id, back.utterance_id, back.text) == (device, uid, text.strip())


@SETTINGS
@given(chunks=st.lists(st.binary(max_size=60), max_size=8), limit=st.integers(min_value=1, max_value=20))
def test_line_splitter_gives_the_lines_of_the_input_each_bounded(chunks: list[bytes], limit: int) -> None:
    sp = LineSplitter(max_bytes=limit)
    out = [line for c in chunks if c for line in sp.feed(c)] + list(sp.feed(b""))
    data = b"".join(chunks)
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert [x.size if isinstance(x, TooLong) else len(x) for x in out] == [len(e) for e in expected]
    assert [x for x in out if not isinstance(x, TooLong)] == [e for e in expected if len(e) <= limit]
