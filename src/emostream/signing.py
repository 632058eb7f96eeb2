"""Device identity on the wire: each transcript is signed with its device's Ed25519 key.

Kafka ACLs say *who may write to a topic*, not *which key a record may carry*, so on a secure
cluster the worker checks every transcript's signature against the public key that ``users add``
registered for the record's device (compacted topic ``emostream.device-keys``). A device holds
only its own private key (in its 0600 client profile); the registry holds public keys only, so
reading it gives no power to forge. Pure: no Kafka calls.

Signed bytes: ``b"emostream-sig-v1\\0" + len(key) as 4 bytes + key + value`` — the record key
(the device id) is bound to the value, so neither can be swapped for another device's.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from emostream.events import InvalidEvent, check_device_id

SIG_HEADER = "emostream.sig"
_DOMAIN = b"emostream-sig-v1\0"
_KEY_RECORD_MAX = 1024


def signed_message(key: bytes | None, value: bytes | None) -> bytes:
    """The bytes a signature covers: the record key bound to the value."""
    k = key or b""
    return _DOMAIN + len(k).to_bytes(4, "big") + k + (value or b"")


def _b64decode(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise InvalidEvent("invalid_key", f"{what} is not base64: {exc}") from exc
    if len(raw) != size:
        raise InvalidEvent("invalid_key", f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def generate_key() -> tuple[str, str]:
    """A new Ed25519 key pair as base64 text: (private, public)."""
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    raw_public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw_private).decode(), base64.b64encode(raw_public).decode()


class DeviceSigner:
    """Signs a device's records (edge side)."""

    def __init__(self, private_b64: str) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(_b64decode(private_b64, 32, "signing key"))

    def headers(self, key: bytes | None, value: bytes | None) -> list[tuple[str, bytes]]:
        """The headers to send with the record: its signature."""
        return [(SIG_HEADER, self._key.sign(signed_message(key, value)))]

    def public_b64(self) -> str:
        """The matching public key, as registered."""
        return base64.b64encode(self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


@dataclass(frozen=True)
class KeyRecord:
    """One entry of the key registry: a device and its public key (None: the device was removed)."""

    device_id: str
    public_b64: str | None

    def encode(self) -> tuple[bytes, bytes | None]:
        """(record key, record value); a removed device is a tombstone."""
        value = None if self.public_b64 is None else json.dumps({"v": 1, "ed25519": self.public_b64}).encode()
        return self.device_id.encode(), value


def decode_key_record(key: bytes | None, value: bytes | None) -> KeyRecord:
    """Parse a registry record; InvalidEvent when it is not one (never anything else)."""
    if key is None or len(key) > 256:
        raise InvalidEvent("invalid_key", "key registry record needs a device id key")
    try:
        device = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid_key", "device id is not UTF-8") from exc
    check_device_id(device)
    if value is None:
        return KeyRecord(device, None)
    if len(value) > _KEY_RECORD_MAX:
        raise InvalidEvent("invalid_key", f"key record is {len(value)} bytes; at most {_KEY_RECORD_MAX}")
    try:
        obj: Any = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidEvent("invalid_key", f"key record is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("v") != 1 or not isinstance(obj.get("ed25519"), str):
        raise InvalidEvent("invalid_key", "key record needs v=1 and an 'ed25519' string")
    _b64decode(obj["ed25519"], 32, "public key")
    return KeyRecord(device, obj["ed25519"])


class DeviceKeys:
    """The registry as the worker holds it: device id → public key; verifies records."""

    def __init__(self) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}

    def apply(self, record: KeyRecord) -> None:
        """Add, replace (key rotation) or remove (tombstone) a device's key."""
        if record.public_b64 is None:
            self._keys.pop(record.device_id, None)
        else:
            self._keys[record.device_id] = Ed25519PublicKey.from_public_bytes(_b64decode(record.public_b64, 32, "public key"))

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def verify(self, device_id: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]] | None) -> None:
        """None when the record carries a valid signature of ``device_id``; InvalidEvent otherwise."""
        public = self._keys.get(device_id)
        if public is None:
            raise InvalidEvent("unknown_device", f"device '{device_id}' has no registered key ('emostream users add {device_id} --role device')")
        sigs = [v for k, v in (headers or []) if k == SIG_HEADER]
        if len(sigs) != 1 or sigs[0] is None or len(sigs[0]) != 64:
            raise InvalidEvent("unsigned", f"record needs exactly one 64-byte '{SIG_HEADER}' header")
        try:
            public.verify(sigs[0], signed_message(key, value))
        except InvalidSignature:
            raise InvalidEvent("bad_signature", f"signature does not match device '{device_id}'") from None
