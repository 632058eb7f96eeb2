"""``emostream bench pipeline``: what users see through real Kafka, end to end.

In one invocation, with the worker as a separate ``python -m emostream worker`` process (as
deployed, so its CPU time and RSS are read from ``/proc``):

1. the model alone, called as the worker calls it, in this process (here it sets the
   capacity offer; the ceiling is timed with the backlog, see 5);
2. a worker, warmed up, then idle for ``--idle-seconds``: its idle CPU;
3. the steady-state capacity *under concurrent load*: transcripts offered at 1.2 × the model's
   first run while the reader runs, output rate over the last three quarters of the window;
4. fixed offered rates (default 10, 50, 150/s and half that capacity), ``--rate-seconds`` each:
   p50/p95/p99/max end to end (utterance end → event at a read_committed reader) and the worker's
   CPU ms per event (its nanosecond CPU clock over the window);
5. a backlog of ``--count`` transcripts in ``--backlog-parts`` parts, each produced while the
   worker is stopped (SIGSTOP) and then drained: backlog throughput, counted between the ends of
   each part's first and last transaction; the model alone is timed for ``--model-seconds`` / 2
   before, between and after the parts, on the same texts, and that is the ceiling: both figures
   of ``ratio_to_model`` come from the same minutes. A first part, not counted, warms up what a
   long-running pipeline has long warmed up (the broker's request threads took 0.7-0.8 s of CPU in
   the first part without it, 0.05-0.1 s in later ones; the model's memory for transactions of
   1,024);
6. recovery: a worker under a steady 50/s is killed with SIGKILL and restarted at once (same
   ``--instance-id``, as systemd or Kubernetes would); the pause is the longest gap in the output
   from the kill until events flow again, with lost and duplicated events counted (0 and 0);
7. a naive one-record-at-a-time loop (poll, classify, produce, flush, commit) as a reported figure.

``layout="pinned"`` (``--pin``) puts this process (load generator, reader, naive loop, model
ceiling) and the broker the bench starts on the first CPU, the worker on the second: the closest
a 2-core host gets to the broker living elsewhere. A broker given with ``--bootstrap`` is not ours
to pin. ``baseline="quix"`` (``--baseline quix``) also drains the same backlog with a Quix Streams
app (exactly-once, the same model per message, ``commit_interval=0.1``) in a venv of its own;
without it ``quix_throughput``/``ratio_to_quix``/``quix_recovery_pause_s`` are null. The Quix app is
killed and restarted the same way for its recovery pause.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from emostream.cluster import LocalCluster
from emostream.cluster.brokers import free_base_port
from emostream.cluster.config import INTERNAL_OFFSET
from emostream.edge.simulate import device_names
from emostream.errors import ClusterError, Terminated, UsageError
from emostream.events import SourceRef, Transcript, decode_transcript, format_ts, parse_ts
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer, poll_batch
from emostream.kafka.producer import idempotent_producer, produce
from emostream.topics import create_topic, plan_dedupe, plan_topic
from emostream.worker.model import load_model
from emostream.worker.process import model_calls
from emostream.worker.runner import MAX_SESSION_TIMEOUT_MS, WorkerSettings

DEVICES = 500
DEFAULT_RATES = (10.0, 50.0, 150.0)
# Offered during the capacity run, × the backlog throughput: enough to saturate (capacity under
# concurrent load is below the backlog figure) without a load generator so fast that its own CPU
# starves the worker.
CAPACITY_OVER_OFFER = 1.2
# No two consecutive events of one transaction reach the bench's reader further apart than this;
# consecutive transactions of a busy worker do (their commits are a model batch, ~1 s, apart).
BURST_GAP_S = 0.25
# A shorter span measures no rate (0), rather than an unbounded one.
MIN_SPAN_S = 0.001
# Kafka's default group.min.session.timeout.ms: a worker asking for less is refused by the broker.
BROKER_MIN_SESSION_TIMEOUT_MS = 6000
# The backlog is drained in parts with the model alone timed before, between and after them, so
# both figures of ratio_to_model come from the same minutes: this VM's speed drifts by ~10 % over
# minutes (the model alone, back to back on an idle machine: 904-1,085 texts/s in 8 s runs).
BACKLOG_PARTS = 4
LAYOUTS = ("shared", "pinned")
BASELINES = ("quix",)
# quixstreams 3.28 pins confluent-kafka < 2.13, older than ours: it gets a venv of its own, made on
# demand, with the model's runtime (emostream itself is imported from this checkout's path).
QUIX_VENV = Path.home() / ".cache" / "emostream" / "quix-venv"
QUIX_REQUIREMENTS = ("quixstreams==3.28.*", "onnxruntime>=1.18", "tokenizers>=0.19", "numpy>=1.26",
                     "prometheus-client>=0.20", "cryptography>=42")
# The peer doing our job its idiomatic way: exactly-once, the same model called per message,
# commit_interval 0.1 s (its 5 s default gives p50 ≈ 2.5 s).
# Quix Streams after a SIGKILL: a 45 s session timeout, and a random transactional id, so the
# dead transaction also waits for the 60 s transaction timeout.
QUIX_STALL_S = 60.0
QUIX_APP = """
import sys, time
from quixstreams import Application
from emostream.events import format_ts, parse_ts
from emostream.worker.model import load_model

bootstrap, source, target, group, model = sys.argv[1:6]
clf = load_model(model or None)
app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                  processing_guarantee="exactly-once", commit_interval=0.1, auto_create_topics=False)

def classify(t):
    (pred,) = clf.classify([t["text"]])
    now = time.time()
    return {"device_id": t["device_id"], "utterance_id": t["utterance_id"], "label": pred.label,
            "classified_at": format_ts(now), "latency_ms": (now - parse_ts(t["ended_at"])) * 1000.0}

