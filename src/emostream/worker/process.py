"""The process step, free of I/O: decode a batch → classify the valid ones (one model call per
``model_batch`` texts, length-sorted; one call for all of them where the classifier batches
internally) → EmotionEvents and dead letters. The caller produces the results inside its
transaction."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from emostream.events import (
    DEFAULT_MAX_TEXT_BYTES,
    MAX_KEY_BYTES,
    EmotionEvent,
    InvalidEvent,
    SourceRef,
    Transcript,
    decode_transcript,
    dead_letter_headers,
    format_ts,
    parse_ts,
)
from emostream.errors import ModelError
from emostream.model.base import Classifier, Prediction, batches_internally
from emostream.worker.dedupe import RecentIds, is_derived_id, utterance_digest

log = logging.getLogger("emostream.worker")


@dataclass(frozen=True)
class Record:
    """One consumed record, as plain values (so the process step needs no Kafka client)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: list[tuple[str, bytes | None]] | None = None
    # Set when the consumer could not even read this record (a decompression bomb, a corrupt
    # batch): the record is dead-lettered by its coordinates with this reason.
    unreadable: str | None = None

    @property
    def source(self) -> SourceRef:
        """Where this record came from."""
        return SourceRef(self.topic, self.partition, self.offset)


@dataclass(frozen=True)
class Output:
    """A record to produce: an EmotionEvent (key = device id) or a dead letter (original bytes)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    latency_s: float | None = None
    error_type: str | None = None
    partition: int | None = None  # explicit partition (the dedupe changelog mirrors the source's)
    source: SourceRef | None = None  # the consumed record this output stands for


@dataclass
class BatchResult:
    """What one batch turned into, in source order per partition."""

    events: list[Output] = field(default_factory=list)
    dead_letters: list[Output] = field(default_factory=list)
    private: list[Output] = field(default_factory=list)  # copies of events in per-device topics
    changelog: list[Output] = field(default_factory=list)  # dedupe digests of newly seen ids
    duplicates: int = 0
    # Classified without a dedupe window (``defer_dedupe``): each decoded record's utterance digest,
    # in record order, for drop_duplicates to stage (the ids derived from offsets are not deduped).
    digests: list[tuple[SourceRef, bytes]] = field(default_factory=list)
    # ... and the ids the dedupe window already knew (dropped), for drop_duplicates to refresh.
    known: list[tuple[SourceRef, bytes]] = field(default_factory=list)
    model_s: float = 0.0
    model_calls: int = 0

    @property
    def outputs(self) -> list[Output]:
        """Everything to produce."""
        return self.events + self.private + self.dead_letters + self.changelog


# A dead letter must always be writable, or it would abort its transaction forever (a poison
# pill). The broker's default limit is ~1 MB per record, headers included, so values above this
# are cut to it and flagged; everything smaller (every plausible transcript) is kept unchanged.
DLQ_VALUE_LIMIT = 900_000
DLQ_KEY_LIMIT = MAX_KEY_BYTES


def _dead_letter(dlq: str, rec: Record, error_type: str, message: str) -> Output:
    """The original key and value (cut to what any broker accepts, flagged in a header) plus why."""
    headers = dead_letter_headers(error_type, message, rec.source)
    key, value = rec.key, rec.value
    if key is not None and len(key) > DLQ_KEY_LIMIT:
        headers.append(("error.key_truncated_from", str(len(key)).encode()))
        key = key[:DLQ_KEY_LIMIT]
    if value is not None and len(value) > DLQ_VALUE_LIMIT:
        headers.append(("error.value_truncated_from", str(len(value)).encode()))
        value = value[:DLQ_VALUE_LIMIT]
    return Output(dlq, key, value, headers, error_type=error_type, source=rec.source)


def _decode(rec: Record, max_text_bytes: int, verify: Callable[[Record, Transcript], None] | None) -> Transcript:
    """The record as a Transcript, or InvalidEvent; whatever else goes wrong on one record is that
    record's problem (a last-resort guard: it is dead-lettered as ``internal_error``, never fatal)."""
    try:
        t = decode_transcript(rec.key, rec.value, rec.source, max_text_bytes=max_text_bytes)
        if verify is not None:
            verify(rec, t)
        return t
    except InvalidEvent:
        raise
    except Exception as exc:  # noqa: BLE001 - one record must never stop the worker
        log.exception("decoding %s[%d]@%d failed unexpectedly", rec.topic, rec.partition, rec.offset)
        raise InvalidEvent("internal_error", f"{type(exc).__name__}: {exc}"[:500]) from exc


