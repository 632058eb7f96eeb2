"""Client settings: bootstrap servers plus an optional security profile, as librdkafka config.

The security profile JSON is outside input (a file a person copies to a device and edits), so
:func:`read_security_profile` is the one place that reads it: a JSON object of at most
:data:`PROFILE_MAX_BYTES`, only the keys of :data:`PROFILE_KEYS`, each a non-empty string with no
NUL or line break (they end up in librdkafka's C strings and in Java's JAAS line). It returns a
valid profile or raises :class:`ConfigError`, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

from emostream.config import local_bootstrap_path, resolve_bootstrap
from emostream.errors import ConfigError

_rdkafka_log = logging.getLogger("emostream.kafka.librdkafka")


class _QuietLog:
    """librdkafka's own log lines go to DEBUG: failures reach callers as errors, not as stderr noise."""

    def log(self, level: int, fmt: str, *args: object) -> None:
        _rdkafka_log.debug(fmt, *args)


_QUIET = _QuietLog()

# EMOSTREAM_KAFKA_DEBUG=CONTEXTS (librdkafka's ``debug``, e.g. "broker,msg,eos"): every client this
# process makes logs those contexts on stderr. For "why does this device not deliver": the same
# lines otherwise go to the DEBUG log only.
KAFKA_DEBUG_ENV = "EMOSTREAM_KAFKA_DEBUG"


class _StderrLog:
    def log(self, level: int, fmt: str, *args: object) -> None:
        try:
            line = fmt % args if args else fmt
        except (TypeError, ValueError):
            line = f"{fmt} {args}"
        sys.stderr.write(f"librdkafka: {line}\n")


# librdkafka's debug contexts (CONFIGURATION.md, 2.6+).
KAFKA_DEBUG_CONTEXTS = ("generic", "broker", "topic", "metadata", "feature", "queue", "msg", "protocol", "cgrp",
                        "security", "fetch", "interceptor", "plugin", "consumer", "admin", "eos", "mock", "assignor",
                        "conf", "telemetry", "all")


def kafka_debug_settings(value: str | None) -> dict[str, Any]:
    """librdkafka settings for an ``EMOSTREAM_KAFKA_DEBUG`` value: none when unset or blank,
    ConfigError (before any client exists) for a context librdkafka does not know."""
    contexts = [c.strip() for c in (value or "").split(",") if c.strip()]
    if not contexts:
        return {}
    unknown = [c for c in contexts if c not in KAFKA_DEBUG_CONTEXTS]
    if unknown:
        raise ConfigError(f"{KAFKA_DEBUG_ENV}: unknown librdkafka debug context(s) {', '.join(map(repr, unknown))}; "
                          f"use a comma-separated list of: {', '.join(KAFKA_DEBUG_CONTEXTS)}")
    return {"debug": ",".join(contexts), "logger": _StderrLog()}


def _debug_settings() -> dict[str, Any]:
    return kafka_debug_settings(os.environ.get(KAFKA_DEBUG_ENV))

SECURITY_PROFILE_ENV = "EMOSTREAM_SECURITY_PROFILE"
SCRAM_MECHANISM = "SCRAM-SHA-512"  # the one SASL mechanism our secure clusters enable
PROFILE_MAX_BYTES = 64 * 1024  # a real profile is ~400 bytes; anything near this is not one

# Security profile JSON keys → librdkafka settings (None: ours, not passed to librdkafka).
PROFILE_KEYS: dict[str, str | None] = {
    "bootstrap": None,
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanisms",
    "username": "sasl.username",
    "password": "sasl.password",
    "ca_file": "ssl.ca.location",
    "cert_file": "ssl.certificate.location",
    "key_file": "ssl.key.location",
    "signing_key": None,  # a device's Ed25519 private key (base64): the edge signs what it sends
}
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")


