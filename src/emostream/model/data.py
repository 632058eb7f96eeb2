"""Readers for labelled text files: GoEmotions TSV, our simple ``text\\tclass,class`` TSV and the
XED subtitle files as published; plus the fixed XED train/dev split and the spoken-style rewrite.

Every row comes back as ``(text, classes)`` with ``classes`` a tuple of the 7 CLASSES names.
Malformed input raises :class:`emostream.errors.DataError` naming the file and line number.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from emostream.errors import DataError
from emostream.model.labels import (
    CLASSES,
    NEUTRAL,
    XED_NEUTRAL_ID,
    load_ekman_mapping,
    load_goemotions_labels,
    map_ids,
    map_xed_ids,
)

FORMATS = ("goemotions", "tsv", "xed")

# XED ships no split. Ours: a line goes to dev when a hash of (seed, its spoken-style text) falls in
# the first 15%; hashing the normalised text keeps duplicates and case/punctuation variants on one side.
XED_FILES = ("en-annotated.tsv", "neu_en.txt")
XED_SEED = 13
XED_DEV_FRACTION = 0.15
XED_SPLITS = ("dev", "train", "all")


@dataclass(frozen=True)
class Example:
    """One labelled row: the text, its gold classes (canonical order) and its 1-based line."""

    text: str
    classes: tuple[str, ...]
    line: int


def _lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # final newline
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}:1: file is empty; expected one labelled text per line")
    if lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]  # a UTF-8 byte-order mark is not part of the first text
    return lines


def _rows(path: Path, layout: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of each non-blank line; DataError when a line has one column."""
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) < 2:
            raise DataError(f"{path}:{number}: expected '{layout}', found {len(fields)} column(s)")
        yield number, fields


def _parse_ids(path: Path, number: int, ids: str) -> list[int]:
    try:
        numbers = [int(x) for x in ids.split(",") if x.strip() != ""]
    except ValueError:
        hint = "; for a file of class names (text<TAB>joy) pass --format tsv" if any(c.isalpha() for c in ids) else ""
        raise DataError(f"{path}:{number}: label ids must be comma-separated integers, got {ids[:80]!r}{hint}") from None
    if not numbers:
        raise DataError(f"{path}:{number}: no label ids")
    return numbers


def read_goemotions(
    path: str | Path, emotions_file: str | Path | None = None, mapping_file: str | Path | None = None
) -> list[Example]:
    """Read a GoEmotions split (``text \\t ids \\t comment-id``, no header) mapped to the 7 classes.

    ``emotions.txt``/``ekman_mapping.json`` are taken from the explicit arguments, else from the
    file's own folder, else from the copies shipped with emostream.
    """
    path = Path(path)
    folder = path.parent
    if emotions_file is None and (folder / "emotions.txt").is_file():
        emotions_file = folder / "emotions.txt"
    if mapping_file is None and (folder / "ekman_mapping.json").is_file():
        mapping_file = folder / "ekman_mapping.json"
    names = load_goemotions_labels(emotions_file)
    mapping = load_ekman_mapping(mapping_file)
    rows: list[Example] = []
    for number, fields in _rows(path, "text<TAB>ids<TAB>id"):
        text, numbers = fields[0], _parse_ids(path, number, fields[1])
        try:
            classes = map_ids(numbers, names, mapping)
        except KeyError as exc:
            raise DataError(
                f"{path}:{number}: unknown label id {exc.args[0]!r} (valid: 0..{len(names) - 1})"
            ) from None
        rows.append(Example(text, classes, number))
    return rows


def read_tsv(path: str | Path) -> list[Example]:
    """Read ``text \\t class,class`` rows (class names from CLASSES, no header)."""
    path = Path(path)
    rows: list[Example] = []
    for number, fields in _rows(path, "text<TAB>class[,class...]"):
        names = [x.strip().lower() for x in fields[1].split(",") if x.strip()]  # "Joy" is joy
        if not names:
            raise DataError(f"{path}:{number}: no class names")
        for name in names:
            if name not in CLASSES:
                raise DataError(f"{path}:{number}: unknown class {name!r}; expected one of {', '.join(CLASSES)}")
        rows.append(Example(fields[0], tuple(c for c in CLASSES if c in names), number))
    return rows


def _extra_fields(path: Path, number: int, fields: list[str], used: int, layout: str) -> None:
    # XED's neutral file has lines with trailing empty fields; anything non-empty there is not XED.
    if any(f.strip() for f in fields[used:]):
        raise DataError(f"{path}:{number}: expected '{layout}', found {len(fields)} non-empty column(s)")


