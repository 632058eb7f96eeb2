"""The one place that talks to confluent-kafka. Nothing outside this package imports it.

``configuration`` builds client settings (bootstrap + security profile), ``admin`` manages
topics and reads cluster metadata, ``producer``/``consumer`` create configured clients.
"""

from emostream.kafka.configuration import ClientConfig

__all__ = ["ClientConfig"]
