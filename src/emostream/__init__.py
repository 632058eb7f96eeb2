"""emostream: voice-emotion pipelines on Apache Kafka."""

from emostream.errors import EmostreamError

__version__ = "0.1.0"
__all__ = ["EmostreamError", "__version__"]
