"""Where the worker's CPU goes at a steady offered rate: py-spy samples of a real worker process.

    .venv/bin/pip install py-spy   # a tool, not a dependency
    .venv/bin/python scripts/profile_worker.py --rates 10,50 --seconds 30

Starts a 1-broker Kafka of its own, one worker (``python -m emostream worker``, as deployed), warms
it up, then per rate offers transcripts for ``--seconds`` while ``py-spy record`` samples the
worker (``--native`` included, so time inside ONNX Runtime and librdkafka calls is attributed to
the Python call that made it). Prints a Markdown table per rate: the share of on-CPU samples by
stage of the loop, the worker's CPU ms per event from /proc, and the top functions by own samples.
The collapsed stacks are kept next to the worker log for a flame graph (e.g. speedscope).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emostream.bench.pipeline import (
    _cpu_delta, _cpu_s, _free_base, _offer, _paced_texts, _Reader, _stop, _texts, _topics, _worker,
)
from emostream.cluster import LocalCluster
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig

# Stage of the loop a sample belongs to: the first rule whose needle is in the stack (innermost
# frames first) wins.
STAGES = (
    ("model (ONNX Runtime + tokenizer)", ("onnx_backend.py", "onnxruntime", "tokenizers")),
    ("transaction commit (background thread)", ("finish (emostream/worker/checkpoint.py",)),
    ("begin + produce + prepare", ("begin (emostream", "produce (emostream", "prepare (emostream")),
    ("decode + events", ("process.py", "events.py")),
    ("poll (consume)", ("_collect (emostream",)),
    ("lag / stall checks", ("_update_lag",)),
    ("metrics", ("prometheus_client", "metrics.py")),
)


def stage_of(stack: str) -> str:
    for name, needles in STAGES:
        if any(n in stack for n in needles):
            return name
    return "other"


def summarise(collapsed: Path, top: int = 12) -> tuple[dict[str, int], list[tuple[str, int]], int]:
    stages: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        stages[stage_of(stack)] += n
        own[stack.split(";")[-1]] += n
    return dict(stages), own.most_common(top), total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="10,50")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--no-pipeline", action="store_true")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    tmp = Path(tempfile.mkdtemp(prefix="emostream-profile-"))
    cluster = LocalCluster(tmp / "kafka")
    cluster.up(brokers=1, base_port=_free_base(), heap_mb=512)
    worker = None
    try:
        client = ClientConfig(cluster.bootstrap)
        admin = Admin(client)
        src, out, _ = _topics(admin, "profile")
        texts = _texts(2000)
        worker = _worker(client.bootstrap, src, out, "profile", None, 64, tmp / "worker.log", None, not args.no_pipeline)
        reader = _Reader(client, out, worker)
        _offer(client, src, reader, texts[:64], None, "warm", timeout_s=180)
        for i, rate in enumerate(float(r) for r in args.rates.split(",")):
            n = int(rate * args.seconds)
            raw = tmp / f"worker-{rate:g}-per-s.txt"
            rec = subprocess.Popen([spy, "record", "--pid", str(worker.pid), "--rate", "200", "--native", "--format", "raw",
                                    "--duration", str(int(args.seconds)), "--output", str(raw), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before = _cpu_s(worker.pid)
            _, _, arrivals = _offer(client, src, reader, _paced_texts(texts, n), rate, f"p{i}", timeout_s=args.seconds + 60)
            cpu = _cpu_delta(worker.pid, before)
            rec.wait(args.seconds + 60)
            stages, top, total = summarise(raw)
            print(f"\n### {rate:g} transcripts/s for {args.seconds:g} s: {len(arrivals)} events, "
                  f"worker CPU {cpu * 1000 / max(1, len(arrivals)):.2f} ms per event ({total} on-CPU samples at 200 Hz)\n")
            print("| stage | share of on-CPU samples |\n| --- | --- |")
            for name, count in sorted(stages.items(), key=lambda kv: -kv[1]):
                print(f"| {name} | {100.0 * count / max(1, total):.1f} % |")
            print("\n| function (own samples) | share |\n| --- | --- |")
            for frame, count in top:
                print(f"| `{frame[:90]}` | {100.0 * count / max(1, total):.1f} % |")
            time.sleep(1.0)
        reader.close()
        print(f"\ncollapsed stacks and the worker log: {tmp}", file=sys.stderr)
    finally:
        if worker is not None:
            _stop(worker)
        cluster.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
