"""Live web view of emotion events: ``serve()`` starts one in the background and returns it.

Pieces: :mod:`.aggregation` (pure, bounded state), :mod:`.reader` (Kafka → state),
:mod:`.server` (HTTP, JSON API, server-sent events), :mod:`.metrics` (``/metrics``),
``static/`` (the page). Standard library HTTP only, so it works in the default install.
"""

from __future__ import annotations

from typing import Any

from emostream.config import EMOTIONS_TOPIC, TRANSCRIPTS_TOPIC, dlq_topic
from emostream.dashboard.aggregation import DEFAULT_HISTORY_MINUTES, DashboardState
from emostream.dashboard.server import DashboardServer

__all__ = ["Dashboard", "DashboardServer", "DashboardState", "serve"]


class Dashboard:
    """Kafka reader + HTTP server around one state; ``start()``/``stop()`` or use it as a context manager."""

    def __init__(
        self,
        *,
        bootstrap: str | None = None,
        security_profile: str | None = None,
        topic: str = EMOTIONS_TOPIC,
        dlq: str | None = None,
        host: str = "127.0.0.1",
        port: int = 8765,
        group: str | None = None,
        from_beginning: bool = False,
        history_minutes: float = DEFAULT_HISTORY_MINUTES,
    ) -> None:
        from emostream.dashboard.reader import KafkaReader  # the only piece that needs confluent-kafka
        from emostream.kafka.configuration import ClientConfig

        self.state = DashboardState(history_minutes=history_minutes)
        self.reader = KafkaReader(
            self.state,
            ClientConfig.resolve(bootstrap, security_profile),
            topic,
            dlq if dlq is not None else dlq_topic(TRANSCRIPTS_TOPIC),
            group=group,
            from_beginning=from_beginning,
        )
        self.server = DashboardServer(self.state, host, port, health=self._health)

    @property
    def url(self) -> str:
        """Where the page is."""
        return self.server.url

    def start(self) -> "Dashboard":
        """Start reading and serving in background threads; returns self."""
        self.reader.start()
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving, then stop reading (the consumer leaves its group)."""
        self.server.stop()
        self.reader.stop()

    def __enter__(self) -> "Dashboard":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _health(self) -> dict[str, Any]:
        ok = self.reader.alive
        return {
            "ok": ok,
            "kafka_reader": "running" if ok else f"stopped: {self.reader.last_error or 'not started'}",
            "partitions_assigned": self.reader.assigned.is_set(),
            "topic": self.reader.topic,
            "dlq_topic": self.reader.dlq_topic,
            "group": self.reader.group,
            "last_kafka_error": self.reader.last_error,
        }


def serve(**options: Any) -> Dashboard:
    """Start a :class:`Dashboard` (same keyword options) in the background; print ``.url``, ``.stop()`` it when done."""
    return Dashboard(**options).start()
