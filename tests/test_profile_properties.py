"""The security profile reader over outside input: any bytes, any JSON. It returns a valid profile
or raises ConfigError, nothing else; and what it returns is safe to hand to librdkafka and JAAS."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emostream.errors import ConfigError
from emostream.kafka.configuration import PROFILE_KEYS, check_security_profile, librdkafka_security, read_security_profile
from emostream.security.profile import java_client_properties
from emostream.signing import generate_key

_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# Mostly known keys with string values, so the checks past "unknown key" get exercised too.
profile_like = st.dictionaries(
    st.sampled_from(sorted(PROFILE_KEYS)) | st.text(max_size=12),
    st.text(max_size=40) | json_values | st.sampled_from(["SASL_SSL", "ssl", "SCRAM-SHA-512", generate_key()[0]]),
    max_size=9,
)


def _assert_valid(profile: dict[str, str]) -> None:
    assert isinstance(profile, dict)
    for key, value in profile.items():
        assert key in PROFILE_KEYS
        assert isinstance(value, str) and value and not any(c in value for c in "\0\r\n")
    for setting, value in librdkafka_security(profile).items():
        assert "." in setting and value in profile.values()
    if {"username", "password", "ca_file"} <= set(profile):
        jaas = java_client_properties(profile)["sasl.jaas.config"]
        match = _JAAS.fullmatch(jaas)  # exactly two quoted values: nothing escapes the quotes
        assert match, jaas
        assert [_unquote(g) for g in match.groups()] == [profile["username"], profile["password"]]


_JAAS = re.compile(r'\S+ required username="((?:[^"\\]|\\.)*)" password="((?:[^"\\]|\\.)*)";')


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.S)


def _read(data: bytes) -> dict[str, str] | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profile.json"
        path.write_bytes(data)
        try:
            return read_security_profile(path)
        except ConfigError:
            return None


@_SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_give_a_profile_or_config_error(data: bytes) -> None:
    profile = _read(data)
    if profile is not None:
        _assert_valid(profile)


@_SETTINGS
@given(json_values | profile_like)
def test_any_json_gives_a_profile_or_config_error(value: object) -> None:
    profile = _read(json.dumps(value).encode())
    if profile is not None:
        _assert_valid(profile)
        assert profile == value  # nothing is dropped or rewritten: what was written is what is used
    try:
        checked = check_security_profile(value)
    except ConfigError:
        assert profile is None
    else:
        assert checked == profile


@_SETTINGS
@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=30))
def test_credentials_with_any_text_round_trip_or_are_refused(username: str, password: str, ca_file: str) -> None:
    value = {"bootstrap": "b:9093", "username": username, "password": password, "ca_file": ca_file}
    profile = _read(json.dumps(value).encode())
    if profile is not None:
        _assert_valid(profile)
    else:
        assert not all(value.values()) or any(c in v for v in value.values() for c in "\0\r\n")


def test_deeply_nested_json_is_a_config_error() -> None:
    assert _read(b"[" * 100_000) is None


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=40),
                 st.lists(st.sampled_from(["broker", "msg", "eos", "all", " cgrp ", "", "Broker", "nope"]), max_size=5).map(",".join)))
def test_kafka_debug_env_gives_valid_librdkafka_settings_or_a_config_error(value):
    # EMOSTREAM_KAFKA_DEBUG reaches every client's config: a value librdkafka would refuse at client
    # creation (a traceback from deep inside a command) is refused up front, naming the variable.
    from confluent_kafka import Producer

    from emostream.kafka.configuration import KAFKA_DEBUG_CONTEXTS, KAFKA_DEBUG_ENV, kafka_debug_settings

    try:
        conf = kafka_debug_settings(value)
    except ConfigError as exc:
        assert KAFKA_DEBUG_ENV in str(exc)
        return
    if not conf:
        assert not (value or "").replace(",", "").strip()
        return
    assert set(conf["debug"].split(",")) <= set(KAFKA_DEBUG_CONTEXTS)
    Producer({"bootstrap.servers": "127.0.0.1:1", **conf})  # librdkafka accepts it
