"""The key registry record and the signature header are outside input to the worker: any bytes give a
KeyRecord / a verdict or InvalidEvent, never anything else."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from emostream.events import InvalidEvent
from emostream.signing import SIG_HEADER, DeviceKeys, DeviceSigner, KeyRecord, decode_key_record, generate_key

_PRIV, _PUB = generate_key()
_KEYS = DeviceKeys()
_KEYS.apply(KeyRecord("pi-1", _PUB))

key_values = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.builds(lambda v, k: json.dumps({"v": v, "ed25519": k}).encode(),
              st.one_of(st.just(1), st.integers(), st.text(max_size=3)), st.one_of(st.text(max_size=60), st.just(_PUB))),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.binary(max_size=300), st.sampled_from([b"pi-1", b"pi-2"])), key_values)
def test_any_registry_record_decodes_or_is_invalid(key: bytes | None, value: bytes | None) -> None:
    try:
        record = decode_key_record(key, value)
    except InvalidEvent:
        return
    assert key is not None and record.device_id == key.decode()
    DeviceKeys().apply(record)  # whatever decodes can be applied


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.lists(st.tuples(st.sampled_from([SIG_HEADER, "x"]), st.one_of(st.none(), st.binary(max_size=80))),
                                         max_size=3))
def test_any_signature_header_verifies_or_is_invalid(value: bytes, headers: list) -> None:
    try:
        _KEYS.verify("pi-1", b"pi-1", value, headers)
    except InvalidEvent as exc:
        assert exc.error_type in {"unsigned", "bad_signature"}
    else:
        raise AssertionError("an arbitrary header verified")


def test_a_real_signature_verifies_only_for_its_bytes() -> None:
    headers = DeviceSigner(_PRIV).headers(b"pi-1", b"hello")
    _KEYS.verify("pi-1", b"pi-1", b"hello", headers)
    for key, value in ((b"pi-1", b"hellp"), (b"pi-2", b"hello")):
        try:
            _KEYS.verify("pi-1", key, value, headers)
        except InvalidEvent as exc:
            assert exc.error_type == "bad_signature"
        else:
            raise AssertionError("signature accepted for other bytes")
