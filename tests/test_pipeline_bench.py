"""bench pipeline: the pure summaries, and the JSON's shape and sanity from a tiny run against a real
broker (speed is measured by the command, never asserted)."""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emostream.bench.pipeline import (
    _last_words,
    _sigterm_unwinds,
    _parts,
    _cpu_delta,
    _cpu_s,
    PipelineBenchOptions,
    backlog_rate,
    backlog_span,
    pooled_rate,
    parse_rates,
    rate_between_bursts,
    rate_summary,
    recovery_summary,
    run_pipeline_bench,
    steady_capacity,
)
from emostream.errors import Terminated, UsageError

RATE_KEYS = {"offered_per_s", "achieved_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "worker_cpu_ms_per_event"}


def test_rate_summary_keeps_up_and_never_exceeds_the_offer():
    # 10/s for 1 s, each event 20 ms after its send: achieved is the offer, not more.
    arrivals = [(100.0 + i / 10 + 0.02, 0.02 + i / 1000) for i in range(10)]
    s = rate_summary(10.0, 100.0, arrivals, cpu_s=0.05)
    assert RATE_KEYS <= s.keys()
    assert 9.0 <= s["achieved_per_s"] <= 10.0
    assert s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"] == 29.0
    assert s["worker_cpu_ms_per_event"] == 5.0


def test_rate_summary_of_nothing():
    s = rate_summary(50.0, 0.0, [], cpu_s=None)
    assert s["achieved_per_s"] == 0.0 and s["p99_ms"] is None and s["worker_cpu_ms_per_event"] is None


def test_steady_capacity_skips_the_warm_up_quarter():
    slow_start = [(0.5 + i * 0.1, 1.0) for i in range(10)]  # 10/s in the first second
    steady = [(1.0 + i / 100, 1.0) for i in range(300)]  # then 100/s
    assert steady_capacity(slow_start + steady, 0.0, 4.0) == pytest.approx(100.0, rel=0.02)
    assert steady_capacity([(6.0, 1.0), (8.0, 1.0)], 0.0, 4.0) == 0.25  # all after the window: the whole run's rate
    assert steady_capacity([], 0.0, 4.0) == 0.0


def test_steady_capacity_of_whole_transactions_is_the_rate_between_them():
    # The bench run that showed it: under the load generator, transactions of 1,024 events
    # committed at these times; sending ran 11.5-26.5 s, so the window was 15.25-26.5 s.
    commits = [20.8, 23.0, 25.9, 27.4, 28.9]
    arrivals = [(c + i * 2e-5, 1.0) for c in commits for i in range(1024)]
    assert steady_capacity(arrivals, 11.5, 26.5) == pytest.approx(2048 / (25.9 - 20.8), rel=0.01)  # not 3 x 1024 / 11.25 s
    # One transaction in the window: nothing to measure between two, the whole run's rate instead.
    assert steady_capacity(arrivals, 21.5, 24.5) == pytest.approx(len(arrivals) / (commits[-1] + 1024 * 2e-5 - 21.5), rel=0.001)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 5)), max_size=300), st.floats(0, 50), st.floats(0, 50))
def test_steady_capacity_is_finite_and_not_negative(arrivals, sent_at, length):
    rate = steady_capacity(arrivals, sent_at, sent_at + length)
    assert 0.0 <= rate < math.inf


def _transactions(commits: list[float], size: int, spread_s: float = 0.02) -> list[tuple[float, float]]:
    """A read_committed reader's arrivals: each transaction's events together, at its commit."""
    return [(c + spread_s * i / size, 1.0) for c in commits for i in range(size)]


def test_backlog_rate_does_not_count_the_first_transaction_without_its_time():
    # 20 transactions of 1,024 committed 1.1 s apart: 930.9/s. First to last arrival read
    # 20,479 events in 20.9 s, 979.9/s: 5 % high.
    arrivals = _transactions([5.0 + 1.1 * k for k in range(20)], 1024)
    assert backlog_rate(arrivals) == pytest.approx(1024 / 1.1, rel=0.001)


