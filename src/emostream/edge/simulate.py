"""Many simulated devices sending realistic utterances through the same spool and producer as a real device."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from emostream.edge.corpus import realistic_transcripts
from emostream.edge.sender import SpoolingSender, transcript_row
from emostream.events import Transcript
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.producer import idempotent_producer, produce
from emostream.signing import DeviceSigner

TICK_S = 0.05


@dataclass
class SimulationResult:
    """What a simulation did."""

    sent: int
    acked: int
    spooled: int  # still waiting in the spool at the end
    seconds: float

    @property
    def rate(self) -> float:
        """Acked transcripts per second."""
        return self.acked / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"sent": self.sent, "acked": self.acked, "spooled": self.spooled,
                "seconds": round(self.seconds, 2), "acked_per_s": round(self.rate, 1)}


def device_names(n: int, prefix: str = "sim") -> list[str]:
    """``sim-0001`` … names for ``n`` devices."""
    width = max(4, len(str(n)))
    return [f"{prefix}-{i:0{width}d}" for i in range(1, n + 1)]


class _DirectSender:
    """``--no-spool``: the same idempotent producer without the spool (for measuring the spool's cost)."""

    def __init__(self, client: ClientConfig, signer: DeviceSigner | None = None) -> None:
        self._p = idempotent_producer(client, **{"message.timeout.ms": 0, "queue.buffering.max.messages": 200_000})
        self._signer = signer
        self.produced = self.acked = 0

    def submit(self, ts: list[Transcript], topic: str) -> None:
        for t in ts:
            _dev, _topic, key, value, _uid = transcript_row(t, topic)
            headers = self._signer.headers(key, value) if self._signer is not None else None
            produce(self._p, topic, value, key, headers=headers, on_delivery=self._delivered)
            self.produced += 1
        self._p.poll(0)

    def _delivered(self, err, _msg) -> None:
        if err is None:
            self.acked += 1

    def service(self, timeout: float) -> None:
        self._p.poll(timeout)

    def drain(self, wait_s: float) -> int:
        self._p.flush(wait_s)
        return self.produced - self.acked

    def close(self) -> None:
        self._p.flush(0)


def simulate(client: ClientConfig, devices: int, rate: float, topic: str, *, duration_s: float | None = None,
             count: int | None = None, spool=None, seed: int = 0, wait_s: float = 30.0,
             progress: Callable[[str], None] | None = None, signer: DeviceSigner | None = None) -> SimulationResult:
    """Send ``rate`` utterances per second per device (0 = as fast as possible) until ``duration_s`` or ``count``.

    With ``spool`` the records go through :class:`SpoolingSender` (spooled in batches, one SQLite
    transaction per tick); without, straight to the producer. With ``signer`` every record is
    signed with that one key (the profile's device), whichever simulated device it names.
    """
    names = device_names(devices)
    total_rate = rate * devices
    sender = SpoolingSender(client, spool, signer=signer) if spool is not None else _DirectSender(client, signer)
    stream = realistic_transcripts(names, count if count is not None else 10**12, seed)
    sent, t0 = 0, time.monotonic()
    last_report = t0
    try:
        while True:
            now = time.monotonic()
            elapsed = now - t0
            if duration_s is not None and elapsed >= duration_s:
                break
            if count is not None and sent >= count:
                break
            due = int(elapsed * total_rate) + 1 - sent if total_rate > 0 else 5_000
            if count is not None:
                due = min(due, count - sent)
            due = max(0, min(due, 20_000))
            batch = [next(stream) for _ in range(due)]
            if batch:
                sender.submit(batch, topic)
                sent += len(batch)
            sender.service(0 if total_rate <= 0 else min(TICK_S, 0.01))
            if total_rate > 0 and not batch:
                time.sleep(TICK_S / 5)
            if progress is not None and now - last_report >= 1.0:
                last_report = now
                progress(_line(sender, sent, elapsed))
        remaining = sender.drain(wait_s)
    finally:
        sender.close()
    elapsed = time.monotonic() - t0
    acked = sender.stats.acked if spool is not None else sender.acked
    if progress is not None:
        progress(_line(sender, sent, elapsed) + " (done)")
    return SimulationResult(sent, acked, remaining if spool is not None else 0, elapsed)


def _line(sender, sent: int, elapsed: float) -> str:
    acked = sender.stats.acked if isinstance(sender, SpoolingSender) else sender.acked
    spooled = sender.spool.count() if isinstance(sender, SpoolingSender) else 0
    rate = acked / elapsed if elapsed > 0 else 0.0
    return f"sent {sent}  acked {acked}  spooled {spooled}  {rate:,.0f}/s"


def stderr_progress(line: str) -> None:
    """Progress on one rewritten stderr line."""
    end = "\n" if line.endswith("(done)") else ""
    print(f"\r{line}   ", end=end, file=sys.stderr, flush=True)
