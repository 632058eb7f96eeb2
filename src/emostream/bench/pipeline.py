"""``emostream bench pipeline``: end-to-end throughput and latency through real Kafka.

In one invocation: the worker (a ``python -m emostream worker`` subprocess, as deployed) drains a
backlog of ``--count`` transcripts (throughput); then a paced run at half that rate gives the
service latency (p50/p95/p99, measured at a read_committed reader from the utterance's end); a
naive one-record-at-a-time loop (poll, classify, produce, flush, commit: the original script's
shape) gives the baseline; and the model alone, at the worker's micro-batch size and in this
process, gives the ceiling.
"""

from __future__ import annotations

import json
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
from typing import Any

from emostream.cluster import LocalCluster
from emostream.cluster.brokers import cluster_ports_free
from emostream.edge.simulate import device_names
from emostream.errors import ClusterError, UsageError
from emostream.events import SourceRef, Transcript, decode_transcript, format_ts, parse_ts
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer
from emostream.kafka.producer import idempotent_producer, produce
from emostream.topics import create_topic, plan_dedupe, plan_topic
from emostream.worker.model import load_model

DEVICES = 500
HALF_LOAD_SECONDS = 20.0

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
    model: str | None = None  # model spec; None: the shipped model
    bootstrap: str | None = None  # None: a 1-broker Kafka of its own in a temporary folder
    security_profile: str | None = None

    def __post_init__(self) -> None:
        for name in ("count", "naive_count", "batch_max"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _say(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def _texts(n: int, seed: int = 7) -> list[str]:
    """Realistic spoken utterances: one to three sentences (about 5 to 40 words)."""
    rng = random.Random(seed)
    pool = [s for group in UTTERANCES.values() for s in group]
    return [" ".join(rng.choice(pool) for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))) for _ in range(n)]


def _free_base() -> int:
    rng = random.Random(os.getpid())
    for _ in range(200):
        base = rng.randrange(20000, 50000)
        if cluster_ports_free(base):
            return base
    raise ClusterError("no free ports for the benchmark's Kafka")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _produce(client: ClientConfig, topic: str, texts: list[str], rate: float | None = None) -> None:
    """Send transcripts keyed by device (``rate`` per second when given, else as fast as possible)."""
    producer = idempotent_producer(client)
    names = device_names(DEVICES)
    start = time.monotonic()
    for i, text in enumerate(texts):
        if rate:
            ahead = start + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        dev = names[i % DEVICES]
        t = Transcript(device_id=dev, utterance_id=f"b-{i}", text=text, ended_at=format_ts(time.time()))
        produce(producer, topic, t.encode(), dev.encode())
        producer.poll(0)
    producer.flush(60)


def _collect(client: ClientConfig, topic: str, n: int, timeout_s: float,
             worker: subprocess.Popen | None = None) -> tuple[list[float], float, float]:
    """Read ``n`` events; returns (end-to-end latencies in s, first arrival, last arrival).
    Stops with ClusterError as soon as ``worker`` has exited: nothing more will come."""
    consumer = committed_consumer(client, f"bench-reader-{os.urandom(4).hex()}")
    consumer.subscribe([topic])
    lat: list[float] = []
    first = last = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while len(lat) < n and time.monotonic() < deadline:
            if worker is not None and worker.poll() is not None:
                raise ClusterError(f"the benchmark's worker exited with code {worker.returncode} after "
                                   f"{len(lat)} of {n} events; its log is named below")
            for m in consumer.consume(1000, 0.2):
                if m.error() is not None:
                    continue
                now = time.time()
                e = json.loads(m.value())
                ended = parse_ts(e["classified_at"]) - (e.get("latency_ms") or 0.0) / 1000.0
                lat.append(now - ended)
                first = first or time.monotonic()
                last = time.monotonic()
    finally:
        consumer.close()
    return lat, first, last


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _model_throughput(model_spec: str | None, texts: list[str], batch: int) -> tuple[float, str]:
    clf = load_model(model_spec)
    clf.classify(texts[:batch])  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < 8.0 and done < len(texts):
        chunk = texts[done : done + batch]
        clf.classify(chunk)
        done += len(chunk)
    return done / (time.perf_counter() - start), clf.name


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


