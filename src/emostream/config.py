"""Settings shared by every command: defaults, EMOSTREAM_* environment variables, flags.

Precedence is flag > environment > default. Nothing here reads files or touches Kafka, and this
module imports nothing else of ours (it is the bottom layer, see docs/architecture.md): the
local cluster publishes its address in :func:`local_bootstrap_path`, which the cluster layer
writes and ``kafka.configuration`` reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

TRANSCRIPTS_TOPIC = "stt.transcripts"
EMOTIONS_TOPIC = "emotion.events"
WORKER_GROUP = "emostream-worker"
DEFAULT_MODEL = "emostream-ekman"
FALLBACK_BOOTSTRAP = "localhost:9092"
# Compacted registry of device public keys (key = device id, value = JSON): written by the admin
# (``users add``), read by workers to verify each transcript's signature.
DEVICE_KEYS_TOPIC = "emostream.device-keys"
# Per-device results: ``emotion.events.<device>``, readable only by that device (literal ACL).
DEVICE_EVENTS_PREFIX = f"{EMOTIONS_TOPIC}."


def dlq_topic(source_topic: str) -> str:
    """The dead-letter topic that belongs to ``source_topic``."""
    return f"{source_topic}.dlq"


def device_events_topic(device_id: str) -> str:
    """The results topic only ``device_id`` may read (secure clusters)."""
    return f"{DEVICE_EVENTS_PREFIX}{device_id}"


def dedupe_topic(source_topic: str) -> str:
    """The worker's compacted changelog of recently processed utterance ids for ``source_topic``."""
    return f"{source_topic}.dedupe"


def pipeline_topics(source_topic: str = TRANSCRIPTS_TOPIC, target_topic: str = EMOTIONS_TOPIC) -> list[str]:
    """The topics the pipeline needs: transcripts, emotions and the transcripts' DLQ."""
    return [source_topic, target_topic, dlq_topic(source_topic)]


def home_dir() -> Path:
    """Where emostream keeps per-user state (``EMOSTREAM_HOME``, default ``~/.emostream``)."""
    return Path(os.environ.get("EMOSTREAM_HOME") or Path.home() / ".emostream")


def cache_dir() -> Path:
    """Where downloaded Kafka jars live (``EMOSTREAM_CACHE``, default ``~/.cache/emostream``)."""
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("EMOSTREAM_CACHE") or Path(xdg) / "emostream")


def default_cluster_dir() -> Path:
    """The local cluster's folder (``EMOSTREAM_CLUSTER_DIR``, default ``$EMOSTREAM_HOME/cluster``)."""
    return Path(os.environ.get("EMOSTREAM_CLUSTER_DIR") or home_dir() / "cluster")


def local_bootstrap_path(cluster_dir: Path | None = None) -> Path:
    """The file in which the local cluster (``kafka up``) publishes its bootstrap servers."""
    return (cluster_dir or default_cluster_dir()) / "bootstrap"


def resolve_bootstrap(flag: str | None = None, local: Callable[[], str | None] | None = None) -> str:
    """Bootstrap servers: the flag, else ``EMOSTREAM_BOOTSTRAP``, else ``local()`` (the local
    cluster's, as :class:`emostream.kafka.configuration.ClientConfig` reads it), else localhost:9092."""
    if flag:
        return flag
    env = os.environ.get("EMOSTREAM_BOOTSTRAP")
    if env:
        return env
    return (local() if local is not None else None) or FALLBACK_BOOTSTRAP