def read_xed_annotated(path: str | Path) -> tuple[list[Example], int]:
    """Read XED's ``en-annotated.tsv`` (``text \\t ids``, Plutchik ids 1..8) mapped to the 7 classes.

    Returns ``(examples, dropped)``: lines whose ids are only anticipation (2) / trust (8) have no
    7-class label and are counted in ``dropped``; lines with empty text are skipped.
    """
    path = Path(path)
    layout = "text<TAB>ids (1..8)"
    rows, dropped = [], 0
    for number, fields in _rows(path, layout):
        _extra_fields(path, number, fields, 2, layout)
        text, ids = fields[0].strip(), fields[1]
        numbers = _parse_ids(path, number, ids)
        try:
            classes = map_xed_ids(numbers)
        except KeyError as exc:
            raise DataError(f"{path}:{number}: unknown XED label id {exc.args[0]!r} (valid: 1..8)") from None
        if not text:
            continue
        if not classes:
            dropped += 1
            continue
        rows.append(Example(text, classes, number))
    return rows, dropped


def read_xed_neutral(path: str | Path) -> list[Example]:
    """Read XED's ``neu_en.txt`` (``9 \\t text``, every line neutral); empty fields/texts are ignored."""
    path = Path(path)
    layout = f"{XED_NEUTRAL_ID}<TAB>text"
    rows = []
    for number, fields in _rows(path, layout):
        _extra_fields(path, number, fields, 2, layout)
        label, text = fields[0].strip(), fields[1].strip()
        if not label and not text:
            continue
        if label != str(XED_NEUTRAL_ID):
            raise DataError(f"{path}:{number}: expected '{layout}' (every line neutral), first column is {label[:20]!r}")
        if text:
            rows.append(Example(text, (NEUTRAL,), number))
    return rows


def xed_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """The XED files to read: a folder → its ``en-annotated.tsv`` and ``neu_en.txt``; files as given."""
    items = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    out = []
    for item in items:
        if item.is_dir():
            missing = [name for name in XED_FILES if not (item / name).is_file()]
            if missing:
                raise DataError(f"{item}: not an XED folder, missing {', '.join(missing)}; pass the folder of "
                                f"Helsinki-NLP/XED AnnotatedData/ or the files themselves")
            out += [item / name for name in XED_FILES]
        else:
            out.append(item)
    return out


def read_xed(paths: str | Path | Sequence[str | Path]) -> list[Example]:
    """Read XED files (a folder or files): ``neu*`` files are the neutral list, others the annotated TSV."""
    rows: list[Example] = []
    for path in xed_paths(paths):
        rows += read_xed_neutral(path) if path.name.startswith("neu") else read_xed_annotated(path)[0]
    return rows


def split_key(text: str, seed: int = XED_SEED) -> float:
    """A deterministic number in [0, 1) for ``text`` (same for case/punctuation variants)."""
    digest = hashlib.sha256(f"{seed}:{spoken_style(text)}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_examples(
    rows: list[Example], dev_fraction: float = XED_DEV_FRACTION, seed: int = XED_SEED
) -> tuple[list[Example], list[Example]]:
    """``(train, dev)``: a row is dev when ``split_key(text, seed) < dev_fraction``; order is kept."""
    train, dev = [], []
    for row in rows:
        (dev if split_key(row.text, seed) < dev_fraction else train).append(row)
    return train, dev


def read_xed_split(paths: str | Path | Sequence[str | Path], split: str = "dev") -> list[Example]:
    """XED rows of one split: ``dev`` / ``train`` (our fixed seed-13 85/15 split) or ``all``."""
    if split not in XED_SPLITS:
        raise DataError(f"unknown XED split {split!r}; use one of {', '.join(XED_SPLITS)}")
    rows = read_xed(paths)
    if split == "all":
        return rows
    train, dev = split_examples(rows)
    return dev if split == "dev" else train


_PUNCT = re.compile(r"[^\w\s']|_")
_LOOSE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def spoken_style(text: str) -> str:
    """How a speech recogniser writes ``text``: lowercase, no punctuation (inner apostrophes kept)."""
    text = _LOOSE_APOSTROPHE.sub(" ", _PUNCT.sub(" ", text.lower().replace("\u2019", "'")))
    return " ".join(text.split())


FILLERS = ("um", "uh", "so", "like", "you know", "i mean", "well", "yeah", "okay so", "oh")


def spoken_variant(text: str, rng: random.Random, filler_p: float = 0.3) -> str:
    """``text`` in spoken style, with probability ``filler_p`` a filler ("um", "you know", ...) put at
    its start or between two words: the disfluencies transcripts carry and written text lacks."""
    words = spoken_style(text).split()
    if words and rng.random() < filler_p:
        at = 0 if rng.random() < 0.6 else rng.randrange(len(words) + 1)
        words[at:at] = rng.choice(FILLERS).split()
    return " ".join(words)


def read_examples(path: str | Path | Sequence[str | Path], fmt: str, split: str = "dev") -> list[Example]:
    """Read ``path`` in format ``goemotions``, ``tsv`` or ``xed`` (a folder or its files; ``split`` of it)."""
    if fmt == "xed":
        return read_xed_split(path, split)
    if not isinstance(path, (str, Path)):
        if len(path) != 1:
            raise DataError(f"format {fmt} reads one file, got {len(path)}")
        path = path[0]
    if fmt == "goemotions":
        return read_goemotions(path)
    if fmt == "tsv":
        return read_tsv(path)
    raise DataError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (recorded in model cards)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