sdf = app.dataframe(app.topic(source, value_deserializer="json"))
sdf.apply(classify).to_topic(app.topic(target, value_serializer="json"))
app.run()
"""

# Spoken sentences by emotion; ``_texts`` strings one to three of them together. Fixed, so runs
# on different days measure the same work.
UTTERANCES: dict[str, list[str]] = {
    "joy": [
        "I can't believe it worked, this is amazing!",
        "We won the game, I'm so happy right now.",
        "Thank you so much, this is the best birthday ever.",
        "Finally the weekend, I love these sunny mornings.",
        "That dinner was wonderful, I'm really glad we came.",
    ],
    "anger": [
        "Why is the printer jammed again, this is ridiculous!",
        "I told you three times to close the door, I'm furious.",
        "Stop touching my stuff, it makes me so angry.",
        "The bus was late again and nobody even apologised.",
    ],
    "sadness": [
        "I really miss grandma, the house feels empty without her.",
        "I failed the exam even though I studied all week.",
        "Nobody came to the party, I feel so alone.",
        "It's raining again and I just feel down today.",
    ],
    "fear": [
        "Did you hear that noise downstairs? I'm scared.",
        "I'm terrified of the dentist appointment tomorrow.",
        "What if the storm knocks the power out tonight?",
        "Somebody is following me, I'm really frightened.",
    ],
    "surprise": [
        "Wow, I did not expect to see you here!",
        "No way, you bought a new car? Since when?",
        "Oh! The package arrived a whole week early.",
        "Really? They're getting married next month?",
    ],
    "disgust": [
        "Ugh, the milk in the fridge has gone completely sour.",
        "That's disgusting, who left the trash out all week?",
        "Gross, there's hair in my soup.",
    ],
    "neutral": [
        "Can you turn the kitchen lights off please?",
        "What time is the meeting tomorrow?",
        "Set a timer for ten minutes.",
        "The train leaves at seven fifteen.",
        "Add eggs and bread to the shopping list.",
    ],
}


@dataclass(frozen=True)
class PipelineBenchOptions:
    """What ``emostream bench pipeline`` measures and against which cluster."""

    count: int = 50_000  # transcripts in the throughput backlog
    naive_count: int | None = None  # transcripts for the one-at-a-time baseline; None: min(300, count)
    batch_max: int = 64  # the worker's micro-batch size
    batch_wait_ms: float | None = None  # the worker's --batch-wait-ms; None: its default
    model: str | None = None  # model spec; None: the shipped model
    bootstrap: str | None = None  # None: a 1-broker Kafka of its own in a temporary folder
    security_profile: str | None = None
    rates: tuple[float, ...] = DEFAULT_RATES  # fixed offered rates, transcripts/s
    half_capacity: bool = True  # also offer 50 % of the measured steady-state capacity
    rate_seconds: float = 15.0  # how long each offered rate (and the capacity run) lasts
    idle_seconds: float = 10.0  # how long the worker's idle CPU is measured
    pin: bool = False  # broker + load generator on the first CPU, the worker on the second
    baseline: str | None = None  # "quix": also drain the backlog with a Quix Streams app
    pipeline: bool = True  # the worker's default; False runs it with --no-pipeline (for comparison)
    recovery_seconds: float = 30.0  # the steady load around the SIGKILL (0: skip the recovery phase)
    model_seconds: float = 8.0  # how long the model alone is timed at the start; half of it before, between and after the backlog's parts
    backlog_parts: int = BACKLOG_PARTS  # the backlog in this many parts, the model alone timed between them
    # The workers' --session-timeout-ms: how long the group waits for a killed worker (the
    # recovery pause without --static-membership is bound by it).
    session_timeout_ms: int = WorkerSettings.session_timeout_ms
    keep_logs: bool = True  # the workers' logs stay in the run's temporary folder (the CLI says where)

    def __post_init__(self) -> None:
        for name in ("count", "naive_count", "batch_max", "backlog_parts"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        # NaN passes every comparison and inf never ends a phase: both are refused with the rest.
        if not (0 <= self.recovery_seconds < math.inf):
            raise UsageError(f"--recovery-seconds must not be negative (or infinite), got {self.recovery_seconds}")
        for name in ("rate_seconds", "idle_seconds", "model_seconds"):
            if not (0 < getattr(self, name) < math.inf):
                raise UsageError(f"--{name.replace('_', '-')} must be positive and finite, got {getattr(self, name)}")
        if self.baseline is not None and self.baseline not in BASELINES:
            raise UsageError(f"--baseline {self.baseline!r}: choose one of {', '.join(BASELINES)}")
        if self.baseline == "quix" and self.security_profile:
            raise UsageError("--baseline quix talks plaintext only; drop --security-profile or the baseline")
        # Below group.min.session.timeout.ms no worker can join. The bench's own broker has the
        # default; a --bootstrap cluster may allow less (a worker it refuses stops with that error).
        lowest = BROKER_MIN_SESSION_TIMEOUT_MS if self.bootstrap is None else 1
        if not lowest <= self.session_timeout_ms <= MAX_SESSION_TIMEOUT_MS:
            raise UsageError(f"--session-timeout-ms must be {lowest}..{MAX_SESSION_TIMEOUT_MS}"
                             f"{' (the bench broker refuses less)' if self.bootstrap is None else ''}, got {self.session_timeout_ms}")
        if not all(0 < r < math.inf for r in self.rates):
            raise UsageError(f"--rates must all be positive transcripts/s, got {','.join(map(str, self.rates))}")

    @property
    def layout(self) -> str:
        return LAYOUTS[self.pin]


def parse_rates(text: str) -> tuple[float, ...]:
    """``"10,50,150"`` → ``(10.0, 50.0, 150.0)``; an empty string offers no fixed rate."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--rates wants numbers separated by commas (e.g. 10,50,150), got {text!r}") from None


def _say(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def _texts(n: int, seed: int = 7) -> list[str]:
    """Realistic spoken utterances: one to three sentences (about 5 to 40 words)."""
    rng = random.Random(seed)
    pool = [s for group in UTTERANCES.values() for s in group]
    return [" ".join(rng.choice(pool) for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))) for _ in range(n)]


