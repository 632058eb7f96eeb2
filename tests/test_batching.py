"""The micro-batch policy: full at max records, or max wait after the first record."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emostream.worker.batching import IDLE_POLL_S, BatchPolicy


def test_batch_closes_when_full() -> None:
    p = BatchPolicy(4, 0.05, paced=False)
    assert not p.is_closed(3, 0.0, 0.0)
    assert p.is_closed(4, 0.0, 0.0)
    assert p.room(3) == 1 and p.room(5) == 0


def test_batch_closes_after_wait_from_first_record() -> None:
    p = BatchPolicy(64, 0.02, paced=False)
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


def test_a_paced_batch_goes_at_once_when_the_last_one_closed_a_wait_ago() -> None:
    p = BatchPolicy(64, 0.03)
    assert p.is_closed(1, 10.0, 10.0, last_closed=None)  # the first batch of all: nothing to wait for
    assert p.is_closed(1, 10.0, 10.0, last_closed=9.9)  # the last one closed 100 ms ago
    assert not p.is_closed(1, 10.0, 10.0, last_closed=9.98)  # 20 ms ago: wait for the slot ...
    assert p.poll_timeout(1, 10.0, 10.0, last_closed=9.98) == pytest.approx(0.01)
    assert p.is_closed(3, 10.0, 10.01, last_closed=9.98)  # ... 10 ms, with whatever came meanwhile
    assert p.is_closed(64, 10.0, 10.0, last_closed=9.999)  # full goes at once
    assert not p.is_closed(0, 10.0, 11.0, last_closed=9.0)  # nothing to send
    assert p.closes_at(10.0, last_closed=50.0) == pytest.approx(10.03)  # a clock gone odd never waits longer


def test_fixed_batches_wait_after_their_first_record_whatever_came_before() -> None:
    p = BatchPolicy(64, 0.02, paced=False)
    assert not p.is_closed(1, 10.0, 10.019, last_closed=1.0)
    assert p.is_closed(1, 10.0, 10.021, last_closed=1.0)


@pytest.mark.parametrize("wait", [math.inf, math.nan, -0.001])
def test_a_batch_wait_that_never_ends_is_refused(wait: float) -> None:
    with pytest.raises(ValueError):
        BatchPolicy(64, wait)


def _simulate(arrivals: list[float], policy: BatchPolicy) -> list[tuple[list[float], float]]:
    """The worker's collect loop on a clock: (the batch's arrival times, when it closed), in order."""
    batches: list[tuple[list[float], float]] = []
    last: float | None = None
    i = 0
    while i < len(arrivals):
        opened = arrivals[i]
        batch = [opened]
        i += 1
        closes = policy.closes_at(opened, last)
        while len(batch) < policy.max_records and i < len(arrivals) and arrivals[i] <= closes:
            batch.append(arrivals[i])
            i += 1
        now = batch[-1] if len(batch) >= policy.max_records else closes
        assert policy.is_closed(len(batch), opened, now, last)
        batches.append((batch, now))
        last = now
    return batches


def test_paced_batches_at_everyday_rates() -> None:
    # The clock in milliseconds here, so evenly spaced arrivals are exact.
    at50 = _simulate([n * 20.0 for n in range(300)], BatchPolicy(64, 30.0))
    waits = sorted(closed - t for b, closed in at50 for t in b)
    assert waits[len(waits) // 2] == 10.0  # median wait 10 ms (a fixed 20 ms wait: 20)
    assert len(at50) == pytest.approx(200, abs=1)  # 1.5 records per transaction
    fixed = _simulate([n * 20.0 for n in range(300)], BatchPolicy(64, 20.0, paced=False))
    assert sorted(closed - t for b, closed in fixed for t in b)[150] == 20.0 and len(fixed) == 150
    at10 = _simulate([n * 100.0 for n in range(40)], BatchPolicy(64, 30.0))
    assert all(len(b) == 1 and closed == b[0] for b, closed in at10)  # nothing waits for nothing
    at150 = _simulate([n * 20.0 / 3 for n in range(600)], BatchPolicy(64, 30.0))
    assert all(closed - b[0] <= 30.0 for b, closed in at150)
    assert len(at150) <= 600 * (20.0 / 3) / 30.0 + 2  # one transaction per 30 ms at most


@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.5, allow_nan=False), min_size=1, max_size=300),
    wait_ms=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
    max_records=st.integers(min_value=1, max_value=16),
    paced=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_batches_keep_every_record_in_order_and_never_wait_past_the_window(gaps: list[float], wait_ms: float,
                                                                           max_records: int, paced: bool) -> None:
    arrivals = list(itertools.accumulate(gaps))
    policy = BatchPolicy(max_records, wait_ms / 1000, paced=paced)
    batches = _simulate(arrivals, policy)
    assert [t for b, _ in batches for t in b] == arrivals
    previous = None
    for batch, closed in batches:
        assert 1 <= len(batch) <= max_records
        assert batch[-1] <= closed <= batch[0] + wait_ms / 1000 + 1e-9
        if paced and previous is not None and len(batch) < max_records:
            assert closed >= min(previous + wait_ms / 1000, batch[0]) - 1e-9  # a slot per wait, or nothing to wait for
        previous = closed


@given(
    size=st.integers(min_value=0, max_value=2000),
    opened=st.one_of(st.none(), st.floats(min_value=-1e9, max_value=1e9)),
    now=st.floats(min_value=-1e9, max_value=1e9),
    last=st.one_of(st.none(), st.floats(min_value=-1e9, max_value=1e9)),
    wait_s=st.floats(min_value=0.0, max_value=1e300),
    paced=st.booleans(),
)
def test_a_poll_never_blocks_longer_than_the_idle_poll(size: int, opened: float | None, now: float, last: float | None,
                                                       wait_s: float, paced: bool) -> None:
    """Whatever --batch-wait-ms says (1e10 ms overflowed librdkafka's int milliseconds and made
    consume() return at once), a poll waits 0..IDLE_POLL_S and the loop checks again."""
    timeout = BatchPolicy(64, wait_s, paced=paced).poll_timeout(size, opened, now, last)
    assert 0.0 <= timeout <= IDLE_POLL_S
