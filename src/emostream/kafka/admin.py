"""Cluster metadata and topic administration over the Kafka admin API."""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from emostream.errors import KafkaClientError, TopicError
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.errors import client_error, describe, error_name


@dataclass(frozen=True)
class ClusterInfo:
    """Live brokers and the active controller, as the cluster reports them."""

    broker_ids: tuple[int, ...]
    controller_id: int | None
    cluster_id: str | None


@dataclass(frozen=True)
class TopicInfo:
    """A topic's shape as the brokers report it."""

    name: str
    partitions: int
    replication: int
    configs: dict[str, str]


class Admin:
    """A small façade over ``AdminClient`` with errors a user can act on."""

    def __init__(self, client: ClientConfig, timeout_s: float = 10.0) -> None:
        self._client = client
        self._timeout = timeout_s
        self._admin = AdminClient(client.librdkafka(**{"socket.timeout.ms": int(timeout_s * 1000)}))

    def cluster_info(self) -> ClusterInfo:
        """Live brokers and controller; KafkaClientError when the cluster cannot be reached."""
        try:
            desc = self._admin.describe_cluster(request_timeout=self._timeout).result(timeout=self._timeout + 1)
        except KafkaException as exc:
            raise client_error("reach Kafka", exc, bootstrap=self._client.bootstrap) from exc
        except Exception as exc:  # the future's own timeout
            raise KafkaClientError(
                f"could not reach Kafka at {self._client.bootstrap} within {self._timeout:.0f}s; "
                "is the cluster up ('emostream kafka status')?"
            ) from exc
        controller = desc.controller.id if desc.controller is not None else None
        return ClusterInfo(tuple(sorted(n.id for n in desc.nodes)), controller, desc.cluster_id)

    def live_brokers(self) -> int:
        """Number of brokers the cluster reports alive."""
        return len(self.cluster_info().broker_ids)

    def topic_names(self) -> set[str]:
        """Names of the existing topics (those this principal may describe)."""
        return set(self.partition_counts())

    def partition_counts(self) -> dict[str, int]:
        """Existing topic → its number of partitions, from one metadata request."""
        try:
            md = self._admin.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise client_error("list topics", exc, bootstrap=self._client.bootstrap) from exc
        # A topic created a moment ago may still report LEADER_NOT_AVAILABLE: it exists all the same.
        return {name: len(t.partitions) for name, t in md.topics.items()}

    def create_topic(self, name: str, partitions: int, replication: int, configs: dict[str, str]) -> bool:
        """Create a topic; False when it already exists, TopicError on any other failure."""
        fut = self._admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=replication, config=configs)],
            request_timeout=self._timeout,
        )[name]
        try:
            fut.result(timeout=self._timeout + 5)
        except KafkaException as exc:
            if error_name(exc) == "TOPIC_ALREADY_EXISTS":
                return False
            raise TopicError(f"could not create topic '{name}': {describe(exc)}") from exc
        except FutureTimeout as exc:
            raise TopicError(f"could not create topic '{name}': no answer from {self._client.bootstrap} "
                             f"within {self._timeout + 5:.0f}s; is the cluster up ('emostream kafka status')?") from exc
        return True

    def describe_topic(self, name: str) -> TopicInfo:
        """Partitions, replication and the non-default configs of ``name``."""
        md = self._admin.list_topics(topic=name, timeout=self._timeout)
        topic = md.topics.get(name)
        if topic is None or topic.error is not None:
            raise TopicError(f"topic '{name}' does not exist; create it with 'emostream topics create {name}'")
        parts = topic.partitions
        replication = len(next(iter(parts.values())).replicas) if parts else 0
        res = ConfigResource(ConfigResource.Type.TOPIC, name)
        entries = self._admin.describe_configs([res], request_timeout=self._timeout)[res].result(timeout=self._timeout + 5)
        configs = {k: v.value for k, v in entries.items() if v.value is not None}
        return TopicInfo(name, len(parts), replication, configs)

    def partitions_of(self, name: str) -> dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]]:
        """partition → (leader, replicas, in-sync replicas)."""
        md = self._admin.list_topics(topic=name, timeout=self._timeout)
        topic = md.topics[name]
        return {p.id: (p.leader, tuple(p.replicas), tuple(p.isrs)) for p in topic.partitions.values()}

    def delete_topics(self, names: list[str]) -> None:
        """Delete topics (tests and benchmarks clean up after themselves)."""
        futs = self._admin.delete_topics(names, request_timeout=self._timeout)
        for name, fut in futs.items():
            try:
                fut.result(timeout=self._timeout + 5)
            except KafkaException as exc:
                if error_name(exc) != "UNKNOWN_TOPIC_OR_PART":
                    raise TopicError(f"could not delete topic '{name}': {describe(exc)}") from exc