# The bench's own broker: base ports below the tests' 20000-32767 and below Linux's ephemeral range
# (32768-60999 by default), where a port free when checked may be taken by an outgoing connection
# before the broker binds it (the range was 20000-50000).
BENCH_PORTS = (10000, 20000 - INTERNAL_OFFSET - 1)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


# --- pure summaries (tested without a broker) ------------------------------------------------------

def rate_summary(offered: float, sent_at: float, arrivals: list[tuple[float, float]], cpu_s: float | None) -> dict[str, Any]:
    """One offered rate's figures from its (arrival time, end-to-end latency) pairs, in seconds.

    ``achieved_per_s`` counts events over the time from the first send to the last arrival plus one
    send interval, so a worker that keeps up reports about the offered rate (never more) and one
    that falls behind reports less."""
    lat = [lat for _, lat in arrivals]
    span = max(t for t, _ in arrivals) - sent_at + 1.0 / offered if arrivals else 0.0
    achieved = len(arrivals) / span if span > 0 else 0.0
    return {
        "offered_per_s": round(offered, 1),
        "achieved_per_s": round(achieved, 1),
        "events": len(arrivals),
        "p50_ms": _ms(_percentile(lat, 0.50)),
        "p95_ms": _ms(_percentile(lat, 0.95)),
        "p99_ms": _ms(_percentile(lat, 0.99)),
        "max_ms": _ms(max(lat)) if lat else None,
        "worker_cpu_ms_per_event": round(cpu_s * 1000.0 / len(arrivals), 2) if cpu_s is not None and arrivals else None,
    }


def burst_span(times: list[float], lo: float = -math.inf, hi: float = math.inf,
               stamps: list[str] | None = None) -> tuple[int, float] | None:
    """(events, seconds) between the first and the last transaction whose arrivals end inside
    ``[lo, hi]``: the events that arrived after the first one's end, up to the last one's, and the
    time between those ends. None when fewer than two transactions end there.

    A read_committed reader gets a transaction's events together, at its commit (a busy worker's
    1,024 at once), so a rate counted from the first arrival counts the first transaction's events
    without the time they took, and a fixed window cuts transactions at both ends. Both ends of this
    interval sit right after a transaction's last event, so no transaction is split.

    ``stamps`` (each event's ``classified_at``, in the order of ``times``): the worker stamps every
    event of a transaction alike, so a transaction is its stamp's events and ends at the last of
    them, even where a reader that fell behind got its last partitions after the next
    transaction's first; the count is then the events of the transactions that end after the
    first one's end, up to the last one's. A Quix app stamps each message (to the millisecond), so
    its stream counts message by message. Without stamps, a transaction ends where the next
    arrival comes more than ``BURST_GAP_S`` later: right for a busy worker's transactions, but a
    model fast enough to commit them closer merges them."""
    if stamps is not None:
        last: dict[str, float] = {}
        size: dict[str, int] = {}
        for t, stamp in zip(times, stamps):
            last[stamp] = max(last.get(stamp, t), t)
            size[stamp] = size.get(stamp, 0) + 1
        txns = sorted((end, size[stamp]) for stamp, end in last.items() if lo <= end <= hi)
        if len(txns) < 2 or txns[-1][0] - txns[0][0] < MIN_SPAN_S:
            return None
        return sum(n for _, n in txns[1:]), txns[-1][0] - txns[0][0]
    ts = sorted(times)
    ends = [k for k, t in enumerate(ts) if lo <= t <= hi and (k + 1 == len(ts) or ts[k + 1] - t > BURST_GAP_S)]
    if len(ends) < 2 or ts[ends[-1]] - ts[ends[0]] < MIN_SPAN_S:
        return None
    return ends[-1] - ends[0], ts[ends[-1]] - ts[ends[0]]


def rate_between_bursts(times: list[float], lo: float = -math.inf, hi: float = math.inf,
                        stamps: list[str] | None = None) -> float | None:
    """Events/s over :func:`burst_span`; None when fewer than two transactions end in ``[lo, hi]``."""
    span = burst_span(times, lo, hi, stamps)
    return None if span is None else span[0] / span[1]


def _stream_span(ts: list[float]) -> tuple[int, float] | None:
    """(events, seconds) of sorted arrivals that came as a stream (no burst to measure from): the
    events after the first over first to last arrival; None for a shorter span than ``MIN_SPAN_S``."""
    return (len(ts) - 1, ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] - ts[0] >= MIN_SPAN_S else None


def steady_capacity(arrivals: list[tuple[float, float]], sent_at: float, sent_until: float,
                    stamps: list[str] | None = None) -> float:
    """Events/s delivered over the last three quarters of a saturating send (the first quarter is
    warm-up: the worker's batches grow to the load). Only while sending: the load generator's CPU
    is part of "under concurrent load".

    The rate between the transactions that arrive in that window (``rate_between_bursts``): under
    this load a transaction brings 1,024 events at once, and counting whole transactions against the
    window was off by up to one each way (3 of 1,024 in an 11.25 s window read as 273/s, for ~400/s
    between them). Transactions are told apart by ``stamps`` when given (see :func:`burst_span`).
    Without them, where events came as a stream through the window (small transactions, no quiet
    gap in it, covering at least half of it), first to last arrival in it. Otherwise (fewer than two
    transactions arrived while sending, as with a tiny ``--rate-seconds``): all events over first
    send to last arrival, which counts the warm-up too and so never flatters."""
    lo, hi = sent_at + (sent_until - sent_at) / 4.0, sent_until
    times = [t for t, _ in arrivals]
    between = rate_between_bursts(times, lo, hi, stamps)
    if between is not None:
        return between
    inside = sorted(t for t in times if lo <= t <= hi)
    if stamps is None and inside and inside[-1] - inside[0] >= (hi - lo) / 2.0 and all(b - a <= BURST_GAP_S for a, b in zip(inside, inside[1:])):
        stream = _stream_span(inside)
        if stream is not None:
            return stream[0] / stream[1]
    last = max(times, default=sent_at)
    return len(arrivals) / (last - sent_at) if last - sent_at >= MIN_SPAN_S else 0.0


