"""The one place that turns confluent-kafka's errors into ours.

``kafka_error`` digs the ``KafkaError`` out of whatever the client raised (``KafkaException``
wraps one in ``args[0]``; futures raise it the same way); ``describe`` gives the one-line text a
person reads; ``client_error`` builds our :class:`KafkaClientError` with what to do next.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from emostream.errors import KafkaClientError


# Refusals of one record for its own sake (size, format): sending the same bytes again cannot help,
# and the record — not the broker or the transaction — is to blame. Kafka's error names.
RECORD_REFUSALS = frozenset({
    "MSG_SIZE_TOO_LARGE", "INVALID_MSG_SIZE", "RECORD_LIST_TOO_LARGE", "INVALID_RECORD", "INVALID_MSG",
    "INVALID_TIMESTAMP", "_INVALID_ARG", "_BAD_MSG",
})


def kafka_error(exc: BaseException | KafkaError | None) -> KafkaError | None:
    """The ``KafkaError`` carried by ``exc`` (or ``exc`` itself), else None."""
    if isinstance(exc, KafkaError):
        return exc
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def error_name(exc: BaseException | KafkaError | None) -> str | None:
    """Kafka's name for the error (``TOPIC_ALREADY_EXISTS``, ``_MSG_TIMED_OUT``, ...), else None."""
    err = kafka_error(exc)
    return err.name() if err is not None else None


def describe(exc: BaseException | KafkaError | None) -> str:
    """One line for a person: Kafka's own text when there is one, else ``str(exc)``."""
    err = kafka_error(exc)
    if err is not None:
        return err.str()
    return str(exc)


def client_error(what: str, exc: BaseException | KafkaError, *, bootstrap: str | None = None, fix: str | None = None) -> KafkaClientError:
    """``KafkaClientError("could not WHAT at BOOTSTRAP: TEXT; FIX")``; raise it ``from exc``."""
    where = f" at {bootstrap}" if bootstrap else ""
    tail = f"; {fix}" if fix else ""
    return KafkaClientError(f"could not {what}{where}: {describe(exc)}{tail}")


def is_record_refusal(exc: BaseException | KafkaError | None) -> bool:
    """True when the broker (or client) refused one record for its own sake (see RECORD_REFUSALS)."""
    return error_name(exc) in RECORD_REFUSALS


def is_fatal(exc: BaseException | KafkaError | None) -> bool:
    """True when the client that raised it cannot go on (fenced producer, fatal idempotence error)."""
    err = kafka_error(exc)
    return bool(err is not None and err.fatal())


def is_retriable(exc: BaseException | KafkaError | None) -> bool:
    """True when the same call may simply be tried again (and needs no transaction abort)."""
    err = kafka_error(exc)
    return bool(err is not None and err.retriable() and not err.txn_requires_abort())
