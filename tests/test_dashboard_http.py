"""The dashboard's HTTP side without Kafka: JSON API (text verbatim), SSE, /metrics, /healthz, static page."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from emostream.dashboard import DashboardServer, DashboardState
from emostream.model.labels import CLASSES

NASTY = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> & "q" ünï'


def event(device: str, label: str = "joy", text: str = "hi") -> dict:
    return {"v": 1, "device_id": device, "utterance_id": "u1", "text": text, "label": label,
            "scores": {c: (0.9 if c == label else 0.01) for c in CLASSES}, "model": "m",
            "source": {"topic": "t", "partition": 0, "offset": 0}, "classified_at": "2026-01-01T00:00:00.000Z", "latency_ms": 1.0}


@pytest.fixture
def server() -> Iterator[DashboardServer]:
    srv = DashboardServer(DashboardState(), port=0, throttle_s=0.05)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def get(srv: DashboardServer, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(srv.url.rstrip("/") + path, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_json_api_returns_text_verbatim(server: DashboardServer) -> None:
    server.state.add_event(event("pi-1", "anger", NASTY))
    server.state.add_event(event("pi-2", "joy"))
    code, ctype, body = get(server, "/api/devices")
    assert code == 200 and ctype.startswith("application/json")
    devices = json.loads(body)
    assert [d["device_id"] for d in devices] == ["pi-1", "pi-2"]
    assert devices[0]["latest"]["text"] == NASTY and devices[0]["latest"]["label"] == "anger"
    assert json.loads(get(server, "/api/events?device=pi-1")[2])[0]["text"] == NASTY
    assert json.loads(get(server, "/api/events?device=nope")[2]) == []
    assert len(json.loads(get(server, "/api/events?limit=1")[2])) == 1
    assert get(server, "/api/events?limit=x")[0] == 400
    summary = json.loads(get(server, "/api/summary")[2])
    assert summary["events"] == 2 and summary["counts"]["anger"] == 1


def test_page_metrics_health_and_404(server: DashboardServer) -> None:
    code, ctype, body = get(server, "/")
    assert code == 200 and ctype.startswith("text/html") and b"/static/app.js" in body
    assert b"http" not in body.replace(b'http-equiv', b'')  # nothing fetched from elsewhere
    for path in ("/static/app.js", "/static/app.css"):
        code, _, body = get(server, path)
        assert code == 200 and b"https://" not in body and b"http://" not in body.replace(b"http://www.w3.org/2000/svg", b"")
    server.state.add_event(event("pi-1", "fear"))
    server.state.add_dead_letter("invalid_json")
    code, ctype, body = get(server, "/metrics")
    text = body.decode()
    assert code == 200 and ctype.startswith("text/plain")
    assert 'emostream_dashboard_events_total{label="fear"} 1.0' in text
    assert "emostream_dashboard_dead_letters_total 1.0" in text
    assert "emostream_dashboard_devices 1.0" in text
    code, _, body = get(server, "/healthz")
    assert code == 200 and json.loads(body)["ok"] is True
    assert get(server, "/nope")[0] == 404


def read_event(resp: http.client.HTTPResponse) -> tuple[str, dict]:
    name, data = None, None
    while True:
        line = resp.fp.readline().decode()
        assert line, "stream closed"
        line = line.rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and name is not None:
            return name, data


def test_event_stream_snapshot_then_deltas(server: DashboardServer) -> None:
    server.state.add_event(event("pi-1", "joy", NASTY))
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/api/stream")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    name, snap = read_event(resp)
    assert name == "snapshot" and snap["devices"][0]["latest"]["text"] == NASTY
    assert snap["classes"] == list(CLASSES) and snap["devices"][0]["timeline"]
    assert server.stream_clients == 1
    for _ in range(20):
        server.state.add_event(event("pi-2", "sadness"))
    server.state.add_dead_letter("missing_text")
    seen_events, dlq = 0, 0
    while seen_events < 20 or dlq < 1:
        name, delta = read_event(resp)
        assert name == "delta"
        assert all(d["device_id"] == "pi-2" for d in delta["devices"])
        seen_events += len(delta["feed"])
        dlq = delta["summary"]["dead_letters"]
    assert delta["summary"]["events"] == 21
    conn.close()


def test_stop_ends_open_streams() -> None:
    srv = DashboardServer(DashboardState(), port=0)
    srv.start()
    host, port = srv.url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/api/stream")
    resp = conn.getresponse()
    assert read_event(resp)[0] == "snapshot"
    srv.stop(timeout=5)
    assert srv.stream_clients == 0
    assert resp.fp.read() == b""  # the server closed the stream
    conn.close()


def test_command_prints_url_serves_and_stops_on_sigterm() -> None:
    import re
    import signal
    import subprocess
    import sys

    # No broker is needed to serve the page: the reader keeps retrying in the background.
    proc = subprocess.Popen([sys.executable, "-m", "emostream", "dashboard", "--port", "0", "--bootstrap", "127.0.0.1:1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, line + proc.stderr.read()
        with urllib.request.urlopen(match.group(1) + "healthz", timeout=10) as resp:
            health = json.loads(resp.read())
        assert health["kafka_reader"] == "running" and health["group"].startswith("emostream-dashboard-")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_command_rejects_bad_flags() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "emostream", "dashboard", "--history-minutes", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--history-minutes must be positive" in out.stderr
