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


def test_label_follows_the_thresholds_not_the_raw_argmax():
    # the case: anger 0.486 passes its 0.40, disgust 0.567 misses its 0.60 → anger, not disgust
    from emostream.model.metrics import top_classes
    from emostream.model.onnx_backend import predictions_from_scores

    t = {"anger": 0.4, "disgust": 0.6, "fear": 0.25, "joy": 0.475, "sadness": 0.4, "surprise": 0.45, "neutral": 0.225}
    row = np.array([[0.4862, 0.5675, 0.0587, 0.0194, 0.0298, 0.0442, 0.1351]])
    (pred,) = predictions_from_scores(row, t)
    assert pred.label == "anger" and pred.labels == ("anger",)
    assert CLASSES[top_classes(row, [t[c] for c in CLASSES])[0]] == "anger"
    # no thresholds: 0.5 for every class, i.e. the plain argmax
    assert predictions_from_scores(row)[0].label == "disgust"


def test_label_and_labels_agree_with_what_eval_scores():
    from emostream.model.metrics import top_classes
    from emostream.model.onnx_backend import predictions_from_scores

    rng = np.random.default_rng(3)
    scores = rng.random((500, 7)) ** 2
    t = rng.uniform(0.1, 0.9, 7)
    preds = predictions_from_scores(scores, dict(zip(CLASSES, t)))
    sets = predicted_sets(scores, t)
    tops = top_classes(scores, t)
    for pred, row_set, top in zip(preds, sets, tops):
        assert pred.label == CLASSES[top] == pred.labels[0]
        assert set(pred.labels) == {CLASSES[j] for j in np.flatnonzero(row_set)}
    # eval's accuracy counts exactly these labels on single-label rows
    gold = np.zeros((500, 7))
    gold[np.arange(500), rng.integers(0, 7, 500)] = 1
    expected = np.mean([p.label == CLASSES[int(g.argmax())] for p, g in zip(preds, gold)])
    assert evaluate(scores, gold, t)["accuracy"] == pytest.approx(expected, abs=1e-4)


def test_weighted_f1_baseline_and_distribution():
    scores = np.array([_row(anger=0.9), _row(joy=0.7), _row(neutral=0.8), _row(neutral=0.6)])
    gold = np.zeros((4, 7))
    gold[0, A] = gold[1, N] = gold[2, N] = gold[3, N] = 1
    r = evaluate(scores, gold, [0.5] * 7)
    # anger F1 1 (support 1), neutral P 1 R 2/3 → .8 (support 3), joy F1 0 (support 0)
    assert r["weighted_f1"] == pytest.approx((1 * 1 + 0.8 * 3) / 4, abs=1e-4)
    assert r["always_neutral_accuracy"] == 0.75 and r["n_single_label"] == 4
    assert r["top1_vs_gold"]["predicted"]["neutral"] == 2 and r["top1_vs_gold"]["gold"]["neutral"] == 3


def test_eval_names_the_fix_for_class_names_and_takes_any_case(tmp_path, capsys) -> None:
    from emostream.cli import main

    path = tmp_path / "names.tsv"
    path.write_text("I am so furious with you\tAnger\nthank you so much, I love it\tJOY\n")
    assert main(["eval", str(path)]) == 2  # default format is goemotions (ids)
    assert "pass --format tsv" in capsys.readouterr().err
    assert main(["eval", str(path), "--format", "tsv", "--quiet"]) == 0


def test_eval_progress_is_plain_lines_when_stderr_is_not_a_terminal(capsys) -> None:
    from emostream.model.evaluation import stderr_progress

    stderr_progress(1, 2)
    stderr_progress(2, 2)
    assert capsys.readouterr().err == "eval:  50% (1/2)\neval: 100% (2/2)\n"
