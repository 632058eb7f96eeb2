"""Micro-batching policy: a batch closes at ``max_records`` or ``max_wait_s`` after its first record.

Pure: the caller passes the clock in, so the policy is tested without Kafka or sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

IDLE_POLL_S = 0.5  # how long one poll waits while no batch is open (bounds shutdown and health latency)


@dataclass(frozen=True)
class BatchPolicy:
    """Up to ``max_records`` records, or whatever arrived ``max_wait_s`` after the first one."""

    max_records: int = 64
    max_wait_s: float = 0.020

    def __post_init__(self) -> None:
        if self.max_records < 1:
            raise ValueError(f"batch size must be at least 1, got {self.max_records}")
        if self.max_wait_s < 0:
            raise ValueError(f"batch wait must not be negative, got {self.max_wait_s}")

    def is_closed(self, size: int, opened_at: float | None, now: float) -> bool:
        """True when a batch of ``size`` records opened at ``opened_at`` must be processed now."""
        if size >= self.max_records:
            return True
        return opened_at is not None and size > 0 and now - opened_at >= self.max_wait_s

    def poll_timeout(self, size: int, opened_at: float | None, now: float) -> float:
        """How long the next poll may block: the idle poll while empty, else what is left of the wait."""
        if size == 0 or opened_at is None:
            return IDLE_POLL_S
        return max(0.0, self.max_wait_s - (now - opened_at))

    def room(self, size: int) -> int:
        """How many more records the open batch takes."""
        return max(0, self.max_records - size)
