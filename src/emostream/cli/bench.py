"""``emostream bench model|pipeline``: benchmarks that print JSON."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``bench`` command and its two targets."""
    bench = sub.add_parser("bench", help="benchmarks with JSON output")
    targets = bench.add_subparsers(dest="target", metavar="TARGET")
    targets.required = True

    model = targets.add_parser("model", help="model throughput/latency vs a naive baseline")
    model.add_argument("--model", default=None, help="model name or path (default: the shipped model)")
    model.add_argument("--json", action="store_true", help="print only the JSON result")
    model.add_argument("--batch-sizes", default="1,8,32,64,128", help="comma-separated batch sizes")
    model.add_argument("--count", type=int, default=None, help="utterances per batch size (default: automatic)")
    model.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    model.add_argument("--no-naive", action="store_true", help="skip the torch one-at-a-time baseline")
    model.add_argument("--naive-model", default=None, metavar="hf:PATH",
                       help="torch checkpoint of the same model for the one-at-a-time baseline (extra: hf)")
    model.add_argument("--naive-count", type=int, default=None, help="utterances for the naive baseline (default 200)")
    model.set_defaults(func=_run_model)

    pipeline = targets.add_parser("pipeline", parents=[common], help="end-to-end Kafka pipeline vs a naive baseline")
    pipeline.add_argument("--model", default=None, help="model name or path (default: the shipped model)")
    pipeline.add_argument("--json", action="store_true", help="print only the JSON result")
    pipeline.add_argument("--count", type=int, default=50_000, help="transcripts to push through (default 50000)")
    pipeline.add_argument("--naive-count", type=int, default=None, help="transcripts for the naive baseline")
    pipeline.add_argument("--batch-max", type=int, default=None, help="worker micro-batch size")
    pipeline.set_defaults(func=_run_pipeline)


def _print(result: dict, as_json: bool) -> None:
    text = json.dumps(result, indent=None if as_json else 2)
    print(text)
    sys.stdout.flush()


def _run_model(args: argparse.Namespace) -> int:
    from emostream.bench.model import run_model_bench

    _print(run_model_bench(args), args.json)
    return 0


def _run_pipeline(args: argparse.Namespace) -> int:
    from emostream.bench.pipeline import PipelineBenchOptions, run_pipeline_bench

    opts = PipelineBenchOptions(count=args.count, naive_count=args.naive_count, batch_max=args.batch_max or 64,
                                model=args.model, bootstrap=args.bootstrap, security_profile=args.security_profile)
    _print(run_pipeline_bench(opts), args.json)
    return 0
