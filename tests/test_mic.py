"""``edge mic``: the segmenter (pure, fake VAD), the no-invented-words gates, the capture/STT pipeline with fakes,
the real Silero VAD on espeak-ng speech, and ``edge mic --from-wav`` against a real broker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emostream.edge.errors import AudioError
from emostream.edge.stt import Gates, Recognition, Segment, gate_recognition, gate_segment, word_error_rate
from emostream.edge.vad import FRAME, RATE, Dropped, Segmenter, Utterance, VadSettings
from emostream.errors import UsageError

SENTENCES = [
    "I can't believe the train was late again this morning.",
    "Please turn off the lights in the kitchen.",
    "We finally got the tickets for the concert.",
    "My sister is moving away and I will miss her.",
]

# 512-sample frames: 31.25 per second. With these settings: stop silence 16 frames, min speech 8, max 125.
S = VadSettings(start_threshold=0.5, stop_threshold=0.35, min_speech_s=0.25, stop_silence_s=0.512,
                max_utterance_s=4.0, pre_roll_s=0.128, post_roll_s=0.064, cut_search_s=1.0)


def run(probs: list[float], settings: VadSettings = S, energy: list[float] | None = None) -> list[Utterance | Dropped]:
    """Feed a probability per frame (frame samples = a constant of that frame's energy); flush at the end."""
    seg = Segmenter(settings)
    out: list[Utterance | Dropped] = []
    for i, p in enumerate(probs):
        level = 0.1 if energy is None else energy[i]
        out += seg.feed(np.full(FRAME, level, dtype=np.float32), p)
    return out + seg.flush()


def frames(spec: list[tuple[float, int]]) -> list[float]:
    """[(probability, frame count), …] → one probability per frame."""
    return [p for p, n in spec for _ in range(n)]


def utterances(events: list[Utterance | Dropped]) -> list[Utterance]:
    return [e for e in events if isinstance(e, Utterance)]


# --- segmenter -------------------------------------------------------------------------------------

def test_a_pause_of_stop_silence_cuts_and_a_shorter_one_never_does() -> None:
    cut = run(frames([(0.0, 20), (0.9, 30), (0.1, 16), (0.9, 30), (0.0, 40)]))
    assert [(u.cut, u.start // FRAME, u.end // FRAME) for u in utterances(cut)] == [
        ("pause", 20 - 4, 50 + 2),  # 4 frames of pre-roll, 2 of post-roll
        ("pause", 66 - 4, 96 + 2),
    ]
    kept = run(frames([(0.0, 20), (0.9, 30), (0.1, 15), (0.9, 30), (0.0, 40)]))
    assert len(utterances(kept)) == 1 and not [e for e in kept if isinstance(e, Dropped)]


def test_hysteresis_frames_between_thresholds_continue_speech_but_do_not_start_it() -> None:
    assert run(frames([(0.4, 100)])) == []  # never reaches start_threshold
    events = run(frames([(0.9, 10), (0.4, 40), (0.0, 20)]))
    [u] = utterances(events)
    assert u.speech_end // FRAME == 50 and u.end // FRAME == 52


def test_speech_shorter_than_min_speech_is_a_counted_drop() -> None:
    events = run(frames([(0.0, 10), (0.9, 7), (0.0, 30), (0.9, 8), (0.0, 30)]))
    assert isinstance(events[0], Dropped) and events[0].reason == "too_short"
    assert isinstance(events[1], Utterance) and events[1].speech_end // FRAME == 55
    assert len(events) == 2


def test_max_length_cuts_after_the_quietest_recent_frame_and_continues() -> None:
    probs = frames([(0.9, 300), (0.0, 20)])
    energy = [0.2] * len(probs)
    energy[110] = 0.001  # inside the last second (31 frames) before frame 125: the cut goes right after it
    events = run(probs, energy=energy)
    us = utterances(events)
    assert [u.cut for u in us] == ["max_length", "max_length", "pause"]
    assert us[0].start == 0 and us[0].end // FRAME == 111
    assert all(a.end == b.start for a, b in zip(us, us[1:]))  # nothing lost, nothing twice
    assert all(u.end - u.start <= int(S.max_utterance_s * RATE / FRAME) * FRAME for u in us)
    assert us[-1].speech_end // FRAME == 300


def test_a_short_rest_after_a_forced_cut_is_kept_not_dropped_as_too_short() -> None:
    events = run(frames([(0.9, 128), (0.0, 40)]))
    us = utterances(events)
    assert len(us) == 2 and not [e for e in events if isinstance(e, Dropped)]
    assert us[1].end // FRAME >= 128


def test_pre_roll_never_reaches_into_the_previous_utterance() -> None:
    us = utterances(run(frames([(0.9, 20), (0.0, 16), (0.9, 20), (0.0, 20)])))
    assert len(us) == 2 and us[0].end <= us[1].start


def test_end_of_input_flushes_the_open_utterance() -> None:
    [u] = utterances(run(frames([(0.0, 5), (0.9, 40)])))
    assert u.cut == "end_of_input" and u.end // FRAME == 45 and len(u.samples) == u.end - u.start


def test_settings_are_checked_with_the_option_named() -> None:
    with pytest.raises(UsageError, match="--vad-stop"):
        VadSettings(start_threshold=0.5, stop_threshold=0.6).check()
    with pytest.raises(UsageError, match="--max-utterance"):
        VadSettings(max_utterance_s=2.0).check()
    with pytest.raises(UsageError, match="--stop-silence"):
        VadSettings(stop_silence_s=0.0).check()


settings_st = st.builds(
    VadSettings,
    start_threshold=st.floats(0.3, 0.9),
    stop_threshold=st.floats(0.05, 0.3),
    min_speech_s=st.sampled_from([0.0, 0.1, 0.25, 0.5]),
    stop_silence_s=st.sampled_from([0.05, 0.2, 0.5, 1.0]),
    max_utterance_s=st.sampled_from([2.0, 3.0, 5.0]),
    pre_roll_s=st.sampled_from([0.0, 0.1, 0.3]),
    post_roll_s=st.sampled_from([0.0, 0.1, 0.6]),
    cut_search_s=st.sampled_from([0.5, 1.0]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vs=settings_st,
       runs=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 60)), max_size=40),
       seed=st.integers(0, 2**16))
