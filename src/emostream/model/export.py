"""ONNX export and packaging for ``emostream model train`` / ``model export``: a trained torch
checkpoint → ONNX (opset 17) → ORT BERT fusions → precision variants (fp32; int8 dynamic; int8
weight-only; int8 static QDQ calibrated on training text) → each scored on dev and checked for batch
invariance → the shipping rule picks one → ``model.onnx`` + ``tokenizer.json`` + ``labels.json``.

Needs the ``train`` extra (torch, transformers, onnx) for the export itself; torch is imported inside
functions only, so this module imports on a runtime install.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from emostream.errors import ModelError
from emostream.model.data import read_goemotions
from emostream.model.labels import CLASSES, multi_hot
from emostream.model.metrics import evaluate, macro_f1, tune_thresholds


INT8_MAX_DROP = 0.01


BATCH_TOLERANCE = 1e-4


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "tokenizers", "onnx", "onnxruntime", "numpy", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _clean_tokenizer_json(src: Path, dst: Path, max_length: int) -> None:
    """Copy tokenizer.json without fixed-length padding (the runtime pads per length group)."""
    data = json.loads(src.read_text(encoding="utf-8"))
    data["padding"] = None
    data["truncation"] = {"direction": "Right", "max_length": max_length, "strategy": "LongestFirst", "stride": 0}
    dst.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def export_onnx(checkpoint: Path, path: Path, max_length: int) -> str:
    """Export the checkpoint to ONNX (fp32, dynamic batch/sequence axes); returns the exporter used."""
    import torch
    from transformers import AutoModelForSequenceClassification

    # Eager attention: the plain ops trace into a graph ORT's BERT fusions recognise.
    model = AutoModelForSequenceClassification.from_pretrained(
        str(checkpoint), dtype=torch.float32, attn_implementation="eager", local_files_only=True
    ).eval()
    ids = torch.randint(5, min(2000, model.config.vocab_size), (2, 16))  # any in-vocabulary ids trace the graph
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    tt = torch.zeros_like(ids)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
            "token_type_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}}
    kwargs = dict(input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["logits"],
                  dynamic_axes=axes, opset_version=17, do_constant_folding=True)
    with torch.no_grad():
        try:
            torch.onnx.export(model, (ids, mask, tt), str(path), dynamo=False, **kwargs)
            return "torchscript"
        except Exception as exc:  # the legacy exporter may be gone in newer torch
            print(f"[train] torchscript export failed ({exc}); trying the dynamo exporter", file=sys.stderr)
            torch.onnx.export(model, (ids, mask, tt), str(path), dynamo=True, external_data=False, **kwargs)
            return "dynamo"


def optimize_onnx(src: Path, dst: Path, num_heads: int, hidden: int) -> bool:
    """ORT transformer fusions (attention, layer norm, GELU) → faster CPU inference; False if unavailable."""
    try:
        from onnxruntime.transformers import optimizer

        opt = optimizer.optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden, opt_level=1)
        opt.save_model_to_file(str(dst))
        return True
    except Exception as exc:
        print(f"[train] ORT transformer fusion skipped ({exc})", file=sys.stderr)
        shutil.copyfile(src, dst)
        return False


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8, per-channel weights. reduce_range avoids u8s8 saturation on AVX2 CPUs without VNNI."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused contrib ops (Attention, SkipLayerNorm) defeat ONNX shape inference; their outputs are float.
    quantize_dynamic(str(src), str(dst), per_channel=True, reduce_range=True, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _replace_initializers(model: Any, keep: list[Any], nodes: list[Any], dst: Path) -> None:
    """Give ``model`` the initializers ``keep``, put ``nodes`` (which rebuild the replaced ones)
    first in its graph, and save it to ``dst``."""
    import onnx

    graph = model.graph
    del graph.initializer[:]
    graph.initializer.extend(keep)
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)
    onnx.save(model, str(dst))


def quantize_weights_int8(src: Path, dst: Path, min_elements: int = 4096) -> int:
    """Weight-only int8: every large float initializer becomes int8 (per-channel symmetric scales)
    + a DequantizeLinear node. The runtime folds those back to fp32 at load time, so the file is
    ~4x smaller while inference stays plain fp32: exact, and independent of batch composition
    (dynamic int8 quantizes activations per tensor, so a text's scores depend on its batch mates).
    Returns the number of initializers quantized."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    done = 0
    keep, nodes = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32 or arr.ndim != 2 or arr.size < min_elements:
            keep.append(init)
            continue
        # Per-channel along the axis with more rows: MatMul weights are [in, out] (axis 1),
        # the embedding table is [vocab, hidden] (axis 0) — both give one scale per output row/column.
        axis = 0 if arr.shape[0] > arr.shape[1] else 1
        amax = np.abs(arr).max(axis=1 - axis)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        shaped = scale[:, None] if axis == 0 else scale[None, :]
        q = np.clip(np.round(arr / shaped), -127, 127).astype(np.int8)
        name = init.name
        keep += [numpy_helper.from_array(q, name + "_q8"), numpy_helper.from_array(scale, name + "_scale"),
                 numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), name + "_zp")]
        nodes.append(helper.make_node("DequantizeLinear", [name + "_q8", name + "_scale", name + "_zp"], [name],
                                      axis=axis, name=name + "_dq"))
        done += 1
    _replace_initializers(model, keep, nodes, dst)
    return done