# --- the worker process, read through /proc ---------------------------------------------------------

def _cpu_s(pid: int) -> float | None:
    """CPU time of ``pid`` (all its threads, those that have exited too), in seconds, from its
    nanosecond CPU clock (``clock_getcpuclockid``: ``((~pid) << 3) | 2`` on Linux).
    ``/proc/PID/stat`` counts whole clock ticks (10 ms): a handful of events at a low rate (a
    loaded machine's "half capacity" can be 1/s) then read as 0 ms each."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9
    except (OSError, OverflowError):  # no such process (any more)
        return None


def _proc_mb(pid: int, key: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _cpu_delta(pid: int, before: float | None) -> float | None:
    after = _cpu_s(pid)
    return None if before is None or after is None else after - before


def _pin_cpus() -> tuple[int, int]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise UsageError(f"--pin needs two CPUs, this process may use only {cpus}; run without --pin")
    return cpus[0], cpus[1]


# --- load generator and reader -----------------------------------------------------------------------

# One load generator per cluster for the whole run, as a fleet's senders are long-lived: a new
# idempotent producer needs ~0.5 s (connect, metadata, producer id) before its first record leaves,
# and every record stamped meanwhile would carry that start-up as "latency".
_PRODUCERS: dict[str, Any] = {}


def _producer(client: ClientConfig) -> Any:
    if client.bootstrap not in _PRODUCERS:
        producer = idempotent_producer(client)
        producer.list_topics(timeout=30)  # connected before the first record is stamped
        _PRODUCERS[client.bootstrap] = producer
    return _PRODUCERS[client.bootstrap]


def _produce(client: ClientConfig, topic: str, texts: list[str], rate: float | None = None, tag: str = "b") -> None:
    """Send transcripts keyed by device (``rate`` per second when given, else as fast as possible).
    ``tag`` makes utterance ids unique per phase: the worker drops re-sent ids as duplicates."""
    producer = _producer(client)
    names = device_names(DEVICES)
    start = time.monotonic()
    for i, text in enumerate(texts):
        if rate:
            ahead = start + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        dev = names[i % DEVICES]
        t = Transcript(device_id=dev, utterance_id=f"{tag}-{i}", text=text, ended_at=format_ts(time.time()))
        produce(producer, topic, t.encode(), dev.encode())
        producer.poll(0)
    left = producer.flush(60)
    if left:
        raise ClusterError(f"{left} transcript(s) still unsent to {topic} after 60 s")


class _Reader:
    """A read_committed reader of the worker's output, kept for all phases of one worker."""

    def __init__(self, client: ClientConfig, topic: str, worker: subprocess.Popen | None) -> None:
        self._consumer = committed_consumer(client, f"bench-reader-{os.urandom(4).hex()}")
        self._consumer.subscribe([topic])
        self.worker = worker  # None while it is being replaced (the recovery phase)

    def take(self, n: int, timeout_s: float, tag: str, ids: list[str] | None = None,
             stamps: list[str] | None = None, stop: Callable[[], bool] | None = None) -> list[tuple[float, float]]:
        """Read ``n`` events of utterances sent with ``tag``: (arrival, monotonic s; end-to-end
        latency, s); their utterance ids are appended to ``ids`` when given, their
        ``classified_at`` (one per transaction) to ``stamps``. Stops early once ``stop()`` is
        true (the sender failed: the rest will not come). Events of earlier
        phases (a timed-out tail) are skipped, not counted. Fewer on timeout; stops with
        ClusterError as soon as the worker has exited: nothing more will come."""
        prefix = f"{tag}-"
        got: list[tuple[float, float]] = []
        stamped: dict[str, float] = {}  # classified_at → epoch s: one parse per transaction, not per event
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline and not (stop and stop()):
            worker = self.worker
            if worker is not None and worker.poll() is not None:
                raise ClusterError(f"the benchmark's worker exited with code {worker.returncode} after "
                                   f"{len(got)} of {n} events{_last_words(worker)}; its log is named below")
            for m in poll_batch(self._consumer, 1000, 0.05):  # consume(n, t) would add up to t to each latency
                if m.error() is not None:
                    continue
                now = time.time()
                e = json.loads(m.value())
                if not str(e.get("utterance_id", "")).startswith(prefix):
                    continue
                stamp = e["classified_at"]
                at = stamped.get(stamp) if type(stamp) is str else None
                if at is None:
                    at = stamped[stamp] = parse_ts(stamp)  # raises ValueError for anything but a str
                ended = at - (e.get("latency_ms") or 0.0) / 1000.0
                got.append((time.monotonic(), now - ended))
                if ids is not None:
                    ids.append(str(e["utterance_id"]))
                if stamps is not None:
                    stamps.append(stamp)
        if len(got) < n:
            _say(f"only {len(got)} of {n} events within {timeout_s:.0f} s")
        return got

    def close(self) -> None:
        self._consumer.close()


def _offer(client: ClientConfig, src: str, reader: _Reader, texts: list[str], rate: float | None, tag: str,
           timeout_s: float, stamps: list[str] | None = None) -> tuple[float, float, list[tuple[float, float]]]:
    """Send ``texts`` (paced at ``rate``) while reading their events; returns (send start, send end
    (monotonic s), arrivals); the events' ``classified_at`` go to ``stamps`` when given."""
    ended: list[float] = []
    failed: list[BaseException] = []

    def send() -> None:
        try:
            _produce(client, src, texts, rate, tag)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            failed.append(exc)
        ended.append(time.monotonic())

    sender = threading.Thread(target=send, daemon=True)
    sent_at = time.monotonic()
    sender.start()
    try:
        arrivals = reader.take(len(texts), timeout_s, tag, stamps=stamps, stop=lambda: bool(failed))
    finally:
        sender.join(60)
    if failed:
        raise failed[0]
    return sent_at, ended[0] if ended else time.monotonic(), arrivals


