"""What each kind of principal may do, as ACL data. Pure: no Kafka calls.

Everything not listed is denied (``allow.everyone.if.no.acl.found=false``). Topic names come
from :mod:`emostream.config`, so the ACLs follow the pipeline's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from emostream.config import EMOTIONS_TOPIC, TRANSCRIPTS_TOPIC, WORKER_GROUP, dlq_topic
from emostream.errors import UsageError

ROLES = ("device", "worker", "dashboard")
CLUSTER = "kafka-cluster"  # the one name a CLUSTER resource has
EDGE_GROUP_PREFIX = "emostream-edge-"
DASHBOARD_GROUP_PREFIX = "emostream-dashboard"
WORKER_TRANSACTIONAL_PREFIX = "emostream-worker"


@dataclass(frozen=True)
class AclSpec:
    """One ALLOW rule for a principal: resource type, name, pattern, operation (Kafka's names)."""

    resource: str  # TOPIC | GROUP | TRANSACTIONAL_ID | BROKER (the cluster)
    name: str
    pattern: str  # LITERAL | PREFIXED
    operation: str  # READ | WRITE | DESCRIBE | IDEMPOTENT_WRITE | ...

    def __str__(self) -> str:
        kind = "prefix " if self.pattern == "PREFIXED" else ""
        resource = "cluster" if self.resource == "BROKER" else self.resource.lower()
        return f"{self.operation} on {resource} {kind}'{self.name}'"


def principal(user: str) -> str:
    """The Kafka principal of a SCRAM user."""
    return f"User:{user}"


def check_user_id(user: str) -> str:
    """A user id safe in principals, group prefixes and file names; UsageError otherwise."""
    if not user or len(user) > 64 or not all(c.isalnum() or c in "-_." for c in user) or user.startswith("."):
        raise UsageError(f"user id '{user}' must be 1-64 letters, digits, '-', '_' or '.' (e.g. pi-kitchen)")
    if user in ("admin", "broker"):
        raise UsageError(f"'{user}' is reserved for the cluster itself; pick another id")
    return user


def role_acls(role: str, user: str) -> list[AclSpec]:
    """The ACLs a ``role`` needs, for the user ``user``."""
    transcripts, emotions, dlq = TRANSCRIPTS_TOPIC, EMOTIONS_TOPIC, dlq_topic(TRANSCRIPTS_TOPIC)
    idempotent = AclSpec("BROKER", CLUSTER, "LITERAL", "IDEMPOTENT_WRITE")
    if role == "device":
        return [
            AclSpec("TOPIC", transcripts, "LITERAL", "WRITE"),
            AclSpec("TOPIC", transcripts, "LITERAL", "DESCRIBE"),
            idempotent,
            AclSpec("TOPIC", emotions, "LITERAL", "READ"),
            AclSpec("GROUP", f"{EDGE_GROUP_PREFIX}{user}", "PREFIXED", "READ"),
        ]
    if role == "worker":
        return [
            AclSpec("TOPIC", transcripts, "LITERAL", "READ"),
            AclSpec("TOPIC", emotions, "LITERAL", "WRITE"),
            AclSpec("TOPIC", dlq, "LITERAL", "WRITE"),
            AclSpec("GROUP", WORKER_GROUP, "PREFIXED", "READ"),
            AclSpec("TRANSACTIONAL_ID", WORKER_TRANSACTIONAL_PREFIX, "PREFIXED", "WRITE"),
            AclSpec("TRANSACTIONAL_ID", WORKER_TRANSACTIONAL_PREFIX, "PREFIXED", "DESCRIBE"),
            idempotent,
        ]
    if role == "dashboard":
        return [
            AclSpec("TOPIC", emotions, "LITERAL", "READ"),
            AclSpec("TOPIC", dlq, "LITERAL", "READ"),
            AclSpec("GROUP", DASHBOARD_GROUP_PREFIX, "PREFIXED", "READ"),
        ]
    raise UsageError(f"unknown role '{role}'; choose one of {', '.join(ROLES)}")
