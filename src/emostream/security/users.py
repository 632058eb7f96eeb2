"""Principals of a secure cluster: SCRAM user, role ACLs, produce quota, client profile.

Runs with the admin's profile. A device also gets its own results topic
``emotion.events.<ID>`` and an Ed25519 signing key: the private half goes into its profile, the
public half into the compacted registry ``emostream.device-keys`` that workers verify
transcripts against. The quota goes through Kafka's own ``ConfigCommand`` (from the cached jars)
because confluent-kafka has no client-quota admin API; its credentials travel in a 0600
properties file removed afterwards, never on the command line.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emostream.cluster import fetch
from emostream.cluster.config import render_properties
from emostream.cluster.private import write_private
from emostream.config import DEVICE_KEYS_TOPIC, cache_dir, device_events_topic
from emostream.errors import KafkaClientError, UsageError
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig, read_security_profile
from emostream.kafka.errors import client_error
from emostream.kafka.producer import idempotent_producer, produce
from emostream.kafka.security import AclSpec, SecurityAdmin
from emostream.security.profile import client_profile, java_client_properties
from emostream.security.roles import check_user_id, edge_group, principal, role_acls
from emostream.signing import KeyRecord, generate_key
from emostream.topics import ensure_device_topic, ensure_key_registry

DEFAULT_DEVICE_PRODUCE_RATE = 1024 * 1024  # bytes/s: far above speech transcripts, far below a flood
KEY_WRITE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class UserInfo:
    """A user as ``users list`` shows it: name, whether it can log in, its ACLs."""

    name: str
    has_password: bool
    acls: list[AclSpec] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"name": self.name, "has_password": self.has_password, "acls": [str(a) for a in self.acls]}


@dataclass(frozen=True)
class AddedUser:
    """What ``add_user`` did: the client profile (a secret) and, for a device, its topic and public key."""

    profile: dict[str, str]
    role: str
    results_topic: str | None = None
    public_key: str | None = None  # base64 Ed25519, as registered; not a secret


@dataclass(frozen=True)
class RemovedUser:
    """What ``remove_user`` did."""

    had_password: bool
    acls_deleted: int
    was_device: bool
    results_topic_deleted: str | None = None


class _Cluster:
    """The admin's connections for one command: ACLs/credentials, topics, and its client settings."""

    def __init__(self, admin_profile: Path, bootstrap: str | None) -> None:
        self.client = ClientConfig.resolve(bootstrap, str(admin_profile))
        self.security = SecurityAdmin(self.client)
        self.topics = Admin(self.client)

    def was_device(self, user: str) -> bool:
        """Whether ``user`` holds a device's group ACL now (devices are the only role with one)."""
        group = edge_group(user)
        return any(s.resource == "GROUP" and s.name == group for _, s in self.security.acls(principal(user)))


def add_user(admin_profile: Path, user: str, role: str, password: str | None = None,
             produce_rate: int | None = None, cert_file: str | None = None, key_file: str | None = None,
             bootstrap: str | None = None) -> AddedUser:
    """Create or update ``user`` with ``role``'s ACLs; a device also gets a quota, results topic and signing key.

    Adding an existing user again sets the new password and, for a device, a new signing key (a
    rotation: the old profile stops working) and re-grants the role. A user that was a device
    and now gets another role loses its registered key and results topic, as on removal.
    ``bootstrap`` overrides the admin profile's, for the admin connection and the new profile.
    """
    check_user_id(user)
    specs = role_acls(role, user)  # validates the role before anything changes
    if produce_rate is not None and produce_rate <= 0:
        raise UsageError(f"--produce-rate must be a positive number of bytes/s, got {produce_rate}")
    admin_data = read_security_profile(admin_profile)
    password = password or secrets.token_urlsafe(24)
    cluster = _Cluster(admin_profile, bootstrap)
    was_device = role != "device" and cluster.was_device(user)
    cluster.security.upsert_password(user, password)
    cluster.security.delete_acls(principal(user))  # a changed role must not keep the old role's rights
    cluster.security.create_acls(principal(user), specs)
    results_topic = public_key = signing_key = None
    if role == "device":
        live = cluster.topics.live_brokers()
        ensure_device_topic(cluster.topics, user, live)
        ensure_key_registry(cluster.topics, live)
        signing_key, public_key = generate_key()
        write_key_record(cluster.client, KeyRecord(user, public_key))
        results_topic = device_events_topic(user)
        set_produce_quota(admin_profile, user, produce_rate or DEFAULT_DEVICE_PRODUCE_RATE, bootstrap)
    elif was_device:
        _forget_device(cluster, admin_profile, user, bootstrap)
    profile = client_profile(bootstrap or admin_data["bootstrap"], user, password, admin_data["ca_file"],
                             cert_file, key_file, signing_key)
    return AddedUser(profile, role, results_topic, public_key)


