"""Watch a folder for audio files: transcribe each new one once, send it through the spool, move it to ``done/``.

Any format the decoder reads (``edge.audio.read_audio``: WAV, FLAC, OGG/Opus, MP3, M4A), by file suffix.

A file is taken only once it has stopped growing (``arecord`` may still be writing it) and
files whose name starts with '.' are ignored, so recorders can write ``.x.wav`` and rename.
Unreadable files (and ones whose transcript cannot be sent) go to ``failed/`` with the reason in a ``.err`` file next to them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from emostream.edge.errors import AudioError, TranscriptError


AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a"})


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def ready_files(folder: Path, settle_s: float, sizes: dict[Path, tuple[int, float]]) -> list[Path]:
    """Audio files in ``folder`` whose size has not changed for ``settle_s``, oldest first."""
    now = time.monotonic()
    ready = []
    candidates = [q for q in folder.iterdir() if q.suffix.lower() in AUDIO_SUFFIXES and q.is_file()]
    for p in sorted(candidates, key=lambda q: (_mtime(q), q.name)):
        if p.name.startswith("."):
            continue
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            continue
        prev = sizes.get(p)
        if prev is None or prev[0] != size:
            sizes[p] = (size, now)
        elif now - prev[1] >= settle_s:
            ready.append(p)
    return ready


def watch(folder: Path, handle: Callable[[Path], None], *, poll_s: float = 0.5, settle_s: float = 1.0,
          idle: Callable[[], None] | None = None, stop: Callable[[], bool] = lambda: False) -> int:
    """Call ``handle(path)`` once per settled audio file, then move it to ``done/`` (``failed/`` on AudioError or TranscriptError)."""
    if not folder.is_dir():
        raise AudioError(f"watch folder {folder} does not exist; create it or pass another --dir")
    done, failed = folder / "done", folder / "failed"
    done.mkdir(exist_ok=True)
    failed.mkdir(exist_ok=True)
    sizes: dict[Path, tuple[int, float]] = {}
    handled = 0
    while not stop():
        for p in ready_files(folder, settle_s, sizes):
            sizes.pop(p, None)
            try:
                handle(p)
            except (AudioError, TranscriptError) as exc:
                print(f"emostream: {exc}; moved to {failed}/", file=sys.stderr)
                p.replace(failed / p.name)
                (failed / f"{p.name}.err").write_text(str(exc) + "\n")
                continue
            p.replace(done / p.name)
            handled += 1
        if idle is not None:
            idle()
        time.sleep(poll_s)
    return handled
