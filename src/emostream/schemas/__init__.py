"""JSON Schemas (draft 2020-12) of the pipeline's events, for producers and readers in any language.

``transcript``, ``emotion-event`` and ``dead-letter-headers``: the files ship in the package next
to this module (``emostream/schemas/NAME.schema.json``); :func:`load_schema` reads one.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMA_NAMES = ("transcript", "emotion-event", "dead-letter-headers")


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema called ``name`` (one of :data:`SCHEMA_NAMES`) as a dict."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"no schema {name!r}; choose one of {', '.join(SCHEMA_NAMES)}")
    return json.loads(resources.files(__name__).joinpath(f"{name}.schema.json").read_text("utf-8"))