def test_backlog_rate_of_a_stream_is_first_to_last():
    # Quix commits every 0.1 s: 30 events at a time, never a quiet gap to measure from.
    arrivals = _transactions([0.1 * k for k in range(100)], 30, spread_s=0.05)
    assert backlog_rate(arrivals) == pytest.approx(300.0, rel=0.01)
    assert backlog_rate([]) is None and backlog_rate([(1.0, 0.0)]) is None


def test_a_transaction_cut_by_the_window_does_not_change_the_capacity():
    # 1,024 every 2.5 s (409.6/s). The window's end falls 3 events into a transaction: the rate
    # once counted them over 2.5 s (8.4/s when the window held no other transaction end).
    commits = [10.0 + 2.5 * k for k in range(8)]
    arrivals = _transactions(commits, 1024, spread_s=0.05)
    cut = commits[5] + 0.05 * 3 / 1024
    for sent_at in (10.0 - 1.0, commits[2] - (cut - commits[2]) / 3 - 0.01):  # a long window, one with 2 ends
        assert steady_capacity(arrivals, sent_at, cut) == pytest.approx(409.6, rel=0.01)


def test_a_transaction_read_slowly_is_still_one_transaction():
    # The reader took 0.4 s over each transaction (a busy machine), never 0.25 s between two events.
    arrivals = _transactions([10.0 + 2.5 * k for k in range(8)], 1024, spread_s=0.4)
    assert steady_capacity(arrivals, 0.0, 30.0) == pytest.approx(409.6, rel=0.01)
    assert backlog_rate(arrivals) == pytest.approx(409.6, rel=0.01)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 2000), period=st.floats(0.5, 5.0), spread=st.floats(0.0, 0.2), n=st.integers(3, 12),
       lo_frac=st.floats(0, 1), hi_frac=st.floats(0, 1))
def test_rate_between_bursts_is_the_transaction_rate_wherever_the_window_cuts(size, period, spread, n, lo_frac, hi_frac):
    commits = [100.0 + period * k for k in range(n)]
    times = [t for t, _ in _transactions(commits, size, spread_s=spread)]
    lo = commits[0] + lo_frac * period * (n - 1)
    hi = lo + hi_frac * (commits[-1] + spread - lo)
    rate = rate_between_bursts(times, lo, hi)
    ends_inside = sum(1 for c in commits if lo <= c + spread * (size - 1) / size <= hi)
    if ends_inside >= 2:
        assert rate == pytest.approx(size / period, rel=1e-6)
    else:
        assert rate is None


def _stamped(commits: list[float], size: int, spread_s: float = 0.02) -> tuple[list[tuple[float, float]], list[str]]:
    """Arrivals as _transactions gives them, with each event's classified_at: one per transaction."""
    return _transactions(commits, size, spread_s), [f"t{k}" for k in range(len(commits)) for _ in range(size)]


def test_transactions_closer_than_the_gap_are_told_apart_by_their_stamps():
    # A fast model: 1,024 every 0.17 s (6,024/s). Without stamps the bursts merge and the first
    # transaction's events count without their time.
    arrivals, stamps = _stamped([1.0 + 0.17 * k for k in range(10)], 1024, spread_s=0.02)
    assert backlog_rate(arrivals, stamps) == pytest.approx(1024 / 0.17, rel=0.001)
    assert backlog_rate(arrivals) > 1.05 * 1024 / 0.17  # the gap rule alone: 6,606/s, its bursts merged


def test_a_part_of_one_transaction_is_not_counted():
    # Its 1,024 events arrive within ~20 ms: first to last would read 51,200/s.
    one, one_stamps = _stamped([3.0], 1024)
    assert backlog_span(one, one_stamps) is None
    good, good_stamps = _stamped([5.0 + 1.1 * k for k in range(5)], 1024)
    assert pooled_rate([backlog_span(good, good_stamps), backlog_span(one, one_stamps)]) == pytest.approx(1024 / 1.1, rel=0.001)
    assert pooled_rate([None, None]) is None and pooled_rate([]) is None