def _latency_s(t: Transcript, rec: Record, now: float) -> float | None:
    if t.ended_at:
        try:
            return now - parse_ts(t.ended_at)
        except ValueError:
            pass
    if rec.timestamp_ms is not None and rec.timestamp_ms > 0:
        return now - rec.timestamp_ms / 1000.0
    return None


def classify_with_fallback(classifier: Classifier, texts: list[str],
                           retry_batch: int = 64) -> tuple[list[Prediction | Exception], float]:
    """One model call for the batch; when it raises, calls of ``retry_batch`` consecutive texts,
    and one call per text within a call that raised too, so only the texts that fail on their own
    fail. Whatever fails, a batch costs at most three times its texts' model work (the failed
    call, the calls of ``retry_batch``, every text alone), where splitting in halves cost up to
    eleven times with many failing texts.

    Returns predictions (or the exception for a text that failed alone) and the model time.
    If every text of a multi-text batch fails alone too, the model itself is broken: ModelError.
    """
    start = time.perf_counter()
    try:
        return _classified(classifier, texts), time.perf_counter() - start
    except Exception as batch_exc:  # noqa: BLE001 - any model failure triggers the retries
        step = max(1, retry_batch) if len(texts) > retry_batch else 1
        log.warning("batched model call failed (%s); retrying %d texts in calls of %d", batch_exc, len(texts), step)
        out: list[Prediction | Exception] = []
        for i in range(0, len(texts), step):
            part = texts[i : i + step]
            try:
                out += _classified(classifier, part)
            except Exception as exc:  # noqa: BLE001
                out += [exc] if len(part) == 1 else _one_by_one(classifier, part)
        if len(texts) > 1 and all(isinstance(p, Exception) for p in out):
            raise ModelError(f"the model fails on every text ({out[0]}); refusing to dead-letter a whole batch") from batch_exc
        return out, time.perf_counter() - start


def _classified(classifier: Classifier, texts: list[str]) -> list[Prediction | Exception]:
    preds: list[Prediction | Exception] = list(classifier.classify(texts))
    if len(preds) != len(texts):
        raise ModelError(f"model returned {len(preds)} predictions for {len(texts)} texts")
    return preds


def _one_by_one(classifier: Classifier, texts: list[str]) -> list[Prediction | Exception]:
    out: list[Prediction | Exception] = []
    for text in texts:
        try:
            out += _classified(classifier, [text])
        except Exception as exc:  # noqa: BLE001
            out.append(exc)
    return out


def length_chunks(texts: Sequence[str], size: int) -> list[list[int]]:
    """Indexes of ``texts`` in model calls of at most ``size``, shortest texts first.

    A model call pads every text to its longest one, so calls of similar lengths waste little: on a
    transaction of 1,024 spoken-length utterances, length-sorted calls of 64 ran ~25 % faster than
    calls in arrival order (docs/events.md). Outputs keep arrival order; the model's scores do not
    depend on a text's batch mates (the shipped model is batch-invariant), only the cost does.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    size = max(1, size)
    return [order[i : i + size] for i in range(0, len(order), size)]


def model_calls(classifier: Classifier, texts: Sequence[str], model_batch: int) -> list[list[int]]:
    """Indexes of ``texts`` per model call, as the worker calls ``classifier``: all of them in one
    call where it batches internally (see :func:`~emostream.model.base.batches_internally`), else
    length-sorted calls of at most ``model_batch`` (:func:`length_chunks`)."""
    return length_chunks(texts, len(texts) if batches_internally(classifier) else model_batch)


@dataclass
class Prepared:
    """A batch decoded and checked (:func:`prepare_batch`), waiting for the model: ``result`` holds
    its dead letters and duplicates so far, ``valid`` the records whose texts go to the model."""

    records: list[Record]
    result: BatchResult
    valid: list[tuple[Record, SourceRef, Transcript, bytes | None]] = field(default_factory=list)
    finished: bool = False  # finish_batch adds to ``result``: once only

    @property
    def texts(self) -> list[str]:
        """The texts to classify, in record order."""
        return [t.text for _, _, t, _ in self.valid]


@dataclass
class Classified:
    """What the model said of a Prepared batch's texts (:func:`classify_texts`)."""

    predictions: list[Prediction | Exception]
    model_s: float = 0.0
    model_calls: int = 0


