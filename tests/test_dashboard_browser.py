"""The dashboard page in headless Chromium: end to end against Kafka, escaping, reconnect, and a load check.

Needs Debian's ``chromium`` and the ``playwright`` Python package (its driver only; no browser
download): each test here is skipped with the reason when either is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emostream.dashboard import Dashboard, DashboardServer, DashboardState
from emostream.model.labels import CLASSES

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("EMOSTREAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS_TEXT = 'look <img src=x onerror="window.__pwned=1"> and <script>window.__pwned=2</script> & "quotes"'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Playwright; skips (with the reason) when either is missing."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed: '.venv/bin/pip install playwright' (no 'playwright install' needed)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}: 'apt-get install -y chromium' (or set EMOSTREAM_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page._emostream_errors = errors  # type: ignore[attr-defined]
    # Nothing may be fetched from outside this dashboard.
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
    page.goto(url)
    return page


def wait_stream_state(page: Any, state: str, timeout_s: float = 15) -> None:
    page.wait_for_function(f"() => window.emostreamDashboard && window.emostreamDashboard.stats.state === {state!r}",
                           timeout=timeout_s * 1000)


# ---- end to end against Kafka --------------------------------------------------------------

UTTERANCES = {  # device -> text; with events produced directly, the label is the keyword stand-in's
    "pi-attic": "wow, " + XSS_TEXT,
    "pi-garage": "I am so angry, this makes me absolutely furious!",
    "pi-kitchen": "I am so happy, this is wonderful news!",
}


def _worker_available() -> bool:
    """True once 'emostream worker' is a working command (not merely a half-built package on disk)."""
    probe = subprocess.run([sys.executable, "-m", "emostream", "worker", "--help"], capture_output=True, timeout=60)
    return probe.returncode == 0


def _create_topics(bootstrap: str, names: list[str]) -> Any:
    from emostream.kafka.admin import Admin
    from emostream.kafka.configuration import ClientConfig
    from emostream.topics import create_topic, plan_dedupe, plan_topic

    admin = Admin(ClientConfig(bootstrap))
    live = admin.live_brokers()
    for name in names:
        create_topic(admin, plan_topic(name, live, partitions=3))
    # The worker's durable dedupe changelog for the source topic (``topics ensure`` makes it too).
    dedupe = plan_dedupe(names[0], 3, live)
    create_topic(admin, dedupe)
    from tests.worker_helpers import wait_until_every_broker_lists

    wait_until_every_broker_lists(bootstrap, [*names, dedupe.name])  # the worker starts right after
    return admin


def _emotion_event(device: str, label: str, text: str, offset: int) -> bytes:
    scores = {c: 0.02 for c in CLASSES}
    scores[label] = 0.88
    return json.dumps({"v": 1, "device_id": device, "utterance_id": f"{device}-{offset}", "text": text, "label": label,
                       "scores": scores, "model": "test-direct", "source": {"topic": "none", "partition": 0, "offset": offset},
                       "classified_at": "2026-01-01T00:00:00.000Z", "latency_ms": 1.0}).encode()


@pytest.mark.kafka
def test_dashboard_shows_devices_from_kafka(browser: Any, bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """Transcripts for 3 devices (and one broken one) through the real worker; the page shows 3 cards and 1 dead letter.

    The worker runs the shipped model when it exists, else the worker tests' keyword stand-in;
    without an ``emostream worker`` command at all, the test writes EmotionEvents itself.
    """
    from emostream.kafka.configuration import ClientConfig
    from emostream.kafka.producer import idempotent_producer
    from tests.worker_helpers import KeywordClassifier

    source, target = f"{unique_name}-tr", f"{unique_name}-em"
    dlq = f"{source}.dlq"
    admin = _create_topics(bootstrap, [source, target, dlq])
    producer = idempotent_producer(ClientConfig(bootstrap))
    texts = list(UTTERANCES.values())
    worker: subprocess.Popen[bytes] | None = None
    dashboard = Dashboard(bootstrap=bootstrap, topic=target, dlq=dlq, port=0, from_beginning=True).start()
    try:
        if _worker_available():
            from emostream.worker.model import load_model
            from tests.worker_helpers import model_spec, start_worker

            spec = model_spec()
            expected = dict(zip(UTTERANCES, (p.label for p in load_model(spec).classify(texts))))
            worker = start_worker(bootstrap, source, target, f"{unique_name}-worker", "dash-e2e", tmp_path / "worker.log", spec)
            for device, text in UTTERANCES.items():
                producer.produce(source, key=device, value=json.dumps({"v": 1, "device_id": device, "text": text}).encode())
            producer.produce(source, key="pi-broken", value=b'{"v": 1, "device_id": "pi-broken", "text": ')  # -> DLQ
            mode = f"real worker, model {spec or 'shipped default'}"
        else:
            expected = dict(zip(UTTERANCES, (p.label for p in KeywordClassifier().classify(texts))))
            for i, (device, text) in enumerate(UTTERANCES.items()):
                producer.produce(target, key=device, value=_emotion_event(device, expected[device], text, i))
            producer.produce(dlq, key="pi-broken", value=b"{not json", headers=[("error.type", b"invalid_json")])
            mode = "EmotionEvents produced directly (no 'emostream worker' command)"
        assert producer.flush(15) == 0
        print(f"\nend-to-end mode: {mode}; expected labels {expected}")

        page = open_page(browser, dashboard.url)
        wait_stream_state(page, "live")
        try:
            # three cards, each rendered (a card exists a moment before its label is filled in)
            page.wait_for_function(
                "() => { const c = document.querySelectorAll('#devices .card .label');"
                " return c.length === 3 && Array.from(c).every(l => l.textContent !== ''); }",
                timeout=120_000,
            )
            page.wait_for_function("() => document.getElementById('dlq').textContent === '1'", timeout=30_000)
        except Exception:
            if worker is not None:
                print((tmp_path / "worker.log").read_text()[-3000:])
            raise
        cards = page.eval_on_selector_all(
            "#devices .card",
            "els => els.map(e => [e.dataset.device, e.querySelector('.label').textContent, e.querySelector('.utterance').textContent])",
        )
        assert [(d, lab) for d, lab, _ in cards] == sorted(expected.items())
        assert {d: t for d, _, t in cards} == UTTERANCES
        # The hostile utterance is text: no element was made from it and nothing ran.
        assert page.evaluate("() => window.__pwned") is None
        assert page.evaluate("() => document.querySelectorAll('#devices img, #devices script, #feed img, #feed script').length") == 0
        feed = page.eval_on_selector_all("#feed .text", "els => els.map(e => e.textContent)")
        assert UTTERANCES["pi-attic"] in feed
        assert page.evaluate("() => document.getElementById('total').textContent") == "3"
        time.sleep(0.5)  # let the last render settle
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard-e2e.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        assert page._emostream_errors == []
        page.close()
    finally:
        if worker is not None:
            from tests.worker_helpers import stop

            stop(worker, timeout=30)
        dashboard.stop()
        producer.flush(5)
        admin.delete_topics([source, target, dlq, f"{source}.dedupe"])


# ---- without Kafka: reconnect and load ------------------------------------------------------


def test_page_shows_dropped_stream_and_reconnects(browser: Any) -> None:
    state = DashboardState()
    state.add_event({"v": 1, "device_id": "pi-1", "label": "joy", "text": "before", "scores": {"joy": 1.0}})
    srv = DashboardServer(state, port=0)
    srv.start()
    port = int(srv.url.rstrip("/").rsplit(":", 1)[1])
    page = open_page(browser, srv.url)
    try:
        wait_stream_state(page, "live")
        srv.stop()
        page.wait_for_function("() => ['reconnecting', 'disconnected'].includes(window.emostreamDashboard.stats.state)", timeout=15_000)
        shown = page.evaluate("() => document.getElementById('conn').textContent")
        assert "reconnect" in shown or "retrying" in shown
        state.add_event({"v": 1, "device_id": "pi-2", "label": "fear", "text": "after", "scores": {"fear": 1.0}})
        srv = DashboardServer(state, port=port)
        srv.start()
        wait_stream_state(page, "live", timeout_s=20)
        page.wait_for_function("() => document.querySelectorAll('#devices .card').length === 2", timeout=10_000)
    finally:
        page.close()
        srv.stop()


@pytest.mark.slow  # 10 s of load by design: kept out of make test-quick, run by make test
def test_page_stays_responsive_under_load(browser: Any) -> None:
    """100 devices x 10 events/s for 10 s through the aggregation and SSE; the page must keep answering."""
    devices, rate, seconds = 100, 10, 10.0
    state = DashboardState()
    srv = DashboardServer(state, port=0)
    srv.start()
    page = open_page(browser, srv.url)
    stop = threading.Event()
    fed = [0]

    def feed() -> None:
        tick, start = 0.05, time.monotonic()
        per_tick = int(devices * rate * tick)
        n = 0
        while not stop.is_set() and time.monotonic() - start < seconds:
            for _ in range(per_tick):
                d = n % devices
                label = CLASSES[(n // devices + d) % len(CLASSES)]
                state.add_event({"v": 1, "device_id": f"pi-{d:03d}", "label": label, "text": f"utterance {n} from device {d}",
                                 "scores": {c: (0.7 if c == label else 0.05) for c in CLASSES}})
                n += 1
            fed[0] = n
            time.sleep(max(0.0, start + (n / (devices * rate)) - time.monotonic()))

    try:
        wait_stream_state(page, "live")
        feeder = threading.Thread(target=feed)
        t0 = time.monotonic()
        feeder.start()
        rtts = []
        while feeder.is_alive():
            t = time.monotonic()
            page.evaluate("() => document.querySelectorAll('#devices .card').length")
            rtts.append(time.monotonic() - t)
            time.sleep(0.25)
        feeder.join()
        elapsed = time.monotonic() - t0
        page.wait_for_function(f"() => document.getElementById('total').textContent === '{fed[0]}'", timeout=15_000)
        cards = page.evaluate("() => document.querySelectorAll('#devices .card').length")
        stats = page.evaluate("() => window.emostreamDashboard.stats")
        rtts.sort()
        print(f"\nload: fed {fed[0]} events from {devices} devices in {elapsed:.1f}s ({fed[0] / elapsed:.0f}/s); "
              f"page: {cards} cards, {stats['deltas']} deltas, {stats['renders']} renders, "
              f"render ms last {stats['lastRenderMs']:.1f} max {stats['maxRenderMs']:.1f}; "
              f"evaluate round-trips: {len(rtts)}, median {rtts[len(rtts) // 2] * 1000:.0f} ms, max {rtts[-1] * 1000:.0f} ms")
        assert cards == devices
        assert fed[0] >= devices * rate * seconds * 0.9
        assert len(rtts) >= 10  # the page answered all through the run
        assert page._emostream_errors == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-load.png"))
    finally:
        stop.set()
        page.close()
        srv.stop()