# --- the phases ----------------------------------------------------------------------------------------

class _ModelAlone:
    """The model alone in this process, called as the worker calls it on a backlog: transactions of
    ``txn_max_records`` texts, each classified in one call where the model batches internally (the
    shipped one), else in length-sorted calls of ``batch`` (see ``process_batch``)."""

    def __init__(self, model_spec: str | None, batch: int) -> None:
        self.clf = load_model(model_spec)
        self.name = self.clf.name
        self.batch = batch
        self._warm = False

    def run(self, texts: list[str], seconds: float) -> tuple[int, float]:
        """(texts classified, seconds taken): ``texts`` over and over for ``seconds``."""
        if not texts:
            return 0, 0.0
        if not self._warm:
            self.clf.classify(texts[: self.batch])
            self._warm = True
        block = WorkerSettings().txn_max_records
        done, pos, start = 0, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            txn = texts[pos : pos + block]
            pos = pos + block if pos + block < len(texts) else 0
            for chunk in model_calls(self.clf, txn, self.batch):
                self.clf.classify([txn[i] for i in chunk])
                done += len(chunk)
                if time.perf_counter() - start >= seconds:
                    break
        return done, time.perf_counter() - start


def _model_throughput(model_spec: str | None, texts: list[str], batch: int, seconds: float = 8.0) -> tuple[float, str]:
    """Texts/s of the model alone (see :class:`_ModelAlone`), and its name."""
    model = _ModelAlone(model_spec, batch)
    done, took = model.run(texts, seconds)
    return (done / took if took > 0 else 0.0), model.name


def _naive(client: ClientConfig, model_spec: str | None, src: str, out: str, n: int, timeout_s: float) -> float:
    """The original script's shape: one record at a time, flush and commit after each."""
    clf = load_model(model_spec)
    consumer = committed_consumer(client, f"bench-naive-{os.urandom(4).hex()}")
    producer = idempotent_producer(client, **{"linger.ms": 0})
    consumer.subscribe([src])
    done, start = 0, None
    deadline = time.monotonic() + timeout_s
    try:
        while done < n and time.monotonic() < deadline:
            m = consumer.poll(1.0)
            if m is None or m.error() is not None:
                continue
            start = start or time.monotonic()
            t = decode_transcript(m.key(), m.value(), SourceRef(m.topic(), m.partition(), m.offset()))
            (pred,) = clf.classify([t.text])
            producer.produce(out, json.dumps({"text": t.text, "label": pred.label}).encode(), m.key())
            producer.flush()
            consumer.commit(m, asynchronous=False)
            done += 1
    finally:
        consumer.close()
    return done / (time.monotonic() - start) if start and done > 1 else 0.0


def _topics(admin: Admin, prefix: str) -> tuple[str, str, str]:
    live = admin.live_brokers()
    names = (f"{prefix}.src", f"{prefix}.out", f"{prefix}.src.dlq")
    for name in names:
        create_topic(admin, plan_topic(name, live, 6))
    create_topic(admin, plan_dedupe(names[0], 6, live))  # the worker's durable dedupe changelog
    return names


def _worker(bootstrap: str, src: str, out: str, group: str, options: PipelineBenchOptions, log: Path,
            cpu: int | None, static: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "emostream", "worker", "--bootstrap", bootstrap, "--source-topic", src, "--target-topic", out,
           "--group", group, "--batch-max", str(options.batch_max), "--instance-id", group, "--verbose",
           "--session-timeout-ms", str(options.session_timeout_ms)]
    if options.model:
        cmd += ["--model", options.model]
    if not options.pipeline:
        cmd.append("--no-pipeline")
    if options.batch_wait_ms is not None:
        cmd += ["--batch-wait-ms", str(options.batch_wait_ms)]
    if static:
        cmd.append("--static-membership")
    taskset = shutil.which("taskset") if cpu is not None else None
    if taskset:
        cmd = [taskset, "-c", str(cpu), *cmd]  # taskset execs the worker: the pid stays the worker's
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    proc.emostream_log = log  # type: ignore[attr-defined]  # for _last_words
    if cpu is not None and not taskset:
        os.sched_setaffinity(proc.pid, {cpu})  # before the interpreter starts its threads, which inherit it
    return proc


