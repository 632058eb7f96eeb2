"""The worker's model: the shipped classifier by default, or any Classifier factory by import path."""

from __future__ import annotations

import importlib

from emostream.errors import ModelError
from emostream.model.base import Classifier

PYTHON_PREFIX = "python:"


def load_model(spec: str | None, threads: int | None = None) -> Classifier:
    """``python:pkg.module:factory`` calls ``factory(threads=...)`` (custom models, tests);
    anything else goes to :func:`emostream.model.load_classifier`."""
    if spec and spec.startswith(PYTHON_PREFIX):
        target = spec[len(PYTHON_PREFIX):]
        module_name, _, attr = target.partition(":")
        if not module_name or not attr:
            raise ModelError(f"--model {spec!r}: use python:MODULE:FACTORY")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"--model {spec!r}: cannot import {target} ({exc})") from exc
        return factory(threads=threads)
    from emostream.model import load_classifier

    return load_classifier(spec, threads=threads)
