"""``emostream bench edge``: the microphone path (Silero VAD → Whisper tiny.en → spool) on a recording made at run time.

The recording: espeak-ng sentences of mixed length with pauses of 0.3–2 s, then 60 s of a quiet
room (a microphone's noise floor), 30 s of non-speech noise (brown noise, pink noise, a hum),
then the rest of the sentences; a -60 dBFS noise floor under all of it. It is replayed through
``edge mic``'s own pipeline (``MicPipeline`` with a ``FileSource``), paced in real time by default
so latency and idle CPU are what a live microphone would see, into a throw-away spool.

Reported against the targets of issue #12: utterances vs sentences (and vs the count the
stop-silence rule predicts), transcripts from the silence and noise parts (target 0), WER
(≤ 0.20), real-time factor (≤ 0.5), p95 end of speech → spooled (≤ 1.5 s), CPU and RSS while idle
in silence (≤ 5 % of a core, ≤ 400 MB).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emostream.bench.model import _host
from emostream.edge.errors import AudioError

RATE = 16_000

# Mixed lengths (3–26 words), the kind of things said near a kitchen device.
SENTENCES = [
    "Good morning.",
    "I can't believe the train was late again this morning.",
    "Please turn off the lights in the kitchen.",
    "We finally got the tickets for the concert and I am so excited about it.",
    "That soup smells absolutely disgusting.",
    "My sister is moving away next month and I will miss her terribly.",
    "Where did you put the car keys?",
    "Thank you so much for the lovely flowers you sent yesterday.",
    "I am really worried about the exam tomorrow because I have not studied enough.",
    "Stop shouting at me.",
    "The weather is beautiful today, let's have lunch in the garden.",
    "Someone broke into the neighbours' house last night and the police are still there.",
    "What a wonderful surprise.",
    "I have been waiting for over an hour and nobody has called me back.",
    "Could you remind me to buy milk on the way home?",
    "The children were laughing all afternoon at the puppet show in the park.",
    "I don't know what to do anymore.",
    "Our flight was cancelled, so we will spend another night at the airport hotel.",
    "Happy birthday, grandma.",
    "The doctor said the results look good and there is nothing to worry about.",
    "Why does this always happen to me?",
    "We should paint the living room a brighter colour before the guests arrive on Saturday.",
    "Turn the music down, please.",
    "After all these years, I still remember the first time we met at that little cafe by the river.",
]
# Pauses after each sentence: short ones (< the 0.5 s stop silence) must never cut; long ones must.
PAUSES = [0.8, 1.2, 0.3, 2.0, 1.0, 1.0, 1.5, 0.9, 1.8, 0.7, 1.3, 0.3, 1.1, 2.0, 0.8, 1.6, 0.9, 1.4, 0.7, 1.2, 0.35, 1.7,
          1.0, 1.5]
SILENCE_S = 60.0
NOISE = (("brownnoise", 10.0, 0.05), ("pinknoise", 10.0, 0.03), ("sine 120", 10.0, 0.03))  # (sox synth, s, amplitude)
NOISE_FLOOR = 0.001  # -60 dBFS white noise: a real microphone's self-noise in a quiet room


@dataclass(frozen=True)
class EdgeBenchOptions:
    """What ``bench edge`` runs."""

    realtime: bool = True  # pace the replay as a microphone; False measures only throughput (no latency/idle figures)
    sentences: int = len(SENTENCES)
    threads: int | None = None  # Whisper CPU threads (default: up to 4)
    stop_silence_s: float = 0.5
    keep: Path | None = None  # copy the generated recording here
    fit_window: bool = True  # Whisper's encoder on 10 s steps, doubtful passes redone with 30 s (``edge mic``'s default)


@dataclass
class Section:
    """A stretch of the recording: ``kind`` is speech, silence or noise."""

    kind: str
    start_s: float
    end_s: float
    text: str = ""


@dataclass
class Recording:
    """The generated test recording and what is where in it."""

    path: Path
    sections: list[Section] = field(default_factory=list)
    pauses: list[float] = field(default_factory=list)

    @property
    def speech(self) -> list[Section]:
        """The spoken sentences, in order."""
        return [s for s in self.sections if s.kind == "speech"]


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise AudioError(f"the edge benchmark makes its recording with {tool}: 'sudo apt-get install {package}'")
    return path


def _decode(data: bytes) -> np.ndarray:
    from emostream.edge.audio import read_audio

    with tempfile.NamedTemporaryFile(suffix=".wav") as fh:
        fh.write(data)
        fh.flush()
        return read_audio(fh.name).samples


def speak(text: str, wpm: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng, 16 kHz mono float32, its leading and trailing silence trimmed."""
    out = subprocess.run([_need("espeak-ng", "espeak-ng"), "-s", str(wpm), "--stdout", text],
                         capture_output=True, check=True, timeout=60).stdout
    samples = _decode(out)
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0]:loud[-1] + 1] if loud.size else samples