def remove_user(admin_profile: Path, user: str, bootstrap: str | None = None) -> RemovedUser:
    """Remove ``user``'s credential and ACLs; for a device also its quota, registered key and results topic.

    The results topic is deleted, not kept: a device added later under the same id must not
    read what was computed for the one removed.
    """
    check_user_id(user)  # also refuses 'admin': removing it would lock the cluster's owner out
    cluster = _Cluster(admin_profile, bootstrap)
    device = cluster.was_device(user) or device_events_topic(user) in cluster.topics.topic_names()
    had = cluster.security.delete_password(user)
    deleted = cluster.security.delete_acls(principal(user))
    topic = _forget_device(cluster, admin_profile, user, bootstrap) if device else None
    return RemovedUser(had, deleted, device, topic)


def _forget_device(cluster: _Cluster, admin_profile: Path, user: str, bootstrap: str | None) -> str:
    """Tombstone the device's key, delete its results topic and its quota; the topic's name."""
    ensure_key_registry(cluster.topics)
    write_key_record(cluster.client, KeyRecord(user, None))  # first: its signatures stop verifying
    topic = device_events_topic(user)
    cluster.topics.delete_topics([topic])
    set_produce_quota(admin_profile, user, None, bootstrap)
    return topic


def write_key_record(client: ClientConfig, record: KeyRecord, timeout_s: float = KEY_WRITE_TIMEOUT_S) -> None:
    """Write one registry record (a device's public key, or its tombstone) and wait until it is stored."""
    failures: list[object] = []
    producer = idempotent_producer(client, **{"message.timeout.ms": int(timeout_s * 1000)})
    key, value = record.encode()
    produce(producer, DEVICE_KEYS_TOPIC, value, key, on_delivery=lambda err, _msg: err and failures.append(err))
    left = producer.flush(timeout_s + 5)
    what = f"{'register' if record.public_b64 else 'remove'} the key of '{record.device_id}' in {DEVICE_KEYS_TOPIC}"
    fix = "run the same 'emostream users' command again"
    if failures:
        raise client_error(what, failures[0], bootstrap=client.bootstrap, fix=fix)  # type: ignore[arg-type]
    if left:
        raise KafkaClientError(f"could not {what} at {client.bootstrap}: not stored within {timeout_s:.0f}s; {fix}")


def list_users(admin_profile: Path, bootstrap: str | None = None) -> list[UserInfo]:
    """Every user with a credential or an ACL."""
    admin = SecurityAdmin(ClientConfig.resolve(bootstrap, str(admin_profile)))
    names = set(admin.scram_users())
    by_user: dict[str, list[AclSpec]] = {}
    for who, spec in admin.acls():
        if who.startswith("User:"):
            by_user.setdefault(who[len("User:"):], []).append(spec)
    return [UserInfo(n, n in names, by_user.get(n, [])) for n in sorted(names | set(by_user))]


def quota_command(classpath: str, java: str, bootstrap: str, command_config: Path, user: str, rate: int | None) -> list[str]:
    """``kafka-configs --alter`` for a user's ``producer_byte_rate`` (``rate`` None deletes it)."""
    change = ["--add-config", f"producer_byte_rate={rate}"] if rate is not None else ["--delete-config", "producer_byte_rate"]
    return [java, "-Xmx128m", "-cp", classpath, "kafka.admin.ConfigCommand", "--bootstrap-server", bootstrap,
            "--command-config", str(command_config), "--alter", *change, "--entity-type", "users", "--entity-name", user]


QUOTA_ATTEMPTS = 3


def set_produce_quota(admin_profile: Path, user: str, rate: int | None, bootstrap: str | None = None) -> None:
    """Set (or with None, remove) ``user``'s produce byte-rate quota on every broker."""
    data = read_security_profile(admin_profile)
    props = java_client_properties(data)
    tmp = Path(admin_profile).parent / f".quota-{os.getpid()}-{secrets.token_hex(4)}.properties"
    write_private(tmp, render_properties(props).encode())
    try:
        cache = cache_dir()
        fetch.ensure_kafka(cache)
        cmd = quota_command(fetch.classpath(cache), fetch.require_java(), bootstrap or str(data["bootstrap"]), tmp, user, rate)
        for attempt in range(QUOTA_ATTEMPTS):  # a busy or just-started cluster can time the admin call out
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if proc.returncode == 0:
                break
            time.sleep(2.0 * (attempt + 1))
    finally:
        tmp.unlink(missing_ok=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise KafkaClientError(f"could not set the produce quota of '{user}': {' '.join(lines[-3:])[:500]}")
