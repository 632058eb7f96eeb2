"""Simulated devices for ``emostream demo``: a thread that sends utterances at a rate until stopped.

The utterances come from the edge simulator's written corpus (``emostream.edge.corpus``), the
device names from its simulator. (``emostream.edge.simulate.simulate`` itself blocks until a
duration ends; the demo needs a sender it can stop on Ctrl-C, hence this thread.)
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

from emostream.edge.corpus import realistic_transcripts
from emostream.edge.simulate import device_names
from emostream.events import Transcript
from emostream.kafka.producer import produce


def _stream(names: list[str], rng: random.Random) -> Iterator[Transcript]:
    """The edge corpus, shuffled over devices: they do not speak in a fixed order."""
    shuffled = names * 7
    rng.shuffle(shuffled)
    return realistic_transcripts(shuffled, 10**12, rng.randrange(1 << 30), engine="demo")


class SimulatedDevices:
    """Background thread that sends ``rate`` utterances per second per device through ``producer``."""

    def __init__(self, producer: object, topic: str, devices: int, rate: float, seed: int | None = None) -> None:
        self._producer = producer
        self._topic = topic
        self._names = device_names(devices, prefix="pi")
        self._interval = 1.0 / (rate * devices)
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-devices", daemon=True)
        self.sent = 0

    def start(self) -> "SimulatedDevices":
        """Start sending."""
        self._thread.start()
        return self

    def _run(self) -> None:
        stream = _stream(self._names, self._rng)
        while not self._stop.is_set():
            t = next(stream)
            produce(self._producer, self._topic, t.encode(), t.device_id.encode())  # type: ignore[arg-type]
            self._producer.poll(0)  # type: ignore[attr-defined]
            self.sent += 1
            self._stop.wait(self._rng.expovariate(1.0 / self._interval))

    def stop(self) -> None:
        """Stop sending and deliver what is queued."""
        self._stop.set()
        self._thread.join(5)
        self._producer.flush(10)  # type: ignore[attr-defined]
