"""Client security profiles: the JSON that ``--security-profile`` reads, and its Java twin.

A profile holds ``bootstrap``, ``security_protocol``, ``sasl_mechanism``, ``username``,
``password``, ``ca_file`` and optionally ``cert_file``/``key_file`` (device mTLS). It is a
secret: it is written 0600 and printed only when a user asks for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emostream.errors import ConfigError
from emostream.security.ca import write_private

ADMIN_USER = "admin"
SASL_MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def client_profile(bootstrap: str, username: str, password: str, ca_file: str,
                   cert_file: str | None = None, key_file: str | None = None) -> dict[str, Any]:
    """A SASL_SSL / SCRAM-SHA-512 profile for one principal."""
    profile: dict[str, Any] = {
        "bootstrap": bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": SASL_MECHANISM,
        "username": username,
        "password": password,
        "ca_file": ca_file,
    }
    if cert_file and key_file:
        profile["cert_file"], profile["key_file"] = cert_file, key_file
    return profile


def render_profile(profile: dict[str, Any]) -> str:
    """The profile as the JSON text users save and pass to ``--security-profile``."""
    return json.dumps(profile, indent=2) + "\n"


def write_profile(path: Path, profile: dict[str, Any]) -> None:
    """Write a profile readable by the owner only."""
    write_private(Path(path), render_profile(profile).encode())


def read_profile(path: Path) -> dict[str, Any]:
    """The raw profile JSON (keys as written, not librdkafka names)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"security profile {path} does not exist; a secure cluster's admin profile is "
                          "<cluster dir>/security/admin.json ('emostream kafka status --json' shows it)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"security profile {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"security profile {path} must be a JSON object")
    return data


def java_client_properties(profile: dict[str, Any]) -> dict[str, str]:
    """The same credentials as Java client properties (for Kafka's own tools' ``--command-config``)."""
    missing = [k for k in ("username", "password", "ca_file") if not profile.get(k)]
    if missing:
        raise ConfigError(f"security profile lacks {', '.join(missing)}; use the admin profile of a secure cluster")
    user, password = _jaas_quote(profile["username"]), _jaas_quote(profile["password"])
    return {
        "security.protocol": str(profile.get("security_protocol", "SASL_SSL")),
        "sasl.mechanism": str(profile.get("sasl_mechanism", SASL_MECHANISM)),
        "sasl.jaas.config": f'{SCRAM_LOGIN_MODULE} required username="{user}" password="{password}";',
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(profile["ca_file"]),
    }


def _jaas_quote(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"')
