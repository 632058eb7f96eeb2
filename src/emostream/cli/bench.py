"""``emostream bench model|pipeline|edge``: benchmarks that print JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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
    model.add_argument("--compare", default=None, metavar="MODEL",
                       help="also measure this model (name or path, e.g. emostream-ekman) interleaved with --model, "
                            "and report the speed ratio per batch size")
    model.add_argument("--rounds", type=int, default=3, help="with --compare: alternating rounds per batch size (default 3)")
    model.set_defaults(func=_run_model)

    pipeline = targets.add_parser("pipeline", parents=[common], help="end-to-end Kafka pipeline vs a naive baseline")
    pipeline.add_argument("--model", default=None, help="model name or path (default: the shipped model)")
    pipeline.add_argument("--json", action="store_true", help="print only the JSON result")
    pipeline.add_argument("--count", type=int, default=50_000, help="transcripts to push through (default 50000)")
    pipeline.add_argument("--naive-count", type=int, default=None, help="transcripts for the naive baseline")
    pipeline.add_argument("--batch-max", type=int, default=None, help="worker micro-batch size")
    pipeline.add_argument("--rates", default="10,50,150", help="offered rates in transcripts/s, comma-separated (default 10,50,150)")
    pipeline.add_argument("--no-half-capacity", action="store_true",
                          help="skip the extra rate at 50%% of the measured steady-state capacity")
    pipeline.add_argument("--rate-seconds", type=float, default=15.0, help="seconds per offered rate (default 15)")
    pipeline.add_argument("--idle-seconds", type=float, default=10.0, help="seconds of idle worker CPU measured (default 10)")
    pipeline.add_argument("--pin", action="store_true",
                          help="broker and load generator on the first CPU, the worker on the second (taskset)")
    pipeline.add_argument("--baseline", choices=["quix"], default=None,
                          help="also drain the backlog with Quix Streams (own venv under ~/.cache/emostream, from PyPI)")
    pipeline.add_argument("--recovery-seconds", type=float, default=30.0,
                          help="steady 50/s load around the SIGKILL + restart of the recovery phase (0: skip; default 30)")
    pipeline.add_argument("--model-seconds", type=float, default=8.0,
                          help="seconds the model alone is timed at the start (the capacity offer); half of it before, "
                               "between and after the backlog's parts (the ceiling) (default 8)")
    pipeline.add_argument("--backlog-parts", type=int, default=4,
                          help="the backlog in this many parts, the model alone timed between them (default 4; "
                               "each part should hold several 1,024-event transactions)")
    pipeline.add_argument("--batch-wait-ms", type=float, default=None,
                          help="the worker's --batch-wait-ms (default: the worker's default)")
    pipeline.add_argument("--session-timeout-ms", type=int, default=10_000,
                          help="the workers' --session-timeout-ms (default 10000, the worker's): the recovery pause of "
                               "a killed worker without --static-membership waits for it")
    pipeline.add_argument("--no-pipeline", action="store_true",
                          help="run the worker with --no-pipeline (each batch commits before the next is polled)")
    pipeline.set_defaults(func=_run_pipeline)

    edge = targets.add_parser("edge", help="the microphone path (VAD → Whisper → spool) on a generated recording")
    edge.add_argument("--json", action="store_true", help="print only the JSON result")
    edge.add_argument("--fast", action="store_true",
                      help="replay as fast as possible (throughput only: no latency or idle figures)")
    edge.add_argument("--sentences", type=int, default=None, help="spoken sentences (default 24)")
    edge.add_argument("--threads", type=int, default=None, help="Whisper CPU threads (default: up to 4)")
    edge.add_argument("--stop-silence", type=float, default=0.5, help="VAD stop silence in seconds (default 0.5)")
    edge.add_argument("--keep", type=Path, default=None, metavar="WAV", help="also save the generated recording here")
    edge.add_argument("--stt-window", choices=("fit", "30"), default="fit",
                      help="Whisper encoder window: fitted to the utterance in 10 s steps with a 30 s retry of doubtful "
                           "passes (default, as edge mic), or always Whisper's 30 s")
    edge.set_defaults(func=_run_edge)


def _print(result: dict, as_json: bool) -> None:
    text = json.dumps(result, indent=None if as_json else 2)
    print(text)
    sys.stdout.flush()


def _run_model(args: argparse.Namespace) -> int:
    from emostream.bench.model import ModelBenchOptions, parse_batch_sizes, run_model_bench

    opts = ModelBenchOptions(model=args.model, batch_sizes=parse_batch_sizes(args.batch_sizes), count=args.count,
                             threads=args.threads, naive=not args.no_naive, naive_model=args.naive_model,
                             naive_count=args.naive_count, compare=args.compare, rounds=args.rounds)
    _print(run_model_bench(opts), args.json)
    return 0


def _run_edge(args: argparse.Namespace) -> int:
    from emostream.bench.edge import SENTENCES, EdgeBenchOptions, run_edge_bench

    opts = EdgeBenchOptions(realtime=not args.fast, sentences=args.sentences or len(SENTENCES), threads=args.threads,
                            stop_silence_s=args.stop_silence, keep=args.keep, fit_window=args.stt_window == "fit")
    _print(run_edge_bench(opts), args.json)
    return 0


def _run_pipeline(args: argparse.Namespace) -> int:
    from emostream.bench.pipeline import PipelineBenchOptions, parse_rates, run_pipeline_bench

    opts = PipelineBenchOptions(count=args.count, naive_count=args.naive_count, batch_max=args.batch_max or 64,
                                model=args.model, bootstrap=args.bootstrap, security_profile=args.security_profile,
                                rates=parse_rates(args.rates), half_capacity=not args.no_half_capacity,
                                rate_seconds=args.rate_seconds, idle_seconds=args.idle_seconds, pin=args.pin,
                                baseline=args.baseline, pipeline=not args.no_pipeline,
                                recovery_seconds=args.recovery_seconds, batch_wait_ms=args.batch_wait_ms,
                                model_seconds=args.model_seconds, session_timeout_ms=args.session_timeout_ms,
                                backlog_parts=args.backlog_parts)
    _print(run_pipeline_bench(opts), args.json)
    return 0
