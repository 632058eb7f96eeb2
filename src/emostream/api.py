"""``emostream.classify``: the shipped model as one function call, for scripts and notebooks.

The loaded model is kept per (model, threads), so repeated calls pay the load once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from emostream.model import Classifier, Prediction, load_classifier

_loaded: dict[tuple[str | None, int | None], Classifier] = {}
_lock = threading.Lock()


def classify(texts: Iterable[str], *, model: str | None = None, threads: int | None = None) -> list[Prediction]:
    """The emotion of each text, in order: a :class:`Prediction` (``label`` and ``scores`` over the
    seven classes) per text. ``model`` is a spec as ``--model`` takes it (default: the shipped
    ``emostream-ekman``). Texts are trimmed as the worker trims them; a blank one is refused with
    ValueError, as the worker dead-letters it (``missing_text``), rather than called neutral."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("classify() takes a list of texts; for one text pass [text]")
    batch = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is {type(text).__name__}, not str")
        if not text.strip():
            raise ValueError(f"text {i} is blank; there is nothing to classify")
        batch.append(text.strip())
    if not batch:
        return []
    with _lock:
        key = (model, threads)
        if key not in _loaded:
            _loaded[key] = load_classifier(model, threads=threads)
        classifier = _loaded[key]
    return list(classifier.classify(batch))
