"""Readers for labelled text files (GoEmotions TSV and our simple ``text\\tclass,class`` TSV).

Every row comes back as ``(text, classes)`` with ``classes`` a tuple of the 7 CLASSES names.
Malformed input raises :class:`emostream.errors.DataError` naming the file and line number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emostream.errors import DataError
from emostream.model.labels import CLASSES, load_ekman_mapping, load_goemotions_labels, map_ids

FORMATS = ("goemotions", "tsv")


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
        raise DataError(f"{path}: file is empty; expected one labelled text per line")
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
        text, ids = fields[0], fields[1]
        try:
            numbers = [int(x) for x in ids.split(",") if x.strip() != ""]
        except ValueError:
            raise DataError(f"{path}:{number}: label ids must be comma-separated integers, got {ids!r}") from None
        if not numbers:
            raise DataError(f"{path}:{number}: no label ids")
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
        names = [x.strip() for x in fields[1].split(",") if x.strip()]
        if not names:
            raise DataError(f"{path}:{number}: no class names")
        for name in names:
            if name not in CLASSES:
                raise DataError(f"{path}:{number}: unknown class {name!r}; expected one of {', '.join(CLASSES)}")
        rows.append(Example(fields[0], tuple(c for c in CLASSES if c in names), number))
    return rows


def read_examples(path: str | Path, fmt: str) -> list[Example]:
    """Read ``path`` in format ``goemotions`` or ``tsv``."""
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
