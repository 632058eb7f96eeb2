"""hf backend on a tiny randomly initialised BERT built by the test (needs torch: extra ``hf``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.torch

SENTENCES = [
    "i am so angry with you", "this is wonderful news thank you", "i am scared of the dark",
    "my dog died and i am sad", "wow i did not expect that", "that smell is disgusting",
    "the meeting is at three", "please send me the report", "i love this so much",
]


def make_tiny_bert(folder, labels=None, problem_type="multi_label_classification"):
    """Save a tiny random BertForSequenceClassification + a WordPiece tokenizer trained on SENTENCES."""
    torch = pytest.importorskip("torch", reason="torch not installed (extra: hf)")
    transformers = pytest.importorskip("transformers", reason="transformers not installed (extra: hf)")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    from emostream.model.labels import CLASSES

    labels = list(labels or CLASSES)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(SENTENCES * 3, trainers.WordPieceTrainer(vocab_size=200, special_tokens=special))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)}, problem_type=problem_type,
    )
    transformers.BertForSequenceClassification(config).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder


def test_hf_backend_classifies_in_order(tmp_path):
    from emostream.model import Classifier, load_classifier
    from emostream.model.hf_backend import HFClassifier
    from emostream.model.labels import CLASSES

    folder = make_tiny_bert(tmp_path / "tiny")
    clf = load_classifier(f"hf:{folder}", threads=1)
    assert isinstance(clf, HFClassifier) and isinstance(clf, Classifier)
    assert clf.head == "sigmoid" and clf.name == f"hf:{folder}"
    preds = clf.classify(SENTENCES)
    assert len(preds) == len(SENTENCES)
    assert all(set(p.scores) == set(CLASSES) and p.label in CLASSES for p in preds)
    clf.batch_size = 4
    batched = clf.scores(SENTENCES)
    alone = np.concatenate([clf.scores([s]) for s in SENTENCES])
    assert np.abs(batched - alone).max() < 1e-4


def test_hf_backend_folds_goemotions_labels_and_reads_labels_json(tmp_path):
    from emostream.model import load_classifier
    from emostream.model.labels import load_goemotions_labels

    folder = make_tiny_bert(tmp_path / "go", labels=load_goemotions_labels(), problem_type="single_label_classification")
    (folder / "labels.json").write_text(json.dumps({"head": "softmax", "thresholds": {"joy": 0.3}}))
    clf = load_classifier(f"hf:{folder}")
    assert clf.label_source == "goemotions" and clf.thresholds["joy"] == 0.3
    scores = clf.scores(SENTENCES[:3])
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)  # softmax over 28, folded onto 7


def test_hf_backend_rejects_unmappable_labels(tmp_path):
    from emostream.errors import ModelError
    from emostream.model import load_classifier

    folder = make_tiny_bert(tmp_path / "odd", labels=["positive", "negative"])
    with pytest.raises(ModelError, match="cannot be mapped"):
        load_classifier(f"hf:{folder}")
    with pytest.raises(ModelError, match="config.json"):
        load_classifier(f"hf:{tmp_path}")


def test_bench_naive_baseline_runs_with_hf_checkpoint(tmp_path):
    from emostream.bench.model import ModelBenchOptions, run_model_bench

    folder = make_tiny_bert(tmp_path / "tiny")
    opts = ModelBenchOptions(batch_sizes=(8,), count=16, threads=1, naive_model=f"hf:{folder}", naive_count=10)
    result = run_model_bench(opts)
    assert result["naive_utterances_per_s"] > 0 and result["speedup_vs_naive"] > 0
