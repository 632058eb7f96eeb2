"""Prometheus metrics shared by the pipeline's components (worker, edge, dashboard).

Every metric carries a ``component`` label, so the edge producer can count its
``emostream_records_out_total`` under the same name the worker uses. Each
:class:`PipelineMetrics` has a registry of its own: several workers in one process (tests,
the demo) never clash, and ``/metrics`` shows exactly one component's numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Buckets in seconds: end-to-end latency spans ms (warm batch) to minutes (backlog after an outage).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# A model call is a whole transaction for the shipped model (up to --txn-max-records, 1,024: ~1-2 s
# on two cores, longer on one with long texts), one micro-batch for others.
MODEL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class PipelineMetrics:
    """The metric set of one component instance, in its own registry."""

    def __init__(self, component: str, registry: CollectorRegistry | None = None) -> None:
        self.component = component
        self.registry = registry or CollectorRegistry(auto_describe=False)
        r = self.registry
        lbl = ["component"]
        self.records_in = Counter("emostream_records_in", "Records read from Kafka", lbl, registry=r).labels(component)
        self.records_out = Counter("emostream_records_out", "Records written (committed) to Kafka", lbl, registry=r).labels(component)
        self._dead = Counter(
            "emostream_records_dead_lettered", "Records sent to a dead-letter topic, by error type", lbl + ["error_type"], registry=r
        )
        self.duplicates = Counter(
            "emostream_records_duplicate", "Records dropped as a recently seen utterance_id", lbl, registry=r
        ).labels(component)
        self._txn = Counter("emostream_transactions", "Kafka transactions, by outcome", lbl + ["outcome"], registry=r)
        self.batch_size = Histogram(
            "emostream_batch_size", "Records per processed batch", lbl, buckets=BATCH_BUCKETS, registry=r
        ).labels(component)
        self.latency = Histogram(
            "emostream_end_to_end_latency_seconds",
            "From the utterance's end (or the record timestamp) to its classification",
            lbl,
            buckets=LATENCY_BUCKETS,
            registry=r,
        ).labels(component)
        self.model_time = Histogram(
            "emostream_model_seconds", "Time of one model call (the shipped model: one per transaction; others: one per micro-batch of --batch-max)", lbl, buckets=MODEL_BUCKETS, registry=r
        ).labels(component)
        self._lag = Gauge(
            "emostream_consumer_lag", "High watermark minus the committed offset, per partition", lbl + ["topic", "partition"], registry=r
        )
        self.stalled = Gauge(
            "emostream_stalled_partitions", "Partitions with records waiting and no committed progress (see /healthz)", lbl, registry=r
        ).labels(component)

    def dead_lettered(self, error_type: str, n: int = 1) -> None:
        """Count ``n`` dead letters of ``error_type``."""
        self._dead.labels(self.component, error_type).inc(n)

    def transaction(self, outcome: str) -> None:
        """Count one transaction that ended with ``outcome`` (committed, aborted)."""
        self._txn.labels(self.component, outcome).inc()

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        """Current lag of one partition."""
        self._lag.labels(self.component, topic, str(partition)).set(lag)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the lag series of a partition this instance no longer owns."""
        try:
            self._lag.remove(self.component, topic, str(partition))
        except KeyError:
            pass

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