def _quix_python() -> Path:
    """The Quix Streams venv's interpreter, made (from PyPI) the first time."""
    py = QUIX_VENV / "bin" / "python"
    check = [str(py), "-c", "import quixstreams, onnxruntime, tokenizers"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    _say(f"installing Quix Streams into {QUIX_VENV} (once; needs PyPI)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True, capture_output=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *QUIX_REQUIREMENTS], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise UsageError(f"could not install Quix Streams into {QUIX_VENV}: {(exc.stderr or '').strip()[-800:]}; "
                         "check the network or run without --baseline quix") from None
    return py


def backlog_span(arrivals: list[tuple[float, float]], stamps: list[str] | None = None) -> tuple[int, float] | None:
    """(events, seconds) a drained backlog's rate is counted over: between the end of its first
    transaction and its last (:func:`burst_span`; ``stamps`` tell its transactions apart). None when
    fewer than two transactions came (a part of one transaction has no time to count its events
    over). Rounds up to stop 24 took first to last arrival, which counted the first transaction's
    1,024 events without the ~1.1 s spent on them: ~5 % high on 20,000. Without stamps, arrivals
    with no quiet gap between them are taken as a stream: first to last arrival."""
    times = [t for t, _ in arrivals]
    span = burst_span(times, stamps=stamps)
    if span is not None or stamps is not None:
        return span
    return _stream_span(sorted(times))


def backlog_rate(arrivals: list[tuple[float, float]], stamps: list[str] | None = None) -> float | None:
    """Events/s of a drained backlog (see :func:`backlog_span`); None when it cannot be measured."""
    span = backlog_span(arrivals, stamps)
    return None if span is None else span[0] / span[1]


def pooled_rate(spans: list[tuple[int, float]] | list[tuple[int, float] | None]) -> float | None:
    """Events/s over the parts that could be measured (their events over their time); None if none could."""
    measured = [sp for sp in spans if sp is not None]
    events, seconds = sum(n for n, _ in measured), sum(t for _, t in measured)
    return events / seconds if measured and seconds > 0 else None


def _quix_throughput(client: ClientConfig, admin: Admin, run: str, options: PipelineBenchOptions, texts: list[str],
                     worker_cpu: int | None, tmp: Path, procs: list[subprocess.Popen]) -> float | None:
    """The same backlog drained by the Quix Streams app, in its own venv and process."""
    py = _quix_python()
    app = tmp / "quix_app.py"
    app.write_text(QUIX_APP)
    src, out, _ = _topics(admin, f"{run}-quix")
    _produce(client, src, texts, tag="quix")
    proc = _quix_app(py, client, src, out, f"{run}-quix", options.model, worker_cpu, tmp)
    procs.append(proc)
    reader = _Reader(client, out, proc)
    try:
        stamps: list[str] = []
        arrivals = reader.take(len(texts), timeout_s=max(600.0, len(texts) / 10), tag="quix", stamps=stamps)
        return backlog_rate(arrivals, stamps)
    finally:
        reader.close()
        _stop(proc)


def _quix_app(py: Path, client: ClientConfig, src: str, out: str, group: str, model: str | None, cpu: int | None,
              tmp: Path) -> subprocess.Popen:
    app = tmp / "quix_app.py"
    app.write_text(QUIX_APP)
    cmd = [str(py), str(app), client.bootstrap, src, out, group, model or ""]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    emostream_root = Path(__file__).resolve().parents[2]  # .../src, so the app imports this checkout
    return subprocess.Popen(cmd, cwd=tmp, stdout=(tmp / "quix.log").open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(emostream_root)})


def recovery_summary(killed_at: float, arrivals: list[float], ids: list[str], sent: int) -> dict[str, Any]:
    """The output pause around a kill: the longest gap between the kill and the arrivals after it
    (until events flow again), plus events lost (sent, never read) and read more than once."""
    after = sorted(t for t in arrivals if t > killed_at)
    times = [killed_at, *after]
    pause = max((b - a for a, b in zip(times, times[1:])), default=None)
    unique = set(ids)
    return {"pause_s": None if pause is None else round(pause, 2), "lost": sent - len(unique),
            "duplicates": len(ids) - len(unique)}


def _recovery(client: ClientConfig, admin: Admin, name: str, seconds: float, texts: list[str],
              start: Any, procs: list[subprocess.Popen], session_timeout_s: float) -> dict[str, Any]:
    """A steady 50/s for ``seconds``; after a quarter of it the consumer process ``start()`` made
    is killed with SIGKILL and ``start()`` is called again at once. ``session_timeout_s``: the
    consumer's session timeout, the longest its group may take to give up on the killed one."""
    rate = 50.0
    src, out, _ = _topics(admin, name)
    mine = [start(src, out)]
    procs.extend(mine)
    reader = _Reader(client, out, mine[0])
    killed: list[float] = []

    def kill_and_restart() -> None:
        reader.worker = None
        os.kill(mine[0].pid, signal.SIGKILL)
        mine[0].wait(30)
        killed.append(time.monotonic())
        mine.append(start(src, out))
        procs.append(mine[-1])
        reader.worker = mine[-1]

    try:
        _offer(client, src, reader, texts[:16], None, "rwarm", timeout_s=180)  # joined, model warm
        n = int(rate * seconds)
        timer = threading.Timer(seconds / 4.0, kill_and_restart)
        ids: list[str] = []
        sender_done: list[float] = []

        def send() -> None:
            _produce(client, src, _paced_texts(texts, n), rate, "rec")
            sender_done.append(time.monotonic())

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        timer.start()
        # Without static membership the output waits for the group to give up on the killed worker.
        arrivals = reader.take(n, seconds + session_timeout_s + 180.0, "rec", ids)
        sender.join(60)
        timer.join()
        return recovery_summary(killed[0], [t for t, _ in arrivals], ids, n) if killed else {"pause_s": None}
    finally:
        reader.close()
        for p in mine:
            _stop(p)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _paced_texts(texts: list[str], n: int) -> list[str]:
    return [texts[i % len(texts)] for i in range(n)]


def _latency_runs(client: ClientConfig, admin: Admin, run: str, options: PipelineBenchOptions, texts: list[str],
                  model_tp: float, worker_cpu: int | None, tmp: Path,
                  procs: list[subprocess.Popen]) -> dict[str, Any]:
    """Phases 2–4 on one warmed-up worker: idle CPU, steady capacity, the offered rates."""
    batch, secs = options.batch_max, options.rate_seconds
    src, out, _ = _topics(admin, f"{run}-lat")
    worker = _worker(client.bootstrap, src, out, f"{run}-lat", options, tmp / "worker-lat.log", worker_cpu)
    procs.append(worker)
    reader = _Reader(client, out, worker)
    try:
        # The first records wait for the group join and the model's first run: keep them out of the timing.
        _offer(client, src, reader, texts[:batch], None, "warm", timeout_s=180)
        time.sleep(1.0)

        _say(f"idle: worker CPU over {options.idle_seconds:.0f} s without traffic")
        before, t0 = _cpu_s(worker.pid), time.monotonic()
        time.sleep(options.idle_seconds)
        idle_cpu = _cpu_delta(worker.pid, before)
        idle_pct = None if idle_cpu is None else round(100.0 * idle_cpu / (time.monotonic() - t0), 2)

        # The model alone bounds the worker: offered above it, the worker is saturated.
        over = max(CAPACITY_OVER_OFFER * model_tp, 5.0)
        n = int(over * secs)
        _say(f"steady capacity under concurrent load: {n} transcripts offered at {over:.0f}/s")
        stamps: list[str] = []
        sent_at, sent_until, arrivals = _offer(client, src, reader, _paced_texts(texts, n), over, "cap",
                                               timeout_s=secs + max(120.0, n / 5.0), stamps=stamps)
        capacity = steady_capacity(arrivals, sent_at, sent_until, stamps)
        time.sleep(2.0)

        offered = [(r, False) for r in options.rates]
        if options.half_capacity:
            offered.append((max(1.0, capacity / 2.0), True))
        rates = []
        for i, (rate, half) in enumerate(offered):
            n = max(2, int(rate * secs))
            _say(f"latency at {rate:.0f}/s: {n} transcripts{' (half the steady capacity)' if half else ''}")
            before = _cpu_s(worker.pid)
            sent_at, _, arrivals = _offer(client, src, reader, _paced_texts(texts, n), rate, f"r{i}", timeout_s=secs * 4 + 60)
            entry = rate_summary(rate, sent_at, arrivals, _cpu_delta(worker.pid, before))
            entry["worker_rss_mb"] = _round(_proc_mb(worker.pid, "VmRSS"))
            if half:
                entry["half_capacity"] = True
            rates.append(entry)
            time.sleep(1.0)  # let the tail drain so one rate's queue does not start the next
        return {"rates": rates, "steady_capacity_per_s": round(capacity, 1), "idle_cpu_percent": idle_pct,
                "rss": _proc_mb(worker.pid, "VmHWM")}
    finally:
        reader.close()
        _stop(worker)