def synth(kind: str, seconds: float, amplitude: float) -> np.ndarray:
    """``sox synth`` noise or tone at ``amplitude`` (peak, 0–1)."""
    out = subprocess.run([_need("sox", "sox"), "-n", "-r", str(RATE), "-c", "1", "-b", "16", "-t", "wav", "-", "synth",
                          f"{seconds:g}", *kind.split(), "vol", f"{amplitude:g}"],
                         capture_output=True, check=True, timeout=60).stdout
    return _decode(out)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    """16-bit PCM mono WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def build_recording(folder: Path, n_sentences: int = len(SENTENCES), seed: int = 12) -> Recording:
    """Half the sentences, silence, noise, the other half; a noise floor under everything."""
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(n_sentences)]
    pauses = [PAUSES[i % len(PAUSES)] for i in range(n_sentences)]
    parts: list[np.ndarray] = []
    rec = Recording(folder / "edge-bench.wav", pauses=pauses)
    pos = 0.0

    def add(samples: np.ndarray, kind: str, text: str = "") -> None:
        nonlocal pos
        parts.append(samples.astype(np.float32))
        dur = len(samples) / RATE
        if kind != "pause":
            rec.sections.append(Section(kind, pos, pos + dur, text))
        pos += dur

    add(np.zeros(RATE, np.float32), "pause")
    half = (n_sentences + 1) // 2
    for i, text in enumerate(texts):
        if i == half:
            add(np.zeros(int(SILENCE_S * RATE), np.float32), "silence")
            for kind, seconds, amp in NOISE:
                add(synth(kind, seconds, amp), "noise", kind)
            add(np.zeros(RATE, np.float32), "pause")
        add(speak(text), "speech", text)
        add(np.zeros(int(pauses[i] * RATE), np.float32), "pause")
    add(np.zeros(2 * RATE, np.float32), "pause")
    audio = np.concatenate(parts)
    audio += np.random.default_rng(seed).normal(0.0, NOISE_FLOOR, len(audio)).astype(np.float32)
    write_wav(rec.path, audio)
    return rec


def expected_utterances(rec: Recording, stop_silence_s: float) -> int:
    """Utterances the stop-silence rule predicts: sentences joined where the pause between them is shorter."""
    speech = rec.speech
    return 1 + sum(1 for a, b in zip(speech, speech[1:]) if b.start_s - a.end_s >= stop_silence_s)


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _stt_stats(calls: list[tuple[float, float]], durations: list[float]) -> dict:
    """Per STT call: wall and process-CPU seconds (p50, p95); CPU time does not grow with other load on the host."""
    if not calls:
        return {}
    wall, cpu = np.array([c[0] for c in calls]), np.array([c[1] for c in calls])
    return {"calls": len(calls), "wall_p50_s": round(float(np.median(wall)), 3),
            "wall_p95_s": round(float(np.percentile(wall, 95)), 3), "cpu_p50_s": round(float(np.median(cpu)), 3),
            "cpu_p95_s": round(float(np.percentile(cpu, 95)), 3),
            "utterance_s_max": round(max(durations), 2) if durations else None}


def run_edge_bench(opts: EdgeBenchOptions) -> dict:
    """Build the recording, replay it through the mic pipeline, and score it; the JSON result."""
    from emostream.edge.mic import WHISPER_OPTIONS, FileSource, MicPipeline, MicSettings, SpoolOnlySink, warm_up
    from emostream.edge.spool import Spool
    from emostream.edge.stt import WhisperEngine, word_error_rate
    from emostream.edge.vad import SileroVad, VadSettings

    with tempfile.TemporaryDirectory(prefix="emostream-bench-edge-") as tmp:
        folder = Path(tmp)
        t_build = time.perf_counter()
        rec = build_recording(folder, opts.sentences)
        build_s = time.perf_counter() - t_build
        if opts.keep is not None:
            shutil.copyfile(rec.path, opts.keep)
        engine = WhisperEngine(threads=opts.threads, fit_window=opts.fit_window, **WHISPER_OPTIONS)
        warm_up(engine)
        vad = SileroVad().probs
        spool = Spool(folder / "spool.db")
        sink = SpoolOnlySink(spool, "stt.transcripts")
        heard: list[tuple[float, float, str]] = []
        source = FileSource(rec.path, realtime=opts.realtime)
        settings = MicSettings("bench-edge", VadSettings(stop_silence_s=opts.stop_silence_s))
        pipeline = MicPipeline(source, vad, engine, sink, settings,
                               on_transcript=lambda t, item: heard.append((item.utterance.start_s,
                                                                           item.utterance.end_s, t.text)))
        samples: list[tuple[float, float, float, float]] = []  # (audio position s, wall, cpu s, rss MB)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                samples.append((pipeline.result.audio_s, time.monotonic(), _cpu_s(), _rss_mb()))

        sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        load_before = os.getloadavg()[0]
        try:
            result = pipeline.run()
        finally:
            done.set()
            sampler.join()
            spool.close()
        wall_s = time.perf_counter() - t0

    silence = next(s for s in rec.sections if s.kind == "silence")
    nonspeech = [s for s in rec.sections if s.kind in ("silence", "noise")]
    false = [(a, b, text) for a, b, text in heard
             if any(min(b, s.end_s) - max(a, s.start_s) > 0.5 * (b - a) for s in nonspeech)]
    split = sum(1 for s in rec.speech if sum(1 for a, b, _t in heard if min(b, s.end_s) - max(a, s.start_s) > 0.2) > 1)
    wer = word_error_rate(" ".join(s.text for s in rec.speech), " ".join(t for _a, _b, t in heard))
    idle = None
    if opts.realtime:
        # From 3 s into the silence (the last sentence before it is transcribed by then) to its end.
        window = [x for x in samples if silence.start_s + 3.0 <= x[0] <= silence.end_s]
        if len(window) >= 2:
            (w0, c0), (w1, c1) = window[0][1:3], window[-1][1:3]
            idle = {"cpu_percent_of_one_core": round(100 * (c1 - c0) / (w1 - w0), 2),
                    "rss_mb": round(max(x[3] for x in window), 1), "seconds": round(w1 - w0, 1)}
    n = len(rec.speech)
    expected = expected_utterances(rec, opts.stop_silence_s)
    p95 = result.p95_ms()
    out = {
        "engine": engine.name,
        "stt_window": "fit" if opts.fit_window else "30s",
        "realtime": opts.realtime,
        "recording": {"audio_s": round(result.audio_s, 1), "sentences": n, "silence_s": SILENCE_S,
                      "noise_s": sum(x[1] for x in NOISE), "pauses_s": sorted(set(rec.pauses)),
                      "built_in_s": round(build_s, 1)},
        "utterances": result.utterances,
        "expected_utterances": expected,
        "utterances_vs_sentences": round(result.utterances / n - 1, 3),
        "sentences_split": split,
        "transcripts_from_silence_or_noise": len(false),
        "false_transcripts": [t for _a, _b, t in false][:10],
        "dropped": dict(sorted(result.dropped.items())),
        "stt_retries": dict(sorted(result.stt_retries.items())),
        "wer": round(wer, 3),
        "rtf": round(result.rtf, 3),
        "vad_rtf": round(result.vad_s / result.audio_s, 4) if result.audio_s else None,
        "p95_speech_end_to_spooled_ms": p95 if opts.realtime else None,
        "p50_speech_end_to_spooled_ms": (round(float(np.percentile(result.latencies_s, 50)) * 1000, 1)
                                         if opts.realtime and result.latencies_s else None),
        "retried_speech_end_to_spooled_ms": ([round(x * 1000, 1) for x in result.retried_latencies_s]
                                             if opts.realtime else None),
        "stt_per_utterance": _stt_stats(result.stt_calls, [u[1] - u[0] for u in heard]),
        "queue_peak": result.queue_peak,
        "idle_in_silence": idle,
        "peak_rss_mb": round(max((x[3] for x in samples), default=_rss_mb()), 1),
        "wall_s": round(wall_s, 1),
        "host": {**_host(), "loadavg_1m_at_start": round(load_before, 2)},
    }
    out["targets"] = {
        "utterances_within_10pct": abs(result.utterances - n) <= 0.1 * n,
        "no_sentence_split": split == 0,
        "zero_from_silence_and_noise": not false,
        "wer_le_0.20": wer <= 0.20,
        "rtf_le_0.5": result.rtf <= 0.5,
        "p95_le_1500ms": None if p95 is None or not opts.realtime else p95 <= 1500,
        "idle_cpu_le_5pct": None if idle is None else idle["cpu_percent_of_one_core"] <= 5.0,
        "idle_rss_le_400mb": None if idle is None else idle["rss_mb"] <= 400,
    }
    return out
