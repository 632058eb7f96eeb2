"""The model card is rendered from JSON files (`emostream model card`), never hand-typed: its dev
figures follow the eval files, it credits XED, and the shipped card matches the shipped model."""

from __future__ import annotations

import json

from emostream.model import resolve_model
from emostream.model.card import render_card, write_card
from emostream.model.labels import CLASSES
from emostream.model.samples import EVERYDAY_LINES, SPOKEN_EXAMPLES


def _metrics(macro, acc, **extra):
    per = {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 1} for c in CLASSES}
    return {"n": 10, "macro_f1": macro, "accuracy": acc, "per_class": per, **extra}


def _report():
    return {
        "model": "m", "base": {"hidden_size": 384, "num_layers": 3}, "rows": {"train": 1, "dev": 1}, "data": {},
        "settings": {"epochs": 1, "batch_size": 1, "max_length": 8, "seed": 13, "warmup": 0.1, "weight_decay": 0.0,
                     "freeze_word_embeddings": True, "sweep": "sigmoid:1e-4"},
        "sweep": [], "selected": {"head": "sigmoid", "lr": 1e-4, "epoch": 1, "dev_macro_f1": 0.1},
        "export": {"opset": 17, "exporter": "torchscript", "ort_fusion": True, "variants": {}, "shipped": "fp32", "rule": "r"},
        "dev_metrics": _metrics(0.6278, 0.6983), "thresholds": {c: 0.5 for c in CLASSES},
        "host": {"device": "cpu"}, "wall_time_s": {"training_sweep": 1, "total": 1}, "versions": {},
    }


def test_card_follows_eval_files_and_credits_xed():
    gold = {c: 1 for c in CLASSES}
    xed = _metrics(0.31, 0.5073, weighted_f1=0.4036, always_neutral_accuracy=0.4472, n_single_label=9,
                   top1_vs_gold={"predicted": dict(gold, neutral=77), "gold": dict(gold, neutral=55)})
    examples = {"issue_11": [{"text": t, "label": "joy", "labels": ["joy", "surprise"],
                              "scores": {c: 0.25 for c in CLASSES} | {"joy": 0.731}} for t in SPOKEN_EXAMPLES],
                "everyday": [{"text": t, "label": "neutral", "labels": ["neutral"], "scores": {c: 0.1 for c in CLASSES}}
                             for t in EVERYDAY_LINES]}
    bench = {"threads": 2, "host": {}, "batches": [{"batch_size": 1, "utterances_per_s": 9.0, "p50_ms": 1, "p99_ms": 2}],
             "compare": {"model": "emostream-ekman", "precision": "int8-weights", "rounds": 2,
                         "batches": {"1": {"model_utterances_per_s": [3.0, 4.0], "compare_utterances_per_s": [2.0, 2.0],
                                           "speedup": 1.75}}}}
    card = render_card(_report(), [("host", bench)], _metrics(0.6276, 0.6989, weighted_f1=0.69), xed, examples)
    assert "**macro-F1 0.6276**, accuracy 0.6989" in card  # the eval file, not the training-time 0.6278/0.6983
    assert "macro-F1 0.6278, accuracy 0.6983" in card  # the older figure is named as such
    assert "CC BY 4.0" in card and "ohman2020xed" in card
    assert "top-1 accuracy 0.5073** vs the always-neutral baseline of this split 0.4472 (+6.0 points)" in card
    assert "weighted-F1 0.4036" in card and "| predicted | 1 | 1 | 1 | 1 | 1 | 1 | 77 |" in card
    for text in SPOKEN_EXAMPLES:
        assert f"| {text} | joy | joy, surprise | 0.731 |" in card
    assert sum(f"| {t} | neutral | neutral | 0.100 |" in card for t in EVERYDAY_LINES) == 20
    assert "| 1 | 3.0, 4.0 | 2.0, 2.0 | 1.75 |" in card


def test_card_without_eval_files_keeps_training_figures():
    card = render_card(_report())
    assert "**macro-F1 0.6278**, accuracy 0.6983" in card and "ohman2020xed" not in card and "Static int8" not in card


def test_everyday_lines_are_twenty_distinct_spoken_lines():
    assert len(EVERYDAY_LINES) == len(set(EVERYDAY_LINES)) == 20
    assert not set(EVERYDAY_LINES) & set(SPOKEN_EXAMPLES)


def test_shipped_card_is_rendered_from_its_files(tmp_path):
    # `emostream model card` re-renders; a hand edit or a stale render fails here
    import shutil

    folder = resolve_model(None)[1]
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    write_card(copy)
    assert (copy / "model-card.md").read_text() == (folder / "model-card.md").read_text()


def test_shipped_examples_match_the_shipped_model():
    from emostream.model import load_classifier

    folder = resolve_model(None)[1]
    examples = json.loads((folder / "examples.json").read_text())
    assert [r["text"] for r in examples["issue_11"]] == list(SPOKEN_EXAMPLES)
    assert [r["text"] for r in examples["everyday"]] == list(EVERYDAY_LINES)
    rows = examples["issue_11"] + examples["everyday"]
    preds = load_classifier(None, threads=1).classify([r["text"] for r in rows])
    for row, pred in zip(rows, preds):
        assert (pred.label, list(pred.labels)) == (row["label"], row["labels"]), row["text"]
        assert max(abs(pred.scores[c] - row["scores"][c]) for c in CLASSES) < 1e-3