def _worker(bootstrap: str, src: str, out: str, group: str, model: str | None, batch: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "emostream", "worker", "--bootstrap", bootstrap, "--source-topic", src, "--target-topic", out,
           "--group", group, "--batch-max", str(batch), "--instance-id", group, "--verbose"]
    if model:
        cmd += ["--model", model]
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def run_pipeline_bench(options: PipelineBenchOptions) -> dict[str, Any]:
    """Run the whole benchmark and return its JSON-ready result."""
    count = options.count
    batch = options.batch_max
    naive_n = options.naive_count or min(300, count)
    model_spec = options.model
    texts = _texts(count)
    tmp = Path(tempfile.mkdtemp(prefix="emostream-bench-"))
    cluster = None
    procs: list[subprocess.Popen] = []
    try:
        if options.bootstrap:
            client = ClientConfig.resolve(options.bootstrap, options.security_profile)
        else:
            _say(f"starting a 1-broker Kafka in {tmp}")
            cluster = LocalCluster(tmp / "kafka", progress=_say)
            cluster.up(brokers=1, base_port=_free_base(), heap_mb=512)
            client = ClientConfig(cluster.bootstrap)
        admin = Admin(client)
        run = f"bench-{int(time.time())}-{os.getpid()}"

        _say(f"model alone at batch {batch}")
        model_tp, model_name = _model_throughput(model_spec, texts, batch)  # again at the end: the better of the two

        _say(f"throughput: {count} transcripts as a backlog")
        src, out, _dlq = _topics(admin, f"{run}-tp")
        _produce(client, src, texts)
        worker = _worker(client.bootstrap, src, out, f"{run}-tp", model_spec, batch, tmp / "worker-tp.log")
        procs.append(worker)
        lat, first, last = _collect(client, out, count, timeout_s=max(600.0, count / 20), worker=worker)
        throughput = (len(lat) - 1) / (last - first) if len(lat) > 1 and last > first else 0.0
        rss = _rss_mb(worker.pid)
        _stop(worker)

        rate = max(1.0, throughput / 2)
        half_n = int(rate * HALF_LOAD_SECONDS)
        _say(f"latency at half load: {half_n} transcripts at {rate:.0f}/s")
        src2, out2, _ = _topics(admin, f"{run}-lat")
        worker2 = _worker(client.bootstrap, src2, out2, f"{run}-lat", model_spec, batch, tmp / "worker-lat.log")
        procs.append(worker2)
        time.sleep(1.0)
        warm = threading.Thread(target=_produce, args=(client, src2, texts[:batch]))
        warm.start()  # the first records wait for the group join: keep them out of the timing
        _collect(client, out2, batch, timeout_s=120, worker=worker2)
        warm.join()
        half_texts = [texts[i % len(texts)] for i in range(half_n)]
        sender = threading.Thread(target=_produce, args=(client, src2, half_texts, rate))
        sender.start()
        half_lat, _, _ = _collect(client, out2, half_n, timeout_s=HALF_LOAD_SECONDS * 4 + 60, worker=worker2)
        sender.join()
        rss = max(filter(None, [rss, _rss_mb(worker2.pid)]), default=None)
        _stop(worker2)

        _say(f"naive baseline: {naive_n} transcripts one at a time")
        src3, out3, _ = _topics(admin, f"{run}-naive")
        _produce(client, src3, texts[:naive_n])
        naive_tp = _naive(client, model_spec, src3, out3, naive_n, timeout_s=600)
        # The first measurement can overlap the broker's start-up (JIT, log recovery); the ceiling
        # is the better of the two, so ratio_to_model is never flattered by a slow measurement.
        model_tp = max(model_tp, _model_throughput(model_spec, texts, batch)[0])

        ms = lambda v: None if v is None else round(v * 1000.0, 1)  # noqa: E731
        result = {
            "count": count,
            "model": model_name,
            "batch_max": batch,
            "throughput": round(throughput, 1),
            "p50_ms": ms(_percentile(half_lat, 0.50)),
            "p95_ms": ms(_percentile(half_lat, 0.95)),
            "p99_ms": ms(_percentile(half_lat, 0.99)),
            "p99_ms_at_half_load": ms(_percentile(half_lat, 0.99)),
            "half_load_rate": round(rate, 1),
            "half_load_count": len(half_lat),
            "backlog_p99_ms": ms(_percentile(lat, 0.99)),
            "naive_throughput": round(naive_tp, 1),
            "naive_count": naive_n,
            "speedup_vs_naive": round(throughput / naive_tp, 1) if naive_tp else None,
            "model_throughput": round(model_tp, 1),
            "ratio_to_model": round(throughput / model_tp, 3) if model_tp else None,
            "worker_rss_mb": None if rss is None else round(rss, 1),
            "cpus": os.cpu_count(),
            "brokers": admin.live_brokers(),
            "received": len(lat),
        }
        for prefix in ("tp", "lat", "naive"):
            try:
                admin.delete_topics([f"{run}-{prefix}.{suffix}" for suffix in ("src", "out", "src.dlq", "src.dedupe")])
            except Exception:  # noqa: BLE001 - cleanup only
                pass
        return result
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        if cluster is not None:
            cluster.down()
            shutil.rmtree(tmp / "kafka", ignore_errors=True)
        _say(f"worker logs (one line per transaction) in {tmp}")
