"""Client security profiles: writing the JSON that ``--security-profile`` reads, and its Java twin.

A profile holds ``bootstrap``, ``security_protocol``, ``sasl_mechanism``, ``username``,
``password``, ``ca_file``, optionally ``cert_file``/``key_file`` (device mTLS) and, for a device,
``signing_key`` (its Ed25519 private key). It is a secret: it is written 0600 and printed only
when a user asks for it. Reading it is :func:`emostream.kafka.configuration.read_security_profile`
(one validating reader for every command).
"""

from __future__ import annotations

import json
from pathlib import Path

from emostream.cluster.private import write_private
from emostream.errors import ConfigError
from emostream.kafka.configuration import SCRAM_MECHANISM, check_security_profile, read_security_profile

ADMIN_USER = "admin"
SASL_MECHANISM = SCRAM_MECHANISM
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"

read_profile = read_security_profile  # the name the cluster code uses; the same one reader


def client_profile(bootstrap: str, username: str, password: str, ca_file: str,
                   cert_file: str | None = None, key_file: str | None = None,
                   signing_key: str | None = None) -> dict[str, str]:
    """A SASL_SSL / SCRAM-SHA-512 profile for one principal (checked like a profile that is read)."""
    profile = {
        "bootstrap": bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": SASL_MECHANISM,
        "username": username,
        "password": password,
        "ca_file": ca_file,
    }
    if cert_file and key_file:
        profile["cert_file"], profile["key_file"] = cert_file, key_file
    if signing_key:
        profile["signing_key"] = signing_key
    # A value the reader would refuse (a newline in a path, an empty password) fails here, not on the device.
    return check_security_profile(profile, f"for '{username}'")


def render_profile(profile: dict[str, str]) -> str:
    """The profile as the JSON text users save and pass to ``--security-profile``."""
    return json.dumps(profile, indent=2) + "\n"


def write_profile(path: Path, profile: dict[str, str]) -> None:
    """Write a profile readable by the owner only."""
    write_private(Path(path), render_profile(profile).encode())


def java_client_properties(profile: dict[str, str]) -> dict[str, str]:
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
    if any(c in value for c in "\0\r\n"):  # a line break would end the properties line (and the JAAS entry)
        raise ConfigError("a username or password with a NUL or line break cannot go into a JAAS line")
    return str(value).replace("\\", "\\\\").replace('"', '\\"')
