"""The folder watcher: each settled WAV handled once, moved to done/; bad ones to failed/ with a reason."""

from __future__ import annotations

from pathlib import Path

from emostream.edge.errors import AudioError
from emostream.edge.watch import watch


def test_each_wav_is_handled_once_and_moved(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"a")
    (tmp_path / "b.wav").write_bytes(b"b")
    (tmp_path / ".partial.wav").write_bytes(b"p")  # still being recorded
    seen: list[str] = []
    rounds = iter(range(6))

    def handle(p: Path) -> None:
        if p.name == "b.wav":
            raise AudioError(f"{p} is not a readable PCM WAV file")
        seen.append(p.name)

    watch(tmp_path, handle, poll_s=0.01, settle_s=0.0, stop=lambda: next(rounds, None) is None)
    assert seen == ["a.wav"]
    assert (tmp_path / "done" / "a.wav").exists() and not (tmp_path / "a.wav").exists()
    assert "not a readable" in (tmp_path / "failed" / "b.wav.err").read_text()
    assert (tmp_path / ".partial.wav").exists()


def test_other_audio_formats_are_picked_up_and_other_files_left_alone(tmp_path: Path) -> None:
    for name in ("a.flac", "b.ogg", "c.MP3", "notes.txt", "d.wav"):
        (tmp_path / name).write_bytes(b"x")
    seen: list[str] = []
    rounds = iter(range(4))
    watch(tmp_path, lambda p: seen.append(p.name), poll_s=0.01, settle_s=0.0, stop=lambda: next(rounds, None) is None)
    assert sorted(seen) == ["a.flac", "b.ogg", "c.MP3", "d.wav"]
    assert (tmp_path / "notes.txt").exists()
