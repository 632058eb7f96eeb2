"""Principals of a secure cluster: SCRAM user, role ACLs, produce quota, client profile.

Runs with the admin's profile. The quota goes through Kafka's own ``ConfigCommand`` (from the
cached jars) because confluent-kafka has no client-quota admin API; its credentials travel in
a 0600 properties file removed afterwards, never on the command line.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emostream.cluster.config import render_properties
from emostream.errors import KafkaClientError, UsageError
from emostream.security.ca import write_private
from emostream.security.profile import client_profile, java_client_properties, read_profile
from emostream.security.roles import EDGE_GROUP_PREFIX, AclSpec, check_user_id, principal, role_acls

DEFAULT_DEVICE_PRODUCE_RATE = 1024 * 1024  # bytes/s: far above speech transcripts, far below a flood


@dataclass(frozen=True)
class UserInfo:
    """A user as ``users list`` shows it: name, whether it can log in, its ACLs."""

    name: str
    has_password: bool
    acls: list[AclSpec] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"name": self.name, "has_password": self.has_password, "acls": [str(a) for a in self.acls]}


def _security_admin(admin_profile: Path, bootstrap: str | None = None):
    from emostream.kafka.configuration import ClientConfig
    from emostream.kafka.security import SecurityAdmin

    return SecurityAdmin(ClientConfig.resolve(bootstrap, str(admin_profile)))


def add_user(admin_profile: Path, user: str, role: str, password: str | None = None,
             produce_rate: int | None = None, cert_file: str | None = None, key_file: str | None = None,
             bootstrap: str | None = None) -> dict[str, Any]:
    """Create or update ``user`` with ``role``'s ACLs (and a produce quota for devices); its client profile.

    Adding an existing user again sets the new password (a rotation) and re-grants the role.
    ``bootstrap`` overrides the admin profile's, for the admin connection and the new profile.
    """
    check_user_id(user)
    specs = role_acls(role, user)  # validates the role before anything changes
    if produce_rate is not None and produce_rate <= 0:
        raise UsageError(f"--produce-rate must be a positive number of bytes/s, got {produce_rate}")
    admin_data = read_profile(admin_profile)
    password = password or secrets.token_urlsafe(24)
    admin = _security_admin(admin_profile, bootstrap)
    admin.upsert_password(user, password)
    admin.delete_acls(principal(user))  # a changed role must not keep the old role's rights
    admin.create_acls(principal(user), specs)
    if role == "device":
        set_produce_quota(admin_profile, user, produce_rate or DEFAULT_DEVICE_PRODUCE_RATE, bootstrap)
    return client_profile(bootstrap or str(admin_data["bootstrap"]), user, password, str(admin_data["ca_file"]), cert_file, key_file)


def remove_user(admin_profile: Path, user: str, bootstrap: str | None = None) -> tuple[bool, int]:
    """Remove ``user``'s credential, ACLs and quota: (had a credential, ACLs deleted)."""
    admin = _security_admin(admin_profile, bootstrap)
    # Only devices get a quota; their group ACL says so without a JVM start to ask the brokers.
    device = any(spec.resource == "GROUP" and spec.name.startswith(EDGE_GROUP_PREFIX) for _, spec in admin.acls(principal(user)))
    had = admin.delete_password(user)
    deleted = admin.delete_acls(principal(user))
    if device:
        set_produce_quota(admin_profile, user, None, bootstrap)
    return had, deleted


def list_users(admin_profile: Path, bootstrap: str | None = None) -> list[UserInfo]:
    """Every user with a credential or an ACL."""
    admin = _security_admin(admin_profile, bootstrap)
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


def set_produce_quota(admin_profile: Path, user: str, rate: int | None, bootstrap: str | None = None) -> None:
    """Set (or with None, remove) ``user``'s produce byte-rate quota on every broker."""
    from emostream.cluster import fetch
    from emostream.config import cache_dir

    data = read_profile(admin_profile)
    props = java_client_properties(data)
    tmp = Path(admin_profile).parent / f".quota-{os.getpid()}-{secrets.token_hex(4)}.properties"
    write_private(tmp, render_properties(props).encode())
    try:
        cache = cache_dir()
        fetch.ensure_kafka(cache)
        cmd = quota_command(fetch.classpath(cache), fetch.require_java(), bootstrap or str(data["bootstrap"]), tmp, user, rate)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        tmp.unlink(missing_ok=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise KafkaClientError(f"could not set the produce quota of '{user}': {' '.join(lines[-3:])[:500]}")
