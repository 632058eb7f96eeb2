"""Benchmarks: ``model`` (the classifier alone) and ``pipeline`` (through real Kafka)."""
