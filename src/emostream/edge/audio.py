"""WAV input: read PCM WAV files into 16 kHz mono float32, the one format every STT engine here takes.

Pure numpy and the stdlib ``wave`` module; no engine imports.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emostream.edge.errors import AudioError

TARGET_RATE = 16_000
_MIN_RATE = 4_000


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


def read_wav(path: str | Path, rate: int = TARGET_RATE) -> Audio:
    """Read a PCM WAV (8/16/24/32-bit, any channels, any rate ≥ 4 kHz) as mono float32 at ``rate``.

    Raises AudioError naming the file when it is missing, not a PCM WAV, or empty.
    """
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as w:
            channels, width, src_rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except FileNotFoundError:
        raise AudioError(f"WAV file {p} does not exist") from None
    except IsADirectoryError:
        raise AudioError(f"{p} is a folder, not a WAV file") from None
    except (wave.Error, EOFError) as exc:
        raise AudioError(
            f"{p} is not a readable PCM WAV file ({exc}); convert it, e.g. "
            f"'sox {p.name} -r 16000 -c 1 -b 16 out.wav' or record with 'arecord -f S16_LE -r 16000 -c 1'"
        ) from None
    except OSError as exc:
        raise AudioError(f"cannot read WAV file {p}: {exc.strerror or exc}") from None
    if src_rate < _MIN_RATE:
        raise AudioError(f"{p} has a sample rate of {src_rate} Hz; speech needs at least {_MIN_RATE} Hz (16000 is best)")
    samples = _to_float(raw, width, channels, p)
    if samples.size == 0:
        raise AudioError(f"{p} holds no audio samples")
    mono = samples.mean(axis=1) if channels > 1 else samples[:, 0]
    return Audio(resample(mono, src_rate, rate), rate, str(p), src_rate, channels)


def _to_float(raw: bytes, width: int, channels: int, p: Path) -> np.ndarray:
    usable = len(raw) - len(raw) % (width * channels)
    raw = raw[:usable]
    if width == 1:  # 8-bit WAV is unsigned
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints & 0x800000, ints - (1 << 24), ints)
        data = ints.astype(np.float32) / float(1 << 23)
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        raise AudioError(f"{p} uses {width * 8}-bit samples; use 8, 16, 24 or 32-bit PCM")
    return data.reshape(-1, channels)


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Resample mono float audio from ``src`` to ``dst`` Hz (windowed-sinc low-pass, then linear interpolation).

    The low-pass before downsampling keeps energy above the new Nyquist frequency from folding
    back into the speech band; linear interpolation is enough for speech recognisers.
    """
    x = np.asarray(x, dtype=np.float32)
    if src == dst or x.size == 0:
        return x
    if dst < src:
        cutoff = 0.5 * dst / src * 0.9  # cycles per input sample, a little under the new Nyquist
        taps = 63
        n = np.arange(taps) - (taps - 1) / 2
        h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
        x = np.convolve(x, (h / h.sum()).astype(np.float32), mode="same")
    n_out = int(round(x.size * dst / src))
    t_out = np.arange(n_out, dtype=np.float64) * (src / dst)
    return np.interp(t_out, np.arange(x.size, dtype=np.float64), x).astype(np.float32)
