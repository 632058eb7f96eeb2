"""Training code on a tiny slice with a tiny random model (needs torch: extra ``train``). CI never trains for real."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

from tests.test_model_hf import SENTENCES, make_tiny_bert

pytestmark = pytest.mark.torch

# GoEmotions ids for SENTENCES: anger, gratitude, fear, sadness, surprise, disgust, neutral, neutral, love
IDS = ["2", "15", "14", "25", "26", "11", "27", "27", "18"]


def _tiny_data(folder):
    from emostream.model.labels import DEFAULT_EMOTIONS_FILE, DEFAULT_MAPPING_FILE

    folder.mkdir()
    rng = random.Random(0)
    rows = [f"{s}\t{i}\tid{n}" for n, (s, i) in enumerate(zip(SENTENCES * 6, IDS * 6))]
    rng.shuffle(rows)
    (folder / "train.tsv").write_text("\n".join(rows[:40]) + "\n")
    (folder / "dev.tsv").write_text("\n".join(rows[40:]) + "\n")
    shutil.copy(DEFAULT_EMOTIONS_FILE, folder / "emotions.txt")
    shutil.copy(DEFAULT_MAPPING_FILE, folder / "ekman_mapping.json")
    return folder


def test_tiny_training_run_exports_a_working_onnx_folder(tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed (extra: train)")
    from emostream.model import load_classifier
    from emostream.model.labels import CLASSES
    from emostream.model.onnx_backend import OnnxClassifier
    from emostream.model.train import TrainConfig, train

    base = make_tiny_bert(tmp_path / "base")
    data = _tiny_data(tmp_path / "data")
    out = tmp_path / "models" / "tiny-ekman"
    cfg = TrainConfig(data=data, out=out, base=base, epochs=2, sweep="sigmoid:1e-3,softmax:1e-3", batch_size=8,
                      max_length=32, checkpoint_dir=tmp_path / "ckpt")
    report = train(cfg)

    for name in ("model.onnx", "tokenizer.json", "labels.json", "model-card.md", "training.json"):
        assert (out / name).is_file(), name
    assert len(report["sweep"]) == 4 and report["selected"]["head"] in ("sigmoid", "softmax")
    assert set(report["data"]) == {"train.tsv", "dev.tsv", "emotions.txt", "ekman_mapping.json"}
    assert all(len(v["sha256"]) == 64 for v in report["data"].values())
    assert report["export"]["shipped"] in report["export"]["variants"]
    fp32 = report["export"]["variants"]["fp32"]
    assert fp32["max_abs_logit_diff_vs_torch"] < 1e-3 and fp32["max_abs_score_diff_batched_vs_alone"] < 1e-4
    labels = json.loads((out / "labels.json").read_text())
    assert labels["classes"] == list(CLASSES) and labels["head"] == report["selected"]["head"]
    assert "macro-F1" in (out / "model-card.md").read_text()

    clf = load_classifier(str(out), threads=1)
    assert isinstance(clf, OnnxClassifier)
    texts = SENTENCES + ["ok"]
    batched = clf.scores(texts)
    alone = np.concatenate([clf.scores([t]) for t in texts])
    assert np.abs(batched - alone).max() < 1e-4
    # the saved checkpoint runs through the hf backend and agrees with the exported fp32 graph's head
    hf = load_classifier(f"hf:{tmp_path / 'ckpt'}")
    assert hf.head == clf.head


def test_weight_only_int8_is_exact_per_row(tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed (extra: train)")
    from emostream.model.export import export_onnx, quantize_weights_int8

    base = make_tiny_bert(tmp_path / "base")
    export_onnx(base, tmp_path / "raw.onnx", 32)
    assert quantize_weights_int8(tmp_path / "raw.onnx", tmp_path / "q.onnx", min_elements=1000) > 0
    import onnxruntime as ort

    feeds = {"input_ids": np.array([[2, 10, 11, 3, 0, 0], [2, 12, 13, 14, 15, 3]]), "attention_mask": np.array([[1, 1, 1, 1, 0, 0], [1] * 6])}
    feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
    raw = ort.InferenceSession(str(tmp_path / "raw.onnx")).run(None, feeds)[0]
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    q = ort.InferenceSession(str(tmp_path / "q.onnx"), opts).run(None, feeds)[0]
    q_row = ort.InferenceSession(str(tmp_path / "q.onnx"), opts).run(None, {k: v[:1, :4] for k, v in feeds.items()})[0]
    assert np.abs(raw - q).max() < 0.05  # quantisation error only
    assert np.abs(q[:1] - q_row).max() < 1e-5  # no dependence on the other row or on padding


def test_bad_sweep_and_missing_data(tmp_path):
    from emostream.errors import UsageError
    from emostream.model.train import TrainConfig, parse_sweep, train

    assert parse_sweep("sigmoid:1e-4, softmax:5e-5") == [("sigmoid", 1e-4), ("softmax", 5e-5)]
    with pytest.raises(UsageError, match="HEAD:LR"):
        parse_sweep("relu:1")
    base = make_tiny_bert(tmp_path / "base")
    with pytest.raises(UsageError, match="missing train.tsv"):
        train(TrainConfig(data=tmp_path, out=tmp_path / "o", base=base))


def _tiny_xed(folder):
    folder.mkdir()
    ids = ["1", "5, 8", "4", "6", "7", "3", None, None, "5"]  # None: a neutral-file line
    annotated = [f"{s}\t{i}" for s, i in zip(SENTENCES * 4, ids * 4) if i]
    (folder / "en-annotated.tsv").write_text("\r\n".join(annotated + ["We shall see .\t2"]) + "\r\n")
    neutral = [f"9\t{s}" for s, i in zip(SENTENCES * 4, ids * 4) if i is None]
    (folder / "neu_en.txt").write_text("\n".join(neutral + ["\t\t\t\t"]) + "\n")
    return folder


def test_training_with_xed_spoken_style_and_a_warm_start(tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed (extra: train)")
    from emostream.model.samples import SPOKEN_EXAMPLES
    from emostream.model.train import TrainConfig, train

    base = make_tiny_bert(tmp_path / "base")
    data = _tiny_data(tmp_path / "data")
    xed = _tiny_xed(tmp_path / "xed")
    out = tmp_path / "models" / "tiny-speech"
    cfg = TrainConfig(data=data, out=out, base=base, epochs=1, sweep="sigmoid:1e-3", batch_size=8, max_length=32,
                      checkpoint_dir=tmp_path / "ckpt", xed=xed, spoken_fraction=0.5, length_buckets=True,
                      evals_per_epoch=2, threads=1, quantize=False)
    report = train(cfg)
    # 28 annotated + 8 neutral lines; the anticipation-only line and the empty neutral line are dropped
    assert report["rows"]["xed_train"] + report["rows"]["xed_dev"] == 36
    assert {"xed/en-annotated.tsv", "xed/neu_en.txt"} <= set(report["data"])
    assert [h["epoch"] for h in report["sweep"]] == [0.5, 1.0]
    assert set(report["sweep"][0]["dev_parts"]) == {"goemotions", "xed"}
    assert set(report["dev_parts"]) == {"goemotions", "xed"}
    assert "top1_vs_gold" in report["dev_parts"]["xed"]
    assert [e["text"] for e in report["examples"]] == list(SPOKEN_EXAMPLES)
    card = (out / "model-card.md").read_text()
    assert "XED" in card and "ohman2020xed" in card and "Top-1 label vs gold on XED dev" in card

    # warm start: a second run from the first one's exported folder begins where it ended
    again = TrainConfig(data=data, out=tmp_path / "models" / "tiny-again", base=base, epochs=1, sweep="sigmoid:1e-9",
                        batch_size=8, max_length=32, checkpoint_dir=tmp_path / "ckpt2", init=out, quantize=False)
    train(again)
    from emostream.model.onnx_backend import OnnxClassifier

    before = OnnxClassifier(out).logits(SENTENCES)
    after = OnnxClassifier(tmp_path / "models" / "tiny-again").logits(SENTENCES)
    assert np.abs(before - after).max() < 1e-3


def test_state_from_onnx_folder_reproduces_the_exported_model(tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed (extra: train)")
    from emostream.model.onnx_backend import OnnxClassifier
    from emostream.model.export import state_from_onnx_folder
    from emostream.model.train import TrainConfig, _new_model, train
    from transformers import AutoTokenizer

    from emostream.errors import ModelError
    from emostream.model.export import quantize_weights_int8

    base = make_tiny_bert(tmp_path / "base")
    fp32 = tmp_path / "models" / "tiny-fp32"
    train(TrainConfig(data=_tiny_data(tmp_path / "data"), out=fp32, base=base, epochs=1, sweep="sigmoid:1e-3",
                      batch_size=8, max_length=32, checkpoint_dir=tmp_path / "ckpt", quantize=False))
    # the tiny model may pass the rules as int8-dynamic, which cannot be unpacked: build int8-weights by hand
    out = tmp_path / "models" / "tiny"
    shutil.copytree(fp32, out)
    assert quantize_weights_int8(fp32 / "model.onnx", out / "model.onnx", min_elements=1000) > 0
    meta = json.loads((out / "labels.json").read_text())
    (out / "labels.json").write_text(json.dumps(dict(meta, precision="int8-weights")))
    (fp32 / "labels.json").write_text(json.dumps(dict(meta, precision="int8-dynamic")))
    with pytest.raises(ModelError, match="cannot be unpacked"):
        state_from_onnx_folder(fp32)
    model = _new_model(base, "sigmoid")
    state = state_from_onnx_folder(out)
    assert set(model.state_dict()) - set(state) <= {"bert.embeddings.position_ids"} and set(state) <= set(model.state_dict())
    model.load_state_dict(state, strict=False)
    import torch

    tok = AutoTokenizer.from_pretrained(str(base))
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch_logits = model.eval()(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.numpy()
    onnx_logits = OnnxClassifier(out).logits(SENTENCES)
    assert np.abs(torch_logits - onnx_logits).max() < 0.05  # int8 weight rounding at most


def test_static_int8_folder_is_batch_invariant_and_close(tmp_path):
    # model quantize: weight-only int8 folder → fp32 restored → static QDQ int8 (calibrated on train text)
    pytest.importorskip("onnx", reason="onnx not installed (extra: train)")
    from emostream.model.export import build_static_folder, dequantize_weights
    from emostream.model.onnx_backend import OnnxClassifier
    from emostream.model.train import TrainConfig, train

    from emostream.errors import ModelError
    from emostream.model.export import quantize_weights_int8

    data = _tiny_data(tmp_path / "data")
    fp32 = tmp_path / "models" / "tiny"
    train(TrainConfig(data=data, out=fp32, base=make_tiny_bert(tmp_path / "base"), epochs=1, sweep="sigmoid:1e-3",
                      batch_size=8, max_length=32, checkpoint_dir=tmp_path / "ckpt", quantize=False))
    src = tmp_path / "models" / "tiny-w8"  # a weight-only int8 folder, as shipped before static int8
    shutil.copytree(fp32, src)
    assert quantize_weights_int8(fp32 / "model.onnx", src / "model.onnx", min_elements=1000) > 0
    meta = json.loads((src / "labels.json").read_text())
    (src / "labels.json").write_text(json.dumps(dict(meta, precision="int8-weights")))
    assert dequantize_weights(src / "model.onnx", tmp_path / "restored.onnx") > 0
    (tmp_path / "dyn").mkdir()
    shutil.copy(src / "tokenizer.json", tmp_path / "dyn")
    (tmp_path / "dyn" / "labels.json").write_text(json.dumps(dict(meta, precision="int8-dynamic")))
    with pytest.raises(ModelError, match="int8-weights folder"):
        build_static_folder(tmp_path / "dyn", tmp_path / "nope", data, per_source=4)
    out = tmp_path / "models" / "tiny-static"
    info = build_static_folder(src, out, data, per_source=16, log=lambda m: None)
    assert json.loads((out / "labels.json").read_text())["precision"] == "int8-static"
    assert info["calibration"]["goemotions_train"] == 16 and info["bytes"] == (out / "model.onnx").stat().st_size
    clf, ref = OnnxClassifier(out, batch_size=64), OnnxClassifier(src, batch_size=64)
    assert clf.precision == "int8-static"
    texts = SENTENCES * 3
    batched = clf.scores(texts)
    alone = np.concatenate([clf.scores([t]) for t in texts])
    assert np.abs(batched - alone).max() <= 1e-4  # fixed activation scales: no dependence on batch mates
    assert np.abs(batched - ref.scores(texts)).max() < 0.2  # quantisation error only
    assert info["thresholds_tuned"] is None and info["source_precision"] == "int8-weights"
    assert json.loads((out / "labels.json").read_text())["thresholds"] == meta["thresholds"]

    # --tune-thresholds: the new model's own GoEmotions dev scores pick its thresholds
    tuned_out = tmp_path / "models" / "tiny-static-tuned"
    tuned = build_static_folder(src, tuned_out, data, per_source=16, tune_on_dev=True, log=lambda m: None)["thresholds_tuned"]
    assert tuned["on"] == "GoEmotions dev.tsv"
    assert json.loads((tuned_out / "labels.json").read_text())["thresholds"] == tuned["thresholds"]
    from emostream.model.data import read_goemotions
    from emostream.model.labels import CLASSES, multi_hot
    from emostream.model.metrics import macro_f1

    dev = read_goemotions(data / "dev.tsv")
    gold = np.array([multi_hot(r.classes) for r in dev], dtype=np.float32)
    scores = OnnxClassifier(tuned_out, batch_size=64).scores([r.text for r in dev])
    assert macro_f1(scores, gold, [tuned["thresholds"][c] for c in CLASSES]) == pytest.approx(tuned["macro_f1_after"], abs=1e-4)


def test_state_from_the_shipped_static_int8_folder():
    # --init from the shipped model: QDQ weights dequantized, activation DQs skipped, the fp16 table cast back
    pytest.importorskip("onnx", reason="onnx not installed (extra: train)")
    from emostream.model import resolve_model
    from emostream.model.export import state_from_onnx_folder

    folder = resolve_model(None)[1]
    layers = json.loads((folder / "training.json").read_text())["base"]["num_layers"]
    state = state_from_onnx_folder(folder)
    assert tuple(state["bert.embeddings.word_embeddings.weight"].shape) == (30522, 384)
    assert tuple(state[f"bert.encoder.layer.{layers - 1}.output.dense.weight"].shape) == (384, 1536)
    assert tuple(state["classifier.weight"].shape) == (7, 384)
    assert sum(k.endswith("attention.self.query.weight") for k in state) == layers


def test_distillation_no_export_delta_round_trip_and_export_on_the_mixed_dev(tmp_path):
    """The remote-GPU path: a teacher checkpoint (no export), a distilled smaller student with XED rows
    weighted, carried back as a delta (no word embeddings, fp16) and rebuilt, then exported with
    thresholds tuned on GoEmotions dev + XED dev."""
    pytest.importorskip("onnx", reason="onnx not installed (extra: train)")
    import torch
    from safetensors.torch import load_file

    from emostream.errors import UsageError
    from emostream.model.export import export_checkpoint
    from emostream.model.train import FROZEN_IN_DELTA, TrainConfig, checkpoint_from_delta, train, write_delta

    base = make_tiny_bert(tmp_path / "base")
    data = _tiny_data(tmp_path / "data")
    xed = _tiny_xed(tmp_path / "xed")
    common = dict(data=data, base=base, epochs=1, batch_size=8, max_length=32, xed=xed, threads=1, export=False)
    teacher = train(TrainConfig(out=tmp_path / "t", checkpoint_dir=tmp_path / "teacher", sweep="sigmoid:1e-3", **common))
    assert "export" not in teacher and teacher["teacher"] is None
    assert (tmp_path / "teacher" / "training.json").is_file() and not (tmp_path / "t").exists()

    student = train(TrainConfig(out=tmp_path / "s", checkpoint_dir=tmp_path / "student", sweep="softmax:1e-3", layers=1,
                                teacher=tmp_path / "teacher", distill_weight=0.7, xed_weight=0.5, **common))
    summary = student["teacher"]
    assert summary["checkpoint"] == "teacher" and summary["head"] == "sigmoid" and summary["distill_weight"] == 0.7
    assert set(summary["dev_parts"]) == {"goemotions", "xed"}
    assert student["settings"]["xed_weight"] == 0.5
    assert json.loads((tmp_path / "student" / "config.json").read_text())["num_hidden_layers"] == 1

    info = write_delta(tmp_path / "student", tmp_path / "delta.safetensors")
    delta = load_file(str(tmp_path / "delta.safetensors"))
    assert info["tensors"] == len(delta) and not set(FROZEN_IN_DELTA) & set(delta)
    assert {v.dtype for v in delta.values()} == {torch.float16}
    rebuilt = checkpoint_from_delta(tmp_path / "delta.safetensors", base, tmp_path / "rebuilt")
    original, again = load_file(str(tmp_path / "student" / "model.safetensors")), load_file(str(rebuilt / "model.safetensors"))
    assert set(original) == set(again)
    assert max(float((original[k] - again[k]).abs().max()) for k in original) < 1e-2  # fp16 rounding only
    with pytest.raises(UsageError, match="not a file written by write_delta"):
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
        checkpoint_from_delta(tmp_path / "other.safetensors", base, tmp_path / "nope")

    out = tmp_path / "models" / "tiny-distilled"
    result = export_checkpoint(rebuilt, data, out, quantize=False, log=lambda m: None, xed=xed)
    assert result["dev_metrics"]["n"] == 14 + student["rows"]["xed_dev"]  # GoEmotions dev + XED dev
    report = json.loads((out / "training.json").read_text())
    assert report["teacher"]["checkpoint"] == "teacher" and report["export"]["shipped"] == "fp32"
    assert (out / "model-card.md").is_file()


def test_train_cli_rejects_distillation_options_without_their_inputs(tmp_path, capsys):
    from emostream.cli import main

    assert main(["model", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--distill-weight", "0.3"]) == 2
    assert "--distill-weight needs --teacher" in capsys.readouterr().err
    assert main(["model", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--xed-weight", "2"]) == 2
    assert "--xed-weight needs --xed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["model", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--distill-weight", "1.5"])


def test_a_crafted_delta_file_cannot_write_outside_its_checkpoint(tmp_path_factory):
    # A delta file is outside input (carried back from another machine): whatever metadata keys it
    # carries, unpacking writes only config/labels/training.json into the checkpoint folder.
    pytest.importorskip("onnx", reason="onnx not installed (extra: train)")
    import torch
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from safetensors.torch import save_file

    from emostream.model.train import DELTA_FILES, checkpoint_from_delta

    base = make_tiny_bert(tmp_path_factory.mktemp("base"))
    keys = st.one_of(st.sampled_from(["../escape.json", "/tmp/abs.json", "sub/x.json", "model.safetensors", ".."]),
                     st.text(min_size=1, max_size=12))

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(extra=st.dictionaries(keys, st.text(max_size=20), max_size=4))
    def check(extra):
        root = tmp_path_factory.mktemp("unpack")
        meta = {**extra, "config.json": (base / "config.json").read_text(), "labels.json": "{}"}
        save_file({"classifier.bias": torch.zeros(7)}, str(root / "d.safetensors"), metadata=meta)
        out = checkpoint_from_delta(root / "d.safetensors", base, root / "ckpt")
        written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        allowed = {"d.safetensors", "ckpt/model.safetensors"} | {f"ckpt/{n}" for n in DELTA_FILES if n in meta}
        copied = {f"ckpt/{p.name}" for p in base.iterdir() if p.name != "model.safetensors" and p.name not in DELTA_FILES}
        assert written <= allowed | copied and out == root / "ckpt"
        assert not (root.parent / "escape.json").exists()

    check()
