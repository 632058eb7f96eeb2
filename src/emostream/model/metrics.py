"""The decision rule and multi-label metrics over the 7 classes, in plain numpy (shared by the
backends, eval and training, so a prediction's ``label``/``labels`` are exactly what eval scores)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from emostream.model.labels import CLASSES


def top_classes(scores: np.ndarray, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """Index of each row's one class: the largest margin ``score − threshold``.

    The raw argmax ignores the thresholds the model was tuned with (anger 0.486 over its 0.40 lost to
    disgust 0.567 under its 0.60). With the margin, a class that passes always beats one that does
    not, so the top class is always in :func:`predicted_sets`. Top-1 accuracy of the shipped model,
    margin / argmax / score÷threshold ratio: GoEmotions dev 0.6989 / 0.6983 / 0.6967, XED dev
    0.5073 / 0.4763 / 0.5183, XED dev lowercased unpunctuated 0.5193 / 0.5126 / 0.5180; the ratio
    also lets a class with a low threshold (neutral 0.225) win at half the score of another.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return (scores - np.asarray(thresholds, dtype=np.float64)[None, :]).argmax(axis=1)


def predicted_sets(scores: np.ndarray, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """Boolean ``[n, 7]``: classes whose score reaches their threshold, else the top class alone.

    The fallback keeps every row non-empty, so a text always gets at least one emotion.
    """
    scores = np.asarray(scores, dtype=np.float64)
    passed = scores >= np.asarray(thresholds, dtype=np.float64)[None, :]
    empty = ~passed.any(axis=1)
    if empty.any():
        passed[np.flatnonzero(empty), top_classes(scores[empty], thresholds)] = True
    return passed


def _prf(pred: np.ndarray, gold: np.ndarray) -> tuple[float, float, float]:
    tp = float(np.sum(pred & gold))
    fp = float(np.sum(pred & ~gold))
    fn = float(np.sum(~pred & gold))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def evaluate(scores: np.ndarray, gold: np.ndarray, thresholds: Sequence[float] | np.ndarray) -> dict:
    """Macro- and support-weighted F1 (multi-label, 7 classes), top-1 accuracy on single-label rows
    (against always-neutral on the same rows), per-class P/R/F1, top-1 vs gold counts on those rows.

    ``scores`` is ``[n, 7]`` floats, ``gold`` is ``[n, 7]`` 0/1 (or bool) in CLASSES order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    gold = np.asarray(gold).astype(bool)
    if scores.shape != gold.shape or scores.ndim != 2 or scores.shape[1] != len(CLASSES):
        raise ValueError(f"scores {scores.shape} and gold {gold.shape} must both be [n, {len(CLASSES)}]")
    pred = predicted_sets(scores, thresholds)
    per_class = {}
    for j, name in enumerate(CLASSES):
        p, r, f = _prf(pred[:, j], gold[:, j])
        per_class[name] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": int(gold[:, j].sum())}
    f1s = [_prf(pred[:, j], gold[:, j])[2] for j in range(len(CLASSES))]
    support = gold.sum(axis=0)
    weighted = float(np.dot(f1s, support) / support.sum()) if support.sum() else 0.0
    single = gold.sum(axis=1) == 1
    top = top_classes(scores[single], thresholds)
    gold_top = gold[single].argmax(axis=1)
    accuracy = float(np.mean(top == gold_top)) if single.any() else 0.0
    neutral = float(np.mean(gold_top == CLASSES.index("neutral"))) if single.any() else 0.0
    return {
        "n": int(scores.shape[0]),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "weighted_f1": round(weighted, 4),
        "accuracy": round(accuracy, 4),
        "n_single_label": int(single.sum()),
        "always_neutral_accuracy": round(neutral, 4),
        "per_class": per_class,
        "top1_vs_gold": {"predicted": {c: int(np.sum(top == j)) for j, c in enumerate(CLASSES)},
                         "gold": {c: int(np.sum(gold_top == j)) for j, c in enumerate(CLASSES)}},
    }


def macro_f1(scores: np.ndarray, gold: np.ndarray, thresholds: Sequence[float] | np.ndarray) -> float:
    """Unrounded multi-label macro-F1 (for model selection)."""
    pred = predicted_sets(scores, thresholds)
    gold = np.asarray(gold).astype(bool)
    return float(np.mean([_prf(pred[:, j], gold[:, j])[2] for j in range(gold.shape[1])]))


def tune_thresholds(scores: np.ndarray, gold: np.ndarray, grid: Sequence[float] | None = None, rounds: int = 2) -> np.ndarray:
    """Per-class thresholds that maximise macro-F1 by coordinate ascent over ``grid``.

    Coordinate ascent (not independent per-class search) because the top-class fallback couples
    the classes: raising one threshold can move empty rows onto another class.
    """
    grid = np.asarray(grid if grid is not None else np.round(np.arange(0.05, 0.951, 0.025), 3))
    k = scores.shape[1]
    best = np.full(k, 0.5)
    best_f1 = macro_f1(scores, gold, best)
    for _ in range(rounds):
        for j in range(k):
            for t in grid:
                trial = best.copy()
                trial[j] = t
                f1 = macro_f1(scores, gold, trial)
                if f1 > best_f1 + 1e-9:
                    best, best_f1 = trial, f1
    return best


def thresholds_vector(thresholds: Mapping[str, float] | None, default: float = 0.5) -> np.ndarray:
    """``{class: t}`` → array in CLASSES order, ``default`` for missing classes."""
    thresholds = thresholds or {}
    return np.array([float(thresholds.get(c, default)) for c in CLASSES])