def test_a_pause_in_a_stream_of_stamped_messages_does_not_shorten_its_window():
    # Quix stamps each message: 300/s for 100 s with one 0.3 s pause is counted from the first
    # message to the last, not from the pause on.
    times = [i / 300 for i in range(28_500)] + [95.3 + i / 300 for i in range(1_500)]
    arrivals, stamps = [(t, 0.0) for t in times], [f"m{i}" for i in range(len(times))]
    assert backlog_rate(arrivals, stamps) == pytest.approx((len(times) - 1) / (times[-1] - times[0]), rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 300), gaps=st.lists(st.floats(0.01, 3.0), min_size=1, max_size=12), spread=st.floats(0.0, 0.5))
def test_stamped_transactions_are_counted_exactly_however_close(size, gaps, spread):
    commits = [10.0]
    for g in gaps:
        commits.append(commits[-1] + spread + g)  # each transaction read before the next commits
    arrivals, stamps = _stamped(commits, size, spread_s=spread)
    ends = [c + spread * (size - 1) / size for c in commits]
    span = backlog_span(arrivals, stamps)
    assert span is not None and span[0] == size * (len(commits) - 1)
    assert span[1] == pytest.approx(ends[-1] - ends[0], abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 5)), max_size=300))
def test_backlog_rate_is_finite_and_not_negative(arrivals):
    rate = backlog_rate(arrivals)
    assert rate is None or 0.0 <= rate < math.inf


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=3), min_size=1, max_size=200), st.integers(1, 300))
def test_the_backlog_parts_are_the_texts_in_order_none_empty(texts, parts):
    got = _parts(texts, parts)
    assert [t for part in got for t in part] == texts
    assert len(got) == min(parts, len(texts)) and all(got)
    assert max(map(len, got)) - min(map(len, got)) <= 1


def test_recovery_summary_is_the_longest_gap_after_the_kill():
    arrivals = [9.0, 9.5, 10.2, 17.0, 17.1, 17.2, 30.0]  # killed at 10: the old worker's last events, then a pause
    s = recovery_summary(10.0, arrivals, ["a", "b", "c", "d", "e", "e"], sent=6)
    assert s == {"pause_s": 12.8, "lost": 1, "duplicates": 1}  # 17.2 → 30.0 is longer than 10.2 → 17.0
    assert recovery_summary(10.0, [11.5], ["a"], sent=1) == {"pause_s": 1.5, "lost": 0, "duplicates": 0}
    assert recovery_summary(10.0, [], [], sent=3)["pause_s"] is None


def _burn(cpu_s: float) -> None:
    start = time.thread_time()
    while time.thread_time() - start < cpu_s:
        pass


def test_worker_cpu_is_read_to_the_nanosecond_not_in_clock_ticks():
    # The CI failure this answers: 2 events at 1/s read as 0 ms of worker CPU, in 10 ms ticks.
    outer0 = time.process_time()
    before = _cpu_s(os.getpid())
    inner0 = time.process_time()
    _burn(0.003)
    inner1 = time.process_time()
    after = _cpu_s(os.getpid())
    outer1 = time.process_time()
    # The process's own CPU clock, so bracketed exactly: a reading in 10 ms ticks falls outside.
    assert outer0 <= before <= inner0 and inner1 <= after <= outer1
    # A thread that burnt CPU and exited between the samples still counts.
    before = _cpu_s(os.getpid())
    t = threading.Thread(target=_burn, args=(0.02,))
    t.start()
    t.join()
    assert 0.02 <= _cpu_delta(os.getpid(), before) < 5.0
    assert _cpu_s(2**22 + 7) is None and _cpu_delta(2**22 + 7, before) is None  # no such process


