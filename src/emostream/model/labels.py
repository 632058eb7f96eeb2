"""The 7 emotion classes and the mapping from GoEmotions' 28 labels to them. Pure, no I/O
except the explicit ``load_*`` helpers, which only read the small JSON/text files they are given."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")

NEUTRAL = "neutral"

# Copies of the upstream GoEmotions files ship inside the package, so eval/train work even
# when the data folder does not carry them (source: google-research/google-research, goemotions/data/, Apache-2.0).
_HERE = Path(__file__).resolve().parent
DEFAULT_MAPPING_FILE = _HERE / "ekman_mapping.json"
DEFAULT_EMOTIONS_FILE = _HERE / "goemotions_labels.txt"


def parse_ekman_mapping(raw: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Invert ``{"anger": ["anger", "annoyance", ...], ...}`` into ``{goemotion: class}``.

    ``neutral`` is not listed upstream and maps to itself. Raises ValueError on an unknown
    target class or a GoEmotions label claimed by two classes.
    """
    inverse: dict[str, str] = {NEUTRAL: NEUTRAL}
    for target, sources in raw.items():
        if target not in CLASSES:
            raise ValueError(f"ekman mapping names unknown class {target!r}; expected one of {', '.join(CLASSES)}")
        for source in sources:
            if source in inverse and inverse[source] != target:
                raise ValueError(f"GoEmotions label {source!r} is mapped to both {inverse[source]!r} and {target!r}")
            inverse[source] = target
    return inverse


def load_ekman_mapping(path: str | Path | None = None) -> dict[str, str]:
    """Read ``ekman_mapping.json`` (default: the packaged copy) into ``{goemotion: class}``."""
    with open(path or DEFAULT_MAPPING_FILE, encoding="utf-8") as fh:
        return parse_ekman_mapping(json.load(fh))


def load_goemotions_labels(path: str | Path | None = None) -> tuple[str, ...]:
    """Read ``emotions.txt`` (one label a line, id = line number; default: the packaged copy)."""
    text = Path(path or DEFAULT_EMOTIONS_FILE).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def map_labels(goemotions: Iterable[str], mapping: Mapping[str, str]) -> tuple[str, ...]:
    """Map GoEmotions label names to the 7 classes: deduplicated, in canonical CLASSES order.

    Raises KeyError naming the first label the mapping does not know.
    """
    targets = set()
    for name in goemotions:
        if name not in mapping:
            raise KeyError(name)
        targets.add(mapping[name])
    return tuple(c for c in CLASSES if c in targets)


def map_ids(ids: Iterable[int], names: tuple[str, ...], mapping: Mapping[str, str]) -> tuple[str, ...]:
    """Map GoEmotions numeric ids (indexes into ``names``) to the 7 classes.

    Raises KeyError naming the id when it is out of range.
    """
    resolved = []
    for i in ids:
        if not 0 <= i < len(names):
            raise KeyError(i)
        resolved.append(names[i])
    return map_labels(resolved, mapping)


# XED (Öhman et al., COLING 2020) annotates Plutchik's eight emotions as ids 1..8; six of them are
# Ekman classes. Anticipation (2) and trust (8) have none: a line with only those has no 7-class label.
XED_EKMAN: dict[int, str] = {1: "anger", 3: "disgust", 4: "fear", 5: "joy", 6: "sadness", 7: "surprise"}
XED_NO_CLASS: frozenset[int] = frozenset({2, 8})
XED_NEUTRAL_ID = 9  # the id every line of XED's neutral file (neu_en.txt) carries


def map_xed_ids(ids: Iterable[int]) -> tuple[str, ...]:
    """Map XED Plutchik ids to the 7 classes (canonical order); anticipation/trust are dropped.

    Returns ``()`` when only anticipation/trust remain; raises KeyError naming an id outside 1..8.
    """
    targets = set()
    for i in ids:
        if i in XED_EKMAN:
            targets.add(XED_EKMAN[i])
        elif i not in XED_NO_CLASS:
            raise KeyError(i)
    return tuple(c for c in CLASSES if c in targets)


def multi_hot(classes: Iterable[str]) -> list[float]:
    """A 0/1 vector over CLASSES for a set of class names (unknown names raise KeyError)."""
    wanted = set(classes)
    unknown = wanted - set(CLASSES)
    if unknown:
        raise KeyError(sorted(unknown)[0])
    return [1.0 if c in wanted else 0.0 for c in CLASSES]
