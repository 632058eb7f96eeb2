"""bench model: shape of the result (tiny counts; speed is measured by the command, never asserted)."""

from __future__ import annotations

import json

import pytest

from emostream.bench.model import ModelBenchOptions, parse_batch_sizes, run_model_bench
from emostream.cli import main
from emostream.model.samples import UTTERANCES


def test_samples_are_spoken_length():
    assert len(UTTERANCES) >= 30
    assert all(5 <= len(u.split()) <= 25 for u in UTTERANCES)


def test_run_model_bench_fields():
    result = run_model_bench(ModelBenchOptions(batch_sizes=(1, 8), count=16, threads=1))
    assert result["model"] == "emostream-ekman"
    assert [b["batch_size"] for b in result["batches"]] == [1, 8]
    for b in result["batches"]:
        assert b["utterances_per_s"] > 0 and b["p99_ms"] >= b["p50_ms"] > 0 and b["cpu_ms_per_call"] > 0
    assert result["naive_utterances_per_s"] is None and "naive-model" in result["naive_note"]
    assert result["speedup_vs_naive"] is None
    assert result["cold_start_s"] > 0
    assert result["host"]["cpu_count"] >= 1 and result["host"]["onnxruntime"]
    assert result["ort_spinning"] is False  # off unless EMOSTREAM_MODEL_SPINNING=1


def test_bench_model_command_json(capsys):
    assert main(["bench", "model", "--json", "--batch-sizes", "4", "--count", "8", "--no-naive"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["batches"][0]["batch_size"] == 4 and result["naive_note"].startswith("skipped")


def test_parse_batch_sizes():
    from emostream.errors import UsageError

    assert parse_batch_sizes("1, 8,64,") == (1, 8, 64)
    for bad in ("", "0", "1,x", "-4"):
        with pytest.raises(UsageError):
            parse_batch_sizes(bad)


def test_bench_model_compare_is_interleaved():
    result = run_model_bench(ModelBenchOptions(batch_sizes=(4,), count=8, threads=1, naive=False,
                                               compare="emostream-ekman", rounds=2))
    row = result["compare"]["batches"]["4"]
    assert result["compare"]["rounds"] == 2
    assert len(row["model_utterances_per_s"]) == len(row["compare_utterances_per_s"]) == 2
    assert row["speedup"] > 0


def test_spinning_is_a_session_option(monkeypatch):
    from emostream.model import load_classifier

    assert load_classifier(None, threads=1).spinning is False
    monkeypatch.setenv("EMOSTREAM_MODEL_SPINNING", "1")
    clf = load_classifier(None, threads=1)
    assert clf.spinning is True and clf.classify(["hello there"])[0].label