def process_batch(
    records: Sequence[Record],
    classifier: Classifier,
    *,
    target_topic: str,
    dlq_topic: str,
    recent: RecentIds | None = None,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    model_batch: int = 64,
    clock: Callable[[], float] = time.time,
    verify: Callable[[Record, Transcript], None] | None = None,
    device_topic: Callable[[str], str | None] | None = None,
    changelog_topic: str | None = None,
    poisoned: Mapping[SourceRef, str] | None = None,
    defer_dedupe: bool = False,
) -> BatchResult:
    """Turn consumed records into outputs. Never skips a record: each one becomes an EmotionEvent,
    a dead letter, or (a recent duplicate utterance) is counted and dropped.

    ``verify`` checks a decoded transcript's identity (raises InvalidEvent); ``device_topic`` names
    the private results topic of a device (or None) that gets a copy of its event;
    ``changelog_topic`` receives the digest of every newly seen utterance id in the source's
    partition (durable dedupe); ``poisoned`` names records that failed their transaction on their
    own before: they are dead-lettered with that reason instead of being processed again.

    ``defer_dedupe``: stage nothing in ``recent`` (so the batch may be decoded while the caller
    stages an earlier batch's ids): ids ``recent`` already knows and repeats within the batch are
    dropped as duplicates, the others' digests are listed in ``digests``, and the caller drops the
    rest of the duplicates with :func:`drop_duplicates` (ids staged meanwhile), which also
    refreshes the ids found known in the window's LRU (listed in ``known``).

    The three steps, :func:`prepare_batch` → :func:`classify_texts` → :func:`finish_batch`, may
    run apart: the pipelined worker runs only the model call in its model thread, so the Python
    work of decoding and encoding (which holds the GIL) overlaps another batch's model call.
    """
    prepared = prepare_batch(records, dlq_topic=dlq_topic, recent=recent, max_text_bytes=max_text_bytes, verify=verify,
                             poisoned=poisoned, defer_dedupe=defer_dedupe)
    if not prepared.valid:
        return prepared.result
    classified = classify_texts(classifier, prepared.texts, model_batch)
    return finish_batch(prepared, classified, model=classifier.name, target_topic=target_topic, dlq_topic=dlq_topic,
                        clock=clock, device_topic=device_topic, changelog_topic=changelog_topic)


def prepare_batch(
    records: Sequence[Record],
    *,
    dlq_topic: str,
    recent: RecentIds | None = None,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    verify: Callable[[Record, Transcript], None] | None = None,
    poisoned: Mapping[SourceRef, str] | None = None,
    defer_dedupe: bool = False,
) -> Prepared:
    """Decode and check a batch (see :func:`process_batch` for the arguments): dead letters and
    duplicates into the result, the rest listed for the model."""
    prepared = Prepared(list(records), BatchResult())
    result, valid = prepared.result, prepared.valid
    in_batch: set[tuple[str, int, bytes]] = set()  # defer_dedupe: the ids of this batch so far
    for rec in records:
        if rec.unreadable is not None:
            result.dead_letters.append(_dead_letter(dlq_topic, rec, "unreadable_record", rec.unreadable))
            continue
        reason = poisoned.get(rec.source) if poisoned else None
        if reason is not None:
            result.dead_letters.append(_dead_letter(dlq_topic, rec, "poison_record", reason))
            continue
        try:
            t = _decode(rec, max_text_bytes, verify)
        except InvalidEvent as exc:
            result.dead_letters.append(_dead_letter(dlq_topic, rec, exc.error_type, str(exc)))
            continue
        digest = None
        source = rec.source  # one SourceRef per record, shared by its outputs
        if (recent is not None or defer_dedupe) and not is_derived_id(t.utterance_id):
            # Ids derived from offsets are unique by construction; only ids a device chose are deduped.
            digest = utterance_digest(t.device_id, t.utterance_id)
            if defer_dedupe:
                key = (rec.topic, rec.partition, digest)
                if key in in_batch:
                    result.duplicates += 1
                    continue
                if recent is not None and recent.known((rec.topic, rec.partition), digest):
                    result.duplicates += 1
                    result.known.append((source, digest))
                    continue
                in_batch.add(key)
                result.digests.append((source, digest))
            elif recent is not None and not recent.check_and_stage((rec.topic, rec.partition), digest):
                result.duplicates += 1
                continue
        valid.append((rec, source, t, digest))
    return prepared


