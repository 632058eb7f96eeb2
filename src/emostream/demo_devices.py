"""Simulated devices for ``emostream demo``: a thread that sends utterances at a rate until stopped.

The utterances come from the edge simulator's written corpus (``emostream.edge.corpus``) when it
is installed, else from the small built-in list below, so the demo never depends on the edge
package. (``emostream.edge.simulate.simulate`` itself blocks until a duration ends; the demo needs
a sender it can stop on Ctrl-C, hence this thread.)
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

from emostream.events import Transcript, format_ts, new_utterance_id

ROOMS = ["kitchen", "livingroom", "hallway", "office", "garage", "bedroom", "porch", "studio", "attic", "garden"]

UTTERANCES: dict[str, list[str]] = {
    "joy": [
        "I can't believe it worked, this is amazing!",
        "We won the game, I'm so happy right now.",
        "Thank you so much, this is the best birthday ever.",
        "Finally the weekend, I love these sunny mornings.",
        "That dinner was wonderful, I'm really glad we came.",
    ],
    "anger": [
        "Why is the printer jammed again, this is ridiculous!",
        "I told you three times to close the door, I'm furious.",
        "Stop touching my stuff, it makes me so angry.",
        "The bus was late again and nobody even apologised.",
    ],
    "sadness": [
        "I really miss grandma, the house feels empty without her.",
        "I failed the exam even though I studied all week.",
        "Nobody came to the party, I feel so alone.",
        "It's raining again and I just feel down today.",
    ],
    "fear": [
        "Did you hear that noise downstairs? I'm scared.",
        "I'm terrified of the dentist appointment tomorrow.",
        "What if the storm knocks the power out tonight?",
        "Somebody is following me, I'm really frightened.",
    ],
    "surprise": [
        "Wow, I did not expect to see you here!",
        "No way, you bought a new car? Since when?",
        "Oh! The package arrived a whole week early.",
        "Really? They're getting married next month?",
    ],
    "disgust": [
        "Ugh, the milk in the fridge has gone completely sour.",
        "That's disgusting, who left the trash out all week?",
        "Gross, there's hair in my soup.",
    ],
    "neutral": [
        "Can you turn the kitchen lights off please?",
        "What time is the meeting tomorrow?",
        "Set a timer for ten minutes.",
        "The train leaves at seven fifteen.",
        "Add eggs and bread to the shopping list.",
    ],
}


def device_names(n: int) -> list[str]:
    """``pi-kitchen``, ``pi-livingroom``, … then numbered ones."""
    return [f"pi-{ROOMS[i]}" if i < len(ROOMS) else f"pi-{ROOMS[i % len(ROOMS)]}-{i // len(ROOMS)}" for i in range(n)]


def utterances(devices: list[str], rng: random.Random | None = None) -> Iterator[Transcript]:
    """An endless stream of transcripts: random device, random emotion, realistic timing fields."""
    rng = rng or random.Random()
    emotions = list(UTTERANCES)
    while True:
        text = rng.choice(UTTERANCES[rng.choice(emotions)])
        ended = time.time()
        yield Transcript(
            device_id=rng.choice(devices),
            utterance_id=new_utterance_id(),
            text=text,
            confidence=round(rng.uniform(0.8, 0.99), 2),
            started_at=format_ts(ended - 0.06 * len(text.split()) - 0.3),
            ended_at=format_ts(ended),
            stt_engine="demo",
        )


def _stream(names: list[str], rng: random.Random) -> Iterator[Transcript]:
    """The edge corpus (shuffled over devices) when available, else :func:`utterances`."""
    try:
        from emostream.edge.corpus import realistic_transcripts
    except ImportError:
        return utterances(names, rng)
    shuffled = names * 7
    rng.shuffle(shuffled)  # round-robin over a shuffled list: devices do not speak in a fixed order
    return realistic_transcripts(shuffled, 10**12, rng.randrange(1 << 30), engine="demo")


class SimulatedDevices:
    """Background thread that sends ``rate`` utterances per second per device through ``producer``."""

    def __init__(self, producer: object, topic: str, devices: int, rate: float, seed: int | None = None) -> None:
        self._producer = producer
        self._topic = topic
        self._names = device_names(devices)
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
            self._producer.produce(self._topic, t.encode(), t.device_id.encode())  # type: ignore[attr-defined]
            self._producer.poll(0)  # type: ignore[attr-defined]
            self.sent += 1
            self._stop.wait(self._rng.expovariate(1.0 / self._interval))

    def stop(self) -> None:
        """Stop sending and deliver what is queued."""
        self._stop.set()
        self._thread.join(5)
        self._producer.flush(10)  # type: ignore[attr-defined]
