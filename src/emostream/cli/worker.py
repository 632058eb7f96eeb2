"""``emostream worker`` (the classifier worker) and ``emostream demo`` (everything, locally)."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import TYPE_CHECKING

from emostream.config import EMOTIONS_TOPIC, TRANSCRIPTS_TOPIC, WORKER_GROUP
from emostream.errors import UsageError
from emostream.events import DEFAULT_MAX_TEXT_BYTES
from emostream.worker.batching import DEFAULT_BATCH_WAIT_MS

if TYPE_CHECKING:
    from emostream.worker import WorkerSettings


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``worker`` and ``demo`` commands."""
    w = sub.add_parser("worker", parents=[common], help="the classifier worker: transcripts → emotion events, exactly once")
    w.add_argument("--source-topic", default=TRANSCRIPTS_TOPIC, help=f"transcripts topic (default {TRANSCRIPTS_TOPIC})")
    w.add_argument("--target-topic", default=EMOTIONS_TOPIC, help=f"emotion events topic (default {EMOTIONS_TOPIC})")
    w.add_argument("--group", default=WORKER_GROUP, help=f"consumer group (default {WORKER_GROUP})")
    w.add_argument("--model", default=None, help="model name or folder, hf:PATH, or python:MODULE:FACTORY (default: the shipped model)")
    w.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: automatic)")
    w.add_argument("--batch-max", type=int, default=64, help="texts per model call at most, for a model that does not batch internally (the "
                        "shipped one takes a whole transaction per call); also the fewest records --max-latency-ms "
                        "lets a transaction hold (default 64)")
    w.add_argument("--batch-wait-ms", type=float, default=DEFAULT_BATCH_WAIT_MS,
                   help=f"at most one batch closes per this many ms (default {DEFAULT_BATCH_WAIT_MS:g}): a record that comes longer than that "
                        "after the last batch closed goes at once, others wait for that slot with what comes meanwhile")
    w.add_argument("--fixed-batch-wait", action="store_true",
                   help="always wait the whole --batch-wait-ms for more records (the behaviour before paced batches)")
    w.add_argument("--txn-max-records", type=int, default=1024,
                   help="records per transaction at most; a backlog is committed in transactions this big (default 1024)")
    w.add_argument("--max-latency-ms", type=float, default=None,
                   help="under load, close a transaction at this latency budget: it takes at most as many records as the "
                        "worker processes in this time (measured; at least --batch-max). Default: --txn-max-records only")
    w.add_argument("--session-timeout-ms", type=int, default=10_000,
                   help="the group moves a crashed worker's partitions after this long without a heartbeat (default "
                        "10000; at most 300000, the consumer's max.poll.interval.ms; the broker accepts "
                        "group.min.session.timeout.ms..max, 6000..1800000 by default)")
    w.add_argument("--static-membership", action="store_true",
                   help="join the group as --instance-id (KIP-345): a restart within the session timeout (10 s) gets "
                        "its partitions back at once, without a rebalance; a stopped instance's partitions wait that "
                        "long before they move")
    w.add_argument("--no-pipeline", action="store_true",
                   help="commit each batch before polling the next (default: batch n commits in the background "
                        "while batch n+1 is polled and classified; both keep exactly-once)")
    w.add_argument("--max-text-bytes", type=int, default=DEFAULT_MAX_TEXT_BYTES, help="longer transcripts go to the DLQ (default 8192)")
    w.add_argument("--instance-id", default=None, help="stable name of this instance (default HOST-PID); part of the transactional.id")
    w.add_argument("--assignment", choices=["cooperative-sticky", "range", "roundrobin"], default="cooperative-sticky",
                   help="partition assignment strategy (default cooperative-sticky)")
    w.add_argument("--identity", choices=["auto", "key", "signed"], default="auto",
                   help="how a transcript's device is established: 'signed' (each record signed with the device's key "
                        "from 'users add'; secure clusters), 'key' (the record key, trusted), 'auto' (signed when the "
                        "security profile authenticates, else key; default)")
    w.add_argument("--dedupe-window-h", type=float, default=24.0,
                   help="re-sent utterance ids are dropped for this long, across restarts (default 24)")
    w.add_argument("--no-durable-dedupe", action="store_true",
                   help="keep dedupe ids in memory only (no <source>.dedupe changelog topic)")
    w.add_argument("--stall-after-s", type=float, default=60.0,
                   help="/healthz turns 503 when a partition with records waiting commits nothing for this long (default 60)")
    w.add_argument("--metrics-port", type=int, default=None, help="serve /metrics and /healthz on this port")
    w.add_argument("--log-format", choices=["text", "json"], default="text", help="log lines on stderr (default text)")
    w.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    w.set_defaults(func=_run_worker)

    d = sub.add_parser("demo", parents=[common], help="local Kafka + topics + worker + simulated devices, live output")
    d.add_argument("--devices", type=int, default=4, help="simulated devices (default 4)")
    d.add_argument("--rate", type=float, default=0.5, help="utterances per second per device (default 0.5)")
    d.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    d.add_argument("--model", default=None, help="model for the worker (default: the shipped model)")
    d.add_argument("--dashboard-port", type=int, default=8765, help="serve the live dashboard on this port (0: none; default 8765)")
    d.add_argument("--keep-cluster", action="store_true", help="leave the demo's Kafka running at the end")
    d.set_defaults(func=_run_demo)