def _last_words(proc: subprocess.Popen) -> str:
    """``: LAST LINE`` of a worker's log (its error, when it stopped on one), or nothing."""
    log = getattr(proc, "emostream_log", None)
    try:
        lines = [line for line in Path(log).read_text(errors="replace").splitlines() if line.strip()] if log else []
    except OSError:
        return ""
    return f": {lines[-1].strip()[:500]}" if lines else ""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM ends the run as Ctrl-C does, through every ``finally`` (a stopped worker continued,
    the workers killed, the broker stopped); by default it ended the process on the spot and left
    them all running. Only in the main thread, where Python runs signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _stopped(proc: subprocess.Popen) -> Iterator[None]:
    """``proc`` stopped (SIGSTOP) for the block, then continued. Its sessions with the broker outlive
    a pause of well under the session timeout (a part is produced in about a second)."""
    if proc.poll() is not None:  # reaped: its pid may be another process's by now
        raise ClusterError(f"the benchmark's worker exited with code {proc.returncode}{_last_words(proc)}; its log is named below")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def _parts(texts: list[str], parts: int) -> list[list[str]]:
    """``texts`` in ``parts`` consecutive parts of (nearly) equal size, none empty."""
    k = max(1, min(parts, len(texts)))
    return [texts[len(texts) * i // k : len(texts) * (i + 1) // k] for i in range(k)]


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def run_pipeline_bench(options: PipelineBenchOptions) -> dict[str, Any]:
    """Run the whole benchmark and return its JSON-ready result."""
    with _sigterm_unwinds():
        return _run_pipeline_bench(options)


def _run_pipeline_bench(options: PipelineBenchOptions) -> dict[str, Any]:
    count = options.count
    batch = options.batch_max
    naive_n = options.naive_count or min(300, count)
    model_spec = options.model
    texts = _texts(count)
    tmp = Path(tempfile.mkdtemp(prefix="emostream-bench-"))
    cluster = None
    procs: list[subprocess.Popen] = []
    own_cpus = os.sched_getaffinity(0)
    gen_cpu, worker_cpu = _pin_cpus() if options.pin else (None, None)
    try:
        if gen_cpu is not None:
            # Threads and children started from here on (the broker's JVM, the load generator, the
            # reader) inherit this thread's affinity.
            os.sched_setaffinity(0, {gen_cpu})
        if options.bootstrap:
            client = ClientConfig.resolve(options.bootstrap, options.security_profile)
        else:
            _say(f"starting a 1-broker Kafka in {tmp}")
            cluster = LocalCluster(tmp / "kafka", progress=_say)
            cluster.up(brokers=1, base_port=free_base_port(*BENCH_PORTS), heap_mb=512)
            client = ClientConfig(cluster.bootstrap)
        admin = Admin(client)
        run = f"bench-{int(time.time())}-{os.getpid()}"

        _say("model alone (it sets the capacity offer)")
        first_tp, model_name = _model_throughput(model_spec, texts, batch, options.model_seconds)  # sets the capacity offer

        # The latency phases first: they also warm the broker's JVM up, as a broker that has been
        # running is. A freshly started one spent ~2 s of CPU in its JIT compilers during the
        # backlog that followed (~10 % of a core), against the worker's model.
        live = _latency_runs(client, admin, run, options, texts, first_tp, worker_cpu, tmp, procs)
        half = next((r for r in live["rates"] if r.get("half_capacity")), None)

        parts = _parts(texts, options.backlog_parts)
        _say(f"throughput: {count} transcripts as a backlog in {len(parts)} part(s) after a warm-up part of "
             f"{len(parts[0])}, the model alone timed before, between and after them")
        src, out, _dlq = _topics(admin, f"{run}-tp")
        model = _ModelAlone(model_spec, batch)
        worker = _worker(client.bootstrap, src, out, f"{run}-tp", options, tmp / "worker-tp.log", worker_cpu)
        procs.append(worker)
        reader = _Reader(client, out, worker)
        backlog: list[tuple[float, float]] = []
        spans: list[tuple[int, float] | None] = []
        model_runs: list[tuple[int, float]] = []
        try:
            # One transcript first: the worker has loaded its model and joined, the reader reads.
            _produce(client, src, texts[:1], tag="bw")
            reader.take(1, timeout_s=180.0, tag="bw")
            with _stopped(worker):
                _produce(client, src, parts[0], tag="bwarm")  # the warm-up part (see 5. above)
            reader.take(len(parts[0]), timeout_s=max(600.0, len(parts[0]) / 20), tag="bwarm")
            for i, part in enumerate(parts):
                model_runs.append(model.run(part, options.model_seconds / 2))
                # The part is all there before the worker sees any of it, as a backlog is.
                with _stopped(worker):
                    _produce(client, src, part, tag=f"b{i}")
                part_stamps: list[str] = []
                arrivals = reader.take(len(part), timeout_s=max(600.0, len(part) / 20), tag=f"b{i}", stamps=part_stamps)
                backlog += arrivals
                spans.append(backlog_span(arrivals, part_stamps))
                if spans[-1] is None:
                    _say(f"backlog part {i + 1}: fewer than two transactions, not counted (use parts of "
                         "several thousand transcripts: --count / --backlog-parts)")
            model_runs.append(model.run(parts[-1], options.model_seconds / 2))
        finally:
            reader.close()
        throughput = pooled_rate(spans)
        rss = max(filter(None, [_proc_mb(worker.pid, "VmHWM"), live.pop("rss")]), default=None)
        _stop(worker)
        model_tp = pooled_rate(model_runs) or 0.0

        recovery: dict[str, Any] = {"pause_s": None, "lost": None, "duplicates": None}
        static: dict[str, Any] = dict(recovery)
        if options.recovery_seconds:
            for name, static_membership in (("rec", False), ("recs", True)):
                _say(f"recovery{' (--static-membership)' if static_membership else ''}: a worker under 50/s killed with "
                     f"SIGKILL after {options.recovery_seconds / 4:.0f} s, restarted at once")
                figures = _recovery(client, admin, f"{run}-{name}", options.recovery_seconds, texts,
                                    lambda src, out, n=name, st=static_membership: _worker(
                                        client.bootstrap, src, out, f"{run}-{n}", options, tmp / f"worker-{n}.log",
                                        worker_cpu, st), procs, options.session_timeout_ms / 1000.0)
                if static_membership:
                    static = figures
                else:
                    recovery = figures

        _say(f"naive baseline: {naive_n} transcripts one at a time")
        src3, out3, _ = _topics(admin, f"{run}-naive")
        _produce(client, src3, texts[:naive_n])
        naive_tp = _naive(client, model_spec, src3, out3, naive_n, timeout_s=600)
        quix_tp = quix_pause = None
        if options.baseline == "quix":
            _say(f"Quix Streams baseline: the same {count} transcripts as a backlog")
            quix_tp = _quix_throughput(client, admin, run, options, texts, worker_cpu, tmp, procs)
            if options.recovery_seconds:
                _say("Quix Streams recovery: killed with SIGKILL under 50/s, restarted at once")
                py = _quix_python()
                quix_pause = _recovery(client, admin, f"{run}-qrec", options.recovery_seconds, texts,
                                       lambda src, out: _quix_app(py, client, src, out, f"{run}-qrec", model_spec, worker_cpu, tmp),
                                       procs, QUIX_STALL_S)["pause_s"]

        result = {
            "count": count,
            "model": model_name,
            "batch_max": batch,
            "layout": options.layout,
            "throughput": _round(throughput),
            **live,
            # The half-capacity rate's figures under their old names, for readers of earlier runs.
            "p50_ms": half and half["p50_ms"],
            "p95_ms": half and half["p95_ms"],
            "p99_ms": half and half["p99_ms"],
            "p99_ms_at_half_load": half and half["p99_ms"],
            "half_load_rate": half and half["offered_per_s"],
            "half_load_count": half and half["events"],
            "backlog_p99_ms": _ms(_percentile([lat for _, lat in backlog], 0.99)),
            "naive_throughput": round(naive_tp, 1),
            "naive_count": naive_n,
            "speedup_vs_naive": round(throughput / naive_tp, 1) if throughput and naive_tp else None,
            "model_throughput": round(model_tp, 1),
            "model_throughput_runs": [round(first_tp, 1)] + [round(n / t, 1) if t > 0 else 0.0 for n, t in model_runs],
            "backlog_parts": len(parts),
            "backlog_warmup": len(parts[0]),
            "backlog_part_throughputs": [None if sp is None else round(sp[0] / sp[1], 1) for sp in spans],
            "ratio_to_model": round(throughput / model_tp, 3) if throughput and model_tp else None,
            "quix_throughput": _round(quix_tp),
            "ratio_to_quix": round(throughput / quix_tp, 2) if throughput and quix_tp else None,
            "recovery_pause_s": recovery["pause_s"],
            "recovery_lost": recovery.get("lost"),
            "recovery_duplicates": recovery.get("duplicates"),
            "recovery_pause_static_s": static["pause_s"],
            "recovery_static_lost": static.get("lost"),
            "recovery_static_duplicates": static.get("duplicates"),
            "quix_recovery_pause_s": quix_pause,
            "pipeline": options.pipeline,
            "session_timeout_ms": options.session_timeout_ms,
            "batch_wait_ms": options.batch_wait_ms,
            "worker_rss_mb": _round(rss),
            "cpus": os.cpu_count(),
            "brokers": admin.live_brokers(),
            "received": len(backlog),
        }
        for prefix in ("tp", "lat", "naive", "quix", "rec", "recs", "qrec"):
            try:
                admin.delete_topics([f"{run}-{prefix}.{suffix}" for suffix in ("src", "out", "src.dlq", "src.dedupe")])
            except Exception:  # noqa: BLE001 - cleanup only
                pass
        return result
    finally:
        for producer in _PRODUCERS.values():
            producer.flush(10)
        _PRODUCERS.clear()
        for p in procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:  # unkillable (D state): the broker still goes down
                    _say(f"process {p.pid} did not exit 10 s after SIGKILL")
        if cluster is not None:
            cluster.down()
            shutil.rmtree(tmp / "kafka", ignore_errors=True)
        if gen_cpu is not None:
            os.sched_setaffinity(0, own_cpus)
        if options.keep_logs:
            _say(f"worker logs (one line per transaction) in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
