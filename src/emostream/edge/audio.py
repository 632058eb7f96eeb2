"""Audio input: decode any audio file into 16 kHz mono float32, the one format every STT engine here takes.

Decoding is faster-whisper's ``decode_audio`` (PyAV, i.e. FFmpeg's decoders and resampler), which
the ``edge`` extra already brings: WAV of any bit depth, FLAC, OGG/Opus, MP3, M4A…, any rate and
channel count. The library is imported on first use, so the rest of emostream works without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emostream.edge.errors import AudioError

TARGET_RATE = 16_000
_MIN_RATE = 4_000
_INSTALL = "pip install 'emostream[edge]'"


@dataclass(frozen=True)
class Audio:
    """Samples in [-1, 1] at ``rate`` Hz, mono, plus where they came from."""

    samples: np.ndarray
    rate: int
    source: str
    original_rate: int
    original_channels: int

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate

    def pcm16(self) -> bytes:
        """Little-endian 16-bit PCM bytes (what pocketsphinx reads)."""
        return (np.clip(self.samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _convert_hint(p: Path) -> str:
    return (f"convert it, e.g. 'sox {p.name} -r 16000 -c 1 -b 16 out.wav', "
            "or record with 'arecord -f S16_LE -r 16000 -c 1'")


def read_audio(path: str | Path, rate: int = TARGET_RATE) -> Audio:
    """Decode an audio file (any format FFmpeg reads, any channels, any rate ≥ 4 kHz) to mono float32 at ``rate``.

    Raises AudioError naming the file when it is missing, not decodable audio, too low a rate, or empty.
    """
    try:
        import av
        from faster_whisper.audio import decode_audio
    except ImportError as exc:
        raise AudioError(f"reading audio files needs the edge extra ({exc.name} is missing): {_INSTALL}") from None
    p = Path(path)
    if p.is_dir():
        raise AudioError(f"{p} is a folder, not an audio file")
    if not p.exists():
        raise AudioError(f"audio file {p} does not exist")
    try:
        with av.open(str(p), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"{p} holds no audio stream; {_convert_hint(p)}")
            stream = container.streams.audio[0]
            src_rate, channels = int(stream.rate or 0), int(stream.channels or 0)
        if 0 < src_rate < _MIN_RATE:
            raise AudioError(f"{p} has a sample rate of {src_rate} Hz; speech needs at least {_MIN_RATE} Hz (16000 is best)")
        samples = decode_audio(str(p), sampling_rate=rate)
    except AudioError:
        raise
    except PermissionError:
        raise AudioError(f"cannot read audio file {p}: permission denied") from None
    except (av.FFmpegError, ValueError, IndexError, EOFError, OSError, RuntimeError) as exc:
        # Whatever FFmpeg says about bytes that are not audio, the user needs the file name and a fix.
        raise AudioError(f"{p} is not a readable audio file ({_short(exc)}); {_convert_hint(p)}") from None
    samples = np.asarray(samples, dtype=np.float32)
    if samples.size == 0:
        raise AudioError(f"{p} holds no audio samples")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{p} decodes to invalid samples; {_convert_hint(p)}")
    return Audio(samples, rate, str(p), src_rate or rate, channels or 1)


def _short(exc: BaseException) -> str:
    text = str(exc).split(": '", 1)[0]  # FFmpeg repeats the path at the end
    text = re.sub(r"^\[Errno -?\d+\] ", "", text)
    return text[:200] or type(exc).__name__
