"""The SQLite spool: order, batching, bounds and policies, corruption. No broker needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from emostream.edge.errors import SpoolCorruptError, SpoolFullError
from emostream.edge.spool import Spool


def _rows(n: int, device: str = "d1", start: int = 0):
    return [(device, "stt.transcripts", device.encode(), f"v{i}".encode(), f"u{i}") for i in range(start, start + n)]


def test_rows_come_back_in_spool_order_and_delete_in_batches(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        seqs = s.append(_rows(5)) + s.append(_rows(3, "d2"))
        assert seqs == sorted(seqs) and len(set(seqs)) == 8
        assert [r.value for r in s.pending()] == [b"v0", b"v1", b"v2", b"v3", b"v4", b"v0", b"v1", b"v2"]
        assert [r.seq for r in s.pending(after_seq=seqs[4])] == seqs[5:]
        assert s.delete(seqs[:4] + [999_999]) == 4
        st = s.status()
        assert st.count == 4 and {(d.device, d.count) for d in st.devices} == {("d1", 1), ("d2", 3)}
    with Spool(tmp_path / "s.db") as again:  # rows survive reopening
        assert [r.utterance_id for r in again.pending()] == ["u4", "u0", "u1", "u2"]


def test_full_spool_with_block_policy_waits_then_fails(tmp_path: Path) -> None:
    waits = []
    with Spool(tmp_path / "s.db", max_records=10, policy="block") as s:
        s.append(_rows(10))
        with pytest.raises(SpoolFullError, match="full .*--spool-policy drop-oldest"):
            s.append(_rows(1, start=10), block_s=0.2, on_full_wait=lambda: waits.append(1))
        assert waits, "block policy must give the sender a chance to free space"
        assert s.count() == 10


def test_block_policy_proceeds_once_space_is_freed(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_records=3, policy="block") as s:
        seqs = s.append(_rows(3))
        s.append(_rows(1, start=3), block_s=5, on_full_wait=lambda: s.delete(seqs[:1]))
        assert [r.utterance_id for r in s.pending()] == ["u1", "u2", "u3"]


def test_drop_oldest_policy_drops_and_counts(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_records=5, policy="drop-oldest") as s:
        s.append(_rows(4))
        s.append(_rows(3, start=4))
        assert s.dropped == 2
        assert [r.utterance_id for r in s.pending()] == ["u2", "u3", "u4", "u5", "u6"]
        assert s.status().dropped_total == 2


def test_corrupted_spool_is_reported_with_how_to_move_it_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path) as s:
        s.append(_rows(50))
    data = bytearray(path.read_bytes())
    data[100:4000] = b"\x5a" * 3900  # header and first pages garbage
    path.write_bytes(bytes(data))
    with pytest.raises(SpoolCorruptError) as info:
        Spool(path)
    assert "mv " in str(info.value) and str(path) in str(info.value)
    assert path.exists(), "a corrupted spool must never be deleted"


def test_not_a_database_at_all(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_text("this is not sqlite, it is a note somebody saved here\n" * 100)
    with pytest.raises(SpoolCorruptError, match="Move it aside"):
        Spool(path)
    assert path.read_text().startswith("this is not sqlite")
