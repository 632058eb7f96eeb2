"""``edge mic``: a live microphone cut into utterances by voice activity, each one → STT → spool → Kafka.

Two threads and a bounded queue between them:

- **capture** reads 512-sample frames (32 ms) from the source, runs Silero VAD on each and feeds
  the :class:`~emostream.edge.vad.Segmenter`; finished utterances go into the queue. It never
  waits for speech-to-text or Kafka: when the queue is full, a live source drops the *oldest*
  queued utterance (counted as ``queue_full``, logged) and keeps capturing. A file replayed
  faster than real time waits instead (nothing is lost by pausing a file).
- **recognise** (the calling thread) takes utterances in order, runs the one STT engine loaded
  at start-up (a doubtful pass of Whisper's fitted window is redone once with the 30 s window,
  ``stt.fitted_pass_doubt``), drops segments that are not trusted speech (``stt.gate_recognition``), and hands
  each transcript to the sink (the spooling sender: spool first, then Kafka, as ``edge send``).
  Between utterances it serves the sender so deliveries and retries go on.

Sources: ``arecord`` raw PCM (S16_LE, 16 kHz, mono) from a subprocess pipe, or an audio file
replayed through the same frames (optionally paced in real time). Timestamps come from the audio
clock: ``started_at``/``ended_at`` = the source's anchor + the utterance's sample offsets.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge, Histogram, generate_latest

from emostream.edge.audio import Audio, read_audio
from emostream.edge.errors import AudioError, TranscriptError
from emostream.edge.input import check_device, transcript_from_text
from emostream.edge.sender import SpoolingSender, transcript_row
from emostream.edge.spool import Spool
from emostream.edge.stt import Engine, Gates, fitted_pass_doubt, gate_recognition
from emostream.edge.vad import FRAME, RATE, Dropped, Segmenter, Utterance, VadSettings
from emostream.errors import UsageError
from emostream.events import Transcript, format_ts

log = logging.getLogger("emostream.edge.mic")

# Whisper for short utterances: one greedy pass at temperature 0, no timestamp tokens. The temperature
# fallback re-decodes a pass that failed the log-prob / compression checks "hotter": slower, and on
# noise it is how made-up text gets through. Such a pass is dropped by the gates instead, and every
# segment reaches them (skip_silent=False), so what faster-whisper would skip silently is counted too.
WHISPER_OPTIONS = {"temperature": 0.0, "timestamps": False, "skip_silent": False}

# End of speech → spooled: 0.1 s (short utterance, idle CPU) to many seconds (STT behind).
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


# --- sources --------------------------------------------------------------------------------------

class Source(Protocol):
    """Where frames come from: ``frames()`` yields float32 arrays of FRAME samples at 16 kHz."""

    anchor: float  # epoch seconds of sample 0 (the audio clock's origin)
    live: bool  # True: frames arrive in real time and must never wait (full queue → drop oldest)
    name: str

    def frames(self) -> Iterator[np.ndarray]:
        """Frames in order until the source ends."""
        ...

    def close(self) -> None:
        """Stop producing frames (``frames()`` then ends)."""
        ...


def split_frames(samples: np.ndarray, frame: int = FRAME) -> Iterator[np.ndarray]:
    """``samples`` as consecutive frames; the last one padded with zeros."""
    for i in range(0, len(samples), frame):
        f = samples[i:i + frame]
        if len(f) < frame:
            f = np.concatenate([f, np.zeros(frame - len(f), dtype=np.float32)])
        yield f


class FileSource:
    """An audio file replayed as a microphone: the same frames, paced in real time or as fast as possible.

    The audio clock starts at the file's modification time minus its duration (when it was
    recorded), or at now when paced in real time (as a microphone would be).
    """

    def __init__(self, path: str | Path, *, realtime: bool = False) -> None:
        self.audio: Audio = read_audio(path)
        self.name = str(path)
        self.live = realtime
        self.realtime = realtime
        self.anchor = time.time() if realtime else Path(path).stat().st_mtime - self.audio.duration_s
        self._closed = threading.Event()

    def frames(self) -> Iterator[np.ndarray]:
        """Frames of the file; with ``realtime`` each one when it would have been fully recorded."""
        t0 = time.monotonic()
        if self.realtime:
            self.anchor = time.time()
        for i, f in enumerate(split_frames(self.audio.samples)):
            if self._closed.is_set():
                return
            if self.realtime:
                delay = t0 + (i + 1) * FRAME / RATE - time.monotonic()
                if delay > 0:
                    self._closed.wait(delay)
            yield f

    def close(self) -> None:
        """Stop the replay."""
        self._closed.set()


class ArecordSource:
    """ALSA ``arecord`` writing raw S16_LE 16 kHz mono PCM to a pipe; ``input_device`` is ``arecord -D``."""

    def __init__(self, input_device: str = "default", *, binary: str = "arecord") -> None:
        path = shutil.which(binary)
        if path is None:
            raise AudioError(f"'{binary}' is not installed; install ALSA's recorder with 'sudo apt-get install alsa-utils' "
                             "(or replay a recording with --from-wav FILE)")
        self.name = f"arecord -D {input_device}"
        self.live = True
        self.anchor = time.time()
        self._cmd = [path, "-q", "-D", input_device, "-f", "S16_LE", "-r", str(RATE), "-c", "1", "-t", "raw"]
        self._proc: subprocess.Popen[bytes] | None = None
        self._closing = False

    def frames(self) -> Iterator[np.ndarray]:
        """Frames as arecord delivers them; AudioError (with arecord's own message) if it stops by itself."""
        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        assert self._proc.stdout is not None
        need = FRAME * 2
        first = True
        buf = bytearray()
        while True:
            chunk = self._proc.stdout.read(need - len(buf))
            if not chunk:
                break
            buf += chunk
            if len(buf) < need:
                continue
            if first:  # the audio clock starts when the first frame was complete
                self.anchor = time.time() - FRAME / RATE
                first = False
            yield np.frombuffer(bytes(buf), dtype="<i2").astype(np.float32) / 32768.0
            buf.clear()
        err = b""
        if self._proc.stderr is not None:
            err = self._proc.stderr.read() or b""
        code = self._proc.wait()
        if not self._closing:
            msg = err.decode("utf-8", "replace").strip().splitlines()
            raise AudioError(f"'{' '.join(self._cmd)}' stopped (exit {code}): {msg[-1] if msg else 'no message'}; "
                             "list the capture devices with 'arecord -l' and pass one as --input, e.g. --input plughw:1,0")

    def close(self) -> None:
        """Stop arecord; ``frames()`` ends at the end of the pipe."""
        self._closing = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()


# --- sinks -------------------------------------------------------------------------------------------

class Sink(Protocol):
    """Where transcripts go: the spool (then Kafka)."""

    def submit(self, t: Transcript) -> None:
        """Spool ``t`` (durable when this returns)."""
        ...

    def service(self) -> None:
        """Let deliveries progress (called between utterances)."""
        ...

    def drain(self, wait_s: float) -> int:
        """Deliver what is spooled for up to ``wait_s``; how many wait still."""
        ...


class SenderSink:
    """Transcripts into a :class:`SpoolingSender`: spooled, then produced in order (what ``edge send`` does)."""

    def __init__(self, sender: SpoolingSender, topic: str, block_s: float) -> None:
        self.sender, self.topic, self.block_s = sender, topic, block_s

    def submit(self, t: Transcript) -> None:
        """Spool and hand over to the producer."""
        self.sender.submit([t], self.topic, block_s=self.block_s)

    def service(self) -> None:
        """Serve delivery callbacks, without waiting."""
        self.sender.service(0)

    def drain(self, wait_s: float) -> int:
        """Wait for the acks."""
        return self.sender.drain(wait_s)


class SpoolOnlySink:
    """Transcripts into a spool and nowhere else (the benchmark measures up to 'spooled')."""

    def __init__(self, spool: Spool, topic: str) -> None:
        self.spool, self.topic = spool, topic
        self.transcripts: list[Transcript] = []

    def submit(self, t: Transcript) -> None:
        """Append one row."""
        self.spool.append([transcript_row(t, self.topic)])
        self.transcripts.append(t)

    def service(self) -> None:
        """Nothing to deliver."""

    def drain(self, wait_s: float) -> int:
        """Nothing is delivered: all rows wait."""
        return self.spool.count()


# --- metrics ---------------------------------------------------------------------------------------

class MicMetrics:
    """Prometheus metrics of one ``edge mic`` process, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry(auto_describe=False)
        self.utterances = PromCounter("emostream_mic_transcripts", "Transcripts spooled from the microphone", registry=r)
        self._dropped = PromCounter("emostream_mic_dropped",
                                    "Speech segments not sent, by reason (too_short, no_speech, low_confidence, "
                                    "repetitive, hallucination, empty, queue_full, refused)", ["reason"], registry=r)
        self.audio_seconds = PromCounter("emostream_mic_audio_seconds", "Audio captured", registry=r)
        self.queue_depth = Gauge("emostream_mic_queue_depth", "Utterances waiting for speech-to-text", registry=r)
        self.latency = Histogram("emostream_mic_speech_end_to_spooled_seconds",
                                 "From the end of speech (capture time) to the transcript being in the spool",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.stt_seconds = Histogram("emostream_mic_stt_seconds", "Speech-to-text time per utterance",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self._stt_retries = PromCounter("emostream_mic_stt_retries",
                                        "Utterances whose fitted-window Whisper pass was redone with the 30 s window, "
                                        "by reason (no_speech, low_confidence, repetitive, hallucination, empty, looped)",
                                        ["reason"], registry=r)

    def dropped(self, reason: str, n: int = 1) -> None:
        """Count ``n`` drops of ``reason``."""
        self._dropped.labels(reason).inc(n)

    def stt_retry(self, reason: str) -> None:
        """Count one fitted-window pass redone with the 30 s window."""
        self._stt_retries.labels(reason).inc()

    def render(self) -> bytes:
        """Prometheus text exposition."""
        return generate_latest(self.registry)


# --- the pipeline -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MicSettings:
    """Everything ``run_mic`` needs besides its collaborators."""

    device: str
    vad: VadSettings = field(default_factory=VadSettings)
    gates: Gates = field(default_factory=Gates)
    queue_max: int = 8  # utterances waiting for STT; ~8 × (up to 12 s) is far more than a Pi catches up on
    vad_block: int = 4  # frames per VAD call (4 × 32 ms): a third of the idle CPU of one call per frame, ≤ 96 ms later

    def check(self) -> MicSettings:
        """``self`` when usable; UsageError otherwise."""
        check_device(self.device)
        self.vad.check()
        if self.queue_max < 1:
            raise UsageError(f"--queue-max must be at least 1 (got {self.queue_max})")
        if not 1 <= self.vad_block <= 32:
            raise UsageError(f"vad_block must be 1 to 32 frames (got {self.vad_block})")
        return self


@dataclass
class MicResult:
    """What a run did: the summary ``edge mic --json`` prints."""

    utterances: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    audio_s: float = 0.0
    vad_s: float = 0.0  # time spent in the VAD model
    stt_s: float = 0.0  # time spent in speech-to-text
    latencies_s: list[float] = field(default_factory=list)
    stt_calls: list[tuple[float, float]] = field(default_factory=list)  # (wall s, process CPU s) per utterance
    stt_retries: Counter[str] = field(default_factory=Counter)  # fitted-window passes redone with 30 s, by reason
    retried_latencies_s: list[float] = field(default_factory=list)  # the part of latencies_s that paid for a retry
    queue_peak: int = 0
    waiting: int | None = None  # rows still spooled after the final drain

    @property
    def rtf(self) -> float:
        """Processing time (VAD + STT) / audio time: below 1 keeps up with a live microphone."""
        return (self.vad_s + self.stt_s) / self.audio_s if self.audio_s > 0 else 0.0

    def p95_ms(self) -> float | None:
        """95th percentile of end of speech → spooled, ms (None before the first transcript)."""
        if not self.latencies_s:
            return None
        return round(float(np.percentile(self.latencies_s, 95)) * 1000, 1)

    def to_dict(self) -> dict:
        """The JSON summary."""
        return {"utterances": self.utterances, "dropped": dict(sorted(self.dropped.items())),
                "audio_s": round(self.audio_s, 2), "rtf": round(self.rtf, 3),
                "vad_rtf": round(self.vad_s / self.audio_s, 4) if self.audio_s else 0.0,
                "p95_speech_end_to_spooled_ms": self.p95_ms(), "queue_peak": self.queue_peak,
                "stt_retries": dict(sorted(self.stt_retries.items())),
                "waiting": self.waiting}


@dataclass(frozen=True)
class Heard:
    """One utterance on its way from capture to STT: the audio and when its speech ended (wall clock)."""

    utterance: Utterance
    speech_end_wall: float


class UtteranceQueue:
    """Bounded FIFO between capture and STT. ``put`` never waits when ``drop_oldest`` (a live source)."""

    def __init__(self, maxsize: int, *, drop_oldest: bool) -> None:
        self.maxsize, self.drop_oldest = maxsize, drop_oldest
        self._items: deque[Heard] = deque()
        self._cond = threading.Condition()
        self.closed = False
        self.peak = 0

    def put(self, item: Heard) -> Heard | None:
        """Queue ``item``; the utterance dropped to make room (live source), else None."""
        with self._cond:
            dropped = None
            if len(self._items) >= self.maxsize:
                if self.drop_oldest:
                    dropped = self._items.popleft()
                else:
                    while len(self._items) >= self.maxsize and not self.closed:
                        self._cond.wait(0.1)
            self._items.append(item)
            self.peak = max(self.peak, len(self._items))
            self._cond.notify_all()
            return dropped

    def get(self, timeout_s: float) -> Heard | None:
        """The oldest item, waiting up to ``timeout_s``; None when there is none."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout_s)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more items will come; wake anyone waiting."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


def rms(samples: np.ndarray) -> float:
    """Root mean square of ``samples`` (0.0 for none)."""
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


class MicPipeline:
    """Capture (thread) → VAD → segmenter → bounded queue → STT (caller's thread) → sink.

    ``vad`` takes consecutive frames and returns their speech probabilities (``SileroVad().probs``).
    """

    def __init__(self, source: Source, vad: Callable[[Sequence[np.ndarray]], Sequence[float]], engine: Engine, sink: Sink,
                 settings: MicSettings, *, metrics: MicMetrics | None = None,
                 on_transcript: Callable[[Transcript, Heard], None] | None = None) -> None:
        self.source, self.vad, self.engine, self.sink = source, vad, engine, sink
        self.settings = settings.check()
        self.metrics = metrics or MicMetrics()
        self.on_transcript = on_transcript
        self.result = MicResult()
        self.segmenter = Segmenter(settings.vad)
        self.queue = UtteranceQueue(settings.queue_max, drop_oldest=source.live)
        self._stop = threading.Event()
        self._capture_error: BaseException | None = None
        self._capture_done = threading.Event()
        self._lock = threading.Lock()  # result counters are written by both threads
        self._frame_walls: deque[float] = deque(maxlen=int(settings.vad.max_utterance_s * RATE / FRAME) + 64)

    def stop(self) -> None:
        """Stop capturing (safe from a signal handler); ``run`` then finishes what was heard."""
        self._stop.set()
        self.source.close()

    def run(self) -> MicResult:
        """Capture until the source ends or ``stop()``; every utterance heard is transcribed and spooled."""
        capture = threading.Thread(target=self._capture, name="mic-capture", daemon=True)
        capture.start()
        try:
            self._recognise_until_done()
        finally:
            self.stop()
            self.queue.close()
            capture.join(timeout=5)
        if self._capture_error is not None:
            raise self._capture_error
        self.result.queue_peak = self.queue.peak
        return self.result

    # --- capture thread ---------------------------------------------------------------------------

    def _capture(self) -> None:
        try:
            block: list[tuple[np.ndarray, float]] = []
            for frame in self.source.frames():
                block.append((frame, time.time()))  # when it was captured: what latency counts from
                if len(block) >= self.settings.vad_block or self._stop.is_set():
                    self._detect(block)
                    block = []
                if self._stop.is_set():
                    break
            self._detect(block)
            self._handle(self.segmenter.flush())
        except BaseException as exc:  # surfaced by run() in the caller's thread
            self._capture_error = exc
        finally:
            self._capture_done.set()
            self.queue.close()

    def _detect(self, block: list[tuple[np.ndarray, float]]) -> None:
        if not block:
            return
        t0 = time.perf_counter()
        probs = self.vad([f for f, _wall in block])
        vad_s = time.perf_counter() - t0
        audio_s = len(block) * FRAME / RATE
        with self._lock:
            self.result.vad_s += vad_s
            self.result.audio_s += audio_s
        self.metrics.audio_seconds.inc(audio_s)
        for (frame, wall), prob in zip(block, probs):
            self._frame_walls.append(wall)
            self._handle(self.segmenter.feed(frame, prob))

    def _handle(self, events: list[Utterance | Dropped]) -> None:
        for ev in events:
            if isinstance(ev, Dropped):
                self._drop(ev.reason, f"{ev.reason}: {ev.start / RATE:.2f}-{ev.end / RATE:.2f}s")
                continue
            frames_back = (self.segmenter.position - ev.speech_end) // FRAME
            walls = self._frame_walls
            wall = walls[-1 - frames_back] if 0 <= frames_back < len(walls) else time.time()
            dropped = self.queue.put(Heard(ev, wall))
            self.metrics.queue_depth.set(len(self.queue))
            if dropped is not None:
                u = dropped.utterance
                log.warning("speech-to-text is falling behind: dropped the oldest waiting utterance "
                            "(%.1f-%.1fs, %d waiting); capture goes on", u.start_s, u.end_s, self.queue.maxsize)
                self._drop("queue_full", f"{u.start_s:.2f}-{u.end_s:.2f}s")

    def _drop(self, reason: str, what: str) -> None:
        with self._lock:
            self.result.dropped[reason] += 1
        self.metrics.dropped(reason)
        log.debug("dropped %s (%s)", reason, what)

    # --- recognise (caller's thread) --------------------------------------------------------------

    def _recognise_until_done(self) -> None:
        while True:
            item = self.queue.get(0.2)  # returns at once when an utterance arrives; the timeout paces idle delivery work
            if item is None:
                self.sink.service()
                if self._capture_done.is_set() and len(self.queue) == 0:
                    return
                continue
            self.metrics.queue_depth.set(len(self.queue))
            self._recognise(item)
            self.sink.service()

    def _recognise(self, item: Heard) -> None:
        u = item.utterance
        audio = Audio(u.samples, RATE, f"{u.start_s:.2f}s", RATE, 1)
        cpu0 = time.process_time()  # all threads: what the STT costs whatever else runs on the host
        level = rms(u.samples)
        rec = self.engine.transcribe(audio)
        kept, drops = gate_recognition(rec, level, self.settings.gates)
        stt_s = rec.seconds
        doubt = fitted_pass_doubt(rec, drops) if getattr(self.engine, "fit_window", False) else None
        if doubt is not None:
            # The VAD heard speech, but the short-window pass was gated, empty or looped: Whisper's own 30 s
            # window decides instead (what the engine without the fitted window would have said).
            log.debug("retrying with the 30 s window: %s (%.2f-%.2fs %r)", doubt, u.start_s, u.end_s, rec.text)
            with self._lock:
                self.result.stt_retries[doubt] += 1
            self.metrics.stt_retry(doubt)
            rec = self.engine.transcribe(audio, full_window=True)  # type: ignore[call-arg]
            stt_s += rec.seconds
            kept, drops = gate_recognition(rec, level, self.settings.gates)
        cpu = time.process_time() - cpu0
        with self._lock:
            self.result.stt_s += stt_s
            self.result.stt_calls.append((stt_s, cpu))
        self.metrics.stt_seconds.observe(stt_s)
        for reason, text in drops:
            self._drop(reason, f"{u.start_s:.2f}-{u.end_s:.2f}s {text!r}")
        if not kept.text.strip():
            if not drops:
                self._drop("empty", f"{u.start_s:.2f}-{u.end_s:.2f}s: no words")
            return
        anchor = self.source.anchor
        try:
            t = transcript_from_text(self.settings.device, kept.text, started_at=format_ts(anchor + u.start_s),
                                     ended_at=format_ts(anchor + u.end_s), stt_engine=kept.engine,
                                     confidence=kept.confidence)
        except TranscriptError as exc:
            self._drop("refused", f"{u.start_s:.2f}s: {exc}")
            return
        self.sink.submit(t)
        latency = max(0.0, time.time() - item.speech_end_wall)
        with self._lock:
            self.result.utterances += 1
            self.result.latencies_s.append(latency)
            if doubt is not None:
                self.result.retried_latencies_s.append(latency)
        self.metrics.utterances.inc()
        self.metrics.latency.observe(latency)
        if self.on_transcript is not None:
            self.on_transcript(t, item)


def warm_up(engine: Engine) -> None:
    """One throw-away recognition, so the first utterance does not pay for the model's first call."""
    engine.transcribe(Audio(np.zeros(RATE, dtype=np.float32), RATE, "warm-up", RATE, 1))


def log_to_stderr(verbose: bool) -> None:
    """This module's log on stderr: warnings and notes, and with ``verbose`` every dropped segment."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("emostream: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
