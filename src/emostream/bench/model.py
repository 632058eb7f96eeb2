"""``emostream bench model``: throughput and latency of a classifier on spoken-length utterances,
per batch size, against a naive baseline (transformers + torch, one text at a time)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass

from emostream.model.samples import UTTERANCES


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _host() -> dict:
    import onnxruntime

    info = {"cpu_count": os.cpu_count(), "cpu_model": _cpu_model(), "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version()}
    try:
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)  # other work on the host skews the numbers
    except OSError:
        pass
    return info


def texts_for(count: int) -> list[str]:
    """``count`` utterances cycled from the built-in list (varied lengths, 5–25 words)."""
    return [UTTERANCES[i % len(UTTERANCES)] for i in range(count)]


def measure_batches(clf, batch_size: int, count: int) -> dict:
    """Run ``count`` utterances through ``clf`` in calls of ``batch_size``; per-call latency stats and
    the process CPU time per call (all threads: what the classifier takes from other work on the host)."""
    texts = texts_for(count)
    clf.classify(texts[:batch_size])  # warm-up: first-run allocations are not steady state
    latencies = []
    cpu_start = time.process_time()
    start = time.perf_counter()
    for i in range(0, count, batch_size):
        t0 = time.perf_counter()
        clf.classify(texts[i : i + batch_size])
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]
    return {"batch_size": batch_size, "utterances_per_s": round(count / elapsed, 1),
            "p50_ms": round(statistics.median(latencies), 2), "p99_ms": round(p99, 2),
            "cpu_ms_per_call": round(cpu * 1000 / len(latencies), 2)}


def naive_throughput(spec: str, threads: int | None, count: int) -> tuple[float | None, str | None]:
    """Utterances/s of ``spec`` (an ``hf:PATH`` checkpoint) run by transformers+torch one text at a time."""
    if not spec.startswith("hf:"):
        return None, "naive baseline needs a torch checkpoint: pass --naive-model hf:PATH"
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return None, "torch/transformers not installed (pip install 'emostream[hf]'); naive baseline skipped"
    from emostream.model import load_classifier

    clf = load_classifier(spec, threads=threads)
    texts = texts_for(count)
    clf.classify(texts[:2])
    start = time.perf_counter()
    for text in texts:
        clf.classify([text])
    return round(count / (time.perf_counter() - start), 1), None


def cold_start(spec: str | None, threads: int | None) -> float:
    """Seconds to load the model and classify one utterance, in this process (imports included)."""
    from emostream.model import load_classifier

    start = time.perf_counter()
    clf = load_classifier(spec, threads=threads)
    clf.classify([UTTERANCES[0]])
    return round(time.perf_counter() - start, 3)


@dataclass(frozen=True)
class ModelBenchOptions:
    """What ``emostream bench model`` measures (the CLI builds this from its flags)."""

    model: str | None = None
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64, 128)
    count: int | None = None
    threads: int | None = None
    naive: bool = True
    naive_model: str | None = None
    naive_count: int | None = None
    compare: str | None = None
    rounds: int = 3


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1,8,64"`` → ``(1, 8, 64)``; every size must be a whole number ≥ 1."""
    from emostream.errors import UsageError

    sizes = []
    for item in str(text).split(","):
        if not item.strip():
            continue
        try:
            size = int(item)
        except ValueError:
            raise UsageError(f"--batch-sizes: {item.strip()!r} is not a whole number") from None
        if size < 1:
            raise UsageError(f"--batch-sizes: {size} must be at least 1")
        sizes.append(size)
    if not sizes:
        raise UsageError("--batch-sizes: give at least one batch size, e.g. 1,64")
    return tuple(sizes)


def _count_for(opts: ModelBenchOptions, size: int) -> int:
    return opts.count or max(size * 8, 512 if size > 1 else 256)


def compare_interleaved(clf, other, sizes: tuple[int, ...], opts: ModelBenchOptions) -> dict:
    """Both classifiers measured in alternating order (A B, B A, ...) for ``opts.rounds`` rounds at each
    batch size, so drift on a shared host hits both alike; per batch size the median utterances/s of
    each and their ratio (``speedup`` > 1: ``clf`` is faster than ``other``)."""
    rows = {}
    for size in sizes:
        runs = {"model": [], "compare": []}
        for rnd in range(max(1, opts.rounds)):
            pair = (("model", clf), ("compare", other)) if rnd % 2 == 0 else (("compare", other), ("model", clf))
            for key, c in pair:
                runs[key].append(measure_batches(c, size, _count_for(opts, size))["utterances_per_s"])
        mine, theirs = statistics.median(runs["model"]), statistics.median(runs["compare"])
        rows[str(size)] = {"model_utterances_per_s": runs["model"], "compare_utterances_per_s": runs["compare"],
                           "speedup": round(mine / theirs, 2) if theirs else None}
    return rows


def run_model_bench(opts: ModelBenchOptions) -> dict:
    """Benchmark ``opts.model`` at each of ``opts.batch_sizes``; returns the JSON-ready result."""
    from emostream.model import load_classifier

    spec, threads, sizes = opts.model, opts.threads, tuple(opts.batch_sizes)
    cold = cold_start(spec, threads)
    clf = load_classifier(spec, threads=threads)
    batches = [measure_batches(clf, size, _count_for(opts, size)) for size in sizes]
    result = {
        "model": getattr(clf, "name", spec),
        "precision": getattr(clf, "precision", None),
        "batches": batches,
        "cold_start_s": cold,
        "threads": threads,
        "ort_spinning": getattr(clf, "spinning", None),
        "utterance_words": {"min": min(len(u.split()) for u in UTTERANCES), "max": max(len(u.split()) for u in UTTERANCES)},
        "host": _host(),
    }
    if opts.compare:
        other = load_classifier(opts.compare, threads=threads)
        result["compare"] = {"model": getattr(other, "name", opts.compare), "precision": getattr(other, "precision", None),
                             "rounds": max(1, opts.rounds), "batches": compare_interleaved(clf, other, sizes, opts)}
    naive_spec = opts.naive_model
    if not opts.naive:
        naive, note = None, "skipped (--no-naive)"
    elif naive_spec:
        naive, note = naive_throughput(naive_spec, threads, opts.naive_count or 200)
    elif spec and spec.startswith("hf:"):
        naive, note = naive_throughput(spec, threads, opts.naive_count or 200)
    else:
        naive, note = None, "no torch checkpoint for this model: pass --naive-model hf:PATH (e.g. .cache/checkpoints/emostream-ekman)"
    result["naive_model"] = naive_spec
    result["naive_utterances_per_s"] = naive
    best = max(b["utterances_per_s"] for b in batches) if batches else None
    result["speedup_vs_naive"] = round(best / naive, 1) if naive and best else None
    if note:
        result["naive_note"] = note
    return result
