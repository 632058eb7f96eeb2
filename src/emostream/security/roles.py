"""What each kind of principal may do, as ACL data. Pure: no Kafka calls.

Everything not listed is denied (``allow.everyone.if.no.acl.found=false``). Topic names come
from :mod:`emostream.config`, so the ACLs follow the pipeline's defaults.

A device's rights are LITERAL names built from its id: a PREFIXED rule for ``pi-1`` would also
match ``pi-10`` and ``pi-1-x``. ACLs cannot say which record key a device may write, so *which
device sent a transcript* is proven by its signature (:mod:`emostream.signing`), not by ACLs.
"""

from __future__ import annotations

import string

from emostream.config import (
    DEVICE_KEYS_TOPIC,
    EMOTIONS_TOPIC,
    TRANSCRIPTS_TOPIC,
    WORKER_GROUP,
    dedupe_topic,
    device_events_topic,
    dlq_topic,
)
from emostream.errors import UsageError
from emostream.kafka.security import AclSpec

ROLES = ("device", "worker", "dashboard")
CLUSTER = "kafka-cluster"  # the one name a CLUSTER resource has
EDGE_GROUP_PREFIX = "emostream-edge-"
DASHBOARD_GROUP_PREFIX = "emostream-dashboard"
WORKER_TRANSACTIONAL_PREFIX = "emostream-worker"
_ID_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")


def principal(user: str) -> str:
    """The Kafka principal of a SCRAM user."""
    return f"User:{user}"


def edge_group(device: str) -> str:
    """The one consumer group ``device`` may use (to read its results topic)."""
    return f"{EDGE_GROUP_PREFIX}{device}"


def check_user_id(user: str) -> str:
    """A user id safe in principals, topic and group names and file names; UsageError otherwise.

    ASCII only: the id becomes part of topic names and is a device id in events, both ASCII.
    """
    if not user or len(user) > 64 or not _ID_CHARS.issuperset(user) or user.startswith("."):
        raise UsageError(f"user id '{user[:80]}' must be 1-64 letters, digits, '-', '_' or '.' (e.g. pi-kitchen)")
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
            # Its own results only; the shared topic holds every device's (READ implies DESCRIBE).
            AclSpec("TOPIC", device_events_topic(user), "LITERAL", "READ"),
            AclSpec("GROUP", edge_group(user), "LITERAL", "READ"),
        ]
    if role == "worker":
        dedupe = dedupe_topic(transcripts)
        return [
            AclSpec("TOPIC", transcripts, "LITERAL", "READ"),
            # The shared results topic and every device's emotion.events.<ID>.
            AclSpec("TOPIC", emotions, "PREFIXED", "WRITE"),
            AclSpec("TOPIC", emotions, "PREFIXED", "DESCRIBE"),
            AclSpec("TOPIC", dlq, "LITERAL", "WRITE"),
            AclSpec("TOPIC", DEVICE_KEYS_TOPIC, "LITERAL", "READ"),
            AclSpec("TOPIC", DEVICE_KEYS_TOPIC, "LITERAL", "DESCRIBE"),
            AclSpec("TOPIC", dedupe, "LITERAL", "READ"),
            AclSpec("TOPIC", dedupe, "LITERAL", "WRITE"),
            AclSpec("TOPIC", dedupe, "LITERAL", "DESCRIBE"),
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
