"""Optional backend (extra ``hf``): any local Hugging Face sequence-classification folder,
run with transformers + torch. Used as ``--model hf:PATH`` and as the naive bench baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emostream.errors import ModelError
from emostream.model.base import Prediction
from emostream.model.labels import CLASSES, load_ekman_mapping
from emostream.model.onnx_backend import predictions_from_scores, scores_from_logits


def _class_map(id2label: dict, num_labels: int) -> tuple[np.ndarray, str]:
    """A ``[num_labels, 7]`` 0/1 matrix folding the model's labels onto CLASSES, and how.

    Accepts models labelled with our 7 classes (any order), with GoEmotions' 28 names (folded
    through the Ekman mapping), or with generic ``LABEL_i`` names when there are exactly 7.
    """
    names = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))).lower() for i in range(num_labels)]
    fold = np.zeros((num_labels, len(CLASSES)))
    if set(names) <= set(CLASSES) and len(set(names)) == num_labels:
        for i, n in enumerate(names):
            fold[i, CLASSES.index(n)] = 1
        return fold, "classes"
    mapping = load_ekman_mapping()
    if all(n in mapping for n in names):
        for i, n in enumerate(names):
            fold[i, CLASSES.index(mapping[n])] = 1
        return fold, "goemotions"
    if num_labels == len(CLASSES) and all(n.startswith("label_") for n in names):
        return np.eye(len(CLASSES)), "positional"
    raise ModelError(
        f"model labels {names[:8]}{'...' if len(names) > 8 else ''} cannot be mapped to {', '.join(CLASSES)}; "
        "label the model with those classes or with GoEmotions names"
    )


class HFClassifier:
    """transformers + torch classifier over a local folder (no network: loads offline)."""

    def __init__(self, folder: str | Path, threads: int | None = None, batch_size: int = 32, device: str = "cpu"):
        """Load ``folder`` (``config.json`` + weights + tokenizer). ``threads`` sets torch's CPU threads."""
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise ModelError(f"the hf backend needs torch and transformers: pip install 'emostream[hf]' ({exc.name} missing)") from None
        self.folder = Path(folder)
        if not (self.folder / "config.json").is_file():
            raise ModelError(f"{self.folder}: not a Hugging Face model folder (no config.json)")
        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.name = f"hf:{self.folder}"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(str(self.folder), local_files_only=True)
        except Exception as exc:
            raise ModelError(f"{self.folder}: transformers cannot load it ({exc})") from None
        self.model.eval().to(device)
        config = self.model.config
        self.fold, self.label_source = _class_map(dict(config.id2label or {}), int(config.num_labels))
        meta = {}
        if (self.folder / "labels.json").is_file():  # our own checkpoints carry head + thresholds
            meta = json.loads((self.folder / "labels.json").read_text(encoding="utf-8"))
        multi = config.problem_type == "multi_label_classification"
        self.head = meta.get("head") or ("sigmoid" if multi else "softmax")
        self.thresholds = {c: float(meta.get("thresholds", {}).get(c, 0.5)) for c in CLASSES}
        self.max_length = int(meta.get("max_length", 128))

    def logits(self, texts: list[str]) -> np.ndarray:
        """Raw outputs ``[n, num_labels]`` in input order (padded per batch)."""
        torch = self._torch
        outs = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = [str(t) for t in texts[start : start + self.batch_size]]
                enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                outs.append(self.model(**enc).logits.float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, len(self.fold)), dtype=np.float32)

    def scores(self, texts: list[str]) -> np.ndarray:
        """Class scores ``[n, 7]``; models with more labels are folded by summing probabilities."""
        probs = scores_from_logits(self.logits(texts), self.head)
        folded = probs @ self.fold
        return np.clip(folded, 0.0, 1.0) if self.label_source == "goemotions" else folded

    def classify(self, texts: list[str]) -> list[Prediction]:
        """Classify ``texts``; one Prediction per text, same order."""
        return predictions_from_scores(self.scores(texts), self.thresholds)
