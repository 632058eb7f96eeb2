"""Topic creation with the pipeline's durability defaults.

``plan_topic`` is pure (defaults and validation); ``create_topic``/``ensure_pipeline_topics``
apply a plan through :class:`emostream.kafka.admin.Admin`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emostream.cluster.config import default_min_insync, default_replication
from emostream.config import EMOTIONS_TOPIC, TRANSCRIPTS_TOPIC, pipeline_topics
from emostream.errors import TopicError, UsageError
from emostream.kafka.admin import Admin

DEFAULT_PARTITIONS = 6


@dataclass(frozen=True)
class TopicPlan:
    """A topic to create: name, partitions, replication and topic configs."""

    name: str
    partitions: int
    replication: int
    configs: dict[str, str] = field(default_factory=dict)


def plan_topic(
    name: str,
    live_brokers: int,
    partitions: int | None = None,
    replication: int | None = None,
    min_insync: int | None = None,
) -> TopicPlan:
    """Defaults: replication min(3, live brokers), min.insync.replicas max(1, R-1), no unclean election.

    Raises UsageError when the request cannot work on this cluster, saying how to fix it.
    """
    if not name or len(name) > 249 or any(c not in _TOPIC_CHARS for c in name) or name in {".", ".."}:
        raise UsageError(f"'{name}' is not a valid topic name: use letters, digits, '.', '_' and '-' (max 249)")
    parts = DEFAULT_PARTITIONS if partitions is None else partitions
    if parts < 1:
        raise UsageError(f"--partitions must be at least 1, got {parts}")
    r = default_replication(live_brokers) if replication is None else replication
    if r < 1:
        raise UsageError(f"--replication must be at least 1, got {r}")
    if r > live_brokers:
        raise UsageError(
            f"topic '{name}' needs replication {r} but only {live_brokers} broker(s) are up; "
            f"start more with 'emostream kafka up --brokers {r}' or pass --replication {live_brokers}"
        )
    isr = default_min_insync(r) if min_insync is None else min_insync
    if not 1 <= isr <= r:
        raise UsageError(f"min.insync.replicas must be between 1 and the replication ({r}), got {isr}")
    return TopicPlan(name, parts, r, {"min.insync.replicas": str(isr), "unclean.leader.election.enable": "false"})


_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def create_topic(admin: Admin, plan: TopicPlan) -> bool:
    """Create the planned topic; False when it already existed."""
    return admin.create_topic(plan.name, plan.partitions, plan.replication, plan.configs)


def ensure_pipeline_topics(
    admin: Admin,
    partitions: int | None = None,
    replication: int | None = None,
    source_topic: str | None = None,
    target_topic: str | None = None,
) -> dict[str, bool]:
    """Create the transcripts, emotions and DLQ topics where missing; name → created now."""
    live = admin.live_brokers()
    names = pipeline_topics(source_topic or TRANSCRIPTS_TOPIC, target_topic or EMOTIONS_TOPIC)
    existing = admin.topic_names()
    result: dict[str, bool] = {}
    for name in names:
        if name in existing:
            result[name] = False
            continue
        result[name] = create_topic(admin, plan_topic(name, live, partitions, replication))
    return result


def check_topic(admin: Admin, name: str) -> None:
    """TopicError with a fix when ``name`` is missing."""
    if name not in admin.topic_names():
        raise TopicError(f"topic '{name}' does not exist; create it with 'emostream topics ensure' or 'emostream topics create {name}'")
