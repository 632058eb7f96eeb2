"""The Classifier protocol every model backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from emostream.model.labels import CLASSES


@dataclass(frozen=True)
class Prediction:
    """One text's result: the top class, every class the model says is present, and a score for
    each of the 7 classes.

    ``labels`` = the classes whose score reaches their threshold, largest margin first, or just the
    top class when none does; ``label`` = ``labels[0]`` (the rule ``emostream eval`` scores, see
    :func:`emostream.model.metrics.top_classes`). Empty ``labels`` (hand-made predictions) reads as ``[label]``.
    """

    label: str
    scores: dict[str, float] = field(default_factory=dict)
    labels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: ``{"label": ..., "scores": {...}, "labels": [...]}``, classes in canonical order."""
        return {"label": self.label, "scores": {c: round(float(self.scores.get(c, 0.0)), 4) for c in CLASSES},
                "labels": list(self.labels or (self.label,))}


@runtime_checkable
class Classifier(Protocol):
    """Anything that turns texts into predictions, in the order given."""

    name: str

    def classify(self, texts: list[str]) -> list[Prediction]:
        """Classify ``texts``; returns one Prediction per text, same order."""
        ...


def batches_internally(classifier: object) -> bool:
    """True for a classifier that sorts one call's texts by length and cuts them into runs itself
    (an optional ``batches_internally = True`` attribute; the ONNX backend sets it). The worker
    hands such a classifier a whole transaction in one call; any other gets length-sorted calls of
    ``--batch-max``. One call of 1,024 kept both CPUs busy where 16 calls of 64 waited, at the end
    of each, for its slowest run: 3-12 % more texts/s from the model alone (docs/events.md)."""
    return getattr(classifier, "batches_internally", False) is True
