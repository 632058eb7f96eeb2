"""What the dashboard knows: per-device latest event and timeline, global counts, a feed. No I/O.

One :class:`DashboardState` is fed by the Kafka reader thread and read by every HTTP/SSE
thread, so every public method takes the one lock and returns copies. Memory is bounded
whatever the event rate: devices are capped (least recently seen evicted), each device keeps
a fixed number of recent events and a timeline of at most ``points`` buckets (the history
window divided into equal buckets, each the mean of the 7 scores it received), and the
global feed is a ring buffer.

Readers ask for a :meth:`snapshot` once and then for :meth:`delta` since the ``seq`` they
last saw: a delta carries only the devices that changed, the timeline buckets they touched
and the newest feed entries, so its size does not grow with the event rate.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emostream.model.labels import CLASSES

DEFAULT_HISTORY_MINUTES = 10.0
DEFAULT_POINTS = 120
DEFAULT_MAX_DEVICES = 500
DEFAULT_DEVICE_EVENTS = 20
DEFAULT_FEED_SIZE = 50


@dataclass
class _Bucket:
    start: float
    sums: list[float]
    n: int = 0
    seq: int = 0

    def view(self) -> dict[str, Any]:
        return {"t": self.start, "n": self.n, "scores": [round(s / self.n, 4) for s in self.sums]}


@dataclass
class _Device:
    device_id: str
    latest: dict[str, Any]
    seq: int
    last_seen: float
    count: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    recent: deque[dict[str, Any]] = field(default_factory=deque)
    timeline: deque[_Bucket] = field(default_factory=deque)


class DashboardState:
    """Thread-safe, bounded aggregation of emotion events and dead letters."""

    def __init__(
        self,
        *,
        history_minutes: float = DEFAULT_HISTORY_MINUTES,
        points: int = DEFAULT_POINTS,
        max_devices: int = DEFAULT_MAX_DEVICES,
        device_events: int = DEFAULT_DEVICE_EVENTS,
        feed_size: int = DEFAULT_FEED_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if history_minutes <= 0 or points < 1 or max_devices < 1 or device_events < 1 or feed_size < 1:
            raise ValueError("history_minutes, points, max_devices, device_events and feed_size must be positive")
        self.history_s = float(history_minutes) * 60.0
        self.points = points
        self.bucket_s = self.history_s / points
        self.max_devices = max_devices
        self.device_events = device_events
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._devices: dict[str, _Device] = {}
        self._feed: deque[dict[str, Any]] = deque(maxlen=feed_size)
        self._counts: Counter[str] = Counter({c: 0 for c in CLASSES})
        self._dlq_types: Counter[str] = Counter()
        self._invalid_types: Counter[str] = Counter()
        self._seq = 0
        self._events = 0
        self._invalid = 0
        self._dead_letters = 0
        self._evicted = 0
        self._last_event_at: float | None = None
        self.started_at = clock()

    # ---- writers -------------------------------------------------------------------------

    def add_event(self, event: Mapping[str, Any]) -> bool:
        """Record one decoded EmotionEvent; False (and counted as invalid) when it lacks a device or a known label."""
        compact = _compact(event)
        with self._cond:
            if compact is None:
                self._invalid += 1
                self._invalid_types["unusable_event"] += 1
                return False
            now = self._clock()
            self._seq += 1
            seq = compact["seq"] = self._seq
            compact["received_at"] = now
            dev_id = compact["device_id"]
            dev = self._devices.get(dev_id)
            if dev is None:
                if len(self._devices) >= self.max_devices:
                    self._evict_oldest()
                dev = _Device(dev_id, compact, seq, now, recent=deque(maxlen=self.device_events),
                              timeline=deque(maxlen=self.points))
                self._devices[dev_id] = dev
            dev.latest, dev.seq, dev.last_seen = compact, seq, now
            dev.count += 1
            dev.labels[compact["label"]] += 1
            dev.recent.append(compact)
            self._add_point(dev, now, compact["scores"], seq)
            self._feed.append(compact)
            self._counts[compact["label"]] += 1
            self._events += 1
            self._last_event_at = now
            self._cond.notify_all()
            return True

    def add_invalid(self, error_type: str | None = None) -> None:
        """Count a record on the emotions topic that did not decode as an EmotionEvent (``error_type`` says why)."""
        with self._cond:
            self._invalid += 1
            self._invalid_types[(error_type or "unknown")[:64]] += 1

    def add_dead_letter(self, error_type: str | None = None) -> None:
        """Count one record on the dead-letter topic (``error_type`` from its ``error.type`` header)."""
        with self._cond:
            self._seq += 1
            self._dead_letters += 1
            self._dlq_types[(error_type or "unknown")[:64]] += 1
            self._cond.notify_all()

    def _add_point(self, dev: _Device, now: float, scores: list[float], seq: int) -> None:
        start = now - (now % self.bucket_s)
        last = dev.timeline[-1] if dev.timeline else None
        # A clock that steps back lands in the newest bucket instead of breaking the time order.
        if last is None or start > last.start:
            last = _Bucket(start, [0.0] * len(CLASSES))
            dev.timeline.append(last)  # maxlen drops the oldest bucket
        for i, s in enumerate(scores):
            last.sums[i] += s
        last.n += 1
        last.seq = seq

    def _evict_oldest(self) -> None:
        oldest = min(self._devices.values(), key=lambda d: d.last_seen)
        del self._devices[oldest.device_id]
        self._evicted += 1

    # ---- readers -------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """Sequence number of the latest change (events and dead letters)."""
        with self._cond:
            return self._seq

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until ``seq`` passes ``since`` or ``timeout`` seconds pass; returns the current seq."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > since, timeout)
            return self._seq

    def summary(self) -> dict[str, Any]:
        """Global totals: events, devices, counts per emotion, dead letters, invalid records."""
        with self._cond:
            return self._summary()

    def _summary(self) -> dict[str, Any]:
        return {
            "seq": self._seq,
            "events": self._events,
            "devices": len(self._devices),
            "counts": {c: self._counts.get(c, 0) for c in CLASSES},
            "dead_letters": self._dead_letters,
            "dead_letter_types": dict(self._dlq_types),
            "invalid": self._invalid,
            "invalid_types": dict(self._invalid_types),
            "evicted_devices": self._evicted,
            "last_event_at": self._last_event_at,
            "started_at": self.started_at,
        }

    def devices(self, *, timeline: bool = False) -> list[dict[str, Any]]:
        """Every device's latest event and counts, sorted by device id (with its timeline if asked)."""
        with self._cond:
            cutoff = self._clock() - self.history_s
            return [self._device_view(d, cutoff if timeline else None) for d in sorted(self._devices.values(), key=lambda d: d.device_id)]

    def events(self, device: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Recent events, newest last: one device's own recent events, or the global feed."""
        with self._cond:
            if device is None:
                items = list(self._feed)
            else:
                dev = self._devices.get(device)
                items = list(dev.recent) if dev else []
        return items[-limit:] if limit else items

    def snapshot(self) -> dict[str, Any]:
        """Everything a new viewer needs: devices with timelines, the feed, the summary, the time layout."""
        with self._cond:
            cutoff = self._clock() - self.history_s
            return {
                "seq": self._seq,
                "classes": list(CLASSES),
                "history_s": self.history_s,
                "bucket_s": self.bucket_s,
                "devices": [self._device_view(d, cutoff) for d in sorted(self._devices.values(), key=lambda d: d.device_id)],
                "feed": list(self._feed),
                "summary": self._summary(),
            }

    def delta(self, since: int) -> dict[str, Any]:
        """What changed after ``since``: changed devices with the buckets they touched, new feed entries, the summary.

        Its size is bounded by the number of devices and the feed size, however many events arrived.
        """
        with self._cond:
            devices = []
            for d in self._devices.values():
                if d.seq > since:
                    view = self._device_view(d, None)
                    view["points"] = [b.view() for b in d.timeline if b.seq > since]
                    devices.append(view)
            devices.sort(key=lambda v: v["device_id"])
            return {
                "seq": self._seq,
                "devices": devices,
                "feed": [e for e in self._feed if e["seq"] > since],
                "summary": self._summary(),
            }

    def _device_view(self, d: _Device, timeline_cutoff: float | None) -> dict[str, Any]:
        view: dict[str, Any] = {
            "device_id": d.device_id,
            "latest": d.latest,
            "count": d.count,
            "labels": dict(d.labels),
            "last_seen": d.last_seen,
        }
        if timeline_cutoff is not None:
            view["timeline"] = [b.view() for b in d.timeline if b.start + self.bucket_s > timeline_cutoff]
        return view


def _compact(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fields the dashboard keeps, scores as a list in CLASSES order; None when unusable."""
    device = event.get("device_id")
    label = event.get("label")
    if not isinstance(device, str) or not device or label not in CLASSES:
        return None
    raw = event.get("scores")
    raw = raw if isinstance(raw, Mapping) else {}
    scores = [_unit(raw.get(c)) for c in CLASSES]
    text = event.get("text")
    source = event.get("source")
    latency = event.get("latency_ms")
    return {
        "device_id": device,
        "utterance_id": str(event.get("utterance_id") or ""),
        "text": text if isinstance(text, str) else "",
        "label": label,
        "scores": scores,
        "model": str(event.get("model") or ""),
        "classified_at": str(event.get("classified_at") or ""),
        "latency_ms": float(latency) if isinstance(latency, (int, float)) and not isinstance(latency, bool) else None,
        "source": dict(source) if isinstance(source, Mapping) else None,
    }


def _unit(value: Any) -> float:
    """A score clamped to [0, 1]; anything that is not a number counts as 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return 0.0
    return min(1.0, max(0.0, float(value)))
