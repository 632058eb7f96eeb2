"""The default backend: an exported model run by ONNX Runtime, tokenised by HF ``tokenizers``.

A model folder holds ``model.onnx``, ``tokenizer.json``, ``labels.json`` and ``model-card.md``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from emostream.errors import ModelError
from emostream.model.base import Prediction
from emostream.model.labels import CLASSES
from emostream.model.metrics import predicted_sets, thresholds_vector

REQUIRED_FILES = ("model.onnx", "tokenizer.json", "labels.json")
HEADS = ("sigmoid", "softmax")


MAX_LENGTH_LIMIT = 8192  # tokens; far above any shipped model's 128


def load_labels_json(path: Path) -> Any:
    """``labels.json`` parsed as it is on disk (unchecked); ModelError when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read labels file ({exc}); re-export the model with 'emostream model train'") from None


def check_labels(raw: Any, path: Path) -> dict:
    """A checked copy of parsed ``labels.json``: classes (must equal CLASSES), head, thresholds
    (class → a number in [0, 1]; missing classes 0.5), max_length (a positive int, default 128).

    A model folder can come from anywhere (``--model PATH``, ``--teacher``): anything else is a
    ModelError that names the file and the field, never a KeyError or TypeError from deep inside
    the model."""
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: must hold a JSON object, got {type(raw).__name__}")
    meta = dict(raw)
    classes = meta.get("classes", ())
    if not isinstance(classes, list) or tuple(classes) != CLASSES:
        raise ModelError(f"{path}: classes {classes!r} differ from emostream's {list(CLASSES)}")
    if meta.get("head") not in HEADS:
        raise ModelError(f"{path}: head must be one of {', '.join(HEADS)}, got {meta.get('head')!r}")
    thresholds = meta.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise ModelError(f"{path}: thresholds must be an object of class → number, got {type(thresholds).__name__}")
    for name, value in thresholds.items():
        if name not in CLASSES:
            raise ModelError(f"{path}: threshold for unknown class {name!r} (classes: {', '.join(CLASSES)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ModelError(f"{path}: threshold of {name} must be a number in [0, 1], got {value!r}")
    meta["thresholds"] = {c: float(thresholds.get(c, 0.5)) for c in CLASSES}
    max_length = meta.setdefault("max_length", 128)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= MAX_LENGTH_LIMIT:
        raise ModelError(f"{path}: max_length must be a whole number of tokens in 1..{MAX_LENGTH_LIMIT}, got {max_length!r}")
    return meta


def read_labels_file(folder: Path) -> dict:
    """``folder/labels.json`` loaded and checked (:func:`check_labels`)."""
    path = folder / "labels.json"
    return check_labels(load_labels_json(path), path)


def scores_from_logits(logits: np.ndarray, head: str) -> np.ndarray:
    """Sigmoid (independent classes) or softmax (one distribution) over the last axis, float64."""
    logits = np.asarray(logits, dtype=np.float64)
    if head == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def predictions_from_scores(scores: np.ndarray, thresholds: Mapping[str, float] | None = None) -> list[Prediction]:
    """One Prediction per row, decided as ``emostream eval`` scores it: ``labels`` = the predicted
    set (classes at or over their threshold, else the top class), largest margin first; ``label`` =
    the class with the largest score − threshold margin (no thresholds: 0.5 each, i.e. the argmax)."""
    scores = np.asarray(scores, dtype=np.float64)
    t = thresholds_vector(thresholds)
    sets = predicted_sets(scores, t)
    out = []
    for row, chosen in zip(scores, sets):
        margin = row - t
        labels = tuple(CLASSES[j] for j in sorted(np.flatnonzero(chosen), key=lambda j: -margin[j]))
        out.append(Prediction(labels[0], {c: float(v) for c, v in zip(CLASSES, row)}, labels))
    return out


# Runs of at most this many tokens (rows × padded width: a few spoken utterances) may go to a
# second, one-thread session: it saves the pool's wake-ups (0.4-0.9 ms of CPU per event at 10-50
# utterances/s) but holds its own copy of the weights (+112 MB RSS). Off by default;
# EMOSTREAM_MODEL_SMALL_RUN_TOKENS=128 turns it on where memory is cheap (docs/events.md).
def _env_whole_number(name: str, minimum: int, example: str = "") -> int | None:
    """The environment variable ``name`` as a whole number ≥ ``minimum`` (ASCII digits, spaces around
    allowed), None when unset or blank; a clear ModelError for anything else. ``str.isdigit`` alone
    would let "²" through to ``int()``, which then raises a bare ValueError."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not re.fullmatch(r"[0-9]+", value) or int(value) < minimum:
        raise ModelError(f"{name} must be a whole number ≥ {minimum}{example}, got {value!r}")
    return int(value)


def default_small_run_tokens() -> int:
    """``EMOSTREAM_MODEL_SMALL_RUN_TOKENS`` (0 when unset); a clear ModelError for a bad value."""
    return _env_whole_number("EMOSTREAM_MODEL_SMALL_RUN_TOKENS", 0, " (e.g. 128)") or 0


# Texts per tokenizer call within one classify call (see logits).
TOKENIZE_TEXTS = 64


class OnnxClassifier:
    """Runs a model folder with ONNX Runtime. Thread-safe for concurrent ``classify`` calls."""

    # One call of any size is sorted by length and cut into runs of batch_size here (see logits).
    batches_internally = True

    def __init__(self, folder: str | Path, threads: int | None = None, batch_size: int = 32, name: str | None = None,
                 spinning: bool | None = None, small_run_tokens: int | None = None, parallel_runs: int = 1):
        """Load ``folder``; ``threads`` = intra-op threads (default: ORT's choice = physical cores);
        ``batch_size`` = texts per ORT run (each run padded only to its own longest text);
        ``spinning`` = let idle ORT threads busy-wait for work (default: off, or ``EMOSTREAM_MODEL_SPINNING=1``);
        ``parallel_runs`` = how many of one call's runs may go at once, from that many Python threads
        (ONNX Runtime releases the GIL; one session serves concurrent runs)."""
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        missing = [f for f in REQUIRED_FILES if not (self.folder / f).is_file()]
        if missing:
            raise ModelError(f"{self.folder}: not a model folder, missing {', '.join(missing)}")
        meta = read_labels_file(self.folder)
        self.name = name or self.folder.name
        self.head: str = meta["head"]
        self.thresholds: dict[str, float] = {c: float(meta["thresholds"].get(c, 0.5)) for c in CLASSES}
        self.max_length = int(meta["max_length"])
        self.batch_size = max(1, int(batch_size))
        self.meta = meta
        self.precision: str | None = meta.get("precision")

        try:
            self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise ModelError(f"{self.folder / 'tokenizer.json'}: cannot load tokenizer ({exc})") from None
        # We pad per length group ourselves; whatever the file says about padding would pad to a fixed size.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)
        pad = meta.get("pad_token_id")
        self.pad_id = int(pad) if pad is not None else (self.tokenizer.token_to_id("[PAD]") or 0)

        # ORT's pool threads spin after each run waiting for more work: on a shared 2-core host (the
        # worker, Kafka and other processes) that burns CPU others need. Off unless asked for.
        self.spinning = default_spinning() if spinning is None else bool(spinning)
        self.threads = int(threads) if threads else None
        self.session = self._session(self.threads)
        self.parallel_runs = max(1, int(parallel_runs))
        self._runner: ThreadPoolExecutor | None = None
        self._runner_lock = threading.Lock()
        # Opt-in (see default_small_run_tokens): small runs on a second, one-thread session made on first
        # use, so cold start stays one session.
        small = default_small_run_tokens() if small_run_tokens is None else int(small_run_tokens)
        self.small_run_tokens = small if self.threads != 1 and (os.cpu_count() or 1) > 1 else 0
        self._small_session: Any = None
        self._small_lock = threading.Lock()
        self.input_names = [i.name for i in self.session.get_inputs()]
        unknown = set(self.input_names) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown or "input_ids" not in self.input_names:
            raise ModelError(f"{self.folder / 'model.onnx'}: unexpected inputs {self.input_names}")

    def _session(self, threads: int | None) -> Any:
        import onnxruntime as ort  # deferred so importing emostream.model stays cheap

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if self.spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Weight-only int8 models store DequantizeLinear(int8 constant); this lets ORT fold those
        # into fp32 weights once at load instead of keeping QDQ pairs around (no effect on fp32 models).
        # Static int8 (QDQ on activations too) is the opposite: ORT must fuse the QDQ pairs into int8 kernels.
        if self.precision != "int8-static":
            options.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            return ort.InferenceSession(str(self.folder / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{self.folder / 'model.onnx'}: ONNX Runtime cannot load it ({exc})") from None

    def _session_for(self, tokens: int) -> Any:
        """The one-thread session for a run of at most ``small_run_tokens`` tokens, else the main one."""
        if tokens > self.small_run_tokens:
            return self.session
        if self._small_session is None:
            with self._small_lock:
                if self._small_session is None:
                    self._small_session = self._session(1)
        return self._small_session

    def logits(self, texts: list[str]) -> np.ndarray:
        """Raw model outputs ``[n, 7]`` in input order.

        Texts are sorted by token length and cut into groups of ``batch_size``; each group is
        padded only to its own longest text, so short utterances never pay for long ones.
        """
        if not texts:
            return np.zeros((0, len(CLASSES)), dtype=np.float32)
        # Tokenised TOKENIZE_TEXTS at a time, keeping only the ids: an Encoding also holds the
        # tokens truncation cut off: 1,024 texts of 8 KB (the worker's limit) in one encode_batch
        # held ~340 MB more at its peak, 64 at a time ~90 MB (docs/events.md).
        encodings: list[list[int]] = []
        for start in range(0, len(texts), TOKENIZE_TEXTS):
            encodings += [e.ids for e in self.tokenizer.encode_batch([str(t) for t in texts[start : start + TOKENIZE_TEXTS]])]
        lengths = np.array([len(ids) for ids in encodings])
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), len(CLASSES)), dtype=np.float32)
        groups = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        if self.parallel_runs > 1 and len(groups) > 1:
            for _ in self._pool().map(lambda g: self._run_group(g, encodings, lengths, out), groups):
                pass
        else:
            for group in groups:
                self._run_group(group, encodings, lengths, out)
        return out

    def _pool(self) -> ThreadPoolExecutor:
        if self._runner is None:
            with self._runner_lock:
                if self._runner is None:
                    self._runner = ThreadPoolExecutor(self.parallel_runs, thread_name_prefix="emostream-model")
        return self._runner

    def _run_group(self, group: np.ndarray, encodings: list[list[int]], lengths: np.ndarray, out: np.ndarray) -> None:
        """One ORT run: ``group``'s texts padded to their longest, results into ``out``'s rows."""
        width = int(lengths[group].max())
        ids = np.full((len(group), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(group), width), dtype=np.int64)
        for row, i in enumerate(group):
            n = lengths[i]
            ids[row, :n] = encodings[i]
            mask[row, :n] = 1
        feeds = {"input_ids": ids}
        if "attention_mask" in self.input_names:
            feeds["attention_mask"] = mask
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        try:
            result = self._session_for(ids.size).run(None, feeds)[0]
        except Exception as exc:
            raise ModelError(f"{self.name}: inference failed ({exc})") from None
        out[group] = result

    def scores(self, texts: list[str]) -> np.ndarray:
        """Class scores ``[n, 7]`` (sigmoid or softmax, per the model's head)."""
        return scores_from_logits(self.logits(texts), self.head)

    def classify(self, texts: list[str]) -> list[Prediction]:
        """Classify ``texts``; one Prediction per text, same order."""
        return predictions_from_scores(self.scores(texts), self.thresholds)


def default_spinning() -> bool:
    """ORT thread spinning from ``EMOSTREAM_MODEL_SPINNING`` (``1`` = on); off by default."""
    return os.environ.get("EMOSTREAM_MODEL_SPINNING", "0").strip().lower() in ("1", "true", "yes", "on")


def default_threads() -> int | None:
    """Intra-op threads from ``EMOSTREAM_MODEL_THREADS``; None when unset (see :func:`default_parallel_runs`)."""
    return _env_whole_number("EMOSTREAM_MODEL_THREADS", 1)


def default_parallel_runs(allowed: set[int] | None = None) -> int:
    """One ORT run at a time per CPU this process may use (``taskset`` and cpusets count).

    The default model set-up is one intra-op thread per run and, for a call of several runs (a
    backlog's batches), that many runs at once. Measured on the 2-core VM against ORT's own pool of
    one thread per core: the same speed on length-sorted batches of 64 (759-816 vs 709-849 utt/s)
    and ~1.1 ms less CPU per utterance one at a time (2.4-2.7 vs 3.5-3.8 ms), where the pool's
    wake-ups cost more than they save; and ORT pins its pool threads to cores itself, out of a
    ``taskset``: a worker pinned to one core then ran its model on both, against the broker."""
    if allowed is None:
        try:
            allowed = os.sched_getaffinity(0)
        except (AttributeError, OSError):  # not on Linux
            return max(1, os.cpu_count() or 1)
    return max(1, len(allowed))
