"""``emostream eval``: score a labelled file with a classifier and report multi-label metrics."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from emostream.model.base import Classifier
from emostream.model.data import read_examples, spoken_style
from emostream.model.labels import CLASSES, multi_hot
from emostream.model.metrics import evaluate, thresholds_vector


def classifier_scores(clf: Classifier, texts: list[str]) -> np.ndarray:
    """``[n, 7]`` scores from any Classifier (fast path when the backend exposes ``scores``)."""
    if hasattr(clf, "scores"):
        return np.asarray(clf.scores(texts), dtype=np.float64)
    return np.array([[p.scores.get(c, 0.0) for c in CLASSES] for p in clf.classify(texts)], dtype=np.float64)


def stderr_progress(done: int, total: int) -> None:
    """``eval: 42% (2300/5426)`` on stderr: one self-overwriting line on a terminal; on a log
    (not a terminal) a plain line per report, so logs do not get one run-on line."""
    line = f"eval: {100 * done // max(total, 1):3d}% ({done}/{total})"
    if sys.stderr.isatty():
        print(f"\r{line}", end="\n" if done >= total else "", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def run_eval(
    path: str | Path | Sequence[str | Path],
    fmt: str,
    clf: Classifier,
    chunk: int = 512,
    progress: Callable[[int, int], None] | None = None,
    split: str = "dev",
    spoken: bool = False,
) -> dict:
    """Classify every row of ``path`` and return ``n, macro_f1, accuracy, per_class, model, utterances_per_s``
    (and the rest of :func:`evaluate`). ``split`` picks the XED split; ``spoken`` rewrites every text
    the way a speech recogniser writes it (lowercase, no punctuation) before classifying."""
    rows = read_examples(path, fmt, split=split)
    texts = [spoken_style(r.text) if spoken else r.text for r in rows]
    gold = np.array([multi_hot(r.classes) for r in rows])
    parts = []
    start = time.perf_counter()
    for i in range(0, len(texts), chunk):
        parts.append(classifier_scores(clf, texts[i : i + chunk]))
        if progress:
            progress(min(i + chunk, len(texts)), len(texts))
    elapsed = time.perf_counter() - start
    scores = np.concatenate(parts)
    result = evaluate(scores, gold, thresholds_vector(getattr(clf, "thresholds", None)))
    result["model"] = getattr(clf, "name", type(clf).__name__)
    if fmt == "xed":
        result["split"] = split
    if spoken:
        result["spoken_style"] = True
    result["utterances_per_s"] = round(len(texts) / elapsed, 1) if elapsed > 0 else None
    return result
