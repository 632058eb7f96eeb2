"""XED's files as published (format quirks, Plutchik → 7 classes, our fixed split) and the readers'
contract on arbitrary bytes: valid examples or a DataError naming the line, nothing else."""

from __future__ import annotations

import json
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emostream.cli import main
from emostream.errors import DataError
from emostream.model.data import (
    XED_DEV_FRACTION,
    Example,
    read_examples,
    read_goemotions,
    read_tsv,
    read_xed,
    read_xed_annotated,
    read_xed_neutral,
    read_xed_split,
    split_examples,
    split_key,
    spoken_style,
    spoken_variant,
)
from emostream.model.labels import CLASSES, map_xed_ids

from tests.conftest import REPO

XED = REPO.parent / "shared" / "data" / "xed"


def _write(tmp_path, name, data: bytes | str):
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("ids", "classes"),
    [
        ([1], ("anger",)), ([3], ("disgust",)), ([4], ("fear",)), ([5], ("joy",)), ([6], ("sadness",)),
        ([7], ("surprise",)), ([8, 1], ("anger",)), ([6, 1, 3], ("anger", "disgust", "sadness")),
        ([2], ()), ([8], ()), ([2, 8], ()),
    ],
)
def test_plutchik_ids_map_to_ekman(ids, classes):
    assert map_xed_ids(ids) == classes


@pytest.mark.parametrize("bad", [0, 9, 10, -1])
def test_unknown_plutchik_id(bad):
    with pytest.raises(KeyError):
        map_xed_ids([1, bad])


def test_annotated_file_quirks(tmp_path):
    # CRLF endings, ", "-separated ids, fragments as texts, anticipation/trust-only lines dropped and counted
    path = _write(tmp_path, "en-annotated.tsv",
                  ", ...\t1\r\n!\t1, 4, 7\r\nI trust you .\t8\r\nsoon\t2, 8\r\nfine [PERSON] .\t8, 5\r\n")
    rows, dropped = read_xed_annotated(path)
    assert dropped == 2
    assert [(r.text, r.classes, r.line) for r in rows] == [
        (", ...", ("anger",), 1), ("!", ("anger", "fear", "surprise"), 2), ("fine [PERSON] .", ("joy",), 5)]


def test_neutral_file_quirks(tmp_path):
    # a BOM, an all-empty line of tabs, trailing empty fields, an empty text: all ignored
    path = _write(tmp_path, "neu_en.txt", "\ufeff9\tYeah I was just telling him.\n\t\t\t\t\n9\tNothing\t\t\t\n9\t\n9\tOk.\n")
    rows = read_xed_neutral(path)
    assert [(r.text, r.classes, r.line) for r in rows] == [
        ("Yeah I was just telling him.", ("neutral",), 1), ("Nothing", ("neutral",), 3), ("Ok.", ("neutral",), 5)]


@pytest.mark.parametrize(
    ("name", "content", "line", "match"),
    [
        ("en-annotated.tsv", "ok\t1\nbad\t9\n", 2, "unknown XED label id 9"),
        ("en-annotated.tsv", "ok\t1\nbad\tjoy\n", 2, "integers"),
        ("en-annotated.tsv", "ok\t1\nbad\t\n", 2, "no label ids"),
        ("en-annotated.tsv", "ok\t1\nbad\t1\tmore\n", 2, "non-empty column"),
        ("en-annotated.tsv", "ok\t1\nno tab\n", 2, "column"),
        ("neu_en.txt", "9\tok\n1\tnot neutral\n", 2, "every line neutral"),
        ("neu_en.txt", "9\tok\n9\ttext\tmore\n", 2, "non-empty column"),
        ("neu_en.txt", "", 1, "empty"),
    ],
)
def test_bad_xed_lines_are_named(tmp_path, name, content, line, match):
    path = _write(tmp_path, name, content)
    with pytest.raises(DataError, match=match) as info:
        read_xed(path)
    assert f"{name}:{line}:" in str(info.value)


def test_folder_and_files_read_the_same(tmp_path):
    folder = tmp_path / "xed"
    folder.mkdir()
    _write(folder, "en-annotated.tsv", "I hate this\t1\nyay\t5\n")
    _write(folder, "neu_en.txt", "9\tsee you\n")
    by_folder = read_xed(folder)
    assert by_folder == read_xed([folder / "en-annotated.tsv", folder / "neu_en.txt"])
    assert [r.classes for r in by_folder] == [("anger",), ("joy",), ("neutral",)]
    with pytest.raises(DataError, match="not an XED folder, missing neu_en.txt"):
        read_xed(_only_annotated(tmp_path))


