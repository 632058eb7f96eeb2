"""``/metrics``: the dashboard's state as Prometheus metrics, read at scrape time (no double bookkeeping)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from emostream.dashboard.aggregation import DashboardState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StateCollector:
    def __init__(self, state: DashboardState, clients: Callable[[], int]) -> None:
        self._state = state
        self._clients = clients

    def collect(self) -> Iterator[Metric]:
        s: dict[str, Any] = self._state.summary()
        events = CounterMetricFamily("emostream_dashboard_events", "Emotion events received, by label", labels=["label"])
        for label, n in s["counts"].items():
            events.add_metric([label], n)
        yield events
        yield CounterMetricFamily("emostream_dashboard_dead_letters", "Records seen on the dead-letter topic", value=s["dead_letters"])
        yield CounterMetricFamily("emostream_dashboard_invalid_events", "Records on the emotions topic that were not EmotionEvents", value=s["invalid"])
        yield GaugeMetricFamily("emostream_dashboard_devices", "Devices currently shown", value=s["devices"])
        yield GaugeMetricFamily("emostream_dashboard_stream_clients", "Browsers connected to the event stream", value=self._clients())


def registry_for(state: DashboardState, clients: Callable[[], int]) -> CollectorRegistry:
    """A registry of its own per dashboard, so several dashboards (tests, demo) never clash."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StateCollector(state, clients))  # type: ignore[arg-type]
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
