"""The 7 emotion classes and the mapping from GoEmotions' 28 labels to them. Pure, no I/O."""

from __future__ import annotations

import json
from pathlib import Path

CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")