def _only_annotated(tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    _write(folder, "en-annotated.tsv", "x\t1\n")
    return folder


def test_split_is_deterministic_disjoint_and_keeps_variants_together():
    rows = [Example(f"Line number {i}, said loudly!", ("neutral",), i) for i in range(4000)]
    train, dev = split_examples(rows)
    assert (train, dev) == split_examples(list(rows))
    assert len(train) + len(dev) == len(rows) and not {r.line for r in train} & {r.line for r in dev}
    assert abs(len(dev) / len(rows) - XED_DEV_FRACTION) < 0.02
    # the split depends on the text only (not on order, nor on case/punctuation)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert {r.line for r in split_examples(shuffled)[1]} == {r.line for r in dev}
    assert split_key("Line number 7, said loudly!") == split_key("line number 7 said loudly")
    assert split_key("x", seed=13) != split_key("x", seed=14)


@pytest.mark.skipif(not (XED / "en-annotated.tsv").is_file(), reason="XED not in ../shared/data/xed")
def test_real_xed_counts_and_fixed_split():
    rows, dropped = read_xed_annotated(XED / "en-annotated.tsv")
    neutral = read_xed_neutral(XED / "neu_en.txt")
    assert (len(rows), dropped, len(neutral)) == (13683, 3845, 9674)
    dev = read_xed_split(XED, "dev")
    train = read_xed_split(XED, "train")
    assert (len(train), len(dev)) == (19836, 3521)  # seed 13, 15 % dev: written down in the model card
    assert dev[0] == read_xed_split(XED, "dev")[0]


def test_spoken_style():
    assert spoken_style("Don't you DARE, [PERSON]! 'Quoted' -- ok... It's 5 o'clock.") == \
        "don't you dare person quoted ok it's 5 o'clock"
    assert spoken_style("Wait\u2019s   over?!") == "wait's over"
    rng = random.Random(0)
    variants = {spoken_variant("This makes me FURIOUS!", rng, filler_p=1.0) for _ in range(30)}
    assert all(set("this makes me furious".split()) <= set(v.split()) and v == v.lower() for v in variants)
    assert all(len(v.split()) > 4 for v in variants)


def test_eval_command_reads_xed_as_published(tmp_path, capsys):
    folder = tmp_path / "xed"
    folder.mkdir()
    lines = ["I am so furious with you\t1", "thank you so much, I love it\t5, 8", "We will wait for them .\t2"]
    _write(folder, "en-annotated.tsv", "\r\n".join(lines * 40) + "\r\n")
    _write(folder, "neu_en.txt", "".join(f"9\tThe meeting is at {i} o'clock.\n" for i in range(60)))
    assert main(["eval", str(folder), "--format", "xed", "--split", "all", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 140 and result["split"] == "all"  # the anticipation-only line is dropped
    assert result["always_neutral_accuracy"] == pytest.approx(60 / 140, abs=1e-4)
    files = [str(folder / "en-annotated.tsv"), str(folder / "neu_en.txt")]
    assert main(["eval", *files, "--format", "xed", "--spoken", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "dev" and result["spoken_style"] is True and 0 < result["n"] < 140


# --- arbitrary bytes: a valid example or DataError with a line number, never anything else ---

_LINE_ERROR = re.compile(r":\d+: ")
_READERS = {
    "tsv": lambda p: read_tsv(p),
    "goemotions": lambda p: read_goemotions(p),
    "xed-annotated": lambda p: read_xed_annotated(p)[0],
    "xed-neutral": lambda p: read_xed_neutral(p),
}
_FIELD = st.one_of(st.text(max_size=12), st.sampled_from(["1", "9", "2, 8", "27", "joy", "anger,neutral", "", " "]))
_LINE = st.lists(_FIELD, min_size=0, max_size=4).map("\t".join)
_BYTES = st.one_of(
    st.binary(max_size=300),
    st.lists(_LINE, max_size=8).map(lambda ls: "\n".join(ls).encode("utf-8")),
    st.tuples(st.lists(_LINE, max_size=6).map(lambda ls: "\r\n".join(ls).encode("utf-8")), st.binary(max_size=20))
    .map(lambda t: t[0] + t[1]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reader=st.sampled_from(sorted(_READERS)), data=_BYTES)
def test_readers_on_arbitrary_bytes(tmp_path, reader, data):
    path = tmp_path / "input.tsv"
    path.write_bytes(data)
    try:
        rows = _READERS[reader](path)
    except DataError as exc:
        assert str(exc).startswith(str(path)) and _LINE_ERROR.search(str(exc)), str(exc)
        return
    n_lines = data.count(b"\n") + 1
    for row in rows:
        assert isinstance(row, Example) and isinstance(row.text, str)
        assert row.classes and set(row.classes) <= set(CLASSES)
        assert list(row.classes) == [c for c in CLASSES if c in row.classes]
        assert 1 <= row.line <= n_lines


def test_read_examples_xed_format(tmp_path):
    path = _write(tmp_path, "en-annotated.tsv", "a\t1\n")
    assert [r.classes for r in read_examples([path], "xed", split="all")] == [("anger",)]
    with pytest.raises(DataError, match="unknown XED split"):
        read_examples(path, "xed", split="test")
    with pytest.raises(DataError, match="reads one file"):
        read_examples([path, path], "tsv")
