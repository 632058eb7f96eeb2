"""GoEmotions → 7-class mapping (pure functions)."""

from __future__ import annotations

import pytest

from emostream.model.labels import (
    CLASSES,
    load_ekman_mapping,
    load_goemotions_labels,
    map_ids,
    map_labels,
    multi_hot,
    parse_ekman_mapping,
)


def test_packaged_mapping_covers_all_28_goemotions_labels():
    names = load_goemotions_labels()
    mapping = load_ekman_mapping()
    assert len(names) == 28 and names[0] == "admiration" and names[27] == "neutral"
    assert set(names) == set(mapping)
    assert set(mapping.values()) == set(CLASSES)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["annoyance"], ("anger",)),
        (["disapproval", "anger"], ("anger",)),
        (["nervousness"], ("fear",)),
        (["gratitude", "curiosity"], ("joy", "surprise")),
        (["remorse", "disgust"], ("disgust", "sadness")),
        (["neutral"], ("neutral",)),
    ],
)
def test_map_labels_dedups_in_canonical_order(labels, expected):
    assert map_labels(labels, load_ekman_mapping()) == expected


def test_map_ids_and_unknown_id():
    names, mapping = load_goemotions_labels(), load_ekman_mapping()
    assert map_ids([25, 27], names, mapping) == ("sadness", "neutral")
    with pytest.raises(KeyError):
        map_ids([28], names, mapping)
    with pytest.raises(KeyError):
        map_labels(["bliss"], mapping)


def test_parse_rejects_unknown_target_and_double_mapping():
    assert parse_ekman_mapping({"joy": ["amusement"]}) == {"neutral": "neutral", "amusement": "joy"}
    with pytest.raises(ValueError, match="unknown class"):
        parse_ekman_mapping({"love": ["caring"]})
    with pytest.raises(ValueError, match="both"):
        parse_ekman_mapping({"joy": ["pride"], "sadness": ["pride"]})


def test_multi_hot():
    assert multi_hot(["joy", "neutral"]) == [0, 0, 0, 1, 0, 0, 1]
    with pytest.raises(KeyError):
        multi_hot(["love"])
