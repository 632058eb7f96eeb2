"""The shipped ONNX model, the loader's spec resolution and the classify/eval commands (no torch)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emostream.cli import main
from emostream.errors import ModelError
from emostream.model import DEFAULT_MODEL, Classifier, load_classifier, models_dirs, resolve_model
from emostream.model.labels import CLASSES
from emostream.model.onnx_backend import OnnxClassifier, default_parallel_runs, default_small_run_tokens, default_threads
from emostream.model.samples import UTTERANCES

from tests.conftest import REPO


@pytest.fixture(scope="module")
def clf() -> OnnxClassifier:
    return load_classifier(None, threads=1)


def test_shipped_model_loads_by_default_and_by_name(clf):
    assert isinstance(clf, Classifier) and isinstance(clf, OnnxClassifier)
    assert clf.name == DEFAULT_MODEL
    assert set(clf.thresholds) == set(CLASSES)
    backend, folder = resolve_model(DEFAULT_MODEL)
    assert backend == "onnx" and (folder / "model.onnx").is_file()
    for name in ("model.onnx", "tokenizer.json", "labels.json", "model-card.md"):
        assert (REPO / "models" / DEFAULT_MODEL / name).is_file(), name
    assert sum(p.stat().st_size for p in (REPO / "models" / DEFAULT_MODEL).iterdir()) < 40e6


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("I am so furious with you", "anger"),
        ("Thank you so much, this is wonderful news", "joy"),
        ("I'm really scared of what happens next", "fear"),
        ("My dog died this morning and I miss him so much", "sadness"),
        ("Please send the report before the meeting at three", "neutral"),
        ("That smell is absolutely disgusting, gross", "disgust"),
        ("Wow, I did not expect that at all!", "surprise"),
    ],
)
def test_obvious_sentences(clf, text, label):
    (pred,) = clf.classify([text])
    assert pred.label == label, pred.scores
    assert set(pred.scores) == set(CLASSES)
    assert all(0.0 <= v <= 1.0 for v in pred.scores.values())


def test_batching_preserves_order_and_matches_one_by_one(clf):
    texts = list(UTTERANCES) + ["ok", "I " + "really " * 60 + "hate waiting"]  # very short and over max length
    clf.batch_size = 8  # several length groups
    batched = clf.scores(texts)
    alone = np.concatenate([clf.scores([t]) for t in texts])
    assert batched.shape == (len(texts), 7)
    assert np.abs(batched - alone).max() < 1e-4
    reversed_ = clf.scores(texts[::-1])[::-1]
    assert np.abs(batched - reversed_).max() < 1e-4
    margins = batched - np.array([clf.thresholds[c] for c in CLASSES])
    assert [p.label for p in clf.classify(texts)] == [CLASSES[i] for i in margins.argmax(axis=1)]
    assert clf.classify([]) == []


def test_groups_are_padded_to_their_own_longest_text(clf, monkeypatch):
    widths = []
    real_run = clf.session.run

    def spy(outputs, feeds):
        widths.append(feeds["input_ids"].shape)
        return real_run(outputs, feeds)

    monkeypatch.setattr(clf.session, "run", spy)
    clf.batch_size = 2
    clf.classify(["a b c d e f g h i j k l m n o p", "hi", "hello there", "fine"])
    assert [w[0] for w in widths] == [2, 2]
    assert widths[0][1] < widths[1][1]  # short group not padded to the long text
    assert widths[1][1] == len(clf.tokenizer.encode("a b c d e f g h i j k l m n o p").ids)


def test_bad_specs_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'nope'.*available: .*emostream-ekman"):
        load_classifier("nope")
    with pytest.raises(ModelError, match="no model.onnx"):
        load_classifier(str(tmp_path))
    with pytest.raises(ModelError, match="hf model folder"):
        load_classifier(f"hf:{tmp_path / 'missing'}")
    broken = tmp_path / "broken"
    shutil.copytree(REPO / "models" / DEFAULT_MODEL, broken)
    (broken / "labels.json").write_text(json.dumps({"classes": ["a"], "head": "sigmoid"}))
    with pytest.raises(ModelError, match="classes"):
        load_classifier(str(broken))
    (broken / "model.onnx").write_bytes(b"not onnx")
    (broken / "labels.json").write_text(json.dumps({"classes": list(CLASSES), "head": "sigmoid"}))
    with pytest.raises(ModelError, match="ONNX Runtime cannot load"):
        load_classifier(str(broken))


def test_models_dir_env_and_folder_path(tmp_path, monkeypatch):
    shutil.copytree(REPO / "models" / DEFAULT_MODEL, tmp_path / "mine")
    monkeypatch.setenv("EMOSTREAM_MODELS_DIR", str(tmp_path))
    assert models_dirs()[0] == tmp_path
    assert load_classifier("mine").name == "mine"
    assert load_classifier(str(tmp_path / "mine"), threads=1).classify(["hello"])[0].label in CLASSES


def test_classify_command(capsys):
    assert main(["classify", "I am so furious with you", "thank you, that's lovely"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["text"] for d in lines] == ["I am so furious with you", "thank you, that's lovely"]
    assert lines[0]["label"] == "anger" and lines[1]["label"] == "joy"
    assert list(lines[0]["scores"]) == list(CLASSES)


def test_classify_command_reads_stdin_refuses_blank_text_and_bad_threads(capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("I am so furious with you\n\nthank you, that's lovely\n"))
    assert main(["classify", "-"]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == [
        "I am so furious with you", "thank you, that's lovely"]
    assert main(["classify", "fine", "  "]) == 2  # the worker dead-letters blank text; classify says so
    assert "text 2 is blank" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["classify", "--threads", "-3", "hi"])
    assert exc.value.code == 2 and "--threads: must be at least 1" in capsys.readouterr().err


def test_classify_takes_the_python_model_spec_the_worker_takes(capsys):
    assert main(["classify", "--model", "python:tests.worker_helpers:stub_classifier", "I am so happy"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "joy"


def test_classify_command_bad_model(capsys):
    assert main(["classify", "hi", "--model", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("emostream: error: unknown model 'nope'") and err.count("\n") == 1


def test_eval_command(tmp_path, capsys):
    path = tmp_path / "e.tsv"
    path.write_text("I am so furious with you\tanger\nthank you so much, I love it\tjoy\nsee you at noon\tneutral\n")
    assert main(["eval", str(path), "--format", "tsv"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["n"] == 3 and result["accuracy"] == 1.0 and result["model"] == DEFAULT_MODEL
    assert "100%" in captured.err
    bad = tmp_path / "bad.tsv"
    bad.write_text("fine\t17\tx\nbroken\t99\tx\n")
    assert main(["eval", str(bad), "--format", "goemotions"]) == 2
    assert "bad.tsv:2: unknown label id 99" in capsys.readouterr().err


def test_label_and_labels_follow_the_eval_rule(clf):
    from emostream.model.metrics import predicted_sets, thresholds_vector, top_classes

    # "But you're lying.": disgust scores highest but misses its threshold, anger passes its own
    texts = list(UTTERANCES) + ["But you're lying.", "Are you coming to the party tonight?"]
    preds = clf.classify(texts)
    scores = clf.scores(texts)
    t = thresholds_vector(clf.thresholds)
    sets = predicted_sets(scores, t)
    for pred, top, row in zip(preds, top_classes(scores, t), sets):
        assert pred.label == CLASSES[top] == pred.labels[0]
        assert set(pred.labels) == {CLASSES[j] for j in np.flatnonzero(row)}
    lying = preds[-2]
    assert lying.scores["disgust"] > lying.scores["anger"]  # the raw argmax would say disgust
    assert lying.scores["disgust"] < clf.thresholds["disgust"] and lying.scores["anger"] >= clf.thresholds["anger"]
    assert lying.label == "anger"


def test_classify_json_has_labels(capsys):
    assert main(["classify", "this makes me furious", "Are you coming to the party tonight?"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert list(lines[0]) == ["text", "label", "scores", "labels"]
    assert lines[0]["labels"][0] == lines[0]["label"] == "anger"
    assert all(set(d["labels"]) <= set(CLASSES) and d["labels"] for d in lines)


def test_small_runs_take_the_one_thread_session_and_score_the_same():
    # Issue #16: one utterance at low load runs without waking a thread pool; the scores must not
    # depend on which session ran them (the batch-invariance rule of the shipped model).
    assert load_classifier(None, threads=2).small_run_tokens == 0  # off by default: +112 MB RSS
    pooled = OnnxClassifier(load_classifier(None, threads=2).folder, threads=2, small_run_tokens=128)
    assert pooled.small_run_tokens == 128 and pooled._small_session is None  # made on first use only
    texts = list(UTTERANCES)[:64]
    batched = pooled.scores(texts)
    assert pooled._small_session is None  # a batch of 64 is not small
    alone = np.concatenate([pooled.scores([t]) for t in texts])
    assert pooled._small_session is not None
    assert np.abs(batched - alone).max() <= 1e-4


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "12 8"])
def test_a_bad_small_run_tokens_variable_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("EMOSTREAM_MODEL_SMALL_RUN_TOKENS", value)
    with pytest.raises(ModelError, match="EMOSTREAM_MODEL_SMALL_RUN_TOKENS"):
        load_classifier(None, threads=2)
    monkeypatch.setenv("EMOSTREAM_MODEL_SMALL_RUN_TOKENS", " 64 ")
    assert load_classifier(None, threads=2).small_run_tokens == 64


def test_model_runs_one_thread_each_and_as_many_at_once_as_cpus_it_may_use(monkeypatch):
    monkeypatch.delenv("EMOSTREAM_MODEL_THREADS", raising=False)
    assert default_parallel_runs(allowed={1}) == 1  # taskset -c 1
    assert default_parallel_runs(allowed={0, 2, 5}) == 3
    assert default_threads() is None
    clf = load_classifier(None)
    assert clf.threads == 1 and clf.session.get_session_options().intra_op_num_threads == 1
    assert clf.parallel_runs == len(os.sched_getaffinity(0)) and clf.batch_size == 8
    monkeypatch.setenv("EMOSTREAM_MODEL_THREADS", "2")
    explicit = load_classifier(None)
    assert explicit.threads == 2 and explicit.parallel_runs == 1  # the variable wins: ORT's own pool


def test_parallel_runs_give_the_same_scores_in_the_same_order():
    texts = list(UTTERANCES)[:40] + ["ok", "what a wonderful, wonderful day this has been for all of us here"] * 10
    serial = OnnxClassifier(resolve_model(None)[1], threads=1, batch_size=4)
    parallel = OnnxClassifier(resolve_model(None)[1], threads=1, batch_size=4, parallel_runs=3)
    assert np.array_equal(serial.scores(texts), parallel.scores(texts))
    assert parallel._runner is not None  # 15 runs went through the pool
    assert [p.label for p in parallel.classify(texts[:1])] == [serial.classify(texts[:1])[0].label]


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5"])
def test_a_bad_model_threads_variable_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("EMOSTREAM_MODEL_THREADS", value)
    with pytest.raises(ModelError, match="EMOSTREAM_MODEL_THREADS"):
        load_classifier(None)


def test_a_process_pinned_to_one_cpu_runs_the_model_on_one_thread(monkeypatch):
    monkeypatch.delenv("EMOSTREAM_MODEL_THREADS", raising=False)
    before = os.sched_getaffinity(0)
    if len(before) < 2:
        pytest.skip("needs two CPUs")
    os.sched_setaffinity(0, {min(before)})
    try:
        clf = load_classifier(None)
        assert clf.session.get_session_options().intra_op_num_threads == 1
        assert len(clf.classify(["hello there"])) == 1
    finally:
        os.sched_setaffinity(0, before)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_model_env_numbers_are_whole_ascii_numbers_or_a_clear_error(value):
    # Outside input: any text in EMOSTREAM_MODEL_THREADS / _SMALL_RUN_TOKENS either reads as the
    # number it spells in ASCII digits or is refused with a ModelError naming the variable (never a
    # bare ValueError, e.g. for "²", whose str.isdigit() is True).
    mp = pytest.MonkeyPatch()
    try:
        for name, read, minimum in (("EMOSTREAM_MODEL_THREADS", default_threads, 1),
                                    ("EMOSTREAM_MODEL_SMALL_RUN_TOKENS", default_small_run_tokens, 0)):
            if "\x00" in value:
                continue  # the environment cannot hold NUL
            mp.setenv(name, value)
            text = value.strip()
            if not text:
                assert read() in (None, 0)
            elif text.isascii() and text.isdigit() and int(text) >= minimum:
                assert read() == int(text)
            else:
                with pytest.raises(ModelError, match=name):
                    read()
    finally:
        mp.undo()


def test_a_superscript_digit_is_refused_clearly(monkeypatch):
    monkeypatch.setenv("EMOSTREAM_MODEL_THREADS", "²")
    with pytest.raises(ModelError, match="EMOSTREAM_MODEL_THREADS"):
        default_threads()


_json_leaf = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8)
_json_any = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                         max_leaves=12)


def _labels_meta() -> st.SearchStrategy:
    """Mostly well-formed labels.json objects with one field (or none) replaced by anything."""
    good = st.fixed_dictionaries(
        {"classes": st.just(list(CLASSES)), "head": st.sampled_from(["sigmoid", "softmax"])},
        optional={"thresholds": st.dictionaries(st.sampled_from(CLASSES), st.floats(0, 1), max_size=len(CLASSES)),
                  "max_length": st.integers(1, 512)})
    return st.one_of(
        good,
        st.tuples(good, st.sampled_from(["classes", "head", "thresholds", "max_length"]), _json_any).map(
            lambda t: {**t[0], t[1]: t[2]}),
        _json_any,
    )


@settings(max_examples=300, deadline=None)
@given(meta=_labels_meta())
def test_any_labels_json_loads_checked_or_is_a_model_error(tmp_path_factory, meta):
    # A model folder can come from anywhere (--model PATH, --teacher): its labels.json is outside input.
    from emostream.model.onnx_backend import MAX_LENGTH_LIMIT, read_labels_file

    folder = tmp_path_factory.mktemp("labels")
    (folder / "labels.json").write_text(json.dumps(meta, allow_nan=True))
    try:
        got = read_labels_file(folder)
    except ModelError as exc:
        assert "labels.json" in str(exc)
        return
    assert tuple(got["classes"]) == CLASSES and got["head"] in ("sigmoid", "softmax")
    assert set(got["thresholds"]) == set(CLASSES) and all(0.0 <= v <= 1.0 for v in got["thresholds"].values())
    assert isinstance(got["max_length"], int) and 1 <= got["max_length"] <= MAX_LENGTH_LIMIT
    assert isinstance(meta, dict) and {k: float(v) for k, v in meta.get("thresholds", {}).items()}.items() <= got["thresholds"].items()


_SHIPPED: list[Classifier] = []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=40))
def test_the_shipped_model_classifies_any_text_a_transcript_can_hold(texts):
    # The worker hands the shipped model a whole transaction in one call, and a call that raises
    # is split until only the failing texts fail: a text that made it raise would cost its
    # transaction ~3 x. Transcripts are decoded, valid Unicode (lone surrogates are refused),
    # so any such text must classify.
    if not _SHIPPED:
        _SHIPPED.append(load_classifier(None))
    preds = _SHIPPED[0].classify(texts)
    assert len(preds) == len(texts)
    for p in preds:
        assert p.label in CLASSES and set(p.scores) == set(CLASSES)
        assert all(0.0 <= v <= 1.0 for v in p.scores.values())


def test_a_whole_transaction_is_tokenised_in_small_calls():
    # The worker hands the model 1,024 texts at once; tokenised in one encode_batch, 1,024 texts of
    # 8 KB held ~340 MB more at their peak (the Encodings keep the tokens truncation cut off),
    # against ~90 MB tokenised 64 at a time, as the worker's calls of 64 used to be.
    from emostream.model import onnx_backend

    clf = load_classifier(None)
    sizes: list[int] = []
    real = clf.tokenizer

    class Counting:
        def __getattr__(self, name):
            return getattr(real, name)

        def encode_batch(self, batch):
            sizes.append(len(batch))
            return real.encode_batch(batch)

    clf.tokenizer = Counting()
    texts = [f"text number {i} " * (i % 9 + 1) for i in range(300)]
    got = clf.logits(texts)
    clf.tokenizer = real
    assert sizes and max(sizes) <= onnx_backend.TOKENIZE_TEXTS and sum(sizes) == len(texts)
    for i in (0, 63, 64, 65, 127, 128, 299):  # each text's own logits, across the tokenizer calls' edges
        assert np.allclose(got[i], clf.logits([texts[i]])[0], atol=1e-4)
