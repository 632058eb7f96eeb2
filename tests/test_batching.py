"""The micro-batch policy: full at max records, or max wait after the first record."""

from __future__ import annotations

import pytest

from emostream.worker.batching import IDLE_POLL_S, BatchPolicy


def test_batch_closes_when_full() -> None:
    p = BatchPolicy(4, 0.05)
    assert not p.is_closed(3, 0.0, 0.0)
    assert p.is_closed(4, 0.0, 0.0)
    assert p.room(3) == 1 and p.room(5) == 0


def test_batch_closes_after_wait_from_first_record() -> None:
    p = BatchPolicy(64, 0.02)
    assert not p.is_closed(1, 10.0, 10.019)
    assert p.is_closed(1, 10.0, 10.021)
    assert p.poll_timeout(1, 10.0, 10.005) == pytest.approx(0.015)
    assert p.poll_timeout(1, 10.0, 11.0) == 0.0


def test_empty_batch_never_closes_and_polls_idle() -> None:
    p = BatchPolicy(64, 0.0)
    assert not p.is_closed(0, None, 100.0)
    assert not p.is_closed(0, 1.0, 100.0)  # emptied by a revoke: keep waiting
    assert p.poll_timeout(0, None, 0.0) == IDLE_POLL_S


def test_zero_wait_processes_what_arrived() -> None:
    assert BatchPolicy(64, 0.0).is_closed(1, 5.0, 5.0)


@pytest.mark.parametrize(("n", "wait"), [(0, 0.01), (-1, 0.01), (1, -0.5)])
def test_bad_settings_are_refused(n: int, wait: float) -> None:
    with pytest.raises(ValueError):
        BatchPolicy(n, wait)
