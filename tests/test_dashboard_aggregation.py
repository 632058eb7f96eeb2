"""DashboardState: counts, per-device latest, bounded history, timeline window, deltas. No I/O."""

from __future__ import annotations

import threading

import pytest

from emostream.dashboard.aggregation import DashboardState
from emostream.model.labels import CLASSES


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def event(device: str, label: str = "joy", text: str = "hello", **scores: float) -> dict:
    s = {c: 0.0 for c in CLASSES}
    s[label] = 0.9
    s.update(scores)
    return {"v": 1, "device_id": device, "utterance_id": f"u-{device}", "text": text, "label": label, "scores": s,
            "model": "m", "source": {"topic": "t", "partition": 0, "offset": 1}, "classified_at": "x", "latency_ms": 3.2}


def test_counts_latest_and_summary() -> None:
    st = DashboardState(clock=Clock())
    st.add_event(event("a", "joy", "first"))
    st.add_event(event("a", "anger", "second"))
    st.add_event(event("b", "fear"))
    s = st.summary()
    assert s["events"] == 3 and s["devices"] == 2
    assert s["counts"] == {**{c: 0 for c in CLASSES}, "joy": 1, "anger": 1, "fear": 1}
    devs = {d["device_id"]: d for d in st.devices()}
    assert devs["a"]["latest"]["text"] == "second" and devs["a"]["latest"]["label"] == "anger"
    assert devs["a"]["count"] == 2 and devs["a"]["labels"] == {"joy": 1, "anger": 1}
    assert devs["a"]["latest"]["scores"][CLASSES.index("anger")] == pytest.approx(0.9)


def test_invalid_events_and_dead_letters_are_counted_not_shown() -> None:
    st = DashboardState(clock=Clock())
    assert not st.add_event({"v": 1, "device_id": "a", "label": "bored", "scores": {}})
    assert not st.add_event({"v": 1, "label": "joy"})
    st.add_invalid()
    st.add_dead_letter("invalid_json")
    st.add_dead_letter("invalid_json")
    st.add_dead_letter(None)
    s = st.summary()
    assert s["invalid"] == 3 and s["events"] == 0 and s["devices"] == 0
    assert s["dead_letters"] == 3 and s["dead_letter_types"] == {"invalid_json": 2, "unknown": 1}


def test_scores_are_sanitised() -> None:
    st = DashboardState(clock=Clock())
    st.add_event({"v": 1, "device_id": "a", "label": "joy", "scores": {"joy": 7, "anger": "x", "fear": -1, "sadness": float("nan")}})
    assert st.devices()[0]["latest"]["scores"] == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]


def test_text_is_kept_verbatim() -> None:
    nasty = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> & "quotes" \u2028 ünïcödé'
    st = DashboardState(clock=Clock())
    st.add_event(event("a", text=nasty))
    assert st.devices()[0]["latest"]["text"] == nasty
    assert st.events("a")[0]["text"] == nasty


def test_history_is_bounded() -> None:
    clock = Clock()
    st = DashboardState(clock=clock, max_devices=10, device_events=5, feed_size=7, points=20, history_minutes=1)
    for i in range(2000):  # 25 devices one after the other, 80 events each, one per second
        clock.t += 1.0
        st.add_event(event(f"dev-{i // 80:02d}"))
    s = st.summary()
    assert s["devices"] == 10 and s["evicted_devices"] == 15
    assert s["events"] == 2000
    assert len(st.events()) == 7
    for d in st.devices(timeline=True):
        assert len(st.events(d["device_id"])) == 5
        assert len(d["timeline"]) <= 20
    assert max(len(d["timeline"]) for d in st.devices(timeline=True)) == 20  # 80 s of events, 60 s shown
    # The devices kept are the ones seen most recently.
    assert {d["device_id"] for d in st.devices()} == {f"dev-{i:02d}" for i in range(15, 25)}


def test_timeline_buckets_average_and_window() -> None:
    clock = Clock(6000.0)  # a bucket boundary: 60 s window / 6 points = 10 s buckets
    st = DashboardState(clock=clock, history_minutes=1, points=6)
    st.add_event(event("a", "joy", joy=1.0))
    clock.t += 1
    st.add_event(event("a", "joy", joy=0.5))
    clock.t += 10
    st.add_event(event("a", "anger", joy=0.0))
    tl = st.devices(timeline=True)[0]["timeline"]
    assert [b["t"] for b in tl] == [6000.0, 6010.0]
    assert tl[0]["n"] == 2 and tl[0]["scores"][CLASSES.index("joy")] == pytest.approx(0.75)
    assert tl[1]["scores"][CLASSES.index("anger")] == pytest.approx(0.9)
    clock.t += 60  # 6071: the first bucket [6000, 6010) now ends before the 60 s window starts
    assert [b["t"] for b in st.devices(timeline=True)[0]["timeline"]] == [6010.0]
    clock.t += 100
    assert st.devices(timeline=True)[0]["timeline"] == []
    assert st.devices()[0]["latest"]["label"] == "anger"  # the card keeps its latest event


def test_delta_only_carries_changes() -> None:
    clock = Clock(6000.0)
    st = DashboardState(clock=clock, history_minutes=1, points=6, feed_size=100)
    for d in ("a", "b", "c"):
        st.add_event(event(d))
    seq = st.snapshot()["seq"]
    assert st.delta(seq)["devices"] == [] and st.delta(seq)["feed"] == []
    clock.t += 15
    for _ in range(50):
        st.add_event(event("b", "sadness"))
    delta = st.delta(seq)
    assert [d["device_id"] for d in delta["devices"]] == ["b"]
    assert [p["t"] for p in delta["devices"][0]["points"]] == [6010.0]
    assert delta["devices"][0]["points"][0]["n"] == 50
    assert len(delta["feed"]) == 50 and delta["summary"]["events"] == 53
    assert st.delta(delta["seq"])["devices"] == []


def test_wait_for_change_wakes_on_events_and_dead_letters() -> None:
    st = DashboardState()
    assert st.wait_for_change(0, timeout=0.01) == 0
    threading.Timer(0.05, st.add_dead_letter, args=("x",)).start()
    assert st.wait_for_change(0, timeout=5) == 1


def test_concurrent_writers_and_readers() -> None:
    st = DashboardState(max_devices=50)
    errors: list[BaseException] = []

    def write(k: int) -> None:
        for i in range(2000):
            st.add_event(event(f"w{k}-{i % 30}"))

    def read() -> None:
        try:
            for _ in range(200):
                st.snapshot()
                st.delta(max(0, st.seq - 100))
        except BaseException as exc:  # pragma: no cover - the failure we look for
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(3)] + [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert st.summary()["events"] == 6000 and st.summary()["devices"] == 50