def _onnx_scores(folder: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from emostream.model.onnx_backend import OnnxClassifier

    clf = OnnxClassifier(folder, batch_size=64)
    from emostream.model.onnx_backend import scores_from_logits

    logits = clf.logits(texts)
    return logits, scores_from_logits(logits, clf.head)


def batch_independence(folder: Path, texts: list[str]) -> float:
    """Max |score(batched) - score(alone)| over ``texts``: 0 up to float noise for an exact model."""
    from emostream.model.onnx_backend import OnnxClassifier

    clf = OnnxClassifier(folder, batch_size=64)
    batched = clf.scores(texts)
    alone = np.concatenate([clf.scores([t]) for t in texts])
    return float(np.abs(batched - alone).max())


def build_model_folder(ckpt: Path, out: Path, labels_meta: dict, dev_texts: list[str], dev_gold: np.ndarray,
                       torch_logits: np.ndarray, max_length: int, quantize: bool = True, log=print) -> dict:
    """Export ``ckpt`` to ONNX variants (fp32, dynamic int8, weight-only int8), score each on dev,
    pick the one to ship and write model.onnx/tokenizer.json/labels.json into ``out``.

    Rule: the smallest variant whose dev macro-F1 is within 0.01 of fp32 AND whose scores do not
    depend on batch composition (max diff ≤ 1e-4) ships; thresholds are re-tuned on its dev scores.
    """
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((ckpt / "config.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw, fused = tmp / "raw.onnx", tmp / "fused.onnx"
        exporter = export_onnx(ckpt, raw, max_length)
        fusion = optimize_onnx(raw, fused, int(config.get("num_attention_heads", 0)), int(config.get("hidden_size", 0)))
        variants = {}
        for kind in ("fp32", "int8-dynamic", "int8-weights") if quantize else ("fp32",):
            folder = tmp / kind
            folder.mkdir()
            if kind == "fp32":
                shutil.copyfile(fused, folder / "model.onnx")
            elif kind == "int8-dynamic":
                quantize_int8(fused, folder / "model.onnx")
            else:
                quantize_weights_int8(fused, folder / "model.onnx")
            _clean_tokenizer_json(ckpt / "tokenizer.json", folder / "tokenizer.json", max_length)
            (folder / "labels.json").write_text(json.dumps(dict(labels_meta, precision=kind), indent=2) + "\n", encoding="utf-8")
            logits, scores = _onnx_scores(folder, dev_texts)
            thresholds = tune_thresholds(scores, dev_gold)
            sample = slice(0, min(256, len(dev_texts)))
            variants[kind] = {
                "folder": folder, "scores": scores, "thresholds": thresholds,
                "dev_macro_f1": round(macro_f1(scores, dev_gold, thresholds), 4),
                "max_abs_logit_diff_vs_torch": round(float(np.abs(logits[sample] - torch_logits[sample]).max()), 5),
                "max_abs_score_diff_batched_vs_alone": round(batch_independence(folder, dev_texts[:64]), 6),
                "bytes": (folder / "model.onnx").stat().st_size,
            }
            v = variants[kind]
            log(f"onnx {kind}: dev macro-F1 {v['dev_macro_f1']}, max |logit diff| vs torch {v['max_abs_logit_diff_vs_torch']}, "
                f"batched-vs-alone {v['max_abs_score_diff_batched_vs_alone']}, {v['bytes'] / 1e6:.1f} MB")
        ok = [k for k, v in variants.items() if k == "fp32" or (
            variants["fp32"]["dev_macro_f1"] - v["dev_macro_f1"] < INT8_MAX_DROP
            and v["max_abs_score_diff_batched_vs_alone"] <= BATCH_TOLERANCE)]
        chosen = min(ok, key=lambda k: variants[k]["bytes"])
        pick = variants[chosen]
        meta = dict(labels_meta, precision=chosen,
                    thresholds={c: round(float(t), 4) for c, t in zip(CLASSES, pick["thresholds"])})
        shutil.copyfile(pick["folder"] / "model.onnx", out / "model.onnx")
        shutil.copyfile(pick["folder"] / "tokenizer.json", out / "tokenizer.json")
        (out / "labels.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        dev_metrics = evaluate(pick["scores"], dev_gold, pick["thresholds"])
    log(f"shipping {chosen}: dev macro-F1 {dev_metrics['macro_f1']}, accuracy {dev_metrics['accuracy']}")
    return {
        "exporter": exporter, "ort_fusion": fusion, "opset": 17,
        "variants": {k: {kk: vv for kk, vv in v.items() if kk not in ("folder", "scores", "thresholds")} for k, v in variants.items()},
        "shipped": chosen,
        "rule": f"smallest variant with dev macro-F1 drop < {INT8_MAX_DROP} vs fp32 and batched-vs-alone score diff <= {BATCH_TOLERANCE}",
        "thresholds": meta["thresholds"], "dev_metrics": dev_metrics,
    }


def export_checkpoint(ckpt: Path, data: Path, out: Path, quantize: bool = True, log=print, xed: Path | None = None) -> dict:
    """Re-export an existing checkpoint (from ``model train``) without training: ONNX variants,
    dev scoring, shipping rule as in :func:`build_model_folder` (on GoEmotions dev, plus our XED dev
    split when ``xed`` is given, as training selected on). Writes ``out/training.json`` from the
    checkpoint's own when ``out`` has none, and updates its export, dev metrics and thresholds."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from emostream.model.data import read_xed_split
    from emostream.model.train import predict_logits

    ckpt, out = Path(ckpt), Path(out)
    labels_meta = json.loads((ckpt / "labels.json").read_text(encoding="utf-8"))
    dev_rows = read_goemotions(Path(data) / "dev.tsv")
    if xed:
        dev_rows = dev_rows + read_xed_split(Path(xed), "dev")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "training.json").is_file() and (ckpt / "training.json").is_file():
        shutil.copyfile(ckpt / "training.json", out / "training.json")
    tokenizer = AutoTokenizer.from_pretrained(str(ckpt), local_files_only=True)
    max_length = int(labels_meta.get("max_length", 128))
    dev_enc = tokenizer([r.text for r in dev_rows], truncation=True, max_length=max_length)["input_ids"]
    dev_gold = np.array([multi_hot(r.classes) for r in dev_rows], dtype=np.float32)
    model = AutoModelForSequenceClassification.from_pretrained(str(ckpt), local_files_only=True).float()
    torch_logits = predict_logits(model, dev_enc, labels_meta.get("pad_token_id", 0), "cpu")
    del model
    export = build_model_folder(ckpt, out, labels_meta, [r.text for r in dev_rows], dev_gold, torch_logits,
                                max_length, quantize=quantize, log=log)
    dev_metrics = export.pop("dev_metrics")
    report_path = out / "training.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        report.update(export=export, dev_metrics=dev_metrics, thresholds=export["thresholds"])
        report.setdefault("versions_export", _versions())
        report["versions_export"] = _versions()
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        from emostream.model.card import write_card

        write_card(out, report)
    return {"export": export, "dev_metrics": dev_metrics}


def state_from_onnx_folder(folder: Path) -> dict:
    """The weights of a model folder this pipeline exported (ORT-fused graph, fp32 or weight-only
    int8) as a BERT-for-classification state dict, so training can go on from a shipped model.

    Fused ops are unpacked: Attention's packed ``[in, 3·out]`` QKV weight → query/key/value Linear
    weights, MatMul ``[in, out]`` → Linear ``[out, in]``; int8 weights are dequantized (so the start
    differs from the original torch weights by the int8 rounding only).
    """
    import re

    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(Path(folder) / "model.onnx")).graph
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    precision = json.loads((Path(folder) / "labels.json").read_text(encoding="utf-8")).get("precision", "fp32")
    if precision not in ("fp32", "int8-weights", "int8-static"):
        raise ModelError(f"{folder}: precision {precision!r} cannot be unpacked into torch weights "
                         "(fp32, int8-weights and int8-static can)")
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in arrays:  # weights only, not activations
            q, scale = arrays[node.input[0]].astype(np.float32), arrays[node.input[1]].astype(np.float32)
            if len(node.input) > 2 and node.input[2] in arrays:
                zero = arrays[node.input[2]].astype(np.float32)
                q = q - (zero.reshape([-1 if i == next((a.i for a in node.attribute if a.name == "axis"), 1) else 1
                                       for i in range(q.ndim)]) if zero.ndim else zero)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            if scale.ndim:
                shape[axis] = -1
            arrays[node.output[0]] = q * scale.reshape(shape)
        elif node.op_type == "Cast" and node.input[0] in arrays:  # fp16-stored tables (static int8 files)
            arrays[node.output[0]] = arrays[node.input[0]].astype(np.float32)
    state: dict[str, np.ndarray] = {}
    layer = 0
    for node in graph.node:
        if node.op_type == "EmbedLayerNormalization":
            names = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
                     "LayerNorm.weight", "LayerNorm.bias")
            for name, source in zip(names, node.input[2:7]):
                state[f"bert.embeddings.{name}"] = arrays[source]
        elif node.op_type == "Attention":
            w, b = arrays[node.input[1]], arrays[node.input[2]]
            hidden = w.shape[1] // 3
            for k, part in enumerate(("query", "key", "value")):
                state[f"bert.encoder.layer.{layer}.attention.self.{part}.weight"] = w[:, k * hidden : (k + 1) * hidden].T
                state[f"bert.encoder.layer.{layer}.attention.self.{part}.bias"] = b[k * hidden : (k + 1) * hidden]
            layer += 1
        elif node.op_type == "MatMul" and node.input[1] in arrays:
            match = re.fullmatch(r"/bert/encoder/layer\.(\d+)/(.+)/MatMul", node.name)
            if not match:
                raise ModelError(f"{folder}: unexpected MatMul {node.name!r}; cannot map it to a BERT weight")
            state[f"bert.encoder.layer.{match[1]}.{match[2].replace('/', '.')}.weight"] = arrays[node.input[1]].T
    for name, arr in arrays.items():  # everything else (biases, LayerNorms, pooler, head) kept its torch name
        if name.startswith(("bert.", "classifier.")) and name.endswith((".weight", ".bias")) and name not in state:
            state[name] = arr
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}


def spoken_examples(folder: Path) -> list[dict]:
    """What the model in ``folder`` says for the spoken utterances of issue #11 (for the model card)."""
    from emostream.model.onnx_backend import OnnxClassifier
    from emostream.model.samples import SPOKEN_EXAMPLES

    preds = OnnxClassifier(folder, batch_size=64).classify(list(SPOKEN_EXAMPLES))
    return [{"text": t, **p.to_dict()} for t, p in zip(SPOKEN_EXAMPLES, preds)]


def dequantize_weights(src: Path, dst: Path) -> int:
    """The fp32 graph a weight-only int8 file computes with: every ``DequantizeLinear(int8 constant)``
    becomes the fp32 constant it produces (bit for bit what ONNX Runtime folds at load). This is the
    fp32 source the static int8 variant is built from when only the shipped folder is at hand (its
    torch checkpoint is not in git). Returns the number of weights restored; 0 for an fp32 file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    restored, drop = 0, set()
    for node in list(graph.node):
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if len(node.input) > 2 else 0.0
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if scale.ndim:
            shape[axis] = -1
        w = ((q - np.reshape(zero, shape) if np.ndim(zero) else q - zero) * scale.reshape(shape)).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(w, node.output[0]))
        drop.update(node.input)
        graph.node.remove(node)
        restored += 1
    keep = [i for i in graph.initializer if i.name not in drop]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.save(model, str(dst))
    return restored


class _TextCalibration:
    """ONNX Runtime calibration reader over texts: tokenized like the runtime does (no fixed padding,
    each batch padded to its own longest text)."""

    def __init__(self, folder: Path, texts: list[str], input_names: list[str], batch_size: int = 32):
        from tokenizers import Tokenizer

        meta = json.loads((Path(folder) / "labels.json").read_text(encoding="utf-8"))
        tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=int(meta.get("max_length", 128)))
        self.pad_id = int(meta.get("pad_token_id", 0) or 0)
        self.batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
        self.tok, self.names = tok, input_names
        self._it = iter(self.batches)

    def get_next(self):
        batch = next(self._it, None)
        if batch is None:
            return None
        enc = self.tok.encode_batch(batch)
        width = max(len(e.ids) for e in enc)
        ids = np.full((len(enc), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(enc), width), dtype=np.int64)
        for row, e in enumerate(enc):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return {k: v for k, v in feed.items() if k in self.names}

    def rewind(self):
        self._it = iter(self.batches)


def static_int8_excluded(src: Path, exclude: tuple[str, ...] = ("pooler", "classifier")) -> list[str]:
    """Names of the nodes kept fp32 by default: the pooler and classifier head (one 384-wide row per
    text, nothing to gain, most sensitive to rounding)."""
    import onnx

    graph = onnx.load(str(src), load_external_data=False).graph
    return [n.name for n in graph.node if any(part in n.name.lower() for part in exclude)]


def quantize_static_int8(src: Path, dst: Path, folder: Path, calibration_texts: list[str], *,
                         op_types: tuple[str, ...] = ("MatMul",), exclude: list[str] | None = None,
                         method: str = "minmax", percentile: float = 99.999, per_channel: bool = True,
                         reduce_range: bool = False, symmetric_activations: bool = False,
                         quant_format: str = "qdq") -> None:
    """Static (calibrated) int8: weights int8 per channel, activations int8 with scales fixed by a
    calibration pass over ``calibration_texts`` (training text, never dev). Fixed scales make each
    text's scores independent of its batch mates (dynamic int8 measures scales per batch).
    ``folder`` supplies tokenizer.json/labels.json for the calibration reader."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    import onnx

    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(src))
    names = [i.name for i in model.graph.input]
    # The fused contrib ops (Attention, SkipLayerNormalization, BiasGelu) defeat ONNX's own shape
    # inference: without typed outputs the quantizer sees no float activations and quantizes weights only.
    model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    reader = _TextCalibration(folder, calibration_texts, names)
    work = tempfile.TemporaryDirectory()  # a ModelProto handed to quantize_static leaves temp files in the cwd
    inferred = Path(work.name) / "inferred.onnx"
    onnx.save(model, str(inferred))
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    extra = {"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True,
             "DefaultTensorType": onnx.TensorProto.FLOAT}
    if method == "percentile":
        extra["CalibPercentile"] = percentile
    quantize_static(
        str(inferred), str(dst), reader,
        quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
        op_types_to_quantize=list(op_types), per_channel=per_channel, reduce_range=reduce_range,
        activation_type=QuantType.QUInt8 if not symmetric_activations else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=static_int8_excluded(src) if exclude is None else exclude,
        calibrate_method=methods[method], extra_options=extra,
    )
    work.cleanup()


def store_fp16(src: Path, dst: Path, min_elements: int = 1 << 20) -> int:
    """Every fp32 initializer of at least ``min_elements`` (in practice the word-embedding table) is
    stored as fp16 + a Cast back to fp32, which ONNX Runtime constant-folds at load. For the static
    int8 file, where the weight-only trick does not apply: with QDQ fusion on, ORT keeps a
    DequantizeLinear on a constant and would re-run it on every call. Returns the number converted."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    done, keep, nodes = 0, [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32 or arr.size < min_elements:
            keep.append(init)
            continue
        keep.append(numpy_helper.from_array(arr.astype(np.float16), init.name + "_fp16"))
        nodes.append(helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=init.name + "_cast"))
        done += 1
    _replace_initializers(model, keep, nodes, dst)
    return done


# Calibration texts per source. 4,096 (not 512) because min/max scales seen over more text cost less
# on dev: shipped student, GoEmotions dev macro-F1 (thresholds re-tuned) 0.6272 with 512 per source,
# 0.6287 with 2,048, 0.6302 with 4,096; fp32 0.6312 (docs in the model card).
STATIC_CALIBRATION_PER_SOURCE = 4096
STATIC_CALIBRATION_SEED = 13


def calibration_texts(goemotions: Path, xed: Path | None, per_source: int = STATIC_CALIBRATION_PER_SOURCE,
                      seed: int = STATIC_CALIBRATION_SEED) -> list[str]:
    """Training text for static int8 calibration: a seeded sample of GoEmotions ``train.tsv`` and of
    our XED train split (never dev, never any test set), ``per_source`` from each (all of a smaller one)."""
    import random

    from emostream.model.data import read_xed_split

    rng = random.Random(seed)
    ge = [r.text for r in read_goemotions(Path(goemotions) / "train.tsv")]
    texts = rng.sample(ge, min(per_source, len(ge)))
    if xed:
        xd = [r.text for r in read_xed_split(Path(xed), "train")]
        texts += rng.sample(xd, min(per_source, len(xd)))
    return texts


def build_static_folder(source: Path, out: Path, goemotions: Path, xed: Path | None = None,
                        per_source: int = STATIC_CALIBRATION_PER_SOURCE, seed: int = STATIC_CALIBRATION_SEED,
                        method: str = "minmax", tune_on_dev: bool = False, log=print) -> dict:
    """``emostream model quantize``: the static int8 model folder from a shipped/exported folder
    (fp32, or weight-only int8 whose fp32 weights are restored exactly first): QDQ, int8 weights per
    channel, uint8 activations with min/max scales from ``calibration_texts``; pooler and classifier
    head stay fp32; the word-embedding table is stored fp16 so the folder stays under 40 MB. Same
    tokenizer as ``source``; its thresholds too, unless ``tune_on_dev``: then they are re-tuned (macro-F1)
    on the new model's own scores for GoEmotions ``dev.tsv``. Returns what was done (for the model card)."""
    source, out = Path(source), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((source / "labels.json").read_text(encoding="utf-8"))
    source_precision = meta.get("precision", "fp32")
    if source_precision not in ("fp32", "int8-weights"):
        raise ModelError(f"{source}: precision {meta.get('precision')!r}; static int8 is built from an fp32 or "
                         "int8-weights folder (re-export with 'emostream model export')")
    texts = calibration_texts(goemotions, xed, per_source, seed)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, static = Path(tmp) / "fp32.onnx", Path(tmp) / "static.onnx"
        restored = dequantize_weights(source / "model.onnx", fp32)
        log(f"fp32 source: {restored} weight-only int8 initializers restored from {source / 'model.onnx'}")
        excluded = static_int8_excluded(fp32)
        quantize_static_int8(fp32, static, source, texts, method=method, exclude=excluded)
        log(f"static int8: calibrated on {len(texts)} training texts, fp32 kept for {excluded}")
        halved = store_fp16(static, out / "model.onnx")
    if source.resolve() != out.resolve():
        shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")
    meta = dict(meta, precision="int8-static")
    (out / "labels.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tuned = None
    if tune_on_dev:
        dev_rows = read_goemotions(Path(goemotions) / "dev.tsv")
        gold = np.array([multi_hot(r.classes) for r in dev_rows], dtype=np.float32)
        _, scores = _onnx_scores(out, [r.text for r in dev_rows])
        before = np.array([meta["thresholds"][c] for c in CLASSES])
        thresholds = tune_thresholds(scores, gold)
        meta["thresholds"] = {c: round(float(t), 4) for c, t in zip(CLASSES, thresholds)}
        (out / "labels.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        tuned = {"on": "GoEmotions dev.tsv", "macro_f1_before": round(macro_f1(scores, gold, before), 4),
                 "macro_f1_after": round(macro_f1(scores, gold, thresholds), 4), "thresholds": meta["thresholds"]}
        log(f"thresholds re-tuned on GoEmotions dev: macro-F1 {tuned['macro_f1_before']} -> {tuned['macro_f1_after']}")
    size = (out / "model.onnx").stat().st_size
    log(f"wrote {out} ({size / 1e6:.1f} MB)")
    return {"source": str(source), "source_precision": source_precision, "weights_restored": restored,
            "calibration": {"goemotions_train": per_source, "xed_train": per_source if xed else 0, "seed": seed,
                            "method": method},
            "excluded_nodes": excluded, "fp16_initializers": halved, "bytes": size, "thresholds_tuned": tuned}
