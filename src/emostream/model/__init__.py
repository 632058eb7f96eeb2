"""Emotion classifiers: the shipped ONNX model, any ONNX model folder, or a local HF folder.

``load_classifier(spec)`` is the one entry point; backends import their heavy dependencies
lazily so that importing this package stays cheap and torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path

from emostream.errors import ModelError
from emostream.model.base import Classifier, Prediction
from emostream.model.labels import CLASSES

DEFAULT_MODEL = "emostream-ekman"
MODELS_ENV = "EMOSTREAM_MODELS_DIR"

__all__ = ["CLASSES", "DEFAULT_MODEL", "Classifier", "Prediction", "load_classifier", "models_dirs", "resolve_model"]


def models_dirs() -> list[Path]:
    """Folders searched for named models, first match wins.

    1. ``$EMOSTREAM_MODELS_DIR`` (deployments that keep models outside the package);
    2. ``emostream/models_data/`` inside the installed package (works editable and non-editable);
    3. ``models/`` at the repository root, when running from a checkout.
    """
    dirs = []
    env = os.environ.get(MODELS_ENV)
    if env:
        dirs.append(Path(env))
    package_root = Path(__file__).resolve().parents[1]
    dirs.append(package_root / "models_data")
    repo_models = package_root.parents[1] / "models"
    if repo_models.is_dir():
        dirs.append(repo_models)
    return dirs


def available_models() -> list[str]:
    """Names of the model folders found in :func:`models_dirs`."""
    names = set()
    for d in models_dirs():
        if d.is_dir():
            names.update(p.name for p in d.iterdir() if (p / "model.onnx").is_file())
    return sorted(names)


def resolve_model(spec: str | None) -> tuple[str, Path]:
    """Turn a model spec into ``(backend, folder)``; backend is ``"onnx"`` or ``"hf"``.

    ``None`` or a name → a shipped/named folder; ``hf:PATH`` → a local HF folder; a path → an
    ONNX model folder. Raises ModelError with what to pass instead.
    """
    spec = spec or os.environ.get("EMOSTREAM_MODEL") or DEFAULT_MODEL
    if spec.startswith("hf:"):
        folder = Path(spec[3:]).expanduser()
        if not folder.is_dir():
            raise ModelError(f"hf model folder {str(folder)!r} does not exist; pass --model hf:PATH to a saved Hugging Face model")
        return "hf", folder
    looks_like_path = os.sep in spec or spec.startswith(".") or Path(spec).expanduser().exists()
    if not looks_like_path:
        for d in models_dirs():
            if (d / spec / "model.onnx").is_file():
                return "onnx", d / spec
    folder = Path(spec).expanduser()
    if folder.is_dir():
        if not (folder / "model.onnx").is_file():
            raise ModelError(f"{folder} has no model.onnx; pass a folder made by 'emostream model train' or hf:PATH for a Hugging Face folder")
        return "onnx", folder
    known = ", ".join(available_models()) or "none found"
    raise ModelError(
        f"unknown model {spec!r}: not a model name (available: {known}) nor a model folder; "
        f"use --model {DEFAULT_MODEL}, a folder with model.onnx, or hf:PATH (or set {MODELS_ENV})"
    )


# Texts per ONNX Runtime run with the default one-thread runs. Small runs pad less (each is padded to its
# own longest text after a length sort) and spread evenly over the CPUs. 2-core VM, utterances/s for
# calls of 64 random / 64 length-sorted bench texts: runs of 8 on two CPUs 759-776 / 852-954, runs
# of 32 on two CPUs 512 / 819-871, ORT's two-thread pool with runs of 32 656-691 / 780-798; on one CPU
# runs of 8 510-521 / 533-536 against runs of 32 355-408 / 482-516.
RUN_TEXTS = 8


def load_classifier(spec: str | None = None, threads: int | None = None) -> Classifier:
    """Load a classifier: None/``emostream-ekman`` → shipped model; a path → ONNX folder;
    ``hf:PATH`` → the transformers backend. ``threads`` = CPU threads for inference."""
    backend, folder = resolve_model(spec)
    if backend == "hf":
        from emostream.model.hf_backend import HFClassifier

        return HFClassifier(folder, threads=threads)
    from emostream.model.onnx_backend import OnnxClassifier, default_parallel_runs, default_threads

    name = spec if spec and os.sep not in spec and not spec.startswith(".") else None
    threads = threads or default_threads()
    if threads:
        return OnnxClassifier(folder, threads=threads, name=name or folder.name)
    # Unless told otherwise: one thread per run of at most RUN_TEXTS texts, as many runs at once as CPUs
    # (default_parallel_runs).
    return OnnxClassifier(folder, threads=1, batch_size=RUN_TEXTS, parallel_runs=default_parallel_runs(),
                          name=name or folder.name)
