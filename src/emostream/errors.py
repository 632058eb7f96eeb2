"""One exception hierarchy: catch ``EmostreamError`` for everything, or a subclass for one area.

Every message is meant for a person: it says what was wrong, with which input, and what to do.
"""

from __future__ import annotations


class EmostreamError(Exception):
    """Base of every error emostream raises on purpose."""

    exit_code: int = 1


class UsageError(EmostreamError):
    """Bad input from the user: a flag, a file, a value."""

    exit_code = 2


class ConfigError(UsageError):
    """Settings that cannot work together or cannot be read."""


class PrerequisiteError(EmostreamError):
    """A program the command needs (Java, Maven, ...) is missing or too old."""


class ClusterError(EmostreamError):
    """The local Kafka cluster could not be started, stopped or reached."""


class PortInUseError(ClusterError):
    """A port the cluster wants is taken by another process."""


class TopicError(EmostreamError):
    """A topic could not be created or does not have the expected shape."""


class KafkaClientError(EmostreamError):
    """A Kafka client call failed in a way the caller cannot fix by retrying."""


class ModelError(EmostreamError):
    """The emotion model could not be loaded or failed to classify."""


class DataError(UsageError):
    """A labelled data file (eval, train) is malformed."""


class WorkerError(EmostreamError):
    """The classifier worker cannot go on."""


class TransactionError(WorkerError):
    """A Kafka transaction of the worker failed."""


class TransactionAborted(TransactionError):
    """The transaction was aborted and the consumer rewound; the batch will be read and processed again.

    ``retriable`` is False when the cause was not a passing broker condition (so retrying the
    same records alone is not expected to help).
    """

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class TransactionFatal(TransactionError):
    """The producer cannot continue (fenced, fatal broker error): the worker must exit non-zero."""

    exit_code = 3


class InvalidOffset(WorkerError):
    """An offset to commit would move backwards: a bug that would re-deliver or skip records."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception by a command that must clean up first (``bench
    pipeline``): it unwinds like Ctrl-C, and the process exits 143 (128 + SIGTERM) as if the
    signal had ended it, not 130 (Ctrl-C)."""

    exit_code = 143