@dataclass(frozen=True)
class ClientConfig:
    """Where the cluster is and how to authenticate to it; shared by every client we create."""

    bootstrap: str
    security: dict[str, str] = field(default_factory=dict)
    # A device's Ed25519 private key (base64) from its profile: the edge signs what it sends.
    signing_key: str | None = None

    def librdkafka(self, **extra: Any) -> dict[str, Any]:
        """A librdkafka config dict: bootstrap, security, then ``extra`` (dots as keys)."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "logger": _QUIET, **self.security, **_debug_settings()}
        conf.update(extra)
        return conf

    @classmethod
    def resolve(cls, bootstrap: str | None = None, security_profile: str | None = None, *,
                local: Callable[[], str | None] | None = None) -> "ClientConfig":
        """From CLI flags / environment: the flag, else the profile's bootstrap, else
        ``EMOSTREAM_BOOTSTRAP``, else ``local()`` (default: the local cluster's published address,
        :func:`read_local_bootstrap`), else localhost:9092; see :func:`security_profile_path`."""
        local = local or read_local_bootstrap
        path = security_profile_path(security_profile)
        if path is None:
            return cls(bootstrap=bootstrap or resolve_bootstrap(None, local))
        profile = read_security_profile(path)
        security = librdkafka_security(profile)
        check_librdkafka(security)
        return cls(bootstrap=bootstrap or profile.get("bootstrap") or resolve_bootstrap(None, local),
                   security=security, signing_key=profile.get("signing_key"))


def read_local_bootstrap(cluster_dir: Path | None = None) -> str | None:
    """The bootstrap servers the local cluster (``kafka up``) published, or None when there is none."""
    try:
        text = local_bootstrap_path(cluster_dir).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


# librdkafka before 2.6.1 sends SCRAM client-final messages that Kafka 4.x brokers reject as
# "invalid credentials" (librdkafka#4895); the message alone would send a user hunting for a typo.
MIN_SASL_LIBRDKAFKA = (2, 6, 1)


def check_librdkafka(security: dict[str, str], linked: str | None = None) -> None:
    """ConfigError when ``security`` logs in with SASL and the linked librdkafka is older than 2.6.1."""
    protocol = security.get("security.protocol", "").upper()
    if not protocol.startswith("SASL") and "sasl.mechanisms" not in security:
        return
    if linked is None:
        import confluent_kafka  # here, not at the top: reading a profile needs no Kafka client

        linked = confluent_kafka.libversion()[0]
    parts = tuple(int(p) if p.isdigit() else 0 for p in linked.split("-")[0].split(".")[:3])
    if parts < MIN_SASL_LIBRDKAFKA:
        need = ".".join(map(str, MIN_SASL_LIBRDKAFKA))
        raise ConfigError(f"this Python links librdkafka {linked}, which cannot log in to a SASL (SCRAM) cluster "
                          f"running Kafka 4.x; it needs {need} or newer: pip install 'confluent-kafka>={need}' "
                          "in a virtualenv (python3-confluent-kafka from apt links an older librdkafka)")


def security_profile_path(flag: str | os.PathLike[str] | None = None) -> Path | None:
    """The profile to use: ``flag``, else ``EMOSTREAM_SECURITY_PROFILE``, else None (plaintext)."""
    chosen = flag or os.environ.get(SECURITY_PROFILE_ENV)
    return Path(chosen) if chosen else None


def read_security_profile(path: Path) -> dict[str, str]:
    """The profile at ``path`` as written (profile keys, string values), validated; ConfigError otherwise."""
    raw = _read_bounded(Path(path))
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        raise ConfigError(f"security profile {path} sets '{exc}' twice; keep one") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"security profile {path} is not readable JSON: {str(exc)[:200]}") from None
    return check_security_profile(data, str(path))


def check_security_profile(data: object, where: str = "the security profile") -> dict[str, str]:
    """``data`` (parsed JSON) as a profile: known keys, non-empty one-line strings; ConfigError otherwise."""
    if not isinstance(data, dict):
        raise ConfigError(f"security profile {where} must be a JSON object like "
                          '{"bootstrap": "host:9092", "username": "...", ...}')
    unknown = sorted(str(k)[:40] for k in data if k not in PROFILE_KEYS)
    if unknown:
        raise ConfigError(f"security profile {where} has unknown key(s) {', '.join(map(repr, unknown[:5]))}; "
                          f"known keys are {', '.join(PROFILE_KEYS)} (a typo? a profile from a newer emostream?)")
    for key, value in data.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"security profile {where}: '{key}' must be a non-empty string, got {type(value).__name__}")
        if any(c in value for c in "\0\r\n"):
            raise ConfigError(f"security profile {where}: '{key}' contains a NUL or line break; remove it")
    protocol = data.get("security_protocol")
    if protocol is not None and protocol.upper() not in _PROTOCOLS:
        raise ConfigError(f"security profile {where}: security_protocol must be one of {', '.join(_PROTOCOLS)}, got {protocol[:40]!r}")
    mechanism = data.get("sasl_mechanism")
    if mechanism is not None and mechanism.upper() not in _MECHANISMS:
        raise ConfigError(f"security profile {where}: sasl_mechanism must be one of {', '.join(_MECHANISMS)}, got {mechanism[:40]!r}")
    if "signing_key" in data:
        _check_signing_key(data["signing_key"], where)
    return dict(data)


def librdkafka_security(profile: dict[str, str]) -> dict[str, str]:
    """The librdkafka settings of a checked profile (``bootstrap`` and ``signing_key`` are not among them)."""
    return {setting: profile[key] for key, setting in PROFILE_KEYS.items() if setting and key in profile}


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; in a file holding credentials that hides an edit.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key[:40])
        out[key] = value
    return out


def _read_bounded(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            raw = fh.read(PROFILE_MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"security profile {path} does not exist; clients get one from 'emostream users add ID --out FILE', "
                          "the admin's is <cluster dir>/security/admin.json ('emostream kafka status --json' shows it)") from None
    except OSError as exc:
        raise ConfigError(f"security profile {path} cannot be read: {exc.strerror or exc}") from None
    if len(raw) > PROFILE_MAX_BYTES:
        raise ConfigError(f"security profile {path} is over {PROFILE_MAX_BYTES // 1024} KiB; it is not a profile")
    return raw


def _check_signing_key(value: str, where: str) -> None:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"security profile {where}: signing_key is not a base64 Ed25519 key (32 bytes); "
                          "'emostream users add ID' issues a new one")
