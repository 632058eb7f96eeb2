"""Deployment files cannot run here (no container engine, no Kubernetes); check their structure
and that every setting agrees with the Python defaults, so they cannot drift silently."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml is part of the test extra")

from emostream.cluster.config import ClusterSettings, compose_nodes, container_env, server_properties
from emostream.cluster.fetch import KAFKA_VERSION
from emostream.config import EMOTIONS_TOPIC, TRANSCRIPTS_TOPIC, WORKER_GROUP, pipeline_topics
from emostream.topics import DEFAULT_PARTITIONS, plan_dedupe, plan_key_registry, plan_topic

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_compose_kafka_environment_is_what_our_generator_writes() -> None:
    compose = _docs(DEPLOY / "compose" / "docker-compose.yml")[0]
    nodes, voters = compose_nodes()
    for node in nodes:
        service = compose["services"][f"kafka-{node.node_id}"]
        assert service["image"] == f"apache/kafka:{KAFKA_VERSION}"
        env = {k: str(v) for k, v in service["environment"].items() if k.startswith("KAFKA_") and k != "KAFKA_HEAP_OPTS"}
        assert env == container_env(server_properties(node, ClusterSettings("x", voters, len(nodes))))
        assert service["environment"]["CLUSTER_ID"]
    assert compose["services"]["worker"]["command"][0] == "worker"


def test_kubernetes_topics_match_topics_ensure() -> None:
    topics = {d["metadata"]["name"]: d["spec"] for d in _docs(DEPLOY / "k8s" / "topics.yaml")}
    plans = [plan_topic(name, 3) for name in pipeline_topics()]
    plans += [plan_key_registry(3), plan_dedupe(TRANSCRIPTS_TOPIC, DEFAULT_PARTITIONS, 3)]
    assert set(topics) == {p.name for p in plans}
    for plan in plans:
        spec = topics[plan.name]
        assert (spec["partitions"], spec["replicas"]) == (plan.partitions, plan.replication)
        assert {k: str(v).lower() for k, v in spec["config"].items()} == {k: str(v).lower() for k, v in plan.configs.items()}


def test_strimzi_cluster_matches_local_durability_settings() -> None:
    docs = {d["kind"]: d for d in _docs(DEPLOY / "k8s" / "kafka.yaml")}
    pool, kafka = docs["KafkaNodePool"], docs["Kafka"]
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert pool["spec"]["replicas"] == 3
    assert kafka["spec"]["kafka"]["version"] == KAFKA_VERSION
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    nodes, voters = compose_nodes()
    ours = server_properties(nodes[0], ClusterSettings("x", voters, 3))
    for key, value in kafka["spec"]["kafka"]["config"].items():
        assert str(value).lower() == ours[key], key


def test_worker_autoscaling_never_exceeds_partitions_and_uses_our_group() -> None:
    docs = {d["kind"]: d for d in _docs(DEPLOY / "k8s" / "worker.yaml")}
    scaled = docs["ScaledObject"]["spec"]
    trigger = scaled["triggers"][0]["metadata"]
    assert trigger["topic"] == TRANSCRIPTS_TOPIC
    assert trigger["consumerGroup"] == WORKER_GROUP
    assert scaled["maxReplicaCount"] <= DEFAULT_PARTITIONS
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "worker"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert EMOTIONS_TOPIC not in container["args"]  # default target topic is used


def test_systemd_units_parse_and_restart() -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string((DEPLOY / "systemd" / "emostream-worker@.service").read_text())
    assert "%i" in unit["Service"]["ExecStart"]
    assert unit["Service"]["Restart"] == "on-failure"
    assert unit["Service"]["KillSignal"] == "SIGTERM"
