"""confluent-kafka's value types, re-exported so callers need not import the library themselves."""

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, KafkaError, KafkaException, Message, TopicPartition

__all__ = ["OFFSET_BEGINNING", "OFFSET_END", "OFFSET_INVALID", "KafkaError", "KafkaException", "Message", "TopicPartition"]