def _check(args: argparse.Namespace) -> None:
    """The flags that do not become WorkerSettings (which checks the rest itself)."""
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise UsageError(f"--metrics-port must be between 0 and 65535, got {args.metrics_port}")


def settings_from_args(args: argparse.Namespace, secure: bool) -> WorkerSettings:
    """The worker's settings from its flags (checked there, by WorkerSettings). ``secure``: the
    cluster takes SASL logins (``--identity auto`` then means signed transcripts)."""
    from emostream.worker import WorkerSettings

    identity = args.identity
    if identity == "auto":
        identity = "signed" if secure else "key"
    return WorkerSettings(
        source_topic=args.source_topic,
        target_topic=args.target_topic,
        group=args.group,
        batch_max=args.batch_max,
        batch_wait_ms=args.batch_wait_ms,
        txn_max_records=args.txn_max_records,
        max_text_bytes=args.max_text_bytes,
        instance_id=args.instance_id,
        assignment_strategy=args.assignment,
        identity=identity,
        dedupe_window_s=args.dedupe_window_h * 3600.0,
        durable_dedupe=not args.no_durable_dedupe,
        stall_after_s=args.stall_after_s,
        max_latency_ms=args.max_latency_ms,
        pipeline=not args.no_pipeline,
        session_timeout_ms=args.session_timeout_ms,
        paced_batches=not args.fixed_batch_wait,
        static_membership=args.static_membership,
    )


def _run_worker(args: argparse.Namespace) -> int:
    from emostream.kafka.configuration import ClientConfig
    from emostream.worker import Worker
    from emostream.worker.health import HealthServer
    from emostream.worker.logs import setup_logging
    from emostream.worker.model import load_model

    _check(args)
    setup_logging(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    client = ClientConfig.resolve(args.bootstrap, args.security_profile)
    settings = settings_from_args(args, secure=bool(client.security.get("sasl.mechanisms")))
    worker = Worker(client, load_model(args.model, args.threads), settings)
    worker.check_topics()
    server = None
    if args.metrics_port is not None:
        try:
            server = HealthServer(worker.metrics, worker.healthy, args.metrics_port)
        except OSError as exc:
            raise UsageError(f"cannot serve metrics on port {args.metrics_port}: {exc.strerror}; pick another --metrics-port") from exc
        logging.getLogger("emostream.worker").info("metrics on http://0.0.0.0:%d/metrics, health on /healthz", server.port)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    try:
        worker.run()
    finally:
        if server is not None:
            server.close()
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from emostream.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(devices=args.devices, rate=args.rate, duration=args.duration, model=args.model,
                                dashboard_port=args.dashboard_port, keep_cluster=args.keep_cluster))
