"""Metrics against hand-computed examples, labelled-file parsing errors, and run_eval."""

from __future__ import annotations

import numpy as np
import pytest

from emostream.errors import DataError
from emostream.model.base import Prediction
from emostream.model.data import read_examples, read_goemotions, read_tsv
from emostream.model.evaluation import run_eval
from emostream.model.labels import CLASSES
from emostream.model.metrics import evaluate, predicted_sets, tune_thresholds

A, D, F, J, S, U, N = range(7)  # anger disgust fear joy sadness surprise neutral


def _row(**scores):
    row = np.full(7, 0.1)
    for name, value in scores.items():
        row[CLASSES.index(name)] = value
    return row


def test_no_class_passes_threshold_falls_back_to_top_class():
    scores = np.array([_row(fear=0.4, neutral=0.3)])
    assert predicted_sets(scores, [0.5] * 7)[0].tolist() == [False, False, True, False, False, False, False]
    scores = np.array([_row(anger=0.9, disgust=0.6)])
    assert predicted_sets(scores, [0.5] * 7)[0].tolist() == [True, True, False, False, False, False, False]


def test_macro_f1_and_accuracy_by_hand():
    # row0 gold {anger}, predicted {anger, disgust}; row1 gold {joy, surprise}, predicted {joy};
    # row2 gold {neutral}, nothing passes → predicted {fear} (top class).
    scores = np.array([_row(anger=0.9, disgust=0.6), _row(joy=0.7), _row(fear=0.4)])
    gold = np.zeros((3, 7))
    gold[0, A] = gold[1, J] = gold[1, U] = gold[2, N] = 1
    result = evaluate(scores, gold, [0.5] * 7)
    # per-class F1: anger 1, disgust 0, fear 0, joy 1, sadness 0, surprise 0, neutral 0 → 2/7
    assert result["macro_f1"] == pytest.approx(2 / 7, abs=1e-4)
    # single-label rows: row0 top=anger ✓, row2 top=fear vs neutral ✗
    assert result["accuracy"] == 0.5
    assert result["n"] == 3
    assert result["per_class"]["anger"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert result["per_class"]["disgust"]["precision"] == 0.0
    assert result["per_class"]["surprise"]["recall"] == 0.0


def test_thresholds_change_the_predicted_set():
    scores = np.array([_row(anger=0.9, disgust=0.6)])
    gold = np.zeros((1, 7))
    gold[0, A] = 1
    assert evaluate(scores, gold, [0.5] * 7)["per_class"]["disgust"]["precision"] == 0.0
    strict = [0.5, 0.7, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert evaluate(scores, gold, strict)["macro_f1"] == pytest.approx(1 / 7, abs=1e-4)


def test_tune_thresholds_never_worse_than_half():
    rng = np.random.default_rng(0)
    gold = (rng.random((200, 7)) < 0.2).astype(float)
    scores = np.clip(gold * 0.3 + rng.random((200, 7)) * 0.6, 0, 1)
    t = tune_thresholds(scores, gold)
    assert evaluate(scores, gold, t)["macro_f1"] >= evaluate(scores, gold, [0.5] * 7)["macro_f1"]


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_goemotions_maps_ids(tmp_path):
    path = _write(tmp_path, "d.tsv", "I hate this\t2,3\tid1\nwow\t26\tid2\n\nhello\t27\tid3\n")
    rows = read_goemotions(path)
    assert [(r.text, r.classes, r.line) for r in rows] == [
        ("I hate this", ("anger",), 1), ("wow", ("surprise",), 2), ("hello", ("neutral",), 4)]


@pytest.mark.parametrize(
    ("content", "line", "fmt", "match"),
    [
        ("ok\t27\tx\nno ids here\n", 2, "goemotions", "column"),
        ("ok\t27\tx\nbad\t28\ty\n", 2, "goemotions", "unknown label id 28"),
        ("ok\t27\tx\nok\t2\tz\nbad\tfoo\ty\n", 3, "goemotions", "integers"),
        ("fine\tjoy\nbad\tlove\n", 2, "tsv", "unknown class 'love'"),
        ("missing column\n", 1, "tsv", "column"),
        ("x\t\n", 1, "tsv", "no class"),
    ],
)
def test_bad_files_name_the_line(tmp_path, content, line, fmt, match):
    path = _write(tmp_path, "bad.tsv", content)
    with pytest.raises(DataError, match=match) as info:
        read_examples(path, fmt)
    assert f"bad.tsv:{line}:" in str(info.value)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_tsv(_write(tmp_path, "e.tsv", "\n\n"))
    with pytest.raises(DataError, match="no such file"):
        read_tsv(tmp_path / "nope.tsv")
    with pytest.raises(DataError, match="unknown format"):
        read_examples(_write(tmp_path, "x.tsv", "a\tjoy\n"), "csv")


class _Fixed:
    """Predicts joy for texts containing 'yay', else neutral."""

    name = "fixed"
    thresholds = {c: 0.5 for c in CLASSES}

    def classify(self, texts):
        out = []
        for t in texts:
            label = "joy" if "yay" in t else "neutral"
            out.append(Prediction(label, {c: (0.9 if c == label else 0.05) for c in CLASSES}))
        return out


def test_run_eval_tsv_with_progress(tmp_path):
    path = _write(tmp_path, "e.tsv", "yay\tjoy\nmeh\tneutral\nyay!\tjoy,surprise\nhmm\tanger\n")
    seen = []
    result = run_eval(path, "tsv", _Fixed(), chunk=2, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(2, 4), (4, 4)]
    assert result["n"] == 4 and result["model"] == "fixed"
    assert result["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    # joy F1 1, neutral P .5 R 1 → .6667, others 0 → (1 + .6667) / 7
    assert result["macro_f1"] == pytest.approx((1 + 2 / 3) / 7, abs=1e-4)
    assert set(result) >= {"n", "macro_f1", "accuracy", "per_class", "model", "utterances_per_s"}
