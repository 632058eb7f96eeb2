"""confluent-kafka's value types that callers outside this package use, re-exported so they
need not import the library themselves."""

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

__all__ = ["OFFSET_BEGINNING", "KafkaError", "KafkaException", "TopicPartition"]