def test_every_speech_frame_ends_in_exactly_one_utterance_or_drop(vs: VadSettings, runs: list, seed: int) -> None:
    probs = frames(runs)
    energy = list(np.random.default_rng(seed).uniform(0.0, 0.5, len(probs)))
    events = run(probs, vs, energy)
    spans = [(e.start // FRAME, e.end // FRAME) for e in events]
    assert all(a < b for a, b in spans), "no empty utterance or drop"
    assert all(b0 <= a1 for (_a0, b0), (a1, _b1) in zip(spans, spans[1:])), "ordered, non-overlapping"
    for i, p in enumerate(probs):
        if p >= vs.start_threshold:
            assert sum(a <= i < b for a, b in spans) == 1, f"speech frame {i} not covered exactly once"
    max_frames = int(vs.max_utterance_s * RATE / FRAME)
    for e in events:
        if isinstance(e, Utterance):
            assert len(e.samples) == e.end - e.start and e.start < e.speech_end <= e.end
            assert (e.end - e.start) // FRAME <= max_frames
            assert np.array_equal(e.samples, np.repeat(np.asarray(energy[e.start // FRAME:e.end // FRAME], np.float32), FRAME))
        else:
            assert e.reason == "too_short"


# --- no invented words -----------------------------------------------------------------------------

def seg(text: str, *, no_speech: float = 0.05, logprob: float = -0.2, ratio: float = 1.2) -> Segment:
    return Segment(text, 0.0, 1.0, logprob, no_speech, ratio)


def test_hallucination_phrases_are_dropped_only_on_near_silent_audio() -> None:
    for phrase in ["Thank you.", "you", " Thanks for watching!", "Bye."]:
        assert gate_segment(seg(phrase), rms=0.002) == "hallucination"
        assert gate_segment(seg(phrase), rms=0.1) is None  # someone really said it
    assert gate_segment(seg("Thank you for the flowers."), rms=0.002) is None  # not a stock phrase


def test_whisper_scores_gate_segments_with_their_reason() -> None:
    loud = 0.1
    assert gate_segment(seg("hello there", no_speech=0.9), loud) == "no_speech"
    assert gate_segment(seg("hello there", logprob=-1.4), loud) == "low_confidence"
    assert gate_segment(seg("the the the the", ratio=3.1), loud) == "repetitive"
    assert gate_segment(seg("..."), loud) == "empty"
    assert gate_segment(seg("hello there"), loud) is None
    strict = Gates(max_no_speech_prob=0.2)
    assert gate_segment(seg("hello there", no_speech=0.3), loud, strict) == "no_speech"


def test_gate_recognition_keeps_the_good_segments_and_names_each_dropped_one() -> None:
    rec = Recognition("x", 0.5, "faster-whisper/tiny.en", 0.1,
                      (seg("Turn on the lights."), seg("Thank you."), seg("la la", no_speech=0.95)))
    kept, dropped = gate_recognition(rec, rms=0.005)
    assert kept.text == "Turn on the lights." and kept.confidence is not None
    assert dropped == [("hallucination", "Thank you."), ("no_speech", "la la")]
    plain = Recognition("you", None, "pocketsphinx/en-us", 0.1)  # no segment scores: phrase gate only
    assert gate_recognition(plain, rms=0.001)[1] == [("hallucination", "you")]
    assert gate_recognition(plain, rms=0.2)[0].text == "you"


# --- the audio file reader -------------------------------------------------------------------------

def _wav_header(n_bytes: int, rate: int = 16000, channels: int = 1, bits: int = 16) -> bytes:
    import struct

    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate,
            (rate * block) % 2**32, block, bits) + b"data" + struct.pack("<I", n_bytes))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda body, rate, ch: _wav_header(len(body), rate, ch) + body,
              st.binary(max_size=4096), st.sampled_from([1, 3000, 8000, 16000, 44100, 10**9]), st.integers(0, 9)),
    st.builds(lambda a, b: a + b, st.sampled_from([b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"RIFF"]), st.binary(max_size=2048)),
))
def test_reading_arbitrary_bytes_gives_audio_or_our_clear_error(tmp_path_factory: pytest.TempPathFactory,
                                                                data: bytes) -> None:
    pytest.importorskip("faster_whisper", reason="edge extra not installed: pip install -e '.[edge]'")
    from emostream.edge.audio import read_audio

    p = tmp_path_factory.mktemp("bytes") / "in.wav"
    p.write_bytes(data)
    try:
        audio = read_audio(p)
    except AudioError as exc:
        assert str(p) in str(exc) and "\n" not in str(exc)
        return
    assert audio.rate == 16000 and audio.samples.dtype == np.float32 and audio.samples.size > 0
    assert np.all(np.abs(audio.samples) <= 1.0)


# --- the pipeline with fakes -----------------------------------------------------------------------

class ListSource:
    """Frames from a list, optionally paced; 'live' decides drop-oldest vs wait."""

    def __init__(self, samples: np.ndarray, *, live: bool, pace_s: float = 0.0) -> None:
        self.samples, self.live, self.pace_s = samples, live, pace_s
        self.anchor, self.name = 1_700_000_000.0, "list"
        self.closed = False

    def frames(self) -> Iterator[np.ndarray]:
        from emostream.edge.mic import split_frames

        for f in split_frames(self.samples):
            if self.closed:
                return
            if self.pace_s:
                time.sleep(self.pace_s)
            yield f

    def close(self) -> None:
        self.closed = True


class SlowEngine:
    """Says the utterance's loudness level as a word, after ``delay_s``."""

    name = "fake"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def transcribe(self, audio):
        time.sleep(self.delay_s)
        level = round(float(np.max(np.abs(audio.samples))) * 10)
        return Recognition(f"level {level}", 0.9, "fake", self.delay_s, (seg(f"level {level}"),))


class ListSink:
    def __init__(self) -> None:
        self.got = []

    def submit(self, t) -> None:
        self.got.append(t)

    def service(self) -> None:
        pass

    def drain(self, wait_s: float) -> int:
        return 0


def speech_like(levels: list[float], speech_s: float = 0.5, pause_s: float = 0.8) -> np.ndarray:
    """Bursts of constant amplitude (the level) separated by silence; the fake VAD calls loud frames speech."""
    parts = [np.zeros(int(pause_s * RATE), np.float32)]
    for lv in levels:
        parts += [np.full(int(speech_s * RATE), lv, np.float32), np.zeros(int(pause_s * RATE), np.float32)]
    return np.concatenate(parts)


def fake_vad(frames: list[np.ndarray]) -> list[float]:
    return [0.9 if np.max(np.abs(f)) > 0.05 else 0.0 for f in frames]


def test_pipeline_keeps_order_and_audio_clock_timestamps() -> None:
    from emostream.edge.mic import MicPipeline, MicSettings
    from emostream.events import parse_ts

    src = ListSource(speech_like([0.1, 0.2, 0.3, 0.4, 0.5]), live=False)
    sink = ListSink()
    result = MicPipeline(src, fake_vad, SlowEngine(0.02), sink, MicSettings("pi-test", queue_max=1)).run()
    assert [t.text for t in sink.got] == [f"level {i}" for i in range(1, 6)]  # a file waits: nothing dropped
    assert result.utterances == 5 and not result.dropped and result.queue_peak == 1
    first = parse_ts(sink.got[0].started_at) - src.anchor
    assert abs(first - (0.8 - 0.2)) < 0.05  # speech at 0.8 s, minus the default 0.2 s pre-roll
    assert all(parse_ts(a.ended_at) <= parse_ts(b.started_at) for a, b in zip(sink.got, sink.got[1:]))
    assert result.audio_s == pytest.approx(len(src.samples) / RATE, abs=FRAME / RATE)


def test_live_capture_never_waits_for_slow_stt_it_drops_the_oldest_and_counts_it() -> None:
    from emostream.edge.mic import MicMetrics, MicPipeline, MicSettings

    levels = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    audio = speech_like(levels, speech_s=0.3, pause_s=0.6)
    src = ListSource(audio, live=True, pace_s=0.001)  # ~30x real time, like a burst of speech
    sink, metrics = ListSink(), MicMetrics()
    t0 = time.monotonic()
    result = MicPipeline(src, fake_vad, SlowEngine(0.4), sink, MicSettings("pi-test", queue_max=2),
                         metrics=metrics).run()
    capture_s = time.monotonic() - t0
    assert result.dropped["queue_full"] >= 1
    assert result.utterances + result.dropped["queue_full"] == len(levels)  # every utterance: spooled or counted
    texts = [t.text for t in sink.got]
    assert texts == sorted(texts, key=lambda s: int(s.split()[1]))  # what is kept stays in order
    assert texts[-1] == "level 8"  # the newest speech is never the one dropped
    assert b'emostream_mic_dropped_total{reason="queue_full"}' in metrics.render()
    assert capture_s < 0.4 * len(levels)  # STT of all 8 would take 3.2 s: capture did not wait for it


def test_too_short_and_gated_drops_are_counted_by_reason() -> None:
    from emostream.edge.mic import MicMetrics, MicPipeline, MicSettings

    class Hallucinating(SlowEngine):
        def transcribe(self, audio):
            return Recognition("Thank you.", 0.9, "fake", 0.0, (seg("Thank you."),))

    quiet = np.concatenate([np.zeros(8000, np.float32), np.full(3000, 0.006, np.float32),  # 0.19 s: too short
                            np.zeros(16000, np.float32), np.full(16000, 0.006, np.float32), np.zeros(16000, np.float32)])

    def vad(frames: list[np.ndarray]) -> list[float]:
        return [0.9 if np.max(np.abs(f)) > 0.001 else 0.0 for f in frames]

    metrics, sink = MicMetrics(), ListSink()
    result = MicPipeline(ListSource(quiet, live=False), vad, Hallucinating(), sink, MicSettings("pi-test"),
                         metrics=metrics).run()
    assert sink.got == [] and dict(result.dropped) == {"too_short": 1, "hallucination": 1}
    text = metrics.render()
    assert b'emostream_mic_dropped_total{reason="too_short"} 1.0' in text
    assert b'emostream_mic_dropped_total{reason="hallucination"} 1.0' in text


class FittedWindowEngine:
    """Like WhisperEngine with ``fit_window``: a short-window pass, and the 30 s window when asked (``full_window``)."""

    name = "fake-fitted"
    fit_window = True

    def __init__(self, fitted: Segment, full: Segment, *, truncated: bool = False) -> None:
        self.fitted, self.full, self.truncated = fitted, full, truncated
        self.calls: list[bool] = []  # full_window of each call

    def transcribe(self, audio, *, full_window: bool = False):
        self.calls.append(full_window)
        s = self.full if full_window else self.fitted
        return Recognition(s.text, 0.5, self.name, 0.01, (s,), truncated=self.truncated and not full_window)


def _one_utterance() -> np.ndarray:
    return speech_like([0.3])


def test_a_gated_fitted_window_pass_is_redone_with_the_30s_window_and_counted() -> None:
    from emostream.edge.mic import MicMetrics, MicPipeline, MicSettings

    engine = FittedWindowEngine(seg("Happy birthday, run is my", logprob=-1.02), seg("Happy birthday, grandma."))
    metrics, sink = MicMetrics(), ListSink()
    result = MicPipeline(ListSource(_one_utterance(), live=False), fake_vad, engine, sink, MicSettings("pi-test"),
                         metrics=metrics).run()
    assert engine.calls == [False, True]  # fitted first, then once with the full window
    assert [t.text for t in sink.got] == ["Happy birthday, grandma."]
    assert result.utterances == 1 and not result.dropped
    assert dict(result.stt_retries) == {"low_confidence": 1}
    assert result.to_dict()["stt_retries"] == {"low_confidence": 1}
    assert len(result.stt_calls) == 1 and result.stt_s == pytest.approx(0.02)  # both passes count for the utterance
    assert len(result.retried_latencies_s) == 1 and result.retried_latencies_s == result.latencies_s
    assert b'emostream_mic_stt_retries_total{reason="low_confidence"} 1.0' in metrics.render()


def test_a_looping_fitted_pass_is_redone_even_when_no_gate_drops_it() -> None:
    from emostream.edge.mic import MicPipeline, MicSettings

    twice = "Where did you put the car keys? Where did you put the car keys?"
    for fitted, truncated in ((seg(twice), False), (seg("Good morning. Good morning. Good"), True)):
        engine = FittedWindowEngine(fitted, seg("Where did you put the car keys?"), truncated=truncated)
        sink = ListSink()
        result = MicPipeline(ListSource(_one_utterance(), live=False), fake_vad, engine, sink,
                             MicSettings("pi-test")).run()
        assert engine.calls == [False, True]
        assert [t.text for t in sink.got] == ["Where did you put the car keys?"]
        assert dict(result.stt_retries) == {"looped": 1}


def test_the_full_window_result_is_gated_too_and_a_good_fitted_pass_is_not_redone() -> None:
    from emostream.edge.mic import MicPipeline, MicSettings

    both_bad = FittedWindowEngine(seg("mumble", logprob=-1.5), seg("mumble", no_speech=0.9))
    sink = ListSink()
    result = MicPipeline(ListSource(_one_utterance(), live=False), fake_vad, both_bad, sink, MicSettings("pi-test")).run()
    assert both_bad.calls == [False, True] and sink.got == []
    assert dict(result.dropped) == {"no_speech": 1}  # the 30 s window's verdict is the one counted
    assert dict(result.stt_retries) == {"low_confidence": 1}

    good = FittedWindowEngine(seg("Turn the music down, please."), seg("never used"))
    sink = ListSink()
    result = MicPipeline(ListSource(_one_utterance(), live=False), fake_vad, good, sink, MicSettings("pi-test")).run()
    assert good.calls == [False] and [t.text for t in sink.got] == ["Turn the music down, please."]
    assert not result.stt_retries


def test_fitted_pass_doubt_and_repeats_itself() -> None:
    from emostream.edge.stt import fitted_pass_doubt, normalise_words, repeats_itself

    def rec(text: str, truncated: bool = False) -> Recognition:
        return Recognition(text, 0.5, "x", 0.0, (seg(text),), truncated=truncated)

    assert fitted_pass_doubt(rec("Stop shouting at me."), []) is None
    assert fitted_pass_doubt(rec("Stop shouting at me.", truncated=True), []) == "looped"
    assert fitted_pass_doubt(rec("x"), [("no_speech", "x")]) == "no_speech"
    assert fitted_pass_doubt(Recognition("", None, "x", 0.0), []) == "empty"
    assert repeats_itself(normalise_words("good morning good morning good morning"))
    assert repeats_itself(normalise_words("I said where are the keys where are the keys"))
    for fine in ["no no no", "thank you thank you", "happy birthday to you happy birthday dear grandma",
                 "I can't believe the train was late again this morning"]:
        assert not repeats_itself(normalise_words(fine)), fine


def test_arecord_source_reads_raw_frames_from_the_pipe_and_names_the_fix_when_it_dies(tmp_path: Path) -> None:
    from emostream.edge.mic import ArecordSource

    pcm = (np.arange(FRAME * 3 + 100) % 200 - 100).astype("<i2")  # 3 whole frames and a partial one
    raw = tmp_path / "pcm.raw"
    raw.write_bytes(pcm.tobytes())
    fake = tmp_path / "arecord"
    fake.write_text(f"#!/bin/sh\ncat {raw}\necho 'arecord: main:831: audio open error: No such file or directory' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    src = ArecordSource("plughw:9,0", binary=str(fake))
    got = []
    with pytest.raises(AudioError, match=r"audio open error.*arecord -l.*--input"):
        for f in src.frames():
            got.append(f)
    assert len(got) == 3 and all(f.shape == (FRAME,) and f.dtype == np.float32 for f in got)
    assert np.allclose(np.concatenate(got), pcm[:3 * FRAME] / 32768.0)
    with pytest.raises(AudioError, match="apt-get install alsa-utils"):
        ArecordSource(binary="no-such-recorder-here")


# --- real VAD, real speech --------------------------------------------------------------------------

def espeak_recording(folder: Path, sentences: list[str], pauses_s: list[float], tail_s: float) -> Path:
    """Sentences spoken by espeak-ng, ``pauses_s`` of silence after each, ``tail_s`` of silence at the end."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng); cannot make speech")
    pytest.importorskip("faster_whisper", reason="edge extra not installed: pip install -e '.[edge]'")
    from emostream.bench.edge import speak, write_wav

    parts = []
    for text, pause in zip(sentences, pauses_s):
        parts += [speak(text), np.zeros(int(pause * RATE), np.float32)]
    parts.append(np.zeros(int(tail_s * RATE), np.float32))
    path = folder / "speech.wav"
    write_wav(path, np.concatenate(parts))
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return espeak_recording(tmp_path_factory.mktemp("mic"), SENTENCES, [1.0, 0.3, 1.2, 0.8], tail_s=4.0)


def test_streaming_vad_in_blocks_matches_faster_whispers_whole_file_vad(recording: Path) -> None:
    from faster_whisper.vad import get_vad_model

    from emostream.edge.mic import FileSource
    from emostream.edge.vad import SileroVad

    all_frames = list(FileSource(recording).frames())
    whole = get_vad_model()(np.concatenate(all_frames)).reshape(-1)
    vad = SileroVad()
    streamed = [p for i in range(0, len(all_frames), 3) for p in vad.probs(all_frames[i:i + 3])]
    assert np.allclose(streamed, whole, atol=1e-5)
    assert max(whole) > 0.9 and min(whole) < 0.1


def test_silero_vad_cuts_espeak_speech_at_the_long_pauses_only(recording: Path) -> None:
    from emostream.edge.mic import FileSource
    from emostream.edge.vad import SileroVad

    vad, segmenter, events = SileroVad(), Segmenter(), []
    all_frames = list(FileSource(recording).frames())
    probs = vad.probs(all_frames[:7]) + [vad(f) for f in all_frames[7:]]  # a block, then frame by frame: one stream
    for f, p in zip(all_frames, probs):
        events += segmenter.feed(f, p)
    events += segmenter.flush()
    us = utterances(events)
    # The 0.3 s pause (between sentences 2 and 3) is shorter than the 0.5 s stop silence: one utterance.
    assert len(us) == 3, [(u.start_s, u.end_s) for u in us]
    assert us[-1].end_s < FileSource(recording).audio.duration_s - 3.0  # the silent tail made nothing


# --- against a real broker --------------------------------------------------------------------------

def _mic(recording: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emostream", "edge", "mic", "--from-wav", str(recording), "--json",
                           *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.kafka
def test_mic_replay_arrives_as_one_transcript_per_utterance_in_order(recording: Path, bootstrap: str, unique_name: str,
                                                                     tmp_path: Path) -> None:
    from emostream.events import parse_ts
    from emostream.kafka.configuration import ClientConfig

    from tests.test_edge_kafka import consume_all
    from tests.worker_helpers import events_from_one_worker, make_topics, model_spec

    src, out, _dlq = make_topics(bootstrap, unique_name, partitions=3)
    done = _mic(recording, "--device", "pi-mic", "--topic", src, "--bootstrap", bootstrap,
                "--spool", str(tmp_path / "s.db"), "--wait", "60")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["utterances"] == 3 and summary["waiting"] == 0 and summary["acked"] == 3, summary
    got = [json.loads(v) for _k, v in consume_all(ClientConfig(bootstrap), src, 3)]
    assert len(got) == 3
    starts = [parse_ts(g["started_at"]) for g in got]
    assert starts == sorted(starts) and all(parse_ts(g["ended_at"]) > parse_ts(g["started_at"]) for g in got)
    expected = [SENTENCES[0], SENTENCES[1] + " " + SENTENCES[2], SENTENCES[3]]
    for ref, g in zip(expected, got):
        assert g["device_id"] == "pi-mic" and g["stt_engine"].startswith("faster-whisper")
        assert word_error_rate(ref, g["text"]) <= 0.35, (ref, g["text"])
    # ... and the worker classifies each of them exactly once, in order.
    events = events_from_one_worker(bootstrap, src, out, unique_name, tmp_path / "worker.log", model_spec(),
                                    expect=3, idle_s=3, instance="mic")
    assert [e["utterance_id"] for e in events] == [g["utterance_id"] for g in got]


@pytest.mark.kafka
def test_mic_with_the_broker_away_spools_everything_and_flush_delivers_it_in_order(
        recording: Path, bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    from emostream.kafka.configuration import ClientConfig

    from tests.test_edge_kafka import consume_all, make_topic

    make_topic(bootstrap, unique_name, partitions=3)
    spool = str(tmp_path / "s.db")
    away = _mic(recording, "--device", "pi-mic", "--topic", unique_name, "--bootstrap", "127.0.0.1:1",
                "--spool", spool, "--wait", "1")
    assert away.returncode == 0, away.stderr
    summary = json.loads(away.stdout.strip().splitlines()[-1])
    assert summary["utterances"] == 3 and summary["waiting"] == 3 and summary["acked"] == 0
    flushed = subprocess.run([sys.executable, "-m", "emostream", "edge", "flush", "--spool", spool, "--topic", unique_name,
                              "--bootstrap", bootstrap, "--wait", "60"], capture_output=True, text=True, timeout=120)
    assert flushed.returncode == 0, flushed.stderr
    got = [json.loads(v) for _k, v in consume_all(ClientConfig(bootstrap), unique_name, 3)]
    assert len(got) == 3 and [g["started_at"] for g in got] == sorted(g["started_at"] for g in got)
    assert word_error_rate(SENTENCES[3], got[-1]["text"]) <= 0.35


@pytest.mark.kafka
@pytest.mark.slow
def test_broker_stopped_during_mic_everything_is_spooled_and_delivered_later_in_order(
        recording: Path, private_broker, tmp_path: Path) -> None:
    from emostream.kafka.configuration import ClientConfig

    from tests.test_edge_kafka import consume_all, make_topic

    topic = "mic-outage"
    make_topic(private_broker.bootstrap, topic, partitions=1)
    proc = subprocess.Popen([sys.executable, "-m", "emostream", "edge", "mic", "--from-wav", str(recording), "--realtime",
                             "--json", "--device", "pi-mic", "--topic", topic, "--bootstrap", private_broker.bootstrap,
                             "--spool", str(tmp_path / "s.db"), "--wait", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # librdkafka's own account of the outage, shown if the test fails (one CI
                            # run saw the device still waiting for all 3 after 300 s with the broker back).
                            env={**os.environ, "EMOSTREAM_KAFKA_DEBUG": "broker,msg,eos"})
    spooled: list[str] = []
    stderr: list[str] = []
    seen = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr.append(line)
            if "(spooled " in line:
                spooled.append(line)
                seen.set()

    def why() -> str:
        (tmp_path / "edge.stderr").write_text("".join(stderr))
        return f"edge stderr (all of it in {tmp_path / 'edge.stderr'}), last lines:\n" + "".join(stderr[-40:])

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert seen.wait(120), "no transcript within 120 s\n" + why()
        private_broker.stop_node(0)  # the 2nd and 3rd utterances are spooled while the broker is away
        deadline = time.monotonic() + 120
        while len(spooled) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert len(spooled) == 3, why()
        time.sleep(2)
        assert proc.poll() is None, "edge mic must wait (--wait) for the broker, not give up\n" + why()
        private_broker.start_node(0)
        proc.wait(timeout=360)  # a loaded CI host takes minutes to bring a broker back
        reader.join(10)
        assert proc.stdout is not None
        out = proc.stdout.read()  # a few JSON lines: the pipe never fills
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, why()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["utterances"] == 3 and summary["waiting"] == 0 and summary["acked"] == 3, f"{summary}\n{why()}"
    # EMOSTREAM_KAFKA_DEBUG reached the device's producer: its debug lines are on stderr.
    assert any(line.startswith("librdkafka: ") for line in stderr), why()
    got = [json.loads(v) for _k, v in consume_all(ClientConfig(private_broker.bootstrap), topic, 3, timeout_s=90)]
    assert len(got) == 3 and [g["started_at"] for g in got] == sorted(g["started_at"] for g in got)
    assert word_error_rate(SENTENCES[0], got[0]["text"]) <= 0.35
    assert word_error_rate(SENTENCES[3], got[2]["text"]) <= 0.35