def classify_texts(classifier: Classifier, texts: list[str], model_batch: int = 64) -> Classified:
    """The model's predictions for ``texts`` (in their order), called as :func:`model_calls` says,
    each call with :func:`classify_with_fallback`. Touches nothing but the model: it may run in a
    thread of its own."""
    by_index: dict[int, Prediction | Exception] = {}
    out = Classified([])
    for chunk in model_calls(classifier, texts, model_batch):
        chunk_preds, seconds = classify_with_fallback(classifier, [texts[i] for i in chunk], model_batch)
        by_index.update(zip(chunk, chunk_preds))
        out.model_s += seconds
        out.model_calls += 1
    out.predictions = [by_index[i] for i in range(len(texts))]
    return out


def finish_batch(
    prepared: Prepared,
    classified: Classified,
    *,
    model: str,
    target_topic: str,
    dlq_topic: str,
    clock: Callable[[], float] = time.time,
    device_topic: Callable[[str], str | None] | None = None,
    changelog_topic: str | None = None,
) -> BatchResult:
    """The outputs of a classified batch (see :func:`process_batch` for the arguments): an
    EmotionEvent per prediction (and its private copy), a dead letter per text the model failed
    on, a changelog digest per newly seen id. ``model``: the name the events carry."""
    if prepared.finished:
        raise RuntimeError("this batch was finished already: its outputs would be written twice")
    prepared.finished = True
    result = prepared.result
    if len(classified.predictions) != len(prepared.valid):
        raise ModelError(f"{len(classified.predictions)} predictions for {len(prepared.valid)} texts")
    result.model_s += classified.model_s
    result.model_calls += classified.model_calls
    now = clock()
    classified_at = format_ts(now)
    for (rec, source, t, digest), pred in zip(prepared.valid, classified.predictions):
        if changelog_topic is not None and digest is not None:
            result.changelog.append(Output(changelog_topic, digest, b"", partition=rec.partition, source=source))
        if isinstance(pred, Exception):
            result.dead_letters.append(_dead_letter(dlq_topic, rec, "model_error", f"{type(pred).__name__}: {pred}"))
            continue
        try:
            latency = _latency_s(t, rec, now)
            value = EmotionEvent(
                device_id=t.device_id,
                utterance_id=t.utterance_id,
                text=t.text,
                label=pred.label,
                scores=dict(pred.scores),
                labels=list(pred.labels) or None,
                model=model,
                source=source,
                classified_at=classified_at,
                latency_ms=None if latency is None else latency * 1000.0,
            ).encode()
        except Exception as exc:  # noqa: BLE001 - last-resort guard, as in _decode
            log.exception("encoding the event of %s[%d]@%d failed", rec.topic, rec.partition, rec.offset)
            result.dead_letters.append(_dead_letter(dlq_topic, rec, "internal_error", f"{type(exc).__name__}: {exc}"[:500]))
            continue
        key = t.device_id.encode("utf-8")
        result.events.append(Output(target_topic, key, value, latency_s=latency, source=source))
        private = device_topic(t.device_id) if device_topic is not None else None
        if private is not None:
            result.private.append(Output(private, key, value, source=source))
    return result


def drop_duplicates(result: BatchResult, recent: RecentIds) -> BatchResult:
    """Stage the utterance ids of a batch classified with ``defer_dedupe``, drop every output of a
    record whose id was staged meanwhile, and refresh the known ids' places in the LRU. Run in the
    same thread as the staging, with nothing staged meanwhile, the outputs and the window are those
    process_batch gives with ``recent`` (tested)."""
    for source, digest in result.known:
        recent.touch((source.topic, source.partition), digest)
    dups: set[SourceRef] = set()
    for source, digest in result.digests:
        if not recent.check_and_stage((source.topic, source.partition), digest):
            dups.add(source)
    result.digests, result.known = [], []
    if not dups:
        return result
    result.duplicates += len(dups)
    for name in ("events", "private", "dead_letters", "changelog"):
        setattr(result, name, [o for o in getattr(result, name) if o.source not in dups])
    return result
