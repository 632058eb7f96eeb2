"""``emostream demo``: a 1-broker Kafka in ``$EMOSTREAM_HOME/demo``, the pipeline's topics, an
in-process worker, simulated devices, and the emotion events printed live until Ctrl-C."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from emostream.cluster import LocalCluster
from emostream.cluster.brokers import cluster_ports_free
from emostream.config import EMOTIONS_TOPIC, TRANSCRIPTS_TOPIC, home_dir
from emostream.errors import ClusterError, UsageError
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer
from emostream.kafka.producer import idempotent_producer
from emostream.kafka.types import TopicPartition
from emostream.topics import ensure_pipeline_topics
from emostream.worker import Worker, WorkerSettings
from emostream.worker.model import load_model

DEMO_GROUP = "emostream-demo-worker"
COLOURS = {
    "anger": "31", "disgust": "32", "fear": "35", "joy": "33", "sadness": "34", "surprise": "36", "neutral": "37",
}


@dataclass(frozen=True)
class DemoOptions:
    """What ``emostream demo`` runs besides its own Kafka, topics and worker."""

    devices: int = 4
    rate: float = 0.5  # utterances per second per device
    duration: float | None = None  # seconds of streaming; None: until Ctrl-C/SIGTERM
    model: str | None = None  # the worker's model spec; None: the shipped model
    dashboard_port: int = 8765  # 0: no dashboard
    keep_cluster: bool = False  # leave the demo's Kafka running at the end

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise UsageError(f"--devices must be at least 1, got {self.devices}")
        if self.rate <= 0:
            raise UsageError(f"--rate must be positive, got {self.rate}")
        if self.duration is not None and self.duration < 0:
            raise UsageError(f"--duration must not be negative, got {self.duration}")


def demo_dir() -> Path:
    """Where the demo's cluster lives."""
    return home_dir() / "demo"


def _base_port() -> int:
    """9092 when its three ports are free, else the first free range above it."""
    for base in range(9092, 40000, 10):
        if cluster_ports_free(base):
            return base
    raise ClusterError("no free port range for the demo's Kafka; stop other local brokers")


def format_event(event: dict[str, Any], colour: bool) -> str:
    """One readable line: device, label (coloured on a TTY), top score, text."""
    label = str(event.get("label", "?"))
    score = float(event.get("scores", {}).get(label, 0.0))
    shown = f"{label:<8}"
    if colour:
        shown = f"\033[1;{COLOURS.get(label, '37')}m{shown}\033[0m"
    text = str(event.get("text", ""))
    latency = event.get("latency_ms")
    lat = f"{latency:6.0f} ms" if isinstance(latency, (int, float)) else "       "
    return f"{event.get('device_id', '?'):<16} {shown} {score:4.2f} {lat}  {text}"


def _say(line: str) -> None:
    print(f"demo: {line}", file=sys.stderr, flush=True)


def _reader(client: ClientConfig, admin: Admin, topic: str) -> Any:
    """A read_committed consumer positioned at the current end of ``topic`` (only new events)."""
    consumer = committed_consumer(client, f"emostream-demo-view-{os.getpid()}")
    tps = []
    for p in admin.partitions_of(topic):
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        tps.append(TopicPartition(topic, p, high))
    consumer.assign(tps)
    return consumer


def _devices(client: ClientConfig, topic: str, devices: int, rate: float) -> Any:
    """Simulated devices: ``start()``-ed, with ``stop()``. The built-in generator; swap it for
    ``emostream.edge.simulate`` by giving that module a ``SimulatedDevices`` of this shape."""
    from emostream.demo_devices import SimulatedDevices

    return SimulatedDevices(idempotent_producer(client), topic, devices, rate).start()


def run_demo(options: DemoOptions, out: TextIO | None = None) -> int:
    """Run the demo until Ctrl-C/SIGTERM or ``options.duration`` seconds of streaming; always cleans up."""
    out = out or sys.stdout
    colour = out.isatty() and not os.environ.get("NO_COLOR")
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    logging.getLogger("emostream").setLevel(logging.WARNING)
    cluster = LocalCluster(demo_dir(), progress=_say)
    worker: Worker | None = None
    worker_thread: threading.Thread | None = None
    devices = None
    reader = None
    dashboard = None
    try:
        state = cluster.state
        _say(f"starting a 1-broker Kafka in {cluster.dir}")
        cluster.up(brokers=1 if state is None else None, base_port=None if state else _base_port(), heap_mb=384 if state is None else None)
        client = ClientConfig(cluster.bootstrap)
        admin = Admin(client)
        ensure_pipeline_topics(admin)
        _say(f"Kafka at {client.bootstrap}; topics {TRANSCRIPTS_TOPIC} → {EMOTIONS_TOPIC}; loading the model")
        worker = Worker(client, load_model(options.model), WorkerSettings(group=DEMO_GROUP))
        worker.start()
        worker_thread = threading.Thread(target=worker.run, name="demo-worker", daemon=True)
        worker_thread.start()
        if options.dashboard_port:
            from emostream.dashboard import serve

            try:
                dashboard = serve(bootstrap=client.bootstrap, port=options.dashboard_port)
                _say(f"dashboard: {dashboard.url}")
            except OSError as exc:  # the terminal view still works without it
                _say(f"dashboard not started on port {options.dashboard_port} ({exc.strerror}); pass --dashboard-port")
        reader = _reader(client, admin, EMOTIONS_TOPIC)
        devices = _devices(client, TRANSCRIPTS_TOPIC, options.devices, options.rate)
        _say(f"{options.devices} simulated device(s) talking; " + ("Ctrl-C stops everything" if options.duration is None else f"running {options.duration:g}s"))
        deadline = None if options.duration is None else time.monotonic() + options.duration
        shown = 0
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            if not worker_thread.is_alive():
                raise ClusterError("the demo's worker stopped unexpectedly; see the messages above")
            for msg in reader.consume(100, 0.25):
                if msg.error() is None and msg.value():
                    print(format_event(json.loads(msg.value()), colour), file=out, flush=True)
                    shown += 1
        _say(f"stopping ({shown} emotion events shown)")
        return 0
    finally:
        if devices is not None:
            devices.stop()
        if dashboard is not None:
            dashboard.stop()
        if worker is not None:
            worker.stop()
        if worker_thread is not None:
            worker_thread.join(30)
        if reader is not None:
            reader.close()
        if not options.keep_cluster:
            cluster.down()
            _say("Kafka stopped")
        for s, handler in previous.items():
            signal.signal(s, handler)
