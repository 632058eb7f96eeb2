"""Client settings: bootstrap servers plus an optional security profile, as librdkafka config."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emostream.config import resolve_bootstrap
from emostream.errors import ConfigError

_rdkafka_log = logging.getLogger("emostream.kafka.librdkafka")


class _QuietLog:
    """librdkafka's own log lines go to DEBUG: failures reach callers as errors, not as stderr noise."""

    def log(self, level: int, fmt: str, *args: object) -> None:
        _rdkafka_log.debug(fmt, *args)


_QUIET = _QuietLog()

# Security profile JSON keys → librdkafka settings.
_PROFILE_KEYS = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanisms",
    "username": "sasl.username",
    "password": "sasl.password",
    "ca_file": "ssl.ca.location",
    "cert_file": "ssl.certificate.location",
    "key_file": "ssl.key.location",
}


@dataclass(frozen=True)
class ClientConfig:
    """Where the cluster is and how to authenticate to it; shared by every client we create."""

    bootstrap: str
    security: dict[str, str] = field(default_factory=dict)
    # A device's Ed25519 private key (base64) from its profile: the edge signs what it sends.
    signing_key: str | None = None

    def librdkafka(self, **extra: Any) -> dict[str, Any]:
        """A librdkafka config dict: bootstrap, security, then ``extra`` (dots as keys)."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "logger": _QUIET, **self.security}
        conf.update(extra)
        return conf

    @classmethod
    def resolve(cls, bootstrap: str | None = None, security_profile: str | None = None) -> "ClientConfig":
        """From CLI flags / environment: see :func:`resolve_bootstrap` and :func:`load_security_profile`."""
        profile_path = security_profile or os.environ.get("EMOSTREAM_SECURITY_PROFILE")
        security: dict[str, str] = {}
        profile_bootstrap = signing_key = None
        if profile_path:
            profile = load_security_profile(Path(profile_path))
            profile_bootstrap = profile.pop("bootstrap", None)
            signing_key = profile.pop("signing_key", None)
            security = profile
        return cls(bootstrap=bootstrap or profile_bootstrap or resolve_bootstrap(None), security=security,
                   signing_key=signing_key)


def load_security_profile(path: Path) -> dict[str, str]:
    """Read a security profile JSON into librdkafka settings (plus ``bootstrap`` if present)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"security profile {path} does not exist; create one with 'emostream users add'") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"security profile {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"security profile {path} must be a JSON object")
    out: dict[str, str] = {}
    for key, value in data.items():
        if key in ("bootstrap", "signing_key") and value is not None:
            out[key] = str(value)
        elif key in _PROFILE_KEYS and value is not None:
            out[_PROFILE_KEYS[key]] = str(value)
    return out
