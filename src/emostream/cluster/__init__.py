"""Local Apache Kafka (KRaft) clusters: fetch the jars, generate configs, start, stop, inspect."""

from emostream.cluster.fetch import KAFKA_VERSION
from emostream.cluster.brokers import LocalCluster

__all__ = ["KAFKA_VERSION", "LocalCluster"]
