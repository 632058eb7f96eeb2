"""emostream: voice-emotion pipelines on Apache Kafka.

The public Python API, importable from the package root (each name is imported on first use, so
``import emostream`` stays light):

- :func:`classify` — the emotion of each text with the shipped model;
- :func:`load_classifier`, :class:`Prediction` — a model object to keep, and its result;
- :class:`Worker`, :class:`WorkerSettings`, :class:`ClientConfig` — the exactly-once
  classifier worker, its options, and where the cluster is;
- :mod:`emostream.events` with :class:`Transcript`, :class:`EmotionEvent`,
  :class:`InvalidEvent` — the records on the topics (JSON Schemas in :mod:`emostream.schemas`);
- :class:`EmostreamError` — the base of every error emostream raises on purpose.

Everything else is internal and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from emostream.errors import EmostreamError

__version__ = "0.1.0"

# Public name → module that defines it; imported on first access (PEP 562).
_LAZY = {
    "classify": "emostream.api",
    "load_classifier": "emostream.model",
    "Prediction": "emostream.model",
    "Worker": "emostream.worker",
    "WorkerSettings": "emostream.worker",
    "ClientConfig": "emostream.kafka.configuration",
    "Transcript": "emostream.events",
    "EmotionEvent": "emostream.events",
    "InvalidEvent": "emostream.events",
}
__all__ = ["EmostreamError", "__version__", "events", "schemas", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from emostream import events, schemas
    from emostream.api import classify
    from emostream.events import EmotionEvent, InvalidEvent, Transcript
    from emostream.kafka.configuration import ClientConfig
    from emostream.model import Prediction, load_classifier
    from emostream.worker import Worker, WorkerSettings


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in ("events", "schemas"):
        value = importlib.import_module(f"emostream.{name}")
    else:
        raise AttributeError(f"module 'emostream' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
