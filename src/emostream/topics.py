"""Topic creation with the pipeline's durability defaults.

``plan_topic`` and the ``plan_*`` helpers are pure (defaults and validation); ``create_topic``,
``ensure_pipeline_topics`` and ``ensure_device_topic`` apply plans through
:class:`emostream.kafka.admin.Admin`.

Besides the pipeline's topics (transcripts, emotions, DLQ) ``topics ensure`` creates the state
topics around them: the device key registry (compacted: one live record per device) and the
worker's dedupe changelog (compacted and deleted after a day, one partition per transcripts
partition).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emostream.cluster.config import default_min_insync, default_replication
from emostream.config import DEVICE_KEYS_TOPIC, EMOTIONS_TOPIC, TRANSCRIPTS_TOPIC, dedupe_topic, device_events_topic, pipeline_topics
from emostream.errors import TopicError, UsageError
from emostream.kafka.admin import Admin

DEFAULT_PARTITIONS = 6
DEDUPE_RETENTION_MS = 24 * 3600 * 1000  # a redelivered utterance older than a day is not a duplicate we chase


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


def plan_key_registry(live_brokers: int, replication: int | None = None) -> TopicPlan:
    """``emostream.device-keys``: compacted, so the latest key (or tombstone) of every device is kept forever."""
    plan = plan_topic(DEVICE_KEYS_TOPIC, live_brokers, 1, replication)
    return _with(plan, {"cleanup.policy": "compact"})


def plan_dedupe(source_topic: str, source_partitions: int, live_brokers: int, replication: int | None = None) -> TopicPlan:
    """The worker's dedupe changelog of ``source_topic``: partition i holds the ids seen on input partition i."""
    plan = plan_topic(dedupe_topic(source_topic), live_brokers, source_partitions, replication)
    return _with(plan, {"cleanup.policy": "compact,delete", "retention.ms": str(DEDUPE_RETENTION_MS)})


def plan_device_events(device: str, live_brokers: int, replication: int | None = None) -> TopicPlan:
    """``emotion.events.<device>``: one partition (one reader, ordered), durable like the pipeline's."""
    return plan_topic(device_events_topic(device), live_brokers, 1, replication)


def _with(plan: TopicPlan, configs: dict[str, str]) -> TopicPlan:
    return TopicPlan(plan.name, plan.partitions, plan.replication, {**plan.configs, **configs})


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
    """Create the transcripts, emotions, DLQ, key registry and dedupe changelog topics where missing.

    name → created now. TopicError when an existing changelog's partitions differ from its
    transcripts topic's (the worker pairs them one to one).
    """
    live = admin.live_brokers()
    source = source_topic or TRANSCRIPTS_TOPIC
    existing = admin.partition_counts()
    result: dict[str, bool] = {}
    for name in pipeline_topics(source, target_topic or EMOTIONS_TOPIC):
        result[name] = name not in existing and create_topic(admin, plan_topic(name, live, partitions, replication))
    result[DEVICE_KEYS_TOPIC] = DEVICE_KEYS_TOPIC not in existing and create_topic(admin, plan_key_registry(live, replication))
    source_partitions = existing.get(source) or plan_topic(source, live, partitions, replication).partitions
    changelog = plan_dedupe(source, source_partitions, live, replication)
    if changelog.name in existing and existing[changelog.name] != source_partitions:
        raise TopicError(
            f"topic '{changelog.name}' has {existing[changelog.name]} partition(s) but '{source}' has {source_partitions}; "
            f"the worker keeps one changelog partition per input partition: add partitions to '{changelog.name}' "
            f"(kafka-topics --alter --partitions {source_partitions})"
        )
    result[changelog.name] = changelog.name not in existing and create_topic(admin, changelog)
    return result


def ensure_key_registry(admin: Admin, live_brokers: int | None = None) -> bool:
    """Create ``emostream.device-keys`` where missing (one request; an existing one is kept): created now."""
    return create_topic(admin, plan_key_registry(live_brokers or admin.live_brokers()))


def ensure_device_topic(admin: Admin, device: str, live_brokers: int | None = None) -> bool:
    """Create ``emotion.events.<device>`` where missing (one request; an existing one is kept): created now."""
    return create_topic(admin, plan_device_events(device, live_brokers or admin.live_brokers()))


def check_topic(admin: Admin, name: str) -> None:
    """TopicError with a fix when ``name`` is missing."""
    if name not in admin.topic_names():
        raise TopicError(f"topic '{name}' does not exist; create it with 'emostream topics ensure' or 'emostream topics create {name}'")