def test_options_and_rates_refuse_nonsense():
    assert parse_rates("10, 50,150") == (10.0, 50.0, 150.0) and parse_rates("") == ()
    with pytest.raises(UsageError, match="--rates"):
        parse_rates("10,fast")
    with pytest.raises(UsageError, match="--rate-seconds"):
        PipelineBenchOptions(rate_seconds=0)
    with pytest.raises(UsageError, match="--model-seconds"):
        PipelineBenchOptions(model_seconds=-1)
    with pytest.raises(UsageError, match="--backlog-parts"):
        PipelineBenchOptions(backlog_parts=0)
    with pytest.raises(UsageError):
        PipelineBenchOptions(recovery_seconds=-1)
    assert PipelineBenchOptions(pin=True).layout == "pinned" and PipelineBenchOptions().layout == "shared"
    with pytest.raises(UsageError, match="--baseline"):
        PipelineBenchOptions(baseline="flink")
    for ms in (0, -1, 5999, 300_001):  # below 6000 the broker would refuse every worker's join
        with pytest.raises(UsageError, match="--session-timeout-ms"):
            PipelineBenchOptions(session_timeout_ms=ms)
    assert PipelineBenchOptions(session_timeout_ms=6000).session_timeout_ms == 6000
    # A cluster of the user's may allow less than Kafka's default minimum (its workers say so if not).
    assert PipelineBenchOptions(session_timeout_ms=3000, bootstrap="h:9092").session_timeout_ms == 3000
    with pytest.raises(UsageError, match="--session-timeout-ms"):
        PipelineBenchOptions(session_timeout_ms=0, bootstrap="h:9092")


@pytest.mark.kafka
@pytest.mark.slow
def test_bench_pipeline_json_shape_against_a_real_broker(bootstrap: str):
    # The broker's smallest session timeout (6 s): the recovery without --static-membership waits for it.
    opts = PipelineBenchOptions(count=240, naive_count=10, batch_max=16, bootstrap=bootstrap, rates=(5.0, 20.0),
                                rate_seconds=2.0, idle_seconds=1.0, model_seconds=1.0, pin=len(os.sched_getaffinity(0)) >= 2,
                                recovery_seconds=6.0, session_timeout_ms=6000, backlog_parts=2,
                                keep_logs=False)
    before = os.sched_getaffinity(0)
    folders = set(Path(tempfile.gettempdir()).glob("emostream-bench-*"))
    result = run_pipeline_bench(opts)
    assert set(Path(tempfile.gettempdir()).glob("emostream-bench-*")) <= folders  # keep_logs=False: nothing left behind
    assert os.sched_getaffinity(0) == before  # --pin gives this process its CPUs back
    assert result["layout"] == opts.layout
    assert result["received"] == 240 and result["throughput"] > 0
    assert result["steady_capacity_per_s"] > 0
    assert result["quix_throughput"] is None and result["ratio_to_quix"] is None
    assert result["idle_cpu_percent"] is not None and result["idle_cpu_percent"] >= 0
    assert result["worker_rss_mb"] > 0 and result["model_throughput"] > 0
    runs = result["model_throughput_runs"]  # the capacity offer's run, then before, between and after the 2 parts
    assert len(runs) == 4 and min(runs) > 0 and min(runs[1:]) * 0.999 <= result["model_throughput"] <= max(runs[1:]) * 1.001
    assert result["backlog_parts"] == 2 and len(result["backlog_part_throughputs"]) == 2
    assert result["backlog_warmup"] == 120  # a part's worth, drained first and not counted in "received"
    rates = result["rates"]
    assert [r["offered_per_s"] for r in rates[:2]] == [5.0, 20.0]
    assert len(rates) == 3 and rates[2]["half_capacity"] is True and "half_capacity" not in rates[0]
    for r in rates:
        assert RATE_KEYS <= r.keys()
        assert 0 < r["achieved_per_s"] <= r["offered_per_s"] * 1.2
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["worker_cpu_ms_per_event"] > 0
    assert result["p99_ms_at_half_load"] == rates[2]["p99_ms"] and result["half_load_rate"] == rates[2]["offered_per_s"]
    # A worker killed with SIGKILL under load and restarted: every event exactly once, a measured pause.
    assert (result["recovery_lost"], result["recovery_duplicates"]) == (0, 0)
    assert (result["recovery_static_lost"], result["recovery_static_duplicates"]) == (0, 0)
    assert result["recovery_pause_static_s"] > 0
    assert result["recovery_pause_s"] > 0 and result["quix_recovery_pause_s"] is None and result["pipeline"] is True
    assert result["session_timeout_ms"] == 6000


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["rate_seconds", "idle_seconds", "model_seconds", "recovery_seconds"]),
       st.floats(allow_nan=True, allow_infinity=True))
