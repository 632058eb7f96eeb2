"""``emostream dashboard``: live web view of emotion events."""

from __future__ import annotations

import argparse
import signal
import threading

from emostream.config import EMOTIONS_TOPIC, TRANSCRIPTS_TOPIC, dlq_topic
from emostream.errors import UsageError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``dashboard`` command."""
    p = sub.add_parser("dashboard", parents=[common], help="live web view of emotion events")
    p.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--topic", default=EMOTIONS_TOPIC, help=f"emotion events topic (default {EMOTIONS_TOPIC})")
    p.add_argument("--dlq-topic", default=dlq_topic(TRANSCRIPTS_TOPIC),
                   help=f"dead-letter topic to count (default {dlq_topic(TRANSCRIPTS_TOPIC)})")
    p.add_argument("--group", default=None, help="consumer group (default: one unique to this process)")
    p.add_argument("--from-beginning", action="store_true", help="replay the topics from their start instead of from now")
    p.add_argument("--history-minutes", type=float, default=10.0, help="length of the per-device timeline (default 10)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from emostream.dashboard import serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    if args.history_minutes <= 0:
        raise UsageError(f"--history-minutes must be positive, got {args.history_minutes}")
    stop = threading.Event()
    # SIGTERM (systemd, the demo, a container runtime) stops as cleanly as Ctrl-C does: from
    # before the URL is printed, since whoever reads it may stop us at once.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        dashboard = serve(
            bootstrap=args.bootstrap,
            security_profile=args.security_profile,
            topic=args.topic,
            dlq=args.dlq_topic,
            host=args.host,
            port=args.port,
            group=args.group,
            from_beginning=args.from_beginning,
            history_minutes=args.history_minutes,
        )
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; pick another with --port") from exc
    print(f"dashboard: {dashboard.url} (topic {args.topic}, dead letters {args.dlq_topic}); Ctrl-C stops it", flush=True)
    try:
        stop.wait()
    finally:
        dashboard.stop()
    return 0
