"""Shared Prometheus metrics and the worker's /metrics + /healthz endpoints."""

from __future__ import annotations

import urllib.error
import urllib.request

from emostream.metrics import PipelineMetrics
from emostream.worker.health import HealthServer


def test_metrics_render_with_component_label_and_separate_registries() -> None:
    a, b = PipelineMetrics("worker"), PipelineMetrics("worker")
    a.records_in.inc(3)
    a.dead_lettered("invalid_json")
    a.set_lag("stt.transcripts", 2, 17)
    a.batch_size.observe(64)
    a.latency.observe(0.02)
    text = a.render().decode()
    assert 'emostream_records_in_total{component="worker"} 3.0' in text
    assert 'emostream_records_dead_lettered_total{component="worker",error_type="invalid_json"} 1.0' in text
    assert 'emostream_consumer_lag{component="worker",partition="2",topic="stt.transcripts"} 17.0' in text
    assert "emostream_end_to_end_latency_seconds_bucket" in text and "emostream_batch_size_count" in text
    assert 'emostream_records_in_total{component="worker"} 0.0' in b.render().decode()  # no shared global state
    a.forget_partition("stt.transcripts", 2)
    assert "emostream_consumer_lag{" not in a.render().decode()


def test_health_server_reports_the_loop_state() -> None:
    state = {"ok": True}
    metrics = PipelineMetrics("worker")
    server = HealthServer(metrics, lambda: state["ok"], 0, host="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert urllib.request.urlopen(base + "/healthz").status == 200
        assert b"emostream_records_in_total" in urllib.request.urlopen(base + "/metrics").read()
        state["ok"] = False
        try:
            urllib.request.urlopen(base + "/healthz")
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
    finally:
        server.close()