def test_bench_seconds_options_are_finite_or_refused(name, value):
    # A NaN passes every comparison and an infinite phase never ends: both are refused up front.
    smallest_ok = 0.0 if name == "recovery_seconds" else math.nextafter(0.0, 1.0)
    try:
        opts = PipelineBenchOptions(**{name: value})
    except UsageError as exc:
        assert f"--{name.replace('_', '-')}" in str(exc)
        assert not (smallest_ok <= value < math.inf)
    else:
        assert smallest_ok <= getattr(opts, name) < math.inf


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_rates_text_parses_to_positive_finite_rates_or_a_usage_error(text):
    try:
        opts = PipelineBenchOptions(rates=parse_rates(text))
    except UsageError as exc:
        assert "--rates" in str(exc)
    else:
        assert all(0 < r < math.inf for r in opts.rates)


def test_sigterm_unwinds_the_bench_like_ctrl_c_and_a_second_one_does_not_cut_the_clean_up_short():
    # By default SIGTERM ended the bench on the spot: its finally blocks (continue a stopped
    # worker, kill the workers, stop the broker) never ran. An impatient second SIGTERM during
    # that clean-up is ignored.
    import signal

    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(Terminated):  # a KeyboardInterrupt: every finally runs as for Ctrl-C
        with _sigterm_unwinds():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # sent again while cleaning up
                time.sleep(0.2)
                cleaned.append(True)
    assert cleaned == [True] and signal.getsignal(signal.SIGTERM) == before


def test_a_command_ended_by_sigterm_exits_143_and_one_ended_by_ctrl_c_130(monkeypatch, capsys):
    import argparse

    import emostream.cli as cli

    for exc, code, said in ((Terminated("SIGTERM"), 143, "terminated"), (KeyboardInterrupt(), 130, "interrupted")):
        def run(_args, exc=exc):
            raise exc

        parser = argparse.ArgumentParser()
        parser.set_defaults(func=run)
        monkeypatch.setattr(cli, "build_parser", lambda parser=parser: parser)
        assert cli.main([]) == code
        assert said in capsys.readouterr().err


def test_a_worker_that_stopped_on_an_error_is_quoted(tmp_path):
    import subprocess

    log = tmp_path / "worker.log"
    log.write_text("INFO started\nemostream: error: the brokers refuse --session-timeout-ms 3000\n\n")
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert _last_words(proc) == ""
    proc.emostream_log = log
    assert _last_words(proc) == ": emostream: error: the brokers refuse --session-timeout-ms 3000"


def test_a_transaction_whose_last_partitions_come_after_the_next_ones_first_is_still_one():
    # A reader a transaction behind gets A's last partitions after B's first: A must still end at
    # its last event, or its late events count without their time (~6 % high here).
    seq = [("A", 830), ("B", 100), ("A", 170), ("B", 900), ("C", 1000), ("D", 1000)]
    times, stamps, t = [], [], 0.0
    for stamp, n in seq:
        for _ in range(n):
            t += 0.001 if stamp in "AB" else 0.0005
            times.append(t)
            stamps.append(stamp)
    end = {stamp: max(tt for tt, st_ in zip(times, stamps) if st_ == stamp) for stamp in "ABCD"}
    assert backlog_span([(tt, 0.0) for tt in times], stamps) == (3000, pytest.approx(end["D"] - end["A"]))


def test_a_failed_send_ends_the_read_at_once_with_its_error(monkeypatch):
    from emostream.bench import pipeline
    from emostream.errors import ClusterError

    def broken(*_args, **_kwargs):
        raise ClusterError("3 transcript(s) still unsent to src after 60 s")

    told: list[bool] = []

    class Reader:
        def take(self, n, timeout_s, tag, ids=None, stamps=None, stop=None):
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if stop and stop():
                    told.append(True)  # the read ends on the sender's failure, not its timeout
                    break
                time.sleep(0.01)
            return []

    monkeypatch.setattr(pipeline, "_produce", broken)
    with pytest.raises(ClusterError, match="unsent"):
        pipeline._offer(None, "src", Reader(), ["a", "b", "c"], None, "t", timeout_s=60)
    assert told == [True]
